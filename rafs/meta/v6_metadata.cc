#include "rafs/meta/v6_metadata.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "rafs/meta/blob_meta.h"

namespace rfs::rafs::meta {

using base::ByteSpan;
using base::CheckRange;
using base::DataLossError;
using base::Hex;
using base::Result;
using base::Status;
using format::InodeV6;
using storage::ChunkInfo;
using storage::ChunkIoVec;
using storage::IoSegment;

namespace {

constexpr uint64_t kMaxNid = 1ull << 58;
constexpr uint32_t kNullAddr = 0xFFFFFFFF;
constexpr uint32_t kMaxSymlink = 4096;

uint32_t DirentTypeToDt(uint8_t t) {
  switch (t) {
    case 1: return DT_REG;
    case 2: return DT_DIR;
    case 3: return DT_CHR;
    case 4: return DT_BLK;
    case 5: return DT_FIFO;
    case 6: return DT_SOCK;
    case 7: return DT_LNK;
    default: return DT_UNKNOWN;
  }
}

// The file name with every extension stripped (upstream's repeated
// file_stem): "/x/abc.boot" -> "abc", "abc.tar.gz" -> "abc".
std::string StemOf(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  for (;;) {
    size_t dot = name.find_last_of('.');
    if (dot == std::string::npos || dot == 0) break;
    name.resize(dot);
  }
  return name;
}

struct Range {
  uint64_t offset;
  uint64_t size;
  const char* what;
};

Status CheckNoOverlap(std::vector<Range> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i - 1].offset + ranges[i - 1].size > ranges[i].offset) {
      return DataLossError("rafs v6: ", ranges[i - 1].what, " at ", ranges[i - 1].offset,
                           " overlaps ", ranges[i].what, " at ", ranges[i].offset);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<V6Metadata>> V6Metadata::Open(std::vector<uint8_t> bytes,
                                                     const OpenOptions& options) {
  std::unique_ptr<V6Metadata> m(new V6Metadata(std::move(bytes)));
  RETURN_IF_ERROR(m->Init(options));
  return m;
}

uint64_t V6Metadata::NidToIno(uint64_t nid) const {
  if (nid == root_nid_) return kRootIno;
  if (nid == kRootIno) return root_nid_;
  return nid;
}

uint64_t V6Metadata::InoToNid(uint64_t ino) const {
  if (ino == kRootIno) return root_nid_;
  if (ino == root_nid_) return kRootIno;
  return ino;
}

Status V6Metadata::Init(const OpenOptions& options) {
  ASSIGN_OR_RETURN(sb_, format::DecodeErofsSuperBlock(bytes_));
  const uint64_t size = bytes_.size();
  super_.version = 6;
  super_.plain_erofs = !sb_.is_rafs();
  super_.bootstrap_size = size;
  super_.inode_count = sb_.s_inos;
  super_.inode_entries = sb_.s_inos;

  if (!super_.plain_erofs) {
    ASSIGN_OR_RETURN(ext_, format::DecodeRafsV6ExtSuperBlock(bytes_));
    if (ext_.s_flags & format::kFlagTarfsMode) {
      return base::UnimplementedError("rafs v6: tarfs-mode images are not supported");
    }
  }
  if (sb_.s_blkszbits != 12) {
    return DataLossError("erofs superblock: unsupported s_blkszbits ", int{sb_.s_blkszbits},
                         " at offset 1036");
  }
  bs_ = sb_.block_size();
  super_.block_size = bs_;
  if (size < bs_ || size % bs_ != 0) {
    return DataLossError("rafs v6: bootstrap size ", size, " is not a positive multiple of ", bs_);
  }
  meta_base_ = uint64_t{sb_.s_meta_blkaddr} * bs_;
  if (meta_base_ > size) {
    return DataLossError("erofs superblock: s_meta_blkaddr ", sb_.s_meta_blkaddr,
                         " beyond the bootstrap (", size, " bytes) at offset 1064");
  }
  root_nid_ = sb_.s_root_nid;

  if (super_.plain_erofs) {
    constexpr uint32_t kSupported = 0x1 | format::kErofsIncompatChunkedFile |
                                    format::kErofsIncompatDeviceTable;
    if (sb_.s_feature_incompat & ~kSupported) {
      return base::UnimplementedError("erofs: unsupported incompat features ",
                                      Hex(sb_.s_feature_incompat & ~kSupported));
    }
    RETURN_IF_ERROR(InitPlainDevices());
  } else {
    if (sb_.s_checksum != 0) {
      return DataLossError("rafs v6 superblock: s_checksum ", Hex(sb_.s_checksum),
                           " must be 0 at offset 1028");
    }
    if (sb_.s_extslots != 0) {
      return DataLossError("rafs v6 superblock: s_extslots ", int{sb_.s_extslots},
                           " must be 0 at offset 1037");
    }
    if (sb_.s_feature_incompat !=
        (format::kErofsIncompatChunkedFile | format::kErofsIncompatDeviceTable)) {
      return DataLossError("rafs v6 superblock: s_feature_incompat ",
                           Hex(sb_.s_feature_incompat), " must be 0xc at offset 1104");
    }
    if (sb_.s_u != 0) {
      return DataLossError("rafs v6 superblock: s_u ", sb_.s_u, " must be 0 at offset 1108");
    }
    if (sb_.s_xattr_blkaddr != 0) {
      return DataLossError("rafs v6 superblock: shared xattrs (s_xattr_blkaddr ",
                           sb_.s_xattr_blkaddr, ") at offset 1068 are not allowed");
    }
    if (sb_.s_inos == 0) return DataLossError("rafs v6 superblock: s_inos is 0 at offset 1040");
    RETURN_IF_ERROR(InitRafsTables(options));
  }

  ASSIGN_OR_RETURN(InodeV6 root, LoadInode(kRootIno));
  if (!S_ISDIR(root.i_mode)) {
    return DataLossError("rafs v6: root nid ", root_nid_, " at offset ", root.offset,
                         " is not a directory (mode ", Hex(root.i_mode), ")");
  }
  return Status::Ok();
}

Status V6Metadata::InitRafsTables(const OpenOptions& options) {
  const uint64_t size = bytes_.size();
  const uint64_t flags = ext_.s_flags;
  super_.flags = flags;
  if (flags & ~format::kKnownSuperFlags) {
    return DataLossError("rafs v6 extended superblock: unknown s_flags bits ",
                         Hex(flags & ~format::kKnownSuperFlags), " at offset 1152");
  }
  int comp_bits = 0;
  for (uint64_t b : {format::kFlagCompressionNone, format::kFlagCompressionLz4,
                     format::kFlagCompressionGzip, format::kFlagCompressionZstd}) {
    comp_bits += (flags & b) ? 1 : 0;
  }
  int hash_bits = ((flags & format::kFlagHashBlake3) ? 1 : 0) +
                  ((flags & format::kFlagHashSha256) ? 1 : 0);
  if (comp_bits != 1 || hash_bits != 1) {
    return DataLossError("rafs v6 extended superblock: s_flags ", Hex(flags),
                         " must have exactly one compression and one hash bit (offset 1152)");
  }
  if (flags & format::kFlagCompressionNone) super_.compressor = storage::Compressor::kNone;
  else if (flags & format::kFlagCompressionLz4) super_.compressor = storage::Compressor::kLz4Block;
  else if (flags & format::kFlagCompressionGzip) super_.compressor = storage::Compressor::kGzip;
  else super_.compressor = storage::Compressor::kZstd;
  super_.digester = (flags & format::kFlagHashBlake3) ? base::DigestAlgo::kBlake3
                                                      : base::DigestAlgo::kSha256;
  super_.explicit_uid_gid = (flags & format::kFlagExplicitUidGid) != 0;
  super_.has_xattr = (flags & format::kFlagHasXattr) != 0;

  const uint32_t cs = ext_.s_chunk_size;
  if (!base::IsPowerOfTwo(cs) || cs < 4096 || cs > (16u << 20)) {
    return DataLossError("rafs v6 extended superblock: bad s_chunk_size ", cs, " at offset 1172");
  }
  super_.chunk_size = cs;

  // Tables.
  if (ext_.s_blob_table_size % format::kV6BlobEntrySize != 0) {
    return DataLossError("rafs v6 extended superblock: s_blob_table_size ",
                         ext_.s_blob_table_size, " not a multiple of 256 at offset 1168");
  }
  const uint64_t nblobs = ext_.s_blob_table_size / format::kV6BlobEntrySize;
  if (nblobs > format::kMaxV6Blobs) {
    return DataLossError("rafs v6: ", nblobs, " blobs, at most 254 allowed");
  }
  if (nblobs != sb_.s_extra_devices) {
    return DataLossError("rafs v6: blob table has ", nblobs, " entries but s_extra_devices is ",
                         sb_.s_extra_devices, " (offset 1110)");
  }
  std::vector<Range> ranges;
  if (nblobs > 0) {
    if (ext_.s_blob_table_offset % 4096 != 0 || ext_.s_blob_table_offset < 4096) {
      return DataLossError("rafs v6 extended superblock: bad s_blob_table_offset ",
                           ext_.s_blob_table_offset, " at offset 1160");
    }
    RETURN_IF_ERROR(CheckRange(ext_.s_blob_table_offset, ext_.s_blob_table_size, size,
                               "rafs v6 blob table"));
    ranges.push_back({ext_.s_blob_table_offset, ext_.s_blob_table_size, "blob table"});
    if (sb_.s_devt_slotoff != 11) {
      return DataLossError("rafs v6 superblock: s_devt_slotoff ", sb_.s_devt_slotoff,
                           " must be 11 at offset 1112");
    }
    ranges.push_back({1408, nblobs * format::kDeviceSlotSize, "device table"});
    RETURN_IF_ERROR(CheckRange(1408, nblobs * format::kDeviceSlotSize, size, "device table"));
  }
  if (ext_.s_chunk_table_size > 0) {
    if (ext_.s_chunk_table_size % format::kChunkRecordSize != 0) {
      return DataLossError("rafs v6 extended superblock: s_chunk_table_size ",
                           ext_.s_chunk_table_size, " not a multiple of 80 at offset 1184");
    }
    RETURN_IF_ERROR(CheckRange(ext_.s_chunk_table_offset, ext_.s_chunk_table_size, size,
                               "rafs v6 chunk table"));
    ranges.push_back({ext_.s_chunk_table_offset, ext_.s_chunk_table_size, "chunk table"});
  }
  if (ext_.s_prefetch_table_size > 0 && ext_.s_prefetch_table_offset != 0) {
    if (ext_.s_prefetch_table_size % 4 != 0) {
      return DataLossError("rafs v6 extended superblock: s_prefetch_table_size ",
                           ext_.s_prefetch_table_size, " not a multiple of 4 at offset 1200");
    }
    RETURN_IF_ERROR(CheckRange(ext_.s_prefetch_table_offset, ext_.s_prefetch_table_size, size,
                               "rafs v6 prefetch table"));
    ranges.push_back({ext_.s_prefetch_table_offset, ext_.s_prefetch_table_size,
                      "prefetch table"});
  }
  RETURN_IF_ERROR(CheckNoOverlap(ranges));

  // Blobs and their device slots.
  std::set<std::string> tags;
  for (uint64_t i = 0; i < nblobs; ++i) {
    const uint64_t off = ext_.s_blob_table_offset + i * format::kV6BlobEntrySize;
    ASSIGN_OR_RETURN(format::V6BlobEntry e, format::DecodeV6BlobEntry(bytes_, off));
    auto bad = [&](const char* field, uint64_t value, uint64_t field_off) {
      return DataLossError("rafs v6 blob table entry ", i, ": bad ", field, " ", value,
                           " at offset ", off + field_off);
    };
    if (e.blob_index != i) return bad("blob_index", e.blob_index, 64);
    if (e.chunk_size != cs) return bad("chunk_size", e.chunk_size, 68);
    if (e.chunk_count == 0 || e.chunk_count > (1u << 24)) return bad("chunk_count", e.chunk_count, 72);
    if (e.compression_algo > 3) return bad("compression_algo", e.compression_algo, 76);
    if (e.digest_algo > 1) return bad("digest_algo", e.digest_algo, 80);
    if ((e.features & 0xF000) != 0 || (e.features & format::kBlobV5NoExtTable)) {
      return bad("features", e.features, 84);
    }
    if (e.compressed_size > (1ull << 40)) return bad("compressed_size", e.compressed_size, 88);
    if (e.uncompressed_size > (1ull << 44)) return bad("uncompressed_size", e.uncompressed_size, 96);
    if (e.ci_compressor > 3) return bad("ci_compressor", e.ci_compressor, 108);
    if (e.cipher_algo > 3) return bad("cipher_algo", e.cipher_algo, 216);
    const bool v2 = (e.features & format::kBlobChunkInfoV2) != 0;
    const bool extra_tables =
        (e.features & (format::kBlobBatch | format::kBlobZran | format::kBlobEncrypted)) != 0;
    if (extra_tables && !v2) return bad("features", e.features, 84);
    if (!(e.features & (format::kBlobChunkDictGenerated | format::kBlobTarfs))) {
      const uint64_t want = uint64_t{e.chunk_count} * (v2 ? 24 : 16);
      if (extra_tables ? e.ci_uncompressed_size < want : e.ci_uncompressed_size != want) {
        return bad("ci_uncompressed_size", e.ci_uncompressed_size, 128);
      }
    }
    if (e.ci_compressed_size > e.ci_uncompressed_size && e.ci_compressor != 0) {
      return bad("ci_compressed_size", e.ci_compressed_size, 120);
    }

    ASSIGN_OR_RETURN(format::DeviceSlot slot,
                     format::DecodeDeviceSlot(bytes_, 1408 + i * format::kDeviceSlotSize));
    if (slot.blocks == 0) {
      return DataLossError("rafs v6 device slot ", i, ": blocks is 0 at offset ",
                           1408 + i * format::kDeviceSlotSize + 64);
    }
    if (!tags.insert(slot.raw_tag).second) {
      return DataLossError("rafs v6 device slot ", i, ": duplicate tag '", slot.tag, "'");
    }

    BlobEntry b;
    b.stored_id = e.blob_id;
    b.features = e.features;
    b.ci_compressor = e.ci_compressor;
    b.ci_offset = e.ci_offset;
    b.ci_compressed_size = e.ci_compressed_size;
    b.ci_uncompressed_size = e.ci_uncompressed_size;
    b.toc_size = e.blob_toc_size;
    std::memcpy(b.toc_digest.data(), e.blob_toc_digest, 32);
    b.device_blocks = slot.blocks;
    b.mapped_blkaddr = slot.mapped_blkaddr;
    b.info.blob_index = static_cast<uint32_t>(i);
    b.info.compressor = static_cast<storage::Compressor>(e.compression_algo);
    b.info.digester = static_cast<base::DigestAlgo>(e.digest_algo);
    b.info.chunk_size = e.chunk_size;
    b.info.chunk_count = e.chunk_count;
    b.info.compressed_size = e.compressed_size;
    b.info.uncompressed_size = e.uncompressed_size;
    // Effective blob id (spec 6.6).
    const bool inlined = (e.features & format::kBlobInlinedFsMeta) != 0;
    const bool cap_toc = (e.features & format::kBlobCapTarToc) != 0;
    const bool recorded = !options.meta_file_name.empty() &&
                          (options.extracted_from_blob ? (inlined || !cap_toc) : inlined);
    const bool use_stem =
        recorded && ((inlined && !(e.features & (format::kBlobSeparate | format::kBlobExternal))) ||
                     !cap_toc);
    b.info.blob_id = use_stem ? StemOf(options.meta_file_name) : e.blob_id;

    std::string unsupported;
    if (e.cipher_algo >= 2) {
      return bad("cipher_algo", e.cipher_algo, 216);
    } else if (e.cipher_algo == 1 || (e.features & format::kBlobEncrypted)) {
      unsupported = "encrypted blobs are not supported";
    } else if (e.features & format::kBlobZran) {
      unsupported = "zran blobs are not supported";
    } else if (e.features & format::kBlobBatch) {
      unsupported = "batch-chunk blobs are not supported";
    } else if (e.features & (format::kBlobSeparate | format::kBlobExternal | format::kBlobTarfs)) {
      unsupported = "separate, external and tarfs blobs are not supported";
    }
    unsupported_.push_back(std::move(unsupported));
    blobs_.push_back(std::move(b));
  }

  // Index the chunk table by (blob, ci index); records are validated on use.
  const uint64_t nrec = ext_.s_chunk_table_size / format::kChunkRecordSize;
  super_.chunk_table_records = nrec;
  if (nrec > 0xFFFFFFFFull) return DataLossError("rafs v6: chunk table too large");
  chunk_keys_.reserve(nrec);
  const uint8_t* t = bytes_.data() + ext_.s_chunk_table_offset;
  for (uint64_t r = 0; r < nrec; ++r) {
    const uint8_t* p = t + r * format::kChunkRecordSize;
    chunk_keys_.push_back(
        {base::LoadLe32(p + 32), base::LoadLe32(p + 72), static_cast<uint32_t>(r)});
  }
  std::stable_sort(chunk_keys_.begin(), chunk_keys_.end(), [](const ChunkKey& a, const ChunkKey& b) {
    return a.blob_index != b.blob_index ? a.blob_index < b.blob_index : a.ci_index < b.ci_index;
  });
  blob_metas_.resize(blobs_.size());
  return Status::Ok();
}

Status V6Metadata::InitPlainDevices() {
  const uint64_t n = sb_.s_extra_devices;
  const uint64_t table = uint64_t{sb_.s_devt_slotoff} * format::kDeviceSlotSize;
  if (n > 0) {
    RETURN_IF_ERROR(CheckRange(table, n * format::kDeviceSlotSize, bytes_.size(),
                               "erofs device table"));
  }
  for (uint64_t i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(format::DeviceSlot slot,
                     format::DecodeDeviceSlot(bytes_, table + i * format::kDeviceSlotSize));
    BlobEntry b;
    b.stored_id = slot.tag;
    // mkfs.erofs leaves the tag empty: name the device by its number.
    b.info.blob_id = slot.tag.empty() ? base::StrCat("device", i + 1) : slot.tag;
    b.info.blob_index = static_cast<uint32_t>(i);
    b.info.compressor = storage::Compressor::kNone;
    b.device_blocks = slot.blocks;
    b.mapped_blkaddr = slot.mapped_blkaddr;
    b.info.uncompressed_size = uint64_t{slot.blocks} * bs_;
    unsupported_.emplace_back();
    blobs_.push_back(std::move(b));
  }
  blob_metas_.resize(blobs_.size());
  return Status::Ok();
}

Result<InodeV6> V6Metadata::LoadInode(uint64_t ino) const {
  const uint64_t nid = InoToNid(ino);
  if (nid >= kMaxNid) return base::NotFoundError("inode ", ino, " out of range");
  const uint64_t off = meta_base_ + nid * 32;
  if (off >= bytes_.size()) {
    return DataLossError("inode ", ino, " (nid ", nid, "): offset ", off,
                         " beyond the bootstrap");
  }
  ASSIGN_OR_RETURN(InodeV6 in, format::DecodeInodeV6(bytes_, off));
  if (!IsKnownFileType(in.i_mode)) {
    return DataLossError("inode ", ino, " at offset ", off, ": bad file type in i_mode ",
                         Hex(in.i_mode));
  }
  if (in.i_nlink == 0) {
    return DataLossError("inode ", ino, " at offset ", off, ": i_nlink is 0");
  }
  const bool flat = in.layout == format::kLayoutFlatPlain || in.layout == format::kLayoutFlatInline;
  if ((S_ISDIR(in.i_mode) || S_ISLNK(in.i_mode)) && !flat) {
    return DataLossError("inode ", ino, " at offset ", off,
                         ": directory or symlink with chunk-based layout");
  }
  return in;
}

Result<Attr> V6Metadata::GetAttr(uint64_t ino) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(ino));
  Attr a;
  a.ino = ino;
  a.mode = in.i_mode;
  a.nlink = in.i_nlink;
  a.uid = in.i_uid;
  a.gid = in.i_gid;
  a.size = in.i_size;
  a.blocks = base::CeilDiv(in.i_size, 512);
  if (in.extended) {
    a.mtime = in.i_mtime;
    a.mtime_nsec = in.i_mtime_nsec;
  } else {
    // Compact inodes have no mtime: EROFS reports the build time (0 in RAFS).
    a.mtime = sb_.s_build_time;
    a.mtime_nsec = sb_.s_build_time_nsec;
  }
  if (S_ISCHR(in.i_mode) || S_ISBLK(in.i_mode)) a.rdev = DecodeRdev(in.i_u);
  if (S_ISDIR(in.i_mode) || S_ISREG(in.i_mode) || S_ISLNK(in.i_mode)) {
    // Nothing more to check here; data is validated when read.
  } else if (in.i_size != 0) {
    return DataLossError("inode ", ino, " at offset ", in.offset, ": special file with i_size ",
                         in.i_size);
  }
  return a;
}

