#include "rafs/format/v6.h"

#include <cstring>

namespace rfs::rafs::format {

using base::ByteSpan;
using base::CheckRange;
using base::DataLossError;
using base::Hex;
using base::LoadLe16;
using base::LoadLe32;
using base::LoadLe64;
using base::Result;

namespace {

std::string TrimNul(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

}  // namespace

bool HasErofsMagic(ByteSpan file) {
  return file.size() >= kErofsSuperOffset + 128 &&
         LoadLe32(file.data() + kErofsSuperOffset) == kErofsMagic;
}

Result<ErofsSuperBlock> DecodeErofsSuperBlock(ByteSpan file) {
  RETURN_IF_ERROR(CheckRange(kErofsSuperOffset, 128, file.size(), "erofs superblock"));
  const uint8_t* p = file.data() + kErofsSuperOffset;
  ErofsSuperBlock sb{};
  sb.s_magic = LoadLe32(p + 0);
  sb.s_checksum = LoadLe32(p + 4);
  sb.s_feature_compat = LoadLe32(p + 8);
  sb.s_blkszbits = p[12];
  sb.s_extslots = p[13];
  sb.s_root_nid = LoadLe16(p + 14);
  sb.s_inos = LoadLe64(p + 16);
  sb.s_build_time = LoadLe64(p + 24);
  sb.s_build_time_nsec = LoadLe32(p + 32);
  sb.s_blocks = LoadLe32(p + 36);
  sb.s_meta_blkaddr = LoadLe32(p + 40);
  sb.s_xattr_blkaddr = LoadLe32(p + 44);
  sb.s_feature_incompat = LoadLe32(p + 80);
  sb.s_u = LoadLe16(p + 84);
  sb.s_extra_devices = LoadLe16(p + 86);
  sb.s_devt_slotoff = LoadLe16(p + 88);
  if (sb.s_magic != kErofsMagic) {
    return DataLossError("erofs superblock: bad s_magic ", Hex(sb.s_magic), " at offset 1024");
  }
  return sb;
}

Result<RafsV6ExtSuperBlock> DecodeRafsV6ExtSuperBlock(ByteSpan file) {
  RETURN_IF_ERROR(CheckRange(kRafsV6ExtSuperOffset, kRafsV6ExtSuperSize, file.size(),
                             "rafs v6 extended superblock"));
  const uint8_t* p = file.data() + kRafsV6ExtSuperOffset;
  RafsV6ExtSuperBlock e{};
  e.s_flags = LoadLe64(p + 0);
  e.s_blob_table_offset = LoadLe64(p + 8);
  e.s_blob_table_size = LoadLe32(p + 16);
  e.s_chunk_size = LoadLe32(p + 20);
  e.s_chunk_table_offset = LoadLe64(p + 24);
  e.s_chunk_table_size = LoadLe64(p + 32);
  e.s_prefetch_table_offset = LoadLe64(p + 40);
  e.s_prefetch_table_size = LoadLe32(p + 48);
  return e;
}

Result<DeviceSlot> DecodeDeviceSlot(ByteSpan file, uint64_t offset) {
  RETURN_IF_ERROR(CheckRange(offset, kDeviceSlotSize, file.size(), "device slot"));
  const uint8_t* p = file.data() + offset;
  DeviceSlot d;
  d.tag = TrimNul(p, 64);
  d.raw_tag.assign(reinterpret_cast<const char*>(p), 64);
  d.blocks = LoadLe32(p + 64);
  d.mapped_blkaddr = LoadLe32(p + 68);
  return d;
}

Result<V6BlobEntry> DecodeV6BlobEntry(ByteSpan file, uint64_t offset) {
  RETURN_IF_ERROR(CheckRange(offset, kV6BlobEntrySize, file.size(), "blob table entry"));
  const uint8_t* p = file.data() + offset;
  V6BlobEntry b{};
  b.blob_id = TrimNul(p, 64);
  b.blob_index = LoadLe32(p + 64);
  b.chunk_size = LoadLe32(p + 68);
  b.chunk_count = LoadLe32(p + 72);
  b.compression_algo = LoadLe32(p + 76);
  b.digest_algo = LoadLe32(p + 80);
  b.features = LoadLe32(p + 84);
  b.compressed_size = LoadLe64(p + 88);
  b.uncompressed_size = LoadLe64(p + 96);
  b.blob_toc_size = LoadLe32(p + 104);
  b.ci_compressor = LoadLe32(p + 108);
  b.ci_offset = LoadLe64(p + 112);
  b.ci_compressed_size = LoadLe64(p + 120);
  b.ci_uncompressed_size = LoadLe64(p + 128);
  std::memcpy(b.blob_toc_digest, p + 136, 32);
  std::memcpy(b.blob_meta_digest, p + 168, 32);
  b.blob_meta_size = LoadLe64(p + 200);
  b.cipher_iv = LoadLe64(p + 208);
  b.cipher_algo = LoadLe32(p + 216);
  return b;
}

Result<InodeV6> DecodeInodeV6(ByteSpan file, uint64_t offset) {
  RETURN_IF_ERROR(CheckRange(offset, 32, file.size(), "inode"));
  const uint8_t* p = file.data() + offset;
  InodeV6 in{};
  in.offset = offset;
  uint16_t format = LoadLe16(p);
  if ((format & 0xFFF0) != 0) {
    return DataLossError("inode at offset ", offset, ": bad i_format ", Hex(format));
  }
  in.extended = (format & 1) != 0;
  in.layout = static_cast<uint16_t>((format >> 1) & 7);
  if (in.layout != kLayoutFlatPlain && in.layout != kLayoutFlatInline &&
      in.layout != kLayoutChunkBased) {
    return DataLossError("inode at offset ", offset, ": unsupported data layout ", in.layout,
                         " (compressed erofs layouts are not used by rafs)");
  }
  in.i_xattr_icount = LoadLe16(p + 2);
  in.i_mode = LoadLe16(p + 4);
  if (in.extended) {
    RETURN_IF_ERROR(CheckRange(offset, 64, file.size(), "extended inode"));
    in.i_size = LoadLe64(p + 8);
    in.i_u = LoadLe32(p + 16);
    in.i_ino = LoadLe32(p + 20);
    in.i_uid = LoadLe32(p + 24);
    in.i_gid = LoadLe32(p + 28);
    in.i_mtime = LoadLe64(p + 32);
    in.i_mtime_nsec = LoadLe32(p + 40);
    in.i_nlink = LoadLe32(p + 44);
  } else {
    in.i_nlink = LoadLe16(p + 6);
    in.i_size = LoadLe32(p + 8);
    in.i_u = LoadLe32(p + 16);
    in.i_ino = LoadLe32(p + 20);
    in.i_uid = LoadLe16(p + 24);
    in.i_gid = LoadLe16(p + 26);
  }
  RETURN_IF_ERROR(CheckRange(offset, uint64_t{in.inode_size()} + in.xattr_size(), file.size(),
                             "inode xattr area"));
  return in;
}

ChunkIndexV6 DecodeChunkIndexV6(const uint8_t* p) {
  ChunkIndexV6 c;
  c.device_id = p[2];
  c.ci_index = static_cast<uint32_t>(LoadLe16(p)) | (static_cast<uint32_t>(p[3]) << 16);
  c.blkaddr = LoadLe32(p + 4);
  return c;
}

ChunkRecord DecodeChunkRecord(const uint8_t* p) {
  ChunkRecord r;
  std::memcpy(r.block_id, p, 32);
  r.blob_index = LoadLe32(p + 32);
  r.flags = LoadLe32(p + 36);
  r.compressed_size = LoadLe32(p + 40);
  r.uncompressed_size = LoadLe32(p + 44);
  r.compressed_offset = LoadLe64(p + 48);
  r.uncompressed_offset = LoadLe64(p + 56);
  r.file_offset = LoadLe64(p + 64);
  r.index = LoadLe32(p + 72);
  r.crc32 = LoadLe32(p + 76);
  return r;
}

std::string XattrPrefix(uint8_t name_index) {
  switch (name_index) {
    case 1: return "user.";
    case 2: return "system.posix_acl_access";
    case 3: return "system.posix_acl_default";
    case 4: return "trusted.";
    case 5: return "lustre.";
    case 6: return "security.";
    default: return "";
  }
}

}  // namespace rfs::rafs::format
