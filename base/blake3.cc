// BLAKE3, default hash mode, following the BLAKE3 specification
// (https://github.com/BLAKE3-team/BLAKE3-specs). Written for this project.
//
// Layout of the work:
//  - Compress: the portable compression function, used for single blocks
//    (the chunk being filled, parent merges on the chaining-value stack and
//    the root output).
//  - HashMany: hashes many equal-length inputs (whole chunks, or parent
//    blocks) at once. The SIMD versions run one input per vector lane with
//    the message words transposed, as the BLAKE3 paper describes: 4 lanes
//    with SSE4.1, 8 with AVX2. Runtime dispatch picks the best one, so the
//    file builds without global -m flags.
//  - Blake3Hasher: the incremental tree hasher. Whole chunks that are known
//    not to be the last one are hashed with HashMany in batches and reduced
//    to subtree chaining values; the rest goes through the chunk state.

#include "base/blake3.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RFS_BLAKE3_X86 1
#else
#define RFS_BLAKE3_X86 0
#endif

namespace rfs::base {
namespace {

constexpr size_t kBlockLen = 64;
constexpr size_t kChunkLen = 1024;
constexpr size_t kBlocksPerChunk = kChunkLen / kBlockLen;

// Domain flags (spec table 3).
constexpr uint8_t kChunkStart = 1 << 0;
constexpr uint8_t kChunkEnd = 1 << 1;
constexpr uint8_t kParent = 1 << 2;
constexpr uint8_t kRoot = 1 << 3;

// The SHA-256 initial hash words; the key in the default (unkeyed) mode.
constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                             0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

constexpr uint8_t kMsgPermutation[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};

// kMsgSchedule[r][i] is the original message word that round r uses in
// position i. Precomputing it replaces the permutation step between rounds
// with constant indices, which costs nothing once the rounds are unrolled.
constexpr auto kMsgSchedule = [] {
  std::array<std::array<uint8_t, 16>, 7> s{};
  for (uint8_t i = 0; i < 16; ++i) s[0][i] = i;
  for (size_t r = 1; r < 7; ++r) {
    for (size_t i = 0; i < 16; ++i) s[r][i] = s[r - 1][kMsgPermutation[i]];
  }
  return s;
}();

// Most whole chunks hashed by one HashMany call. Bounds the stack buffers of
// chaining values (4 KiB); larger batches would not be faster, since only the
// few top tree levels of each batch run with idle lanes.
constexpr size_t kMaxBatchChunks = 128;

// ---------------------------------------------------------------------------
// Portable code.

// Forced inline so that the state stays in registers and the schedule
// lookups fold to constants.
[[gnu::always_inline]] inline void G(uint32_t v[16], size_t a, size_t b, size_t c, size_t d,
                                     uint32_t mx, uint32_t my) {
  v[a] = v[a] + v[b] + mx;
  v[d] = std::rotr(v[d] ^ v[a], 16);
  v[c] = v[c] + v[d];
  v[b] = std::rotr(v[b] ^ v[c], 12);
  v[a] = v[a] + v[b] + my;
  v[d] = std::rotr(v[d] ^ v[a], 8);
  v[c] = v[c] + v[d];
  v[b] = std::rotr(v[b] ^ v[c], 7);
}

[[gnu::always_inline]] inline void Round(uint32_t v[16], const uint32_t m[16], size_t r) {
  const auto& s = kMsgSchedule[r];
  // Columns, then diagonals.
  G(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
  G(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
  G(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
  G(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
  G(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
  G(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
  G(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
  G(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
}

// Runs the seven rounds; v receives the state before the output feed-forward.
[[gnu::always_inline]] inline void CompressRounds(const uint32_t cv[8],
                                                  const uint8_t block[kBlockLen], uint8_t block_len,
                                                  uint64_t counter, uint8_t flags, uint32_t v[16]) {
  uint32_t m[16];
  for (size_t i = 0; i < 16; ++i) m[i] = LoadLe32(block + 4 * i);
  for (size_t i = 0; i < 8; ++i) v[i] = cv[i];
  for (size_t i = 0; i < 4; ++i) v[8 + i] = kIv[i];
  v[12] = static_cast<uint32_t>(counter);
  v[13] = static_cast<uint32_t>(counter >> 32);
  v[14] = block_len;
  v[15] = flags;
  Round(v, m, 0);
  Round(v, m, 1);
  Round(v, m, 2);
  Round(v, m, 3);
  Round(v, m, 4);
  Round(v, m, 5);
  Round(v, m, 6);
}

// Compression keeping only the chaining value (first 8 output words).
void CompressInPlace(uint32_t cv[8], const uint8_t block[kBlockLen], uint8_t block_len,
                     uint64_t counter, uint8_t flags) {
  uint32_t v[16];
  CompressRounds(cv, block, block_len, counter, flags, v);
  for (size_t i = 0; i < 8; ++i) cv[i] = v[i] ^ v[i + 8];
}

// Full 64-byte compression output, for the root's extendable output.
void CompressXof(const uint32_t cv[8], const uint8_t block[kBlockLen], uint8_t block_len,
                 uint64_t counter, uint8_t flags, uint8_t out[kBlockLen]) {
  uint32_t v[16];
  CompressRounds(cv, block, block_len, counter, flags, v);
  for (size_t i = 0; i < 8; ++i) {
    StoreLe32(out + 4 * i, v[i] ^ v[i + 8]);
    StoreLe32(out + 32 + 4 * i, v[i + 8] ^ cv[i]);
  }
}

// Hashes num_inputs inputs of `blocks` full blocks each, writing one 32-byte
// chaining value per input to out. Input i uses counter + i when
// increment_counter (chunks) and counter otherwise (parents, counter 0).
// flags_start / flags_end are added to the first / last block's flags.
using HashManyFn = void (*)(const uint8_t* const* inputs, size_t num_inputs, size_t blocks,
                            uint64_t counter, bool increment_counter, uint8_t flags,
                            uint8_t flags_start, uint8_t flags_end, uint8_t* out);

void HashOnePortable(const uint8_t* input, size_t blocks, uint64_t counter, uint8_t flags,
                     uint8_t flags_start, uint8_t flags_end, uint8_t out[32]) {
  uint32_t cv[8];
  std::memcpy(cv, kIv, sizeof(cv));
  uint8_t block_flags = flags | flags_start;
  for (size_t b = 0; b < blocks; ++b) {
    if (b + 1 == blocks) block_flags |= flags_end;
    CompressInPlace(cv, input + b * kBlockLen, kBlockLen, counter, block_flags);
    block_flags = flags;
  }
  for (size_t i = 0; i < 8; ++i) StoreLe32(out + 4 * i, cv[i]);
}

void HashManyPortable(const uint8_t* const* inputs, size_t num_inputs, size_t blocks,
                      uint64_t counter, bool increment_counter, uint8_t flags, uint8_t flags_start,
                      uint8_t flags_end, uint8_t* out) {
  for (size_t i = 0; i < num_inputs; ++i) {
    HashOnePortable(inputs[i], blocks, counter, flags, flags_start, flags_end, out + 32 * i);
    if (increment_counter) ++counter;
  }
}

// ---------------------------------------------------------------------------
// SIMD code: one input per lane. v[k] holds state word k of every lane and
// m[k] message word k of every lane, so G runs unchanged on whole vectors.
//
// Each function carries its own target attribute, so only code reached after
// the CPU check uses the instructions. Helpers are always_inline with the
// same target, as the compilers require for inlining across targets.

#if RFS_BLAKE3_X86

#define RFS_SSE41 __attribute__((target("sse4.1"), always_inline)) inline
#define RFS_AVX2 __attribute__((target("avx2"), always_inline)) inline
// Small fixed loops over lanes or state words must be fully unrolled so that
// vectors stay in registers; GCC does not do it on its own at -O2.
#define RFS_UNROLL _Pragma("GCC unroll 16")

// --- SSE4.1, 4 lanes -------------------------------------------------------

RFS_SSE41 __m128i Add4(__m128i a, __m128i b) { return _mm_add_epi32(a, b); }
RFS_SSE41 __m128i Xor4(__m128i a, __m128i b) { return _mm_xor_si128(a, b); }
// Rotations by whole bytes are one byte shuffle; the others shift twice.
RFS_SSE41 __m128i Rot16x4(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}
RFS_SSE41 __m128i Rot12x4(__m128i x) {
  return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}
RFS_SSE41 __m128i Rot8x4(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
}
RFS_SSE41 __m128i Rot7x4(__m128i x) {
  return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

// G on whole vectors; after inlining, straight-line code with constant
// indices. The four G calls of a half round are written one after another,
// not interleaved step by step: GCC 12 spills less that way (about 15%
// faster here, while clang 14 is a little faster interleaved), and the
// out-of-order core overlaps the independent calls anyway.
RFS_SSE41 void G4(__m128i& a, __m128i& b, __m128i& c, __m128i& d, __m128i mx, __m128i my) {
  a = Add4(Add4(a, b), mx);
  d = Rot16x4(Xor4(d, a));
  c = Add4(c, d);
  b = Rot12x4(Xor4(b, c));
  a = Add4(Add4(a, b), my);
  d = Rot8x4(Xor4(d, a));
  c = Add4(c, d);
  b = Rot7x4(Xor4(b, c));
}

RFS_SSE41 void Round4(__m128i v[16], const __m128i m[16], size_t r) {
  const auto& s = kMsgSchedule[r];
  G4(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G4(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G4(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G4(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G4(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G4(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G4(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G4(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// Transposes a 4x4 matrix of 32-bit words held as 4 row vectors.
RFS_SSE41 void Transpose4(__m128i r[4]) {
  __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]);  // r0[0] r1[0] r0[1] r1[1]
  __m128i t1 = _mm_unpackhi_epi32(r[0], r[1]);  // r0[2] r1[2] r0[3] r1[3]
  __m128i t2 = _mm_unpacklo_epi32(r[2], r[3]);
  __m128i t3 = _mm_unpackhi_epi32(r[2], r[3]);
  r[0] = _mm_unpacklo_epi64(t0, t2);
  r[1] = _mm_unpackhi_epi64(t0, t2);
  r[2] = _mm_unpacklo_epi64(t1, t3);
  r[3] = _mm_unpackhi_epi64(t1, t3);
}

__attribute__((target("sse4.1"))) void Hash4Sse41(const uint8_t* const* inputs, size_t blocks,
                                                  uint64_t counter, bool increment_counter,
                                                  uint8_t flags, uint8_t flags_start,
                                                  uint8_t flags_end, uint8_t* out) {
  __m128i h[8];
  RFS_UNROLL
  for (int i = 0; i < 8; ++i) h[i] = _mm_set1_epi32(static_cast<int>(kIv[i]));
  uint32_t lo[4], hi[4];
  RFS_UNROLL
  for (uint32_t i = 0; i < 4; ++i) {
    const uint64_t c = counter + (increment_counter ? i : 0);
    lo[i] = static_cast<uint32_t>(c);
    hi[i] = static_cast<uint32_t>(c >> 32);
  }
  const __m128i counter_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo));
  const __m128i counter_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi));
  uint8_t block_flags = flags | flags_start;
  for (size_t b = 0; b < blocks; ++b) {
    if (b + 1 == blocks) block_flags |= flags_end;
    // m[4k + i] starts as words 4k..4k+3 of lane i; transposing each group
    // of four makes m[j] word j of every lane.
    __m128i m[16];
    RFS_UNROLL
    for (int k = 0; k < 4; ++k) {
      RFS_UNROLL
      for (int i = 0; i < 4; ++i) {
        if (k == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(inputs[i] + (b + 4) * kBlockLen), _MM_HINT_T0);
        }
        m[4 * k + i] =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(inputs[i] + b * kBlockLen + 16 * k));
      }
      Transpose4(m + 4 * k);
    }
    __m128i v[16];
    RFS_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = h[i];
    RFS_UNROLL
    for (int i = 0; i < 4; ++i) v[8 + i] = _mm_set1_epi32(static_cast<int>(kIv[i]));
    v[12] = counter_lo;
    v[13] = counter_hi;
    v[14] = _mm_set1_epi32(static_cast<int>(kBlockLen));
    v[15] = _mm_set1_epi32(block_flags);
    Round4(v, m, 0);
    Round4(v, m, 1);
    Round4(v, m, 2);
    Round4(v, m, 3);
    Round4(v, m, 4);
    Round4(v, m, 5);
    Round4(v, m, 6);
    RFS_UNROLL
    for (int i = 0; i < 8; ++i) h[i] = Xor4(v[i], v[i + 8]);
    block_flags = flags;
  }
  // Back from word-per-vector to lane-per-vector: lane i's 8 words.
  Transpose4(h);
  Transpose4(h + 4);
  RFS_UNROLL
  for (int i = 0; i < 4; ++i) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * i), h[i]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 32 * i + 16), h[4 + i]);
  }
}

// --- AVX2, 8 lanes ---------------------------------------------------------

RFS_AVX2 __m256i Add8(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }
RFS_AVX2 __m256i Xor8(__m256i a, __m256i b) { return _mm256_xor_si256(a, b); }
RFS_AVX2 __m256i Rot16x8(__m256i x) {
  return _mm256_shuffle_epi8(
      x, _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4,
                          5, 10, 11, 8, 9, 14, 15, 12, 13));
}
RFS_AVX2 __m256i Rot12x8(__m256i x) {
  return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}
RFS_AVX2 __m256i Rot8x8(__m256i x) {
  return _mm256_shuffle_epi8(
      x, _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0, 5, 6, 7,
                          4, 9, 10, 11, 8, 13, 14, 15, 12));
}
RFS_AVX2 __m256i Rot7x8(__m256i x) {
  return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

RFS_AVX2 void G8(__m256i& a, __m256i& b, __m256i& c, __m256i& d, __m256i mx, __m256i my) {
  a = Add8(Add8(a, b), mx);
  d = Rot16x8(Xor8(d, a));
  c = Add8(c, d);
  b = Rot12x8(Xor8(b, c));
  a = Add8(Add8(a, b), my);
  d = Rot8x8(Xor8(d, a));
  c = Add8(c, d);
  b = Rot7x8(Xor8(b, c));
}

RFS_AVX2 void Round8(__m256i v[16], const __m256i m[16], size_t r) {
  const auto& s = kMsgSchedule[r];
  G8(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
  G8(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
  G8(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
  G8(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
  G8(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
  G8(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
  G8(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
  G8(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
}

// Transposes an 8x8 matrix of 32-bit words held as 8 row vectors.
RFS_AVX2 void Transpose8(__m256i r[8]) {
  // Pairs of rows interleaved by word, then by word pair; each 128-bit half
  // then holds a 4x4 block of the result, which the lane permutes put in place.
  __m256i t[8], u[8];
  RFS_UNROLL
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  RFS_UNROLL
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);  // words 0 | 4
    u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);  // words 1 | 5
    u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);  // words 2 | 6
    u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);  // words 3 | 7
  }
  RFS_UNROLL
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
    r[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
  }
}

__attribute__((target("avx2"))) void Hash8Avx2(const uint8_t* const* inputs, size_t blocks,
                                               uint64_t counter, bool increment_counter,
                                               uint8_t flags, uint8_t flags_start,
                                               uint8_t flags_end, uint8_t* out) {
  __m256i h[8];
  RFS_UNROLL
  for (int i = 0; i < 8; ++i) h[i] = _mm256_set1_epi32(static_cast<int>(kIv[i]));
  uint32_t lo[8], hi[8];
  RFS_UNROLL
  for (uint32_t i = 0; i < 8; ++i) {
    const uint64_t c = counter + (increment_counter ? i : 0);
    lo[i] = static_cast<uint32_t>(c);
    hi[i] = static_cast<uint32_t>(c >> 32);
  }
  const __m256i counter_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo));
  const __m256i counter_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi));
  uint8_t block_flags = flags | flags_start;
  for (size_t b = 0; b < blocks; ++b) {
    if (b + 1 == blocks) block_flags |= flags_end;
    // m[i] and m[8 + i] start as the two halves of lane i's block.
    __m256i m[16];
    RFS_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint8_t* p = inputs[i] + b * kBlockLen;
      // Eight (or four) input streams are more than the hardware prefetcher
      // follows reliably; ask for the data four blocks ahead.
      _mm_prefetch(reinterpret_cast<const char*>(p + 4 * kBlockLen), _MM_HINT_T0);
      m[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      m[8 + i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    }
    Transpose8(m);
    Transpose8(m + 8);
    __m256i v[16];
    RFS_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = h[i];
    RFS_UNROLL
    for (int i = 0; i < 4; ++i) v[8 + i] = _mm256_set1_epi32(static_cast<int>(kIv[i]));
    v[12] = counter_lo;
    v[13] = counter_hi;
    v[14] = _mm256_set1_epi32(static_cast<int>(kBlockLen));
    v[15] = _mm256_set1_epi32(block_flags);
    Round8(v, m, 0);
    Round8(v, m, 1);
    Round8(v, m, 2);
    Round8(v, m, 3);
    Round8(v, m, 4);
    Round8(v, m, 5);
    Round8(v, m, 6);
    RFS_UNROLL
    for (int i = 0; i < 8; ++i) h[i] = Xor8(v[i], v[i + 8]);
    block_flags = flags;
  }
  Transpose8(h);
  RFS_UNROLL
  for (int i = 0; i < 8; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * i), h[i]);
}

// --- Dispatch over lane groups ----------------------------------------------

using HashLanesFn = void (*)(const uint8_t* const* inputs, size_t blocks, uint64_t counter,
                             bool increment_counter, uint8_t flags, uint8_t flags_start,
                             uint8_t flags_end, uint8_t* out);

// Runs `lanes` inputs of the `n` < lanes left over by filling the idle lanes
// with copies of the last input and dropping their outputs. The counters of
// the extra lanes do not matter since their outputs are dropped.
template <size_t kLanes>
void HashPadded(HashLanesFn fn, const uint8_t* const* inputs, size_t n, size_t blocks,
                uint64_t counter, bool increment_counter, uint8_t flags, uint8_t flags_start,
                uint8_t flags_end, uint8_t* out) {
  const uint8_t* padded[kLanes];
  for (size_t i = 0; i < kLanes; ++i) padded[i] = inputs[std::min(i, n - 1)];
  uint8_t tmp[kLanes * 32];
  fn(padded, blocks, counter, increment_counter, flags, flags_start, flags_end, tmp);
  std::memcpy(out, tmp, n * 32);
}

void HashManySse41(const uint8_t* const* inputs, size_t num_inputs, size_t blocks, uint64_t counter,
                   bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                   uint8_t* out) {
  while (num_inputs >= 4) {
    Hash4Sse41(inputs, blocks, counter, increment_counter, flags, flags_start, flags_end, out);
    inputs += 4;
    num_inputs -= 4;
    if (increment_counter) counter += 4;
    out += 4 * 32;
  }
  // One 4-lane pass costs less than two single-lane compressions.
  if (num_inputs >= 2) {
    HashPadded<4>(Hash4Sse41, inputs, num_inputs, blocks, counter, increment_counter, flags,
                  flags_start, flags_end, out);
  } else if (num_inputs == 1) {
    HashOnePortable(inputs[0], blocks, counter, flags, flags_start, flags_end, out);
  }
}

void HashManyAvx2(const uint8_t* const* inputs, size_t num_inputs, size_t blocks, uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t* out) {
  while (num_inputs >= 8) {
    Hash8Avx2(inputs, blocks, counter, increment_counter, flags, flags_start, flags_end, out);
    inputs += 8;
    num_inputs -= 8;
    if (increment_counter) counter += 8;
    out += 8 * 32;
  }
  if (num_inputs > 4) {
    HashPadded<8>(Hash8Avx2, inputs, num_inputs, blocks, counter, increment_counter, flags,
                  flags_start, flags_end, out);
  } else {
    HashManySse41(inputs, num_inputs, blocks, counter, increment_counter, flags, flags_start,
                  flags_end, out);
  }
}

#endif  // RFS_BLAKE3_X86

// ---------------------------------------------------------------------------
// Runtime dispatch.

struct Backend {
  const char* name;
  HashManyFn hash_many;
};

constexpr Backend kPortable{"portable", HashManyPortable};
#if RFS_BLAKE3_X86
constexpr Backend kSse41{"sse41", HashManySse41};
constexpr Backend kAvx2{"avx2", HashManyAvx2};
#endif

// Backends this CPU can run, slowest first.
std::vector<const Backend*> SupportedBackends() {
  std::vector<const Backend*> out = {&kPortable};
#if RFS_BLAKE3_X86
  // The builtins also check that the OS saves the vector registers.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.1")) {
    out.push_back(&kSse41);
    if (__builtin_cpu_supports("avx2")) out.push_back(&kAvx2);
  }
#endif
  return out;
}

const Backend* DefaultBackend() {
  // An escape hatch (and a way to run whole programs on the portable path).
  const char* force = std::getenv("RFS_BLAKE3_FORCE_PORTABLE");
  if (force != nullptr && *force != '\0' && std::strcmp(force, "0") != 0) return &kPortable;
  return SupportedBackends().back();
}

std::atomic<const Backend*>& BackendSlot() {
  static std::atomic<const Backend*> slot{DefaultBackend()};
  return slot;
}

const Backend& ActiveBackend() { return *BackendSlot().load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------
// Tree helpers.

// The input of one compression whose output is still to be decided: a
// chaining value for a parent, or the root's extendable output.
struct Output {
  uint32_t cv[8];
  uint8_t block[kBlockLen];
  uint64_t counter;
  uint8_t block_len;
  uint8_t flags;
};

void OutputCv(const Output& o, uint32_t cv[8]) {
  std::memcpy(cv, o.cv, sizeof(o.cv));
  CompressInPlace(cv, o.block, o.block_len, o.counter, o.flags);
}

void OutputRootBytes(const Output& o, MutableByteSpan out) {
  // Each output block is the full compression output with the ROOT flag and
  // the output block index as counter.
  uint64_t block_index = 0;
  uint8_t buf[kBlockLen];
  for (size_t pos = 0; pos < out.size(); pos += kBlockLen) {
    CompressXof(o.cv, o.block, o.block_len, block_index++, o.flags | kRoot, buf);
    std::memcpy(out.data() + pos, buf, std::min(kBlockLen, out.size() - pos));
  }
}

Output ParentOutput(const uint32_t left[8], const uint32_t right[8]) {
  Output o;
  std::memcpy(o.cv, kIv, sizeof(o.cv));
  for (size_t i = 0; i < 8; ++i) {
    StoreLe32(o.block + 4 * i, left[i]);
    StoreLe32(o.block + 32 + 4 * i, right[i]);
  }
  o.counter = 0;
  o.block_len = kBlockLen;
  o.flags = kParent;
  return o;
}

// Reduces the chaining values of the 2^k chunks of a complete subtree
// (32 bytes each, contiguous in cvs) to the subtree's chaining value, one
// tree level per HashMany call: two adjacent child values are exactly one
// parent block. `scratch` holds n / 2 values; cvs is overwritten.
void ReduceSubtree(const Backend& backend, uint8_t* cvs, size_t n, uint8_t* scratch,
                   uint32_t out[8]) {
  const uint8_t* parents[kMaxBatchChunks / 2];
  uint8_t* src = cvs;
  uint8_t* dst = scratch;
  while (n > 1) {
    n /= 2;
    for (size_t i = 0; i < n; ++i) parents[i] = src + 64 * i;
    backend.hash_many(parents, n, 1, 0, false, kParent, 0, 0, dst);
    std::swap(src, dst);
  }
  for (size_t i = 0; i < 8; ++i) out[i] = LoadLe32(src + 4 * i);
}

}  // namespace

// ---------------------------------------------------------------------------
// Blake3Hasher.

Blake3Hasher::Blake3Hasher() { Reset(); }

void Blake3Hasher::Reset() {
  StartChunk(0);
  cv_stack_len_ = 0;
}

void Blake3Hasher::StartChunk(uint64_t counter) {
  std::memcpy(chunk_.cv, kIv, sizeof(chunk_.cv));
  chunk_.counter = counter;
  chunk_.buf_len = 0;
  chunk_.blocks_compressed = 0;
}

size_t Blake3Hasher::ChunkUpdate(const uint8_t* data, size_t len) {
  const size_t take = std::min(len, kChunkLen - ChunkLen());
  const uint8_t* p = data;
  const uint8_t* const end = data + take;
  // A block is compressed only once a byte of this chunk follows it: the
  // chunk's last block needs the CHUNK_END flag (and maybe ROOT).
  while (p < end) {
    const uint8_t start_flag = chunk_.blocks_compressed == 0 ? kChunkStart : 0;
    if (chunk_.buf_len == kBlockLen) {
      CompressInPlace(chunk_.cv, chunk_.buf, kBlockLen, chunk_.counter, start_flag);
      ++chunk_.blocks_compressed;
      chunk_.buf_len = 0;
    } else if (chunk_.buf_len == 0 && static_cast<size_t>(end - p) > kBlockLen) {
      CompressInPlace(chunk_.cv, p, kBlockLen, chunk_.counter, start_flag);
      ++chunk_.blocks_compressed;
      p += kBlockLen;
    } else {
      const size_t n = std::min(kBlockLen - chunk_.buf_len, static_cast<size_t>(end - p));
      std::memcpy(chunk_.buf + chunk_.buf_len, p, n);
      chunk_.buf_len = static_cast<uint8_t>(chunk_.buf_len + n);
      p += n;
    }
  }
  return take;
}

void Blake3Hasher::MergeCvStack(uint64_t num_chunks) {
  // The complete subtrees of the first num_chunks chunks are those of the
  // binary digits of num_chunks, so popcount(num_chunks) entries remain.
  const size_t keep = static_cast<size_t>(std::popcount(num_chunks));
  while (cv_stack_len_ > keep) {
    const Output parent = ParentOutput(cv_stack_[cv_stack_len_ - 2], cv_stack_[cv_stack_len_ - 1]);
    OutputCv(parent, cv_stack_[cv_stack_len_ - 2]);
    --cv_stack_len_;
  }
}

void Blake3Hasher::PushCv(const uint32_t cv[8], uint64_t first_chunk) {
  // Lazy merging: the value pushed before this one was left unmerged in case
  // it was the last; this new value proves it was not, so merge it now.
  MergeCvStack(first_chunk);
  std::memcpy(cv_stack_[cv_stack_len_], cv, sizeof(cv_stack_[0]));
  ++cv_stack_len_;
}

void Blake3Hasher::HashWholeChunks(const uint8_t* data, size_t num_chunks) {
  const Backend& backend = ActiveBackend();
  uint64_t counter = chunk_.counter;
  const uint8_t* inputs[kMaxBatchChunks];
  uint8_t cvs[kMaxBatchChunks * 32];
  uint8_t scratch[kMaxBatchChunks / 2 * 32];
  while (num_chunks > 0) {
    const size_t batch = std::min(num_chunks, kMaxBatchChunks);
    for (size_t i = 0; i < batch; ++i) inputs[i] = data + i * kChunkLen;
    backend.hash_many(inputs, batch, kBlocksPerChunk, counter, true, 0, kChunkStart, kChunkEnd,
                      cvs);
    // Split the batch into the largest complete subtrees: power-of-two runs
    // of chunks whose first chunk index is a multiple of the run length.
    // These are subtrees of the final tree because more input follows them.
    size_t done = 0;
    while (done < batch) {
      const uint64_t first = counter + done;
      size_t run = std::bit_floor(batch - done);
      if (first != 0) run = static_cast<size_t>(std::min<uint64_t>(run, first & (~first + 1)));
      uint32_t cv[8];
      ReduceSubtree(backend, cvs + 32 * done, run, scratch, cv);
      PushCv(cv, first);
      done += run;
    }
    counter += batch;
    data += batch * kChunkLen;
    num_chunks -= batch;
  }
  StartChunk(counter);
}

void Blake3Hasher::Update(ByteSpan data) {
  const uint8_t* p = data.data();
  size_t len = data.size();
  while (len > 0) {
    if (ChunkLen() == kChunkLen) {
      // More input follows, so this full chunk is a leaf, not the root.
      Output o;
      std::memcpy(o.cv, chunk_.cv, sizeof(o.cv));
      std::memcpy(o.block, chunk_.buf, kBlockLen);
      o.counter = chunk_.counter;
      o.block_len = kBlockLen;
      o.flags = kChunkEnd;  // a full chunk has compressed 15 blocks already
      uint32_t cv[8];
      OutputCv(o, cv);
      PushCv(cv, chunk_.counter);
      StartChunk(chunk_.counter + 1);
    }
    if (ChunkLen() == 0 && len > kChunkLen) {
      // Whole chunks with input after them; at least one byte is kept back
      // for the chunk state, so the last chunk is never hashed as a leaf.
      const size_t n = (len - 1) / kChunkLen;
      HashWholeChunks(p, n);
      p += n * kChunkLen;
      len -= n * kChunkLen;
    }
    const size_t took = ChunkUpdate(p, len);
    p += took;
    len -= took;
    // The current chunk now holds input, so every stacked value has input
    // after it and can be merged; Finalize relies on a fully merged stack.
    MergeCvStack(chunk_.counter);
  }
}

void Blake3Hasher::Finalize(MutableByteSpan out) const {
  Output o;
  std::memcpy(o.cv, chunk_.cv, sizeof(o.cv));
  std::memset(o.block, 0, kBlockLen);  // the last block is zero-padded
  std::memcpy(o.block, chunk_.buf, chunk_.buf_len);
  o.counter = chunk_.counter;
  o.block_len = chunk_.buf_len;
  o.flags = kChunkEnd | (chunk_.blocks_compressed == 0 ? kChunkStart : 0);
  // The stack holds the complete subtrees before the current chunk, largest
  // first (Update merged it). Folding it from the top into the chunk's output
  // builds the right edge of the tree; the last fold is the root node.
  for (size_t i = cv_stack_len_; i > 0; --i) {
    uint32_t right[8];
    OutputCv(o, right);
    o = ParentOutput(cv_stack_[i - 1], right);
  }
  OutputRootBytes(o, out);
}

std::array<uint8_t, Blake3Hasher::kOutLen> Blake3Hasher::Finalize() const {
  std::array<uint8_t, kOutLen> out;
  Finalize(MutableByteSpan(out));
  return out;
}

const char* Blake3Hasher::Implementation() { return ActiveBackend().name; }

std::array<uint8_t, Blake3Hasher::kOutLen> Blake3(ByteSpan data) {
  Blake3Hasher h;
  h.Update(data);
  return h.Finalize();
}

std::vector<std::string_view> Blake3Implementations() {
  std::vector<std::string_view> names;
  for (const Backend* b : SupportedBackends()) names.push_back(b->name);
  return names;
}

bool SetBlake3ImplementationForTesting(std::string_view name) {
  for (const Backend* b : SupportedBackends()) {
    if (name == b->name) {
      BackendSlot().store(b, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

}  // namespace rfs::base
