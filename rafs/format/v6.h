// RAFS v6 on-disk structures (EROFS-compatible metadata plus Nydus tables).
// Field names follow ../shared/spec/RAFS-FORMAT.md sections 3 to 5 and 8.
//
// Decoders are pure: they take the whole bootstrap and an offset, check that
// every byte they read lies inside it, and return kDataLoss naming the
// structure, field and offset when something is wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::rafs::format {

inline constexpr uint64_t kErofsSuperOffset = 1024;
inline constexpr uint32_t kErofsMagic = 0xE0F5E1E2;
inline constexpr uint32_t kRafsV6CompatMarker = 0x40000000;
inline constexpr uint32_t kErofsIncompatChunkedFile = 0x4;
inline constexpr uint32_t kErofsIncompatDeviceTable = 0x8;
inline constexpr uint64_t kRafsV6ExtSuperOffset = 1152;
inline constexpr uint64_t kRafsV6ExtSuperSize = 256;
inline constexpr uint64_t kDeviceSlotSize = 128;
inline constexpr uint64_t kV6BlobEntrySize = 256;
inline constexpr uint64_t kChunkRecordSize = 80;
inline constexpr uint32_t kMaxV6Blobs = 254;

// Superblock flags (spec 2.4), shared by v5 and v6.
inline constexpr uint64_t kFlagCompressionNone = 0x1;
inline constexpr uint64_t kFlagCompressionLz4 = 0x2;
inline constexpr uint64_t kFlagHashBlake3 = 0x4;
inline constexpr uint64_t kFlagHashSha256 = 0x8;
inline constexpr uint64_t kFlagExplicitUidGid = 0x10;
inline constexpr uint64_t kFlagHasXattr = 0x20;
inline constexpr uint64_t kFlagCompressionGzip = 0x40;
inline constexpr uint64_t kFlagCompressionZstd = 0x80;
inline constexpr uint64_t kFlagInlinedChunkDigest = 0x100;
inline constexpr uint64_t kFlagTarfsMode = 0x200;
inline constexpr uint64_t kFlagEncryptionNone = 0x01000000;
inline constexpr uint64_t kFlagEncryptionAes128Xts = 0x02000000;
inline constexpr uint64_t kKnownSuperFlags = 0x3FF | 0xFF000000ull;

// Blob features (spec 2.6).
inline constexpr uint32_t kBlobAligned = 0x1;
inline constexpr uint32_t kBlobInlinedFsMeta = 0x2;
inline constexpr uint32_t kBlobChunkInfoV2 = 0x4;
inline constexpr uint32_t kBlobZran = 0x8;
inline constexpr uint32_t kBlobSeparate = 0x10;
inline constexpr uint32_t kBlobInlinedChunkDigest = 0x20;
inline constexpr uint32_t kBlobTarfs = 0x40;
inline constexpr uint32_t kBlobBatch = 0x80;
inline constexpr uint32_t kBlobEncrypted = 0x100;
inline constexpr uint32_t kBlobChunkDictGenerated = 0x200;
inline constexpr uint32_t kBlobSeparatedWithPrefetch = 0x400;
inline constexpr uint32_t kBlobExternal = 0x800;
inline constexpr uint32_t kBlobHasTarHeader = 0x10000000;
inline constexpr uint32_t kBlobHasToc = 0x20000000;
inline constexpr uint32_t kBlobCapTarToc = 0x40000000;
inline constexpr uint32_t kBlobV5NoExtTable = 0x80000000;

// Chunk record flags (spec 2.5).
inline constexpr uint32_t kChunkCompressed = 0x1;
inline constexpr uint32_t kChunkHole = 0x2;
inline constexpr uint32_t kChunkEncrypted = 0x4;
inline constexpr uint32_t kChunkBatch = 0x8;
inline constexpr uint32_t kChunkHasCrc32 = 0x10;

// Inode layouts (i_format bits 1..3).
inline constexpr uint16_t kLayoutFlatPlain = 0;
inline constexpr uint16_t kLayoutFlatInline = 2;
inline constexpr uint16_t kLayoutChunkBased = 4;

struct ErofsSuperBlock {
  uint32_t s_magic;
  uint32_t s_checksum;
  uint32_t s_feature_compat;
  uint8_t s_blkszbits;
  uint8_t s_extslots;
  uint16_t s_root_nid;
  uint64_t s_inos;
  uint64_t s_build_time;
  uint32_t s_build_time_nsec;
  uint32_t s_blocks;
  uint32_t s_meta_blkaddr;
  uint32_t s_xattr_blkaddr;
  uint32_t s_feature_incompat;
  uint16_t s_u;
  uint16_t s_extra_devices;
  uint16_t s_devt_slotoff;

