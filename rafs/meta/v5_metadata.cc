#include "rafs/meta/v5_metadata.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "rafs/format/v6.h"

namespace rfs::rafs::meta {

using base::ByteSpan;
using base::CheckRange;
using base::DataLossError;
using base::Hex;
using base::Result;
using base::Status;
using format::V5InodeRecord;
using storage::ChunkInfo;
using storage::ChunkIoVec;
using storage::IoSegment;

namespace {
constexpr uint64_t kMaxV5Size = 1ull << 31;
}  // namespace

Result<std::unique_ptr<V5Metadata>> V5Metadata::Open(std::vector<uint8_t> bytes,
                                                     const OpenOptions& options) {
  std::unique_ptr<V5Metadata> m(new V5Metadata(std::move(bytes)));
  RETURN_IF_ERROR(m->Init(options));
  return m;
}

Status V5Metadata::Init(const OpenOptions& options) {
  ASSIGN_OR_RETURN(sb_, format::DecodeRafsV5SuperBlock(bytes_));
  const uint64_t size = bytes_.size();
  super_.version = 5;
  super_.bootstrap_size = size;
  if (size % 8 != 0 || size > kMaxV5Size) {
    return DataLossError("rafs v5: bootstrap size ", size,
                         " must be a multiple of 8 and at most 2 GiB");
  }
  if (sb_.s_sb_size != format::kRafsV5SuperSize) {
    return DataLossError("rafs v5 superblock: bad s_sb_size ", sb_.s_sb_size, " at offset 8");
  }
  const uint32_t cs = sb_.s_block_size;
  if (!base::IsPowerOfTwo(cs) || cs < 4096 || cs > (16u << 20)) {
    return DataLossError("rafs v5 superblock: bad s_block_size ", cs, " at offset 12");
  }
  super_.chunk_size = cs;
  const uint64_t flags = sb_.s_flags;
  super_.flags = flags;
  if (flags & ~format::kKnownSuperFlags) {
    return DataLossError("rafs v5 superblock: unknown s_flags bits ",
                         Hex(flags & ~format::kKnownSuperFlags), " at offset 16");
  }
  // Upstream's decoding order and defaults.
  if (flags & format::kFlagCompressionNone) super_.compressor = storage::Compressor::kNone;
  else if (flags & format::kFlagCompressionLz4) super_.compressor = storage::Compressor::kLz4Block;
  else if (flags & format::kFlagCompressionGzip) super_.compressor = storage::Compressor::kGzip;
  else if (flags & format::kFlagCompressionZstd) super_.compressor = storage::Compressor::kZstd;
  else super_.compressor = storage::Compressor::kLz4Block;
  super_.digester = (flags & format::kFlagHashBlake3)   ? base::DigestAlgo::kBlake3
                    : (flags & format::kFlagHashSha256) ? base::DigestAlgo::kSha256
                                                        : base::DigestAlgo::kBlake3;
  super_.explicit_uid_gid = (flags & format::kFlagExplicitUidGid) != 0;
  super_.has_xattr = (flags & format::kFlagHasXattr) != 0;
  super_.inode_count = sb_.s_inodes_count;
  super_.inode_entries = sb_.s_inode_table_entries;
  if (sb_.s_inode_table_entries == 0 || sb_.s_inodes_count > sb_.s_inode_table_entries) {
    return DataLossError("rafs v5 superblock: s_inodes_count ", sb_.s_inodes_count,
                         " vs s_inode_table_entries ", sb_.s_inode_table_entries,
                         " at offset 24");
  }

  struct Range {
    uint64_t off, len;
    const char* what;
  };
  std::vector<Range> ranges;
  ranges.push_back({0, format::kRafsV5SuperSize, "superblock"});
  ranges.push_back({sb_.s_inode_table_offset,
                    base::AlignUp(uint64_t{sb_.s_inode_table_entries} * 4, 8), "inode table"});
  if (sb_.s_prefetch_table_entries > 0) {
    ranges.push_back({sb_.s_prefetch_table_offset, uint64_t{sb_.s_prefetch_table_entries} * 4,
                      "prefetch table"});
  }
  if (sb_.s_blob_table_size > 0) {
    ranges.push_back({sb_.s_blob_table_offset, sb_.s_blob_table_size, "blob table"});
  }
  if (sb_.s_extended_blob_table_offset != 0 && sb_.s_extended_blob_table_entries > 0) {
    ranges.push_back({sb_.s_extended_blob_table_offset,
                      uint64_t{sb_.s_extended_blob_table_entries} * format::kV5ExtBlobEntrySize,
                      "extended blob table"});
  }
  for (const Range& r : ranges) RETURN_IF_ERROR(CheckRange(r.off, r.len, size, r.what));
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.off < b.off; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i - 1].off + ranges[i - 1].len > ranges[i].off) {
      return DataLossError("rafs v5: ", ranges[i - 1].what, " overlaps ", ranges[i].what);
    }
  }

  ASSIGN_OR_RETURN(auto table, format::DecodeV5BlobTable(bytes_, sb_.s_blob_table_offset,
                                                         sb_.s_blob_table_size));
  const bool has_ext = sb_.s_extended_blob_table_offset != 0 && sb_.s_extended_blob_table_entries > 0;
  if (has_ext && sb_.s_extended_blob_table_entries != table.size()) {
    return DataLossError("rafs v5: ", table.size(), " blobs but ",
                         sb_.s_extended_blob_table_entries, " extended blob table entries");
  }
  for (size_t i = 0; i < table.size(); ++i) {
    BlobEntry b;
    b.stored_id = table[i].blob_id;
    b.info.blob_id = table[i].blob_id;
    b.info.blob_index = static_cast<uint32_t>(i);
    b.info.compressor = super_.compressor;
    b.info.digester = super_.digester;
    b.info.chunk_size = cs;
    b.readahead_offset = table[i].readahead_offset;
    b.readahead_size = table[i].readahead_size;
    if (has_ext) {
      format::V5ExtBlobEntry x = format::DecodeV5ExtBlobEntry(
          bytes_.data() + sb_.s_extended_blob_table_offset + i * format::kV5ExtBlobEntrySize);
      b.info.chunk_count = x.chunk_count;
      b.features = x.features;
      b.info.uncompressed_size = x.uncompressed_size;
      b.info.compressed_size = x.compressed_size;
    }
    blobs_.push_back(std::move(b));
  }
  (void)options;

  ASSIGN_OR_RETURN(V5InodeRecord root, LoadInode(kRootIno));
  if (!S_ISDIR(root.i_mode)) {
    return DataLossError("rafs v5: root inode at offset ", root.offset, " is not a directory");
  }
  return Status::Ok();
}

