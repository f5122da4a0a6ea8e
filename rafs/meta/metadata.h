// Metadata: a loaded RAFS bootstrap (v5, v6, or a plain EROFS image with
// chunk-based files), seen through one version-independent interface.
//
// The bootstrap bytes are held in memory and decoded lazily: opening
// validates the superblocks and tables; every inode, directory block, xattr
// area and chunk index is validated when it is first used. Any inconsistency
// is kDataLoss naming the structure and offset; nothing reads outside the
// bootstrap, allocates in proportion to an untrusted count, or loops on a
// cyclic structure.
//
// Inode numbers: v6 uses the nid and v5 the record's i_ino, except that the
// root is always inode 1 (FUSE's root id); in v6 the nid 1, if it exists, takes
// the root's nid instead, so the mapping stays one-to-one and stable across
// restarts.
//
// All methods are const and thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/status.h"
#include "rafs/format/v6.h"
#include "storage/chunk.h"

namespace rfs::rafs::meta {

inline constexpr uint64_t kRootIno = 1;

struct BlobMeta;  // blob_meta.h

struct SuperInfo {
  int version = 6;           // 5 or 6
  bool plain_erofs = false;  // EROFS image without RAFS tables (mkfs.erofs)
  uint64_t flags = 0;        // superblock flags (spec 2.4)
  storage::Compressor compressor = storage::Compressor::kNone;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  uint32_t chunk_size = 0;
  uint32_t block_size = 0;  // v6: 4096 (512 in tarfs mode); v5: 0
  uint64_t inode_count = 0;     // v6 s_inos (names), v5 s_inodes_count
  uint64_t inode_entries = 0;   // v5 inode table entries; v6 = inode_count
  bool explicit_uid_gid = false;
  bool has_xattr = false;
  uint64_t bootstrap_size = 0;
  uint64_t chunk_table_records = 0;  // v6
};

// One data blob referenced by the image.
struct BlobEntry {
  storage::BlobInfo info;  // info.blob_id is the effective id (after inline-meta fix-up)
  std::string stored_id;   // id as stored in the table
  uint32_t features = 0;
  // v6 compression-info array inside the blob.
  uint32_t ci_compressor = 0;
  uint64_t ci_offset = 0;
  uint64_t ci_compressed_size = 0;
  uint64_t ci_uncompressed_size = 0;
  uint32_t toc_size = 0;
  base::Digest toc_digest{};
  // v6 device slot
  uint32_t device_blocks = 0;
  uint32_t mapped_blkaddr = 0;
  // v5
  uint32_t readahead_offset = 0;
  uint32_t readahead_size = 0;
};

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;  // st_mode with type bits
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units
  uint64_t rdev = 0;    // glibc dev_t encoding (makedev)
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;  // DT_* value
};

using Xattrs = std::vector<std::pair<std::string, std::string>>;

// Called for each entry; `next` is the cookie that resumes after it.
// Return false to stop.
using DirFn = std::function<bool(const DirEntry& entry, uint64_t next)>;

class Metadata {
 public:
  virtual ~Metadata() = default;

  const SuperInfo& super() const { return super_; }
  const std::vector<BlobEntry>& blobs() const { return blobs_; }
  base::ByteSpan bytes() const { return bytes_; }

  virtual base::Result<Attr> GetAttr(uint64_t ino) const = 0;
  // kNotFound when `name` is not in directory `dir`; kInvalidArgument
  // (ENOTDIR) when `dir` is not a directory.
  virtual base::Result<uint64_t> Lookup(uint64_t dir, std::string_view name) const = 0;
  // Lists entries from `cookie` (0 = first). "." and ".." are included.
  virtual base::Status ReadDir(uint64_t dir, uint64_t cookie, const DirFn& fn) const = 0;
  virtual base::Result<std::string> ReadLink(uint64_t ino) const = 0;
  virtual base::Result<Xattrs> GetXattrs(uint64_t ino) const = 0;
  // The plan to read [offset, offset + length) of regular file `ino`,
  // clipped to the file size.
  virtual base::Result<storage::ChunkIoVec> Read(uint64_t ino, uint64_t offset,
                                                 uint64_t length) const = 0;
  // Inodes named by the prefetch table (files, or directories meaning
  // everything below).
  virtual base::Result<std::vector<uint64_t>> PrefetchInodes() const = 0;
  // Deeper per-inode checks that reads do not need (v5: the inode digest).
  virtual base::Status CheckInode(uint64_t ino) const { return base::Status::Ok(); }

  // True when chunk locations must come from the blobs' ci arrays because
  // the bootstrap has no chunk table (v6 only).
  virtual bool NeedsBlobMeta() const { return false; }
  // Supplies a blob's parsed ci array and digests, used for chunks the
  // chunk table lacks. Not thread-safe: call before serving reads.
  virtual base::Status AttachBlobMeta(uint32_t blob_index, std::shared_ptr<const BlobMeta> meta) {
    return base::Status::Ok();
  }

  // Chunk `index` of blob `blob_index` as the image describes it (chunk
  // table record, else the blob's ci array), whichever file uses it; for
  // widening reads to the chunks that follow in the blob. kUnimplemented
  // where the format has no such table (v5, plain EROFS).
  virtual base::Result<storage::ChunkInfo> BlobChunk(uint32_t blob_index, uint32_t index) const {
    return base::UnimplementedError("no chunk table");
  }

  // The blob infos, indexed by blob_index (for storage).
  std::vector<storage::BlobInfo> BlobInfos() const;

 protected:
  explicit Metadata(std::vector<uint8_t> bytes) : owned_(std::move(bytes)), bytes_(owned_) {}
  Metadata(const Metadata&) = delete;
  Metadata& operator=(const Metadata&) = delete;

  std::vector<uint8_t> owned_;
  base::ByteSpan bytes_;
  SuperInfo super_;
  std::vector<BlobEntry> blobs_;
};

struct OpenOptions {
  // File name the bootstrap came from (or of the blob it was extracted
  // from), used for the blob-id fix-up of inline-metadata blobs (spec 6.6).
  std::string meta_file_name;
  // The bootstrap was extracted from a data blob.
  bool extracted_from_blob = false;
};

// Opens a v5 or v6 bootstrap from its bytes.
base::Result<std::unique_ptr<Metadata>> OpenMetadata(std::vector<uint8_t> bytes,
                                                     const OpenOptions& options = {});

// Reads `path`; when the file is neither a v5 nor a v6 bootstrap, treats it
// as a data blob with inlined metadata and extracts the bootstrap (ToC entry
// `image.boot`, or the raw bootstrap before a final `image.boot` tar header).
base::Result<std::unique_ptr<Metadata>> OpenMetadataFile(const std::string& path);

// Decodes a mode's file type to DT_*.
uint32_t ModeToDirentType(uint32_t mode);
// True for the seven file types a filesystem image may hold.
bool IsKnownFileType(uint32_t mode);

// The chunk described by an 80-byte chunk record (v5 inode chunks, v6 chunk
// table), with its digest.
storage::ChunkInfo ChunkInfoFromRecord(const format::ChunkRecord& r);

// Linux new_encode_dev (RAFS/EROFS rdev) <-> glibc dev_t.
uint64_t DecodeRdev(uint32_t raw);
uint32_t EncodeRdev(uint64_t dev);

}  // namespace rfs::rafs::meta