Result<ByteSpan> V6Metadata::FlatBlock(const InodeV6& in, uint64_t i) const {
  const uint64_t nblocks = base::CeilDiv(in.i_size, bs_);
  if (i >= nblocks) return base::InternalError("block ", i, " beyond ", nblocks);
  const uint64_t len = (i + 1 == nblocks) ? in.i_size - i * bs_ : bs_;
  uint64_t off;
  if (in.layout == format::kLayoutFlatInline && i + 1 == nblocks) {
    off = in.offset + in.inode_size() + in.xattr_size();
    if (off % bs_ + len > bs_) {
      return DataLossError("inode at offset ", in.offset, ": inline data of ", len,
                           " bytes crosses a block boundary");
    }
  } else {
    off = (uint64_t{in.i_u} + i) * bs_;
  }
  if (!base::RangeInside(off, len, bytes_.size())) {
    return DataLossError("inode at offset ", in.offset, ": data block ", i, " at ", off,
                         " outside the bootstrap");
  }
  return bytes_.subspan(off, len);
}

Status V6Metadata::DecodeDirBlock(const InodeV6& dir, uint64_t block,
                                  std::vector<RawDirent>* out) const {
  out->clear();
  ASSIGN_OR_RETURN(ByteSpan b, FlatBlock(dir, block));
  auto where = [&] {
    return base::StrCat("directory at offset ", dir.offset, " block ", block);
  };
  if (b.size() < format::kDirentSize) return DataLossError(where(), ": ", b.size(), " bytes");
  const uint16_t first = format::DecodeDirentV6(b.data()).nameoff;
  if (first < format::kDirentSize || first % format::kDirentSize != 0 || first > b.size()) {
    return DataLossError(where(), ": bad first nameoff ", first);
  }
  const uint32_t n = first / format::kDirentSize;
  uint32_t prev_end = first;
  for (uint32_t j = 0; j < n; ++j) {
    format::DirentV6 d = format::DecodeDirentV6(b.data() + j * format::kDirentSize);
    const uint64_t end = j + 1 < n
                             ? format::DecodeDirentV6(b.data() + (j + 1) * format::kDirentSize).nameoff
                             : b.size();
    if (d.nameoff != prev_end || end <= d.nameoff || end > b.size()) {
      return DataLossError(where(), ": entry ", j, " has bad name offsets [", d.nameoff, ", ",
                           end, ")");
    }
    prev_end = static_cast<uint32_t>(end);
    std::string_view name(reinterpret_cast<const char*>(b.data() + d.nameoff), end - d.nameoff);
    if (j + 1 == n) {
      size_t nul = name.find('\0');
      if (nul != std::string_view::npos) name = name.substr(0, nul);
    }
    if (name.empty() || name.size() > 255 || name.find('/') != std::string_view::npos ||
        name.find('\0') != std::string_view::npos) {
      return DataLossError(where(), ": entry ", j, " has an invalid name");
    }
    out->push_back({d.nid, d.file_type, name});
  }
  return Status::Ok();
}