Result<V5InodeRecord> V5Metadata::RecordAt(uint64_t index) const {
  if (index == 0 || index > sb_.s_inode_table_entries) {
    return DataLossError("rafs v5: inode index ", index, " outside the inode table (",
                         sb_.s_inode_table_entries, " entries)");
  }
  const uint64_t entry_off = sb_.s_inode_table_offset + (index - 1) * 4;
  const uint64_t off = uint64_t{base::LoadLe32(bytes_.data() + entry_off)} << 3;
  if (off <= format::kRafsV5SuperSize || off >= bytes_.size()) {
    return DataLossError("rafs v5 inode table entry ", index, " at offset ", entry_off,
                         ": record offset ", off, " outside the bootstrap");
  }
  ASSIGN_OR_RETURN(V5InodeRecord r, format::DecodeV5InodeRecord(bytes_, off));
  auto bad = [&](const char* what) {
    return DataLossError("rafs v5 inode record ", index, " at offset ", off, ": ", what);
  };
  if (r.i_ino == 0 || r.i_ino > sb_.s_inode_table_entries) return bad("i_ino out of range");
  if (r.i_nlink == 0) return bad("i_nlink is 0");
  if (!IsKnownFileType(r.i_mode)) return bad("bad file type in i_mode");
  const bool hardlinked_file = S_ISREG(r.i_mode) && r.i_nlink > 1;
  if (index == kRootIno) {
    if (r.i_ino != kRootIno) return bad("root i_ino is not 1");
  } else {
    if (r.i_parent == 0) return bad("i_parent is 0");
    if (!hardlinked_file && r.i_parent >= r.i_ino) return bad("i_parent not below i_ino");
  }
  if (S_ISLNK(r.i_mode) && r.i_symlink_size == 0) return bad("symlink without target");
  std::string_view name = NameOf(r);
  if (index != kRootIno &&
      (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos ||
       name == "." || name == "..")) {
    return bad("invalid name");
  }
  return r;
}

