// Byte spans and little-endian load/store helpers used by every decoder.
//
// Decoders of untrusted files check ranges with CheckRange before loading,
// so the Load* helpers themselves do no bounds checking.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace rfs::base {

using ByteSpan = std::span<const uint8_t>;
using MutableByteSpan = std::span<uint8_t>;

inline ByteSpan AsBytes(std::string_view s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsStringView(ByteSpan b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

inline uint16_t LoadLe16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t LoadLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t LoadLe64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadLe32(p)) | (static_cast<uint64_t>(LoadLe32(p + 4)) << 32);
}
inline void StoreLe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void StoreLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// True when [offset, offset + length) lies inside a buffer of `size` bytes,
// without overflow.
inline bool RangeInside(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

// kDataLoss naming `what` unless [offset, offset + length) is inside `size`.
inline Status CheckRange(uint64_t offset, uint64_t length, uint64_t size, std::string_view what) {
  if (RangeInside(offset, length, size)) return Status::Ok();
  return DataLossError(what, ": range [", offset, ", +", length, ") outside ", size, " bytes");
}

// Lower-case hex of bytes.
std::string ToHex(ByteSpan bytes);
// Parses lower- or upper-case hex; kInvalidArgument on odd length or bad digit.
Result<std::string> FromHex(std::string_view hex);

constexpr uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
// ceil(a / b) without overflow for any a (b > 0). Sizes from untrusted files
// may be close to 2^64, where (a + b - 1) / b wraps.
constexpr uint64_t CeilDiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }
constexpr bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// "4096", "10G", "512MiB", "1KB": a byte count with an optional binary unit
// (K, M, G, T: powers of 1024). kInvalidArgument naming the problem.
Result<uint64_t> ParseByteSize(const std::string& text);

}  // namespace rfs::base
