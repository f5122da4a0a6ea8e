// RAFS v5 on-disk structures (spec RAFS-FORMAT section 7).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::rafs::format {

inline constexpr uint32_t kRafsV5Magic = 0x52414653;
inline constexpr uint32_t kRafsV5Version = 0x500;
inline constexpr uint64_t kRafsV5SuperSize = 8192;
inline constexpr uint64_t kV5InodeRecordSize = 128;
inline constexpr uint64_t kV5ExtBlobEntrySize = 64;

// v5 inode flags.
inline constexpr uint64_t kV5InodeSymlink = 0x1;
inline constexpr uint64_t kV5InodeHardlink = 0x2;
inline constexpr uint64_t kV5InodeXattr = 0x4;
inline constexpr uint64_t kV5InodeHasHole = 0x8;

bool HasRafsV5Magic(base::ByteSpan file);

struct RafsV5SuperBlock {
  uint32_t s_magic;
  uint32_t s_fs_version;
  uint32_t s_sb_size;
  uint32_t s_block_size;  // the chunk size
  uint64_t s_flags;
  uint64_t s_inodes_count;
  uint64_t s_inode_table_offset;
  uint64_t s_prefetch_table_offset;
  uint64_t s_blob_table_offset;
  uint32_t s_inode_table_entries;
  uint32_t s_prefetch_table_entries;
  uint32_t s_blob_table_size;
  uint32_t s_extended_blob_table_entries;
  uint64_t s_extended_blob_table_offset;
};
base::Result<RafsV5SuperBlock> DecodeRafsV5SuperBlock(base::ByteSpan file);

struct V5BlobTableEntry {
  uint32_t readahead_offset;
  uint32_t readahead_size;
  std::string blob_id;
};
// Parses the variable-length v5 blob table (spec 7.5).
base::Result<std::vector<V5BlobTableEntry>> DecodeV5BlobTable(base::ByteSpan file, uint64_t offset,
                                                              uint64_t size);

struct V5ExtBlobEntry {
  uint32_t chunk_count;
  uint32_t features;
  uint64_t uncompressed_size;
  uint64_t compressed_size;
};
V5ExtBlobEntry DecodeV5ExtBlobEntry(const uint8_t* p);

// The fixed 128-byte part of an inode record (spec 7.7).
struct V5InodeRecord {
  uint64_t offset;  // file offset of the record
  uint8_t i_digest[32];
  uint64_t i_parent;
  uint64_t i_ino;
  uint32_t i_uid;
  uint32_t i_gid;
  uint32_t i_projid;
  uint32_t i_mode;
  uint64_t i_size;
  uint64_t i_blocks;
  uint64_t i_flags;
  uint32_t i_nlink;
  uint32_t i_child_index;
  uint32_t i_child_count;
  uint16_t i_name_size;
  uint16_t i_symlink_size;
  uint32_t i_rdev;
  uint32_t i_mtime_nsec;
  uint64_t i_mtime;

  uint64_t name_offset() const { return offset + kV5InodeRecordSize; }
  uint64_t symlink_offset() const { return name_offset() + base::AlignUp(i_name_size, 8); }
  // Where the xattr block (if any) starts.
  uint64_t xattr_offset() const {
    return symlink_offset() + (i_symlink_size ? base::AlignUp(i_symlink_size, 8) : 0);
  }
};
base::Result<V5InodeRecord> DecodeV5InodeRecord(base::ByteSpan file, uint64_t offset);

}  // namespace rfs::rafs::format
