// BLAKE3 hash (default, unkeyed mode), written in this project.
//
// Incremental: Update any number of times, then Finalize. Finalize does not
// modify the hasher, so more input may follow and Finalize be called again.
// Output of any length (extendable output); 32 bytes is the standard digest.
// Not thread-safe; use one hasher per thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/bytes.h"

namespace rfs::base {

class Blake3Hasher {
 public:
  static constexpr size_t kOutLen = 32;

  Blake3Hasher();
  void Update(ByteSpan data);
  // Writes out.size() bytes of output.
  void Finalize(MutableByteSpan out) const;
  std::array<uint8_t, kOutLen> Finalize() const;
  void Reset();

  // Name of the compression code path chosen at run time ("portable", "sse41", "avx2"...).
  static const char* Implementation();

 private:
  // State of the chunk (1024 input bytes) being filled. Its last block stays
  // in buf until more input arrives, because only then is it known whether
  // the chunk is the root (the whole input) or a leaf of a larger tree.
  struct Chunk {
    uint32_t cv[8];
    uint64_t counter;
    uint8_t buf[64];
    uint8_t buf_len;
    uint8_t blocks_compressed;
  };

  size_t ChunkLen() const { return size_t{chunk_.blocks_compressed} * 64 + chunk_.buf_len; }
  void StartChunk(uint64_t counter);
  // Absorbs at most the rest of the current chunk; returns bytes consumed.
  size_t ChunkUpdate(const uint8_t* data, size_t len);
  // Hashes whole chunks straight from `data`, many at a time (SIMD lanes).
  // Requires an empty chunk and more input after these chunks; leaves
  // `chunk_` started at the next chunk.
  void HashWholeChunks(const uint8_t* data, size_t num_chunks);
  // Merges stacked values until they are the complete subtrees of the first
  // num_chunks chunks; callers know input follows those chunks.
  void MergeCvStack(uint64_t num_chunks);
  // Adds the chaining value of the subtree starting at chunk `first_chunk`.
  void PushCv(const uint32_t cv[8], uint64_t first_chunk);

  Chunk chunk_;
  // Chaining values of completed subtrees, largest first. A 2^64-byte input
  // has 2^54 chunks, so at most 54 subtrees, plus one pushed value whose
  // merge waits until more input proves it is not the last.
  uint32_t cv_stack_[55][8];
  uint8_t cv_stack_len_ = 0;
};

std::array<uint8_t, Blake3Hasher::kOutLen> Blake3(ByteSpan data);

// Test and benchmark hooks. Names of the code paths this CPU can run,
// "portable" first.
std::vector<std::string_view> Blake3Implementations();
// Makes `name` the code path of all later hashing in this process (tests run
// every path on the same inputs). False when the CPU cannot run it.
bool SetBlake3ImplementationForTesting(std::string_view name);

}  // namespace rfs::base
