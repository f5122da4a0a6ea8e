#include "rafs/format/v5.h"

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

bool HasRafsV5Magic(ByteSpan file) {
  return file.size() >= 8 && LoadLe32(file.data()) == kRafsV5Magic &&
         LoadLe32(file.data() + 4) == kRafsV5Version;
}

Result<RafsV5SuperBlock> DecodeRafsV5SuperBlock(ByteSpan file) {
  RETURN_IF_ERROR(CheckRange(0, kRafsV5SuperSize, file.size(), "rafs v5 superblock"));
  const uint8_t* p = file.data();
  RafsV5SuperBlock sb{};
  sb.s_magic = LoadLe32(p + 0);
  sb.s_fs_version = LoadLe32(p + 4);
  sb.s_sb_size = LoadLe32(p + 8);
  sb.s_block_size = LoadLe32(p + 12);
  sb.s_flags = LoadLe64(p + 16);
  sb.s_inodes_count = LoadLe64(p + 24);
  sb.s_inode_table_offset = LoadLe64(p + 32);
  sb.s_prefetch_table_offset = LoadLe64(p + 40);
  sb.s_blob_table_offset = LoadLe64(p + 48);
  sb.s_inode_table_entries = LoadLe32(p + 56);
  sb.s_prefetch_table_entries = LoadLe32(p + 60);
  sb.s_blob_table_size = LoadLe32(p + 64);
  sb.s_extended_blob_table_entries = LoadLe32(p + 68);
  sb.s_extended_blob_table_offset = LoadLe64(p + 72);
  if (sb.s_magic != kRafsV5Magic) {
    return DataLossError("rafs v5 superblock: bad s_magic ", Hex(sb.s_magic), " at offset 0");
  }
  if (sb.s_fs_version != kRafsV5Version) {
    return DataLossError("rafs v5 superblock: bad s_fs_version ", Hex(sb.s_fs_version),
                         " at offset 4");
  }
  return sb;
}

Result<std::vector<V5BlobTableEntry>> DecodeV5BlobTable(ByteSpan file, uint64_t offset,
                                                        uint64_t size) {
  RETURN_IF_ERROR(CheckRange(offset, size, file.size(), "rafs v5 blob table"));
  std::vector<V5BlobTableEntry> out;
  const uint8_t* p = file.data() + offset;
  uint64_t pos = 0;
  while (size - pos > 8) {
    V5BlobTableEntry e;
    e.readahead_offset = LoadLe32(p + pos);
    e.readahead_size = LoadLe32(p + pos + 4);
    pos += 8;
    uint64_t start = pos;
    while (pos < size && p[pos] != 0) ++pos;
    e.blob_id.assign(reinterpret_cast<const char*>(p + start), pos - start);
    if (e.blob_id.empty()) {
      // Zero padding after the last entry.
      break;
    }
    if (e.blob_id.size() > 255) {
      return DataLossError("rafs v5 blob table: blob id of ", e.blob_id.size(),
                           " bytes at offset ", offset + start);
    }
    out.push_back(std::move(e));
    if (pos < size) ++pos;  // the NUL separator
  }
  return out;
}

V5ExtBlobEntry DecodeV5ExtBlobEntry(const uint8_t* p) {
  return V5ExtBlobEntry{LoadLe32(p), LoadLe32(p + 4), LoadLe64(p + 8), LoadLe64(p + 16)};
}

Result<V5InodeRecord> DecodeV5InodeRecord(ByteSpan file, uint64_t offset) {
  RETURN_IF_ERROR(CheckRange(offset, kV5InodeRecordSize, file.size(), "rafs v5 inode record"));
  const uint8_t* p = file.data() + offset;
  V5InodeRecord r{};
  r.offset = offset;
  std::memcpy(r.i_digest, p, 32);
  r.i_parent = LoadLe64(p + 32);
  r.i_ino = LoadLe64(p + 40);
  r.i_uid = LoadLe32(p + 48);
  r.i_gid = LoadLe32(p + 52);
  r.i_projid = LoadLe32(p + 56);
  r.i_mode = LoadLe32(p + 60);
  r.i_size = LoadLe64(p + 64);
  r.i_blocks = LoadLe64(p + 72);
  r.i_flags = LoadLe64(p + 80);
  r.i_nlink = LoadLe32(p + 88);
  r.i_child_index = LoadLe32(p + 92);
  r.i_child_count = LoadLe32(p + 96);
  r.i_name_size = LoadLe16(p + 100);
  r.i_symlink_size = LoadLe16(p + 102);
  r.i_rdev = LoadLe32(p + 104);
  r.i_mtime_nsec = LoadLe32(p + 108);
  r.i_mtime = LoadLe64(p + 112);
  if (r.i_name_size == 0 || r.i_name_size > 256) {
    return DataLossError("rafs v5 inode at offset ", offset, ": bad i_name_size ",
                         r.i_name_size);
  }
  RETURN_IF_ERROR(CheckRange(r.name_offset(), base::AlignUp(r.i_name_size, 8), file.size(),
                             "rafs v5 inode name"));
  if (r.i_symlink_size != 0) {
    RETURN_IF_ERROR(CheckRange(r.symlink_offset(), r.i_symlink_size, file.size(),
                               "rafs v5 symlink target"));
  }
  return r;
}

}  // namespace rfs::rafs::format