Result<V5InodeRecord> V5Metadata::LoadInode(uint64_t ino) const {
  if (ino == 0 || ino > sb_.s_inode_table_entries) {
    return base::NotFoundError("rafs v5: no inode ", ino);
  }
  ASSIGN_OR_RETURN(V5InodeRecord r, RecordAt(ino));
  if (r.i_ino != ino) {
    return DataLossError("rafs v5 inode record at offset ", r.offset, ": i_ino ", r.i_ino,
                         " but found at table index ", ino);
  }
  return r;
}

std::string_view V5Metadata::NameOf(const V5InodeRecord& r) const {
  return std::string_view(reinterpret_cast<const char*>(bytes_.data() + r.name_offset()),
                          r.i_name_size);
}

Status V5Metadata::CheckChildRange(const V5InodeRecord& r) const {
  if (r.i_child_count == 0) return Status::Ok();
  if (r.i_child_index <= r.i_ino ||
      uint64_t{r.i_child_index} + r.i_child_count - 1 > sb_.s_inode_table_entries) {
    return DataLossError("rafs v5 directory at offset ", r.offset, ": children [",
                         r.i_child_index, ", +", r.i_child_count, ") outside the inode table");
  }
  return Status::Ok();
}

Result<Attr> V5Metadata::GetAttr(uint64_t ino) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(ino));
  Attr a;
  a.ino = ino;
  a.mode = r.i_mode;
  a.nlink = r.i_nlink;
  a.uid = r.i_uid;
  a.gid = r.i_gid;
  a.size = r.i_size;
  a.blocks = r.i_blocks;
  a.mtime = r.i_mtime;
  a.mtime_nsec = r.i_mtime_nsec;
  if (S_ISCHR(r.i_mode) || S_ISBLK(r.i_mode)) a.rdev = DecodeRdev(r.i_rdev);
  if (S_ISLNK(r.i_mode)) a.size = r.i_symlink_size;
  return a;
}

Result<uint64_t> V5Metadata::Lookup(uint64_t dir, std::string_view name) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(dir));
  if (!S_ISDIR(r.i_mode)) return base::InvalidArgumentError("inode ", dir, " is not a directory");
  if (name == ".") return dir;
  if (name == "..") return dir == kRootIno ? kRootIno : r.i_parent;
  RETURN_IF_ERROR(CheckChildRange(r));
  uint64_t lo = r.i_child_index, hi = uint64_t{r.i_child_index} + r.i_child_count;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    ASSIGN_OR_RETURN(V5InodeRecord c, RecordAt(mid));
    std::string_view cname = NameOf(c);
    if (cname == name) return c.i_ino;
    if (cname < name) lo = mid + 1;
    else hi = mid;
  }
  return base::NotFoundError("no entry '", name, "' in directory ", dir);
}

Status V5Metadata::ReadDir(uint64_t dir, uint64_t cookie, const DirFn& fn) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(dir));
  if (!S_ISDIR(r.i_mode)) return base::InvalidArgumentError("inode ", dir, " is not a directory");
  RETURN_IF_ERROR(CheckChildRange(r));
  if (cookie == 0 && !fn(DirEntry{".", dir, DT_DIR}, 1)) return Status::Ok();
  if (cookie <= 1 &&
      !fn(DirEntry{"..", dir == kRootIno ? kRootIno : r.i_parent, DT_DIR}, 2)) {
    return Status::Ok();
  }
  for (uint64_t i = std::max<uint64_t>(cookie, 2) - 2; i < r.i_child_count; ++i) {
    ASSIGN_OR_RETURN(V5InodeRecord c, RecordAt(r.i_child_index + i));
    if (c.i_parent != r.i_ino) {
      return DataLossError("rafs v5 inode record at offset ", c.offset, ": i_parent ", c.i_parent,
                           " but listed under inode ", r.i_ino);
    }
    if (!fn(DirEntry{std::string(NameOf(c)), c.i_ino, ModeToDirentType(c.i_mode)}, i + 3)) break;
  }
  return Status::Ok();
}

