#include "base/bytes.h"

#include <cctype>

namespace rfs::base {

std::string ToHex(ByteSpan bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.resize(bytes.size() * 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xF];
  }
  return out;
}

static int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgumentError("hex string of odd length ", hex.size());
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgumentError("bad hex digit at position ", 2 * i);
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

Result<uint64_t> ParseByteSize(const std::string& text) {
  size_t pos = 0;
  uint64_t v = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    const uint64_t d = static_cast<uint64_t>(text[pos++] - '0');
    if (v > (UINT64_MAX - d) / 10) {
      return InvalidArgumentError("size '", text, "' is too large");
    }
    v = v * 10 + d;
  }
  if (pos == 0) {
    return InvalidArgumentError("bad size '", text,
                                      "' (a byte count, optionally with K, M, G or T: 10G)");
  }
  std::string unit = text.substr(pos);
  int shift = -1;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0])));
    const std::string rest = unit.substr(1);
    if (rest.empty() || rest == "B" || rest == "iB") {
      if (c == 'K') shift = 10;
      if (c == 'M') shift = 20;
      if (c == 'G') shift = 30;
      if (c == 'T') shift = 40;
    }
  }
  if (shift < 0) {
    return InvalidArgumentError("bad size '", text, "': unknown unit '", unit,
                                      "' (K, M, G or T, powers of 1024)");
  }
  if (shift > 0 && v > (UINT64_MAX >> shift)) {
    return InvalidArgumentError("size '", text, "' is too large");
  }
  return v << shift;
}

}  // namespace rfs::base
