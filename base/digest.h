// Chunk and content digests: sha256 (OpenSSL) and BLAKE3 (base/blake3.h).
//
// RAFS codes: 0 = blake3, 1 = sha256 (spec RAFS-FORMAT 2.2). Both give 32 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::base {

enum class DigestAlgo : uint32_t { kBlake3 = 0, kSha256 = 1 };

using Digest = std::array<uint8_t, 32>;

std::string_view DigestAlgoName(DigestAlgo algo);  // "blake3", "sha256"
Result<DigestAlgo> ParseDigestAlgo(std::string_view name);

// One-shot digests.
Digest Sha256(ByteSpan data);
Digest ComputeDigest(DigestAlgo algo, ByteSpan data);

inline std::string DigestHex(const Digest& d) { return ToHex(ByteSpan(d.data(), d.size())); }

// Incremental hashing with either algorithm.
class Hasher {
 public:
  virtual ~Hasher() = default;
  virtual void Update(ByteSpan data) = 0;
  virtual Digest Finish() = 0;

  static std::unique_ptr<Hasher> Create(DigestAlgo algo);
};

}  // namespace rfs::base