Result<uint64_t> V6Metadata::Lookup(uint64_t dir, std::string_view name) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(dir));
  if (!S_ISDIR(in.i_mode)) return base::InvalidArgumentError("inode ", dir, " is not a directory");
  const uint64_t nblocks = base::CeilDiv(in.i_size, bs_);
  std::vector<RawDirent> ents;
  uint64_t lo = 0, hi = nblocks;  // [lo, hi)
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    RETURN_IF_ERROR(DecodeDirBlock(in, mid, &ents));
    if (name < ents.front().name) {
      hi = mid;
    } else if (name > ents.back().name) {
      lo = mid + 1;
    } else {
      auto it = std::lower_bound(ents.begin(), ents.end(), name,
                                 [](const RawDirent& e, std::string_view n) { return e.name < n; });
      if (it != ents.end() && it->name == name) {
        if (it->nid >= kMaxNid) return DataLossError("directory entry with nid ", it->nid);
        return NidToIno(it->nid);
      }
      break;
    }
  }
  return base::NotFoundError("no entry '", name, "' in directory ", dir);
}

Status V6Metadata::ReadDir(uint64_t dir, uint64_t cookie, const DirFn& fn) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(dir));
  if (!S_ISDIR(in.i_mode)) return base::InvalidArgumentError("inode ", dir, " is not a directory");
  const uint64_t nblocks = base::CeilDiv(in.i_size, bs_);
  std::vector<RawDirent> ents;
  uint64_t idx = cookie & 0xFFF;
  for (uint64_t b = cookie >> 12; b < nblocks; ++b, idx = 0) {
    RETURN_IF_ERROR(DecodeDirBlock(in, b, &ents));
    for (uint64_t j = idx; j < ents.size(); ++j) {
      const RawDirent& e = ents[j];
      if (e.nid >= kMaxNid) return DataLossError("directory entry with nid ", e.nid);
      DirEntry de{std::string(e.name), NidToIno(e.nid), DirentTypeToDt(e.type)};
      const uint64_t next = j + 1 < ents.size() ? (b << 12) | (j + 1) : (b + 1) << 12;
      if (!fn(de, next)) return Status::Ok();
    }
  }
  return Status::Ok();
}

