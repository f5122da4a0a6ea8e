#include "rafs/fs/checker.h"

#include <sys/stat.h>

#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "rafs/format/v6.h"
#include "rafs/meta/blob_meta.h"
#include "rafs/meta/walk.h"

namespace rfs::rafs::fs {

using base::Result;
using base::Status;
using storage::ChunkInfo;

namespace {

// Identity of a stored chunk with its expected content.
using ChunkKey = std::tuple<uint32_t, uint64_t, uint32_t, uint32_t, bool, base::Digest>;
ChunkKey KeyOf(const ChunkInfo& c) {
  return {c.blob_index, c.compressed_offset, c.compressed_size, c.uncompressed_size,
          c.has_digest, c.has_digest ? c.digest : base::Digest{}};
}

using ChunkMap = std::map<ChunkKey, std::pair<ChunkInfo, std::string>>;

// Cross-checks a v6 blob's ci array and digest array against the chunk
// table records of that blob, and adds chunks no file uses to `chunks` so
// that they are verified too.
Status CrossCheckBlob(const meta::Metadata& m, const meta::BlobEntry& blob,
                      const meta::BlobMeta& bm, ChunkMap* chunks) {
  const auto bytes = m.bytes();
  const uint64_t nrec = m.super().chunk_table_records;
  if (nrec == 0) return Status::Ok();
  // The chunk table offset is in the extended superblock.
  auto ext = format::DecodeRafsV6ExtSuperBlock(bytes);
  if (!ext.ok()) return ext.status();
  for (uint64_t r = 0; r < nrec; ++r) {
    const uint64_t off = ext->s_chunk_table_offset + r * format::kChunkRecordSize;
    format::ChunkRecord rec = format::DecodeChunkRecord(bytes.data() + off);
    if (rec.blob_index != blob.info.blob_index) continue;
    if (rec.index >= bm.entries.size()) {
      return base::DataLossError("chunk table record ", r, " at offset ", off, ": ci index ",
                                 rec.index, " beyond the ", bm.entries.size(),
                                 " entries of blob ", blob.info.blob_id);
    }
    const format::CiEntry& e = bm.entries[rec.index];
    if (e.compressed_offset != rec.compressed_offset || e.compressed_size != rec.compressed_size ||
        e.uncompressed_offset != rec.uncompressed_offset ||
        e.uncompressed_size != rec.uncompressed_size) {
      return base::DataLossError("chunk table record ", r, " at offset ", off,
                                 " disagrees with ci entry ", rec.index, " of blob ",
                                 blob.info.blob_id);
    }
    if (!bm.digests.empty() &&
        std::memcmp(bm.digests[rec.index].data(), rec.block_id, 32) != 0) {
      return base::DataLossError("chunk table record ", r, " at offset ", off,
                                 " digest disagrees with the digest array of blob ",
                                 blob.info.blob_id);
    }
    ChunkInfo c = meta::ChunkInfoFromRecord(rec);
    chunks->try_emplace(KeyOf(c), c, base::StrCat("chunk table record ", r));
  }
  return Status::Ok();
}

}  // namespace

Result<CheckReport> CheckImage(const Image& image, const CheckOptions& options) {
  const meta::Metadata& m = image.metadata();
  CheckReport report;
  // Chunk -> first file that uses it (for error messages).
  ChunkMap chunks;
  std::set<uint64_t> seen_files;

  meta::WalkCallbacks cb;
  cb.visit = [&](const meta::WalkEntry& e) -> Status {
    RETURN_IF_ERROR(m.CheckInode(e.ino).WithContext(e.path));
    if (m.super().version == 5) ++report.inode_digests;
    auto xattrs = m.GetXattrs(e.ino);
    if (!xattrs.ok()) return xattrs.status().WithContext(e.path);
    const uint32_t type = e.attr.mode & S_IFMT;
    if (type == S_IFDIR) {
      ++report.directories;
    } else if (type == S_IFLNK) {
      ++report.symlinks;
      auto target = m.ReadLink(e.ino);
      if (!target.ok()) return target.status().WithContext(e.path);
    } else if (type == S_IFREG) {
      ++report.files;
      if (!seen_files.insert(e.ino).second) {
        ++report.hardlinks;
        return Status::Ok();
      }
      report.file_bytes += e.attr.size;
      auto plan = m.Read(e.ino, 0, e.attr.size);
      if (!plan.ok()) return plan.status().WithContext(e.path);
      if (plan->total != e.attr.size) {
        return base::DataLossError(e.path, ": chunks cover ", plan->total, " of ", e.attr.size,
                                   " bytes");
      }
      for (const auto& s : plan->segments) {
        if (s.kind != storage::IoSegment::Kind::kChunk) continue;
        chunks.try_emplace(KeyOf(s.chunk), s.chunk, e.path);
      }
    } else {
      ++report.others;
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(meta::WalkTree(m, "/", cb));

  if (!options.verify_data) return report;
  if (image.backend() == nullptr) {
    if (chunks.empty()) return report;
    return base::FailedPreconditionError("verifying chunk data needs the image's blobs");
  }

  // Blob-side metadata (ci arrays, digest arrays, ToC) of rafs v6 blobs.
  if (m.super().version == 6 && !m.super().plain_erofs) {
    for (const meta::BlobEntry& b : m.blobs()) {
      ASSIGN_OR_RETURN(auto reader, image.backend()->Open(b.info.blob_id));
      auto bm = meta::LoadBlobMeta(b, *reader);
      if (!bm.ok()) return bm.status();
      RETURN_IF_ERROR(CrossCheckBlob(m, b, **bm, &chunks));
      ++report.blobs_checked;
    }
  }

  std::vector<uint8_t> buf;
  uint64_t done = 0;
  for (const auto& [key, value] : chunks) {
    const auto& [chunk, path] = value;
    if (chunk.uncompressed_size > (16u << 20)) {
      return base::DataLossError(path, ": chunk ", chunk.index, " of blob index ",
                                 chunk.blob_index, " claims ", chunk.uncompressed_size, " bytes");
    }
    buf.resize(chunk.uncompressed_size);
    Status s = image.device()->ReadChunk(chunk, buf, storage::IoContext{});
    if (!s.ok()) return s.WithContext(path);
    ++report.chunks_verified;
    report.chunk_bytes += chunk.uncompressed_size;
    if (options.progress) options.progress(++done, chunks.size());
  }
  return report;
}

}  // namespace rfs::rafs::fs
