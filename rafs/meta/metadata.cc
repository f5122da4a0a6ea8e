#include "rafs/meta/metadata.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.h"
#include "rafs/format/v5.h"
#include "rafs/format/v6.h"
#include "rafs/meta/blob_meta.h"
#include "rafs/meta/v5_metadata.h"
#include "rafs/meta/v6_metadata.h"

namespace rfs::rafs::meta {

using base::Result;

// Bootstraps larger than this are refused before reading them into memory.
constexpr uint64_t kMaxBootstrapSize = 4ull << 30;

std::vector<storage::BlobInfo> Metadata::BlobInfos() const {
  std::vector<storage::BlobInfo> out;
  out.reserve(blobs_.size());
  for (const BlobEntry& b : blobs_) out.push_back(b.info);
  return out;
}

Result<std::unique_ptr<Metadata>> OpenMetadata(std::vector<uint8_t> bytes,
                                               const OpenOptions& options) {
  if (format::HasRafsV5Magic(bytes)) {
    ASSIGN_OR_RETURN(auto m, V5Metadata::Open(std::move(bytes), options));
    return std::unique_ptr<Metadata>(std::move(m));
  }
  if (format::HasErofsMagic(bytes)) {
    ASSIGN_OR_RETURN(auto m, V6Metadata::Open(std::move(bytes), options));
    return std::unique_ptr<Metadata>(std::move(m));
  }
  return base::DataLossError("not a rafs bootstrap: no v5 magic at offset 0 and no erofs magic "
                             "at offset 1024 (", bytes.size(), " bytes)");
}

Result<std::unique_ptr<Metadata>> OpenMetadataFile(const std::string& path) {
  ASSIGN_OR_RETURN(auto reader, storage::LocalFileReader::Open(path, path));
  ASSIGN_OR_RETURN(uint64_t size, reader->Size());
  if (size > kMaxBootstrapSize) {
    return base::ResourceExhaustedError(path, ": ", size, " bytes is too large for a bootstrap");
  }
  std::vector<uint8_t> head(std::min<uint64_t>(size, 1024 + 128));
  RETURN_IF_ERROR(reader->ReadAt(0, head));
  OpenOptions options;
  options.meta_file_name = path;
  std::vector<uint8_t> bytes;
  if (format::HasRafsV5Magic(head) || format::HasErofsMagic(head)) {
    bytes.resize(size);
    RETURN_IF_ERROR(reader->ReadAt(0, bytes));
  } else {
    auto extracted = ExtractInlineBootstrap(*reader);
    if (!extracted.ok()) {
      return base::DataLossError(path, ": not a rafs bootstrap (no v5 or v6 magic) and no "
                                 "bootstrap inlined in it as a blob: ",
                                 extracted.status().message());
    }
    bytes = std::move(*extracted);
    options.extracted_from_blob = true;
  }
  auto m = OpenMetadata(std::move(bytes), options);
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

uint32_t ModeToDirentType(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return DT_REG;
    case S_IFDIR: return DT_DIR;
    case S_IFLNK: return DT_LNK;
    case S_IFCHR: return DT_CHR;
    case S_IFBLK: return DT_BLK;
    case S_IFIFO: return DT_FIFO;
    case S_IFSOCK: return DT_SOCK;
    default: return DT_UNKNOWN;
  }
}

bool IsKnownFileType(uint32_t mode) { return ModeToDirentType(mode) != DT_UNKNOWN; }

storage::ChunkInfo ChunkInfoFromRecord(const format::ChunkRecord& r) {
  storage::ChunkInfo c;
  c.blob_index = r.blob_index;
  c.index = r.index;
  c.compressed_offset = r.compressed_offset;
  c.compressed_size = r.compressed_size;
  c.uncompressed_offset = r.uncompressed_offset;
  c.uncompressed_size = r.uncompressed_size;
  c.compressed = (r.flags & format::kChunkCompressed) != 0;
  c.has_digest = true;
  std::memcpy(c.digest.data(), r.block_id, 32);
  return c;
}

uint64_t DecodeRdev(uint32_t raw) {
  const uint64_t major = (raw & 0xFFF00) >> 8;
  const uint64_t minor = (raw & 0xFF) | ((raw >> 12) & 0xFFF00);
  return makedev(major, minor);
}

uint32_t EncodeRdev(uint64_t dev) {
  const uint64_t major = ::major(dev), minor = ::minor(dev);
  return static_cast<uint32_t>((minor & 0xFF) | (major << 8) | ((minor & ~0xFFull) << 12));
}

}  // namespace rfs::rafs::meta