Result<std::string> V6Metadata::ReadLink(uint64_t ino) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(ino));
  if (!S_ISLNK(in.i_mode)) return base::InvalidArgumentError("inode ", ino, " is not a symlink");
  if (in.i_size == 0 || in.i_size > kMaxSymlink) {
    return DataLossError("symlink at offset ", in.offset, ": bad i_size ", in.i_size);
  }
  std::string target;
  const uint64_t nblocks = base::CeilDiv(in.i_size, bs_);
  for (uint64_t i = 0; i < nblocks; ++i) {
    ASSIGN_OR_RETURN(ByteSpan b, FlatBlock(in, i));
    target.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return target;
}

Result<Xattrs> V6Metadata::GetXattrs(uint64_t ino) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(ino));
  Xattrs out;
  if (in.i_xattr_icount == 0) return out;
  const uint64_t area = in.offset + in.inode_size();
  const uint64_t area_size = in.xattr_size();
  const uint8_t* p = bytes_.data() + area;  // range checked by DecodeInodeV6
  const uint32_t shared = p[4];
  auto where = [&] { return base::StrCat("xattrs of inode ", ino, " at offset ", area); };
  if (12 + uint64_t{shared} * 4 > area_size) {
    return DataLossError(where(), ": ", shared, " shared ids do not fit");
  }
  if (shared > 0 && !super_.plain_erofs) {
    return DataLossError(where(), ": shared xattrs are not allowed in rafs");
  }
  // One decoder for inline entries and shared entries.
  auto decode_entry = [&](const uint8_t* e, uint64_t room, uint64_t* used) -> Status {
    if (room < 4) return DataLossError(where(), ": truncated entry header");
    const uint8_t name_len = e[0];
    const uint8_t index = e[1];
    const uint16_t value_size = base::LoadLe16(e + 2);
    const uint64_t len = 4 + uint64_t{name_len} + value_size;
    if (len > room) return DataLossError(where(), ": entry of ", len, " bytes overruns the area");
    std::string prefix = format::XattrPrefix(index);
    if (prefix.empty()) return DataLossError(where(), ": unknown name index ", int{index});
    std::string name = prefix + std::string(reinterpret_cast<const char*>(e + 4), name_len);
    if (name.size() > 255) return DataLossError(where(), ": name longer than 255 bytes");
    out.emplace_back(std::move(name),
                     std::string(reinterpret_cast<const char*>(e + 4 + name_len), value_size));
    *used = base::AlignUp(len, 4);
    return Status::Ok();
  };
  for (uint32_t s = 0; s < shared; ++s) {
    const uint32_t id = base::LoadLe32(p + 12 + 4 * s);
    const uint64_t off = uint64_t{sb_.s_xattr_blkaddr} * bs_ + uint64_t{id} * 4;
    if (off >= bytes_.size()) return DataLossError(where(), ": shared xattr ", id, " outside");
    uint64_t used = 0;
    RETURN_IF_ERROR(decode_entry(bytes_.data() + off, bytes_.size() - off, &used));
  }
  uint64_t pos = 12 + uint64_t{shared} * 4;
  while (pos < area_size) {
    uint64_t used = 0;
    RETURN_IF_ERROR(decode_entry(p + pos, area_size - pos, &used));
    pos += used;
  }
  return out;
}

