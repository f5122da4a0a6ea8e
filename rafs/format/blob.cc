#include "rafs/format/blob.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace rfs::rafs::format {

using base::ByteSpan;
using base::DataLossError;
using base::Hex;
using base::LoadLe32;
using base::LoadLe64;
using base::Result;

Result<CiHeader> DecodeCiHeader(ByteSpan header) {
  if (header.size() < kCiHeaderSize) {
    return DataLossError("blob ci header: ", header.size(), " bytes, expected 4096");
  }
  const uint8_t* p = header.data();
  CiHeader h{};
  h.s_magic = LoadLe32(p);
  h.s_features = LoadLe32(p + 4);
  h.s_ci_compressor = LoadLe32(p + 8);
  h.s_ci_entries = LoadLe32(p + 12);
  h.s_ci_offset = LoadLe64(p + 16);
  h.s_ci_compressed_size = LoadLe64(p + 24);
  h.s_ci_uncompressed_size = LoadLe64(p + 32);
  h.s_ci_zran_offset = LoadLe64(p + 40);
  h.s_ci_zran_size = LoadLe64(p + 48);
  h.s_ci_zran_count = LoadLe32(p + 56);
  h.s_magic2 = LoadLe32(p + 4092);
  if (h.s_magic != kCiHeaderMagic) {
    return DataLossError("blob ci header: bad s_magic ", Hex(h.s_magic));
  }
  if (h.s_magic2 != kCiHeaderMagic) {
    return DataLossError("blob ci header: bad s_magic2 ", Hex(h.s_magic2));
  }
  return h;
}

CiEntry DecodeCiEntryV1(const uint8_t* p) {
  uint64_t w0 = LoadLe64(p);
  uint64_t w1 = LoadLe64(p + 8);
  CiEntry e{};
  e.uncompressed_offset = w0 & 0x00000FFFFFFFF000ull;  // bits 12..43
  e.uncompressed_size =
      static_cast<uint32_t>(((w0 >> 44) & 0xFFFFF) | (((w0 >> 8) & 0xF) << 20)) + 1;
  e.compressed_offset = w1 & 0xFFFFFFFFFFull;
  e.compressed_size =
      static_cast<uint32_t>(((w1 >> 44) & 0xFFFFF) | (((w1 >> 40) & 0xF) << 20)) + 1;
  e.compressed = e.compressed_size != e.uncompressed_size;
  return e;
}

CiEntry DecodeCiEntryV2(const uint8_t* p) {
  uint64_t w0 = LoadLe64(p);
  uint64_t w1 = LoadLe64(p + 8);
  CiEntry e{};
  e.uncompressed_offset = (w0 & 0xFFFFFFFFull) << 12;
  e.uncompressed_size = static_cast<uint32_t>((w0 >> 32) & 0xFFFFFF) + 1;
  e.v2_flags = static_cast<uint8_t>(w0 >> 56);
  e.compressed_offset = w1 & 0xFFFFFFFFFFull;
  e.compressed_size = static_cast<uint32_t>(w1 >> 40);
  e.compressed = (e.v2_flags & kCiV2Compressed) != 0;
  e.v2_data = LoadLe64(p + 16);
  return e;
}

namespace {

uint32_t TarChecksum(const uint8_t* h) {
  uint32_t sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  return sum;
}

Result<uint64_t> ParseOctal(const uint8_t* p, size_t n, const char* field) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  bool any = false;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 61) return DataLossError("tar header: ", field, " overflows");
    v = v * 8 + (p[i] - '0');
    any = true;
  }
  for (; i < n; ++i) {
    if (p[i] != 0 && p[i] != ' ') return DataLossError("tar header: bad octal in ", field);
  }
  if (!any) return DataLossError("tar header: empty ", field);
  return v;
}

}  // namespace

Result<TarHeader> DecodeTarHeader(ByteSpan header) {
  if (header.size() < kTarHeaderSize) return DataLossError("tar header: short");
  const uint8_t* h = header.data();
  ASSIGN_OR_RETURN(uint64_t stored_sum, ParseOctal(h + 148, 8, "checksum"));
  if (stored_sum != TarChecksum(h)) {
    return DataLossError("tar header: checksum ", stored_sum, " does not match ", TarChecksum(h));
  }
  TarHeader t;
  size_t len = 0;
  while (len < 100 && h[len] != 0) ++len;
  t.name.assign(reinterpret_cast<const char*>(h), len);
  if (h[124] & 0x80) {
    // GNU base-256: the remaining 11 bytes big-endian.
    uint64_t v = 0;
    for (int i = 125; i < 136; ++i) {
      if (v >> 56) return DataLossError("tar header: size overflows");
      v = (v << 8) | h[i];
    }
    if (h[124] != 0x80) return DataLossError("tar header: size overflows");
    t.size = v;
  } else {
    ASSIGN_OR_RETURN(t.size, ParseOctal(h + 124, 12, "size"));
  }
  t.typeflag = static_cast<char>(h[156]);
  return t;
}

void EncodeTarHeader(const std::string& name, uint64_t size, uint8_t out[512]) {
  std::memset(out, 0, 512);
  std::memcpy(out, name.data(), std::min<size_t>(name.size(), 100));
  if (size < (1ull << 33)) {
    std::snprintf(reinterpret_cast<char*>(out + 124), 12, "%011llo",
                  static_cast<unsigned long long>(size));
  } else {
    out[124] = 0x80;
    for (int i = 0; i < 8; ++i) out[135 - i] = static_cast<uint8_t>(size >> (8 * i));
  }
  std::memcpy(out + 136, "00000000000", 11);
  out[156] = '0';
  std::memcpy(out + 257, "ustar  ", 8);
  // 7 octal digits + NUL, as upstream writes it.
  uint32_t sum = TarChecksum(out);
  std::snprintf(reinterpret_cast<char*>(out + 148), 8, "%07o", sum);
}

TocEntry DecodeTocEntry(const uint8_t* p) {
  TocEntry e{};
  e.flags = LoadLe32(p);
  size_t len = 0;
  while (len < 16 && p[8 + len] != 0) ++len;
  e.name.assign(reinterpret_cast<const char*>(p + 8), len);
  std::memcpy(e.uncompressed_digest, p + 24, 32);
  e.compressed_offset = LoadLe64(p + 56);
  e.compressed_size = LoadLe64(p + 64);
  e.uncompressed_size = LoadLe64(p + 72);
  return e;
}

}  // namespace rfs::rafs::format
