// Data blob trailing sections (spec RAFS-FORMAT section 6): the compression
// info ("ci") header and entries, the chunk digest array, 512-byte tar
// headers between sections, and the ToC.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::rafs::format {

inline constexpr uint32_t kCiHeaderMagic = 0xB10BB10B;
inline constexpr uint64_t kCiHeaderSize = 4096;
inline constexpr uint64_t kCiEntryV1Size = 16;
inline constexpr uint64_t kCiEntryV2Size = 24;
inline constexpr uint64_t kTarHeaderSize = 512;
inline constexpr uint64_t kTocEntrySize = 128;

struct CiHeader {
  uint32_t s_magic;
  uint32_t s_features;
  uint32_t s_ci_compressor;
  uint32_t s_ci_entries;
  uint64_t s_ci_offset;
  uint64_t s_ci_compressed_size;
  uint64_t s_ci_uncompressed_size;
  uint64_t s_ci_zran_offset;
  uint64_t s_ci_zran_size;
  uint32_t s_ci_zran_count;
  uint32_t s_magic2;
};
// Decodes the 4096-byte header; kDataLoss on bad magics.
base::Result<CiHeader> DecodeCiHeader(base::ByteSpan header);

// One ci entry in common form.
struct CiEntry {
  uint64_t uncompressed_offset;
  uint32_t uncompressed_size;
  uint64_t compressed_offset;
  uint32_t compressed_size;
  bool compressed;
  uint8_t v2_flags;  // 0 for v1
  uint64_t v2_data;
};
CiEntry DecodeCiEntryV1(const uint8_t* p);
CiEntry DecodeCiEntryV2(const uint8_t* p);
// v2 entry flags.
inline constexpr uint8_t kCiV2Compressed = 0x01;
inline constexpr uint8_t kCiV2Zran = 0x02;
inline constexpr uint8_t kCiV2Batch = 0x04;
inline constexpr uint8_t kCiV2Encrypted = 0x08;
inline constexpr uint8_t kCiV2HasCrc32 = 0x10;

struct TarHeader {
  std::string name;
  uint64_t size;
  char typeflag;
};
// Parses a 512-byte GNU/ustar header written between blob sections: checks
// the checksum, accepts octal or GNU base-256 sizes.
base::Result<TarHeader> DecodeTarHeader(base::ByteSpan header);
// Builds such a header (used by writers and tests).
void EncodeTarHeader(const std::string& name, uint64_t size, uint8_t out[512]);

struct TocEntry {
  uint32_t flags;
  std::string name;
  uint8_t uncompressed_digest[32];
  uint64_t compressed_offset;
  uint64_t compressed_size;
  uint64_t uncompressed_size;
};
inline constexpr uint32_t kTocNone = 0x1;
inline constexpr uint32_t kTocZstd = 0x2;
inline constexpr uint32_t kTocLz4 = 0x4;
TocEntry DecodeTocEntry(const uint8_t* p);

}  // namespace rfs::rafs::format