namespace {

// Where chunk `index` is, from a blob's ci array (and its digest, when the
// blob carries a digest array).
void FillFromCi(const BlobMeta& meta, uint32_t index, ChunkInfo* c) {
  const format::CiEntry& e = meta.entries[index];
  c->compressed_offset = e.compressed_offset;
  c->compressed_size = e.compressed_size;
  c->uncompressed_offset = e.uncompressed_offset;
  c->uncompressed_size = e.uncompressed_size;
  c->compressed = e.compressed;
  if (!meta.digests.empty()) {
    c->has_digest = true;
    c->digest = meta.digests[index];
  }
}

}  // namespace

Result<ChunkInfo> V6Metadata::BlobChunk(uint32_t blob_index, uint32_t index) const {
  if (blob_index >= blobs_.size() || !unsupported_[blob_index].empty() ||
      index >= blobs_[blob_index].info.chunk_count) {
    return base::NotFoundError("blob ", blob_index, " has no usable chunk ", index);
  }
  const BlobEntry& blob = blobs_[blob_index];
  ChunkInfo c;
  auto it = std::lower_bound(chunk_keys_.begin(), chunk_keys_.end(),
                             std::make_pair(blob_index, index),
                             [](const ChunkKey& k, const std::pair<uint32_t, uint32_t>& v) {
                               return k.blob_index != v.first ? k.blob_index < v.first
                                                              : k.ci_index < v.second;
                             });
  if (it != chunk_keys_.end() && it->blob_index == blob_index && it->ci_index == index) {
    const uint64_t off = ext_.s_chunk_table_offset + uint64_t{it->record} * format::kChunkRecordSize;
    format::ChunkRecord r = format::DecodeChunkRecord(bytes_.data() + off);
    if (r.flags & (format::kChunkEncrypted | format::kChunkBatch)) {
      return base::UnimplementedError("encrypted or batch chunk");
    }
    c = ChunkInfoFromRecord(r);
  } else if (const auto& meta = blob_metas_[blob_index];
             meta != nullptr && index < meta->entries.size()) {
    FillFromCi(*meta, index, &c);
  } else {
    return base::NotFoundError("blob ", blob.info.blob_id, " chunk ", index, " is not described");
  }
  c.blob_index = blob_index;
  c.index = index;
  if (c.compressed_size == 0 || c.uncompressed_size == 0) {
    return DataLossError("blob ", blob.info.blob_id, " chunk ", index, ": empty chunk");
  }
  return c;
}