Result<std::string> V5Metadata::ReadLink(uint64_t ino) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(ino));
  if (!S_ISLNK(r.i_mode)) return base::InvalidArgumentError("inode ", ino, " is not a symlink");
  return std::string(reinterpret_cast<const char*>(bytes_.data() + r.symlink_offset()),
                     r.i_symlink_size);
}

Result<Xattrs> V5Metadata::GetXattrs(uint64_t ino) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(ino));
  Xattrs out;
  if (!(r.i_flags & format::kV5InodeXattr)) return out;
  const uint64_t off = r.xattr_offset();
  RETURN_IF_ERROR(CheckRange(off, 8, bytes_.size(), "rafs v5 xattr size"));
  const uint64_t total = base::LoadLe64(bytes_.data() + off);
  if (!base::RangeInside(off + 8, total, bytes_.size())) {
    return DataLossError("rafs v5 xattrs of inode ", ino, " at offset ", off, ": size ", total,
                         " outside the bootstrap");
  }
  const uint8_t* p = bytes_.data() + off + 8;
  uint64_t pos = 0;
  while (pos < total) {
    if (total - pos < 4) return DataLossError("rafs v5 xattrs at offset ", off, ": truncated pair");
    const uint32_t pair = base::LoadLe32(p + pos);
    pos += 4;
    if (pair > total - pos) {
      return DataLossError("rafs v5 xattrs at offset ", off, ": pair of ", pair,
                           " bytes overruns the block");
    }
    std::string_view kv(reinterpret_cast<const char*>(p + pos), pair);
    const size_t nul = kv.find('\0');
    if (nul == std::string_view::npos || nul == 0 || nul > 255) {
      return DataLossError("rafs v5 xattrs at offset ", off, ": bad pair name");
    }
    out.emplace_back(std::string(kv.substr(0, nul)), std::string(kv.substr(nul + 1)));
    pos += pair;
  }
  return out;
}

Result<uint64_t> V5Metadata::ChunksOffset(const V5InodeRecord& r) const {
  uint64_t off = r.xattr_offset();
  if (r.i_flags & format::kV5InodeXattr) {
    RETURN_IF_ERROR(CheckRange(off, 8, bytes_.size(), "rafs v5 xattr size"));
    const uint64_t total = base::LoadLe64(bytes_.data() + off);
    if (total > bytes_.size()) {
      return DataLossError("rafs v5 inode at offset ", r.offset, ": xattr size ", total);
    }
    off += 8 + base::AlignUp(total, 8);
  }
  if (!base::RangeInside(off, uint64_t{r.i_child_count} * format::kChunkRecordSize,
                         bytes_.size())) {
    return DataLossError("rafs v5 inode at offset ", r.offset, ": ", r.i_child_count,
                         " chunk records outside the bootstrap");
  }
  return off;
}