  bool is_rafs() const { return (s_feature_compat & kRafsV6CompatMarker) != 0; }
  uint32_t block_size() const { return 1u << s_blkszbits; }
};

// True when the file has the EROFS magic at offset 1024.
bool HasErofsMagic(base::ByteSpan file);
base::Result<ErofsSuperBlock> DecodeErofsSuperBlock(base::ByteSpan file);

struct RafsV6ExtSuperBlock {
  uint64_t s_flags;
  uint64_t s_blob_table_offset;
  uint32_t s_blob_table_size;
  uint32_t s_chunk_size;
  uint64_t s_chunk_table_offset;
  uint64_t s_chunk_table_size;
  uint64_t s_prefetch_table_offset;
  uint32_t s_prefetch_table_size;
};
base::Result<RafsV6ExtSuperBlock> DecodeRafsV6ExtSuperBlock(base::ByteSpan file);

struct DeviceSlot {
  std::string tag;  // NUL padding trimmed
  std::string raw_tag;  // all 64 bytes (upstream compares untrimmed)
  uint32_t blocks;
  uint32_t mapped_blkaddr;
};
base::Result<DeviceSlot> DecodeDeviceSlot(base::ByteSpan file, uint64_t offset);

struct V6BlobEntry {
  std::string blob_id;  // trailing NULs trimmed
  uint32_t blob_index;
  uint32_t chunk_size;
  uint32_t chunk_count;
  uint32_t compression_algo;
  uint32_t digest_algo;
  uint32_t features;
  uint64_t compressed_size;
  uint64_t uncompressed_size;
  uint32_t blob_toc_size;
  uint32_t ci_compressor;
  uint64_t ci_offset;
  uint64_t ci_compressed_size;
  uint64_t ci_uncompressed_size;
  uint8_t blob_toc_digest[32];
  uint8_t blob_meta_digest[32];
  uint64_t blob_meta_size;
  uint64_t cipher_iv;
  uint32_t cipher_algo;
};
base::Result<V6BlobEntry> DecodeV6BlobEntry(base::ByteSpan file, uint64_t offset);

// An inode in either form, decoded to common fields.
struct InodeV6 {
  uint64_t offset;     // file offset of the inode
  bool extended;
  uint16_t layout;     // kLayout*
  uint16_t i_xattr_icount;
  uint32_t i_mode;
  uint64_t i_size;
  uint32_t i_u;
  uint32_t i_ino;
  uint32_t i_uid;
  uint32_t i_gid;
  uint64_t i_mtime;    // 0 for compact inodes
  uint32_t i_mtime_nsec;
  uint32_t i_nlink;

  uint32_t inode_size() const { return extended ? 64 : 32; }
  // Bytes of the inline xattr area following the inode (0 when none).
  uint32_t xattr_size() const { return i_xattr_icount == 0 ? 0 : 12 + 4 * (i_xattr_icount - 1); }
};
base::Result<InodeV6> DecodeInodeV6(base::ByteSpan file, uint64_t offset);

// A chunk index entry of a chunk-based file (spec 5.2).
struct ChunkIndexV6 {
  uint32_t device_id;  // low byte only; 0 invalid for RAFS, device number for plain EROFS
  uint32_t ci_index;   // 24 bits (RAFS)
  uint32_t blkaddr;
};
ChunkIndexV6 DecodeChunkIndexV6(const uint8_t* p);

// 12-byte directory entry (spec 8.1).
struct DirentV6 {
  uint64_t nid;
  uint16_t nameoff;
  uint8_t file_type;
};
inline DirentV6 DecodeDirentV6(const uint8_t* p) {
  return DirentV6{base::LoadLe64(p), base::LoadLe16(p + 8), p[10]};
}
inline constexpr uint32_t kDirentSize = 12;

// The 80-byte chunk record (v5 inode chunks and the v6 chunk table, spec 7.8).
struct ChunkRecord {
  uint8_t block_id[32];
  uint32_t blob_index;
  uint32_t flags;
  uint32_t compressed_size;
  uint32_t uncompressed_size;
  uint64_t compressed_offset;
  uint64_t uncompressed_offset;
  uint64_t file_offset;
  uint32_t index;
  uint32_t crc32;
};
ChunkRecord DecodeChunkRecord(const uint8_t* p);

// Full xattr name for an EROFS name index + suffix; empty when the index is
// not one RAFS uses.
std::string XattrPrefix(uint8_t name_index);

}  // namespace rfs::rafs::format