Result<ChunkInfo> V6Metadata::ResolveChunk(const format::ChunkIndexV6& idx, uint64_t chunk_len,
                                           uint64_t ino, uint64_t chunk_no) const {
  auto where = [&] { return base::StrCat("inode ", ino, " chunk ", chunk_no); };
  if (idx.device_id == 0 || idx.device_id > blobs_.size()) {
    return DataLossError(where(), ": bad device id ", idx.device_id, " (", blobs_.size(),
                         " blobs)");
  }
  const uint32_t blob_index = idx.device_id - 1;
  if (!unsupported_[blob_index].empty()) {
    return base::UnimplementedError(where(), ": blob ", blobs_[blob_index].info.blob_id, ": ",
                                    unsupported_[blob_index]);
  }
  const BlobEntry& blob = blobs_[blob_index];
  if (idx.ci_index >= blob.info.chunk_count) {
    return DataLossError(where(), ": ci index ", idx.ci_index, " beyond the ",
                         blob.info.chunk_count, " chunks of blob ", blob.info.blob_id);
  }
  ChunkInfo c;
  c.blob_index = blob_index;
  c.index = idx.ci_index;
  auto it = std::lower_bound(chunk_keys_.begin(), chunk_keys_.end(),
                             std::make_pair(blob_index, idx.ci_index),
                             [](const ChunkKey& k, const std::pair<uint32_t, uint32_t>& v) {
                               return k.blob_index != v.first ? k.blob_index < v.first
                                                              : k.ci_index < v.second;
                             });
  if (it != chunk_keys_.end() && it->blob_index == blob_index && it->ci_index == idx.ci_index) {
    const uint64_t off = ext_.s_chunk_table_offset + uint64_t{it->record} * format::kChunkRecordSize;
    format::ChunkRecord r = format::DecodeChunkRecord(bytes_.data() + off);
    c = ChunkInfoFromRecord(r);
    if (r.flags & (format::kChunkEncrypted | format::kChunkBatch)) {
      return base::UnimplementedError(where(), ": encrypted or batch chunks are not supported");
    }
  } else if (const auto& meta = blob_metas_[blob_index]; meta != nullptr) {
    if (idx.ci_index >= meta->entries.size()) {
      return DataLossError(where(), ": ci index ", idx.ci_index, " beyond the blob's ci array");
    }
    FillFromCi(*meta, idx.ci_index, &c);
  } else {
    return DataLossError(where(), ": blob ", blob.info.blob_id, " chunk ", idx.ci_index,
                         " has no chunk table record and the blob's ci array is not loaded");
  }
  if (c.uncompressed_size != chunk_len) {
    return DataLossError(where(), ": chunk holds ", c.uncompressed_size, " bytes, file needs ",
                         chunk_len);
  }
  if (c.uncompressed_offset != uint64_t{idx.blkaddr} * bs_) {
    return DataLossError(where(), ": chunk index blkaddr ", idx.blkaddr,
                         " disagrees with uncompressed offset ", c.uncompressed_offset);
  }
  if (c.compressed_size == 0) return DataLossError(where(), ": compressed size is 0");
  return c;
}