Result<ChunkIoVec> V5Metadata::Read(uint64_t ino, uint64_t offset, uint64_t length) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(ino));
  if (!S_ISREG(r.i_mode)) return base::InvalidArgumentError("inode ", ino, " is not a file");
  ChunkIoVec iov;
  if (offset >= r.i_size || length == 0) return iov;
  const uint64_t end = offset + std::min(length, r.i_size - offset);
  ASSIGN_OR_RETURN(uint64_t chunks, ChunksOffset(r));
  const uint8_t* base_p = bytes_.data() + chunks;
  auto file_offset = [&](uint64_t i) { return base::LoadLe64(base_p + i * 80 + 64); };
  // First chunk whose range may reach `offset`: records are in file order.
  uint64_t lo = 0, hi = r.i_child_count;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (file_offset(mid) + super_.chunk_size <= offset) lo = mid + 1;
    else hi = mid;
  }
  uint64_t pos = offset;
  auto add_zero = [&](uint64_t upto) {
    if (upto <= pos) return;
    IoSegment z;
    z.kind = IoSegment::Kind::kZero;
    z.length = upto - pos;
    iov.segments.push_back(z);
    iov.total += z.length;
    pos = upto;
  };
  uint64_t prev_end = lo > 0 ? file_offset(lo - 1) : 0;
  for (uint64_t i = lo; i < r.i_child_count && pos < end; ++i) {
    ChunkInfo c = ChunkInfoFromRecord(format::DecodeChunkRecord(base_p + i * 80));
    const uint64_t fo = file_offset(i);
    auto bad = [&](const char* what) {
      return DataLossError("rafs v5 inode ", ino, " chunk record ", i, " at offset ",
                           chunks + i * 80, ": ", what);
    };
    if (c.blob_index >= blobs_.size()) return bad("blob_index outside the blob table");
    if (c.uncompressed_size == 0 || c.uncompressed_size > super_.chunk_size) {
      return bad("bad uncompressed_size");
    }
    if (c.compressed_size == 0) return bad("compressed_size is 0");
    if (fo < prev_end || fo >= r.i_size || fo > UINT64_MAX - c.uncompressed_size) {
      return bad("file_offset out of order or past the end");
    }
    prev_end = fo + c.uncompressed_size;
    if (fo + c.uncompressed_size <= pos) continue;
    if (fo >= end) break;
    add_zero(fo);
    const uint64_t to = std::min<uint64_t>(end, fo + c.uncompressed_size);
    IoSegment s;
    s.kind = IoSegment::Kind::kChunk;
    s.chunk = c;
    s.offset_in_chunk = static_cast<uint32_t>(pos - fo);
    s.length = to - pos;
    iov.segments.push_back(s);
    iov.total += s.length;
    pos = to;
  }
  add_zero(end);
  return iov;
}

Result<std::vector<uint64_t>> V5Metadata::PrefetchInodes() const {
  std::vector<uint64_t> out;
  const uint8_t* p = bytes_.data() + sb_.s_prefetch_table_offset;
  for (uint32_t i = 0; i < sb_.s_prefetch_table_entries; ++i) {
    const uint32_t ino = base::LoadLe32(p + 4 * i);
    if (ino == 0) break;
    out.push_back(ino);
  }
  return out;
}

Status V5Metadata::CheckInode(uint64_t ino) const {
  ASSIGN_OR_RETURN(V5InodeRecord r, LoadInode(ino));
  static const uint8_t kZero[32] = {};
  if (std::memcmp(r.i_digest, kZero, 32) == 0) return Status::Ok();  // builder wrote none
  auto hasher = base::Hasher::Create(super_.digester);
  if (S_ISREG(r.i_mode)) {
    ASSIGN_OR_RETURN(uint64_t chunks, ChunksOffset(r));
    for (uint32_t i = 0; i < r.i_child_count; ++i) {
      hasher->Update(bytes_.subspan(chunks + uint64_t{i} * 80, 32));
    }
  } else if (S_ISLNK(r.i_mode)) {
    hasher->Update(bytes_.subspan(r.symlink_offset(), r.i_symlink_size));
  } else if (S_ISDIR(r.i_mode)) {
    RETURN_IF_ERROR(CheckChildRange(r));
    for (uint32_t i = 0; i < r.i_child_count; ++i) {
      ASSIGN_OR_RETURN(V5InodeRecord c, RecordAt(uint64_t{r.i_child_index} + i));
      hasher->Update(ByteSpan(c.i_digest, 32));
    }
  }
  base::Digest d = hasher->Finish();
  if (std::memcmp(d.data(), r.i_digest, 32) != 0) {
    return DataLossError("rafs v5 inode ", ino, " at offset ", r.offset,
                         ": inode digest mismatch (stored ", base::ToHex(ByteSpan(r.i_digest, 32)),
                         ", computed ", base::DigestHex(d), ")");
  }
  return Status::Ok();
}

}  // namespace rfs::rafs::meta