Result<ChunkIoVec> V6Metadata::Read(uint64_t ino, uint64_t offset, uint64_t length) const {
  ASSIGN_OR_RETURN(InodeV6 in, LoadInode(ino));
  if (!S_ISREG(in.i_mode)) return base::InvalidArgumentError("inode ", ino, " is not a file");
  ChunkIoVec iov;
  if (offset >= in.i_size || length == 0) return iov;
  const uint64_t end = offset + std::min(length, in.i_size - offset);

  if (in.layout != format::kLayoutChunkBased) {
    // Flat data stored in the bootstrap itself (plain EROFS).
    for (uint64_t pos = offset; pos < end;) {
      const uint64_t blk = pos / bs_;
      ASSIGN_OR_RETURN(ByteSpan b, FlatBlock(in, blk));
      const uint64_t in_blk = pos - blk * bs_;
      const uint64_t n = std::min<uint64_t>(end - pos, b.size() - in_blk);
      IoSegment s;
      s.kind = IoSegment::Kind::kBytes;
      s.length = n;
      s.bytes = b.data() + in_blk;
      iov.segments.push_back(s);
      iov.total += n;
      pos += n;
    }
    return iov;
  }

  uint64_t chunk_size;
  uint32_t index_size = 8;
  if (super_.plain_erofs) {
    const uint32_t bits = sb_.s_blkszbits + (in.i_u & 0x1F);
    if (bits > 40) return DataLossError("inode ", ino, ": chunk size exponent too large");
    chunk_size = 1ull << bits;
    if (!(in.i_u & 0x20)) index_size = 4;  // block map
  } else {
    if (!(in.i_u & 0x20)) {
      return DataLossError("inode ", ino, " at offset ", in.offset, ": chunk format ",
                           Hex(in.i_u), " lacks 8-byte chunk indexes");
    }
    chunk_size = super_.chunk_size;
  }
  const uint64_t nchunks = base::CeilDiv(in.i_size, chunk_size);
  const uint64_t index_base =
      in.offset + base::AlignUp(uint64_t{in.inode_size()} + in.xattr_size(), index_size);
  if (nchunks > bytes_.size() ||
      !base::RangeInside(index_base, nchunks * index_size, bytes_.size())) {
    return DataLossError("inode ", ino, " at offset ", in.offset, ": ", nchunks,
                         " chunk indexes do not fit in the bootstrap");
  }
  for (uint64_t k = offset / chunk_size; k < nchunks && k * chunk_size < end; ++k) {
    const uint64_t cstart = k * chunk_size;
    const uint64_t clen = std::min(chunk_size, in.i_size - cstart);
    const uint64_t from = std::max(offset, cstart);
    const uint64_t to = std::min(end, cstart + clen);
    IoSegment s;
    s.length = to - from;
    const uint8_t* ip = bytes_.data() + index_base + k * index_size;
    format::ChunkIndexV6 idx{};
    if (index_size == 4) {
      idx.blkaddr = base::LoadLe32(ip);
    } else {
      idx = format::DecodeChunkIndexV6(ip);
    }
    if (idx.blkaddr == kNullAddr && super_.plain_erofs) {
      s.kind = IoSegment::Kind::kZero;
    } else if (super_.plain_erofs) {
      const uint64_t data_off = uint64_t{idx.blkaddr} * bs_;
      if (idx.device_id == 0) {
        if (!base::RangeInside(data_off, clen, bytes_.size())) {
          return DataLossError("inode ", ino, " chunk ", k, ": data outside the image");
        }
        s.kind = IoSegment::Kind::kBytes;
        s.bytes = bytes_.data() + data_off + (from - cstart);
      } else {
        if (idx.device_id > blobs_.size()) {
          return DataLossError("inode ", ino, " chunk ", k, ": bad device id ", idx.device_id);
        }
        s.kind = IoSegment::Kind::kChunk;
        s.chunk.blob_index = idx.device_id - 1;
        s.chunk.index = static_cast<uint32_t>(k);
        s.chunk.compressed_offset = s.chunk.uncompressed_offset = data_off;
        s.chunk.compressed_size = s.chunk.uncompressed_size = static_cast<uint32_t>(clen);
        s.offset_in_chunk = static_cast<uint32_t>(from - cstart);
      }
    } else {
      ASSIGN_OR_RETURN(s.chunk, ResolveChunk(idx, clen, ino, k));
      s.kind = IoSegment::Kind::kChunk;
      s.offset_in_chunk = static_cast<uint32_t>(from - cstart);
    }
    iov.segments.push_back(s);
    iov.total += s.length;
  }
  return iov;
}

Result<std::vector<uint64_t>> V6Metadata::PrefetchInodes() const {
  std::vector<uint64_t> out;
  if (super_.plain_erofs || ext_.s_prefetch_table_size == 0 || ext_.s_prefetch_table_offset == 0) {
    return out;
  }
  const uint8_t* p = bytes_.data() + ext_.s_prefetch_table_offset;
  for (uint64_t i = 0; i < ext_.s_prefetch_table_size / 4; ++i) {
    const uint32_t nid = base::LoadLe32(p + 4 * i);
    if (nid == 0) break;
    out.push_back(NidToIno(nid));
  }
  return out;
}

Status V6Metadata::AttachBlobMeta(uint32_t blob_index, std::shared_ptr<const BlobMeta> meta) {
  if (blob_index >= blob_metas_.size()) {
    return base::InvalidArgumentError("no blob with index ", blob_index);
  }
  blob_metas_[blob_index] = std::move(meta);
  return Status::Ok();
}

}  // namespace rfs::rafs::meta
