#include "storage/codec.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <random>
#include <vector>

namespace rfs::storage {
namespace {

using base::StatusCode;

std::vector<uint8_t> Sample(size_t n, uint32_t seed, bool compressible) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = compressible ? static_cast<uint8_t>("abcabcabd"[i % 9] + (rng() % 50 == 0))
                        : static_cast<uint8_t>(rng());
  }
  return v;
}

const Compressor kAll[] = {Compressor::kNone, Compressor::kLz4Block, Compressor::kGzip,
                           Compressor::kZstd};

TEST(CodecTest, RoundTripAllSizes) {
  for (Compressor c : kAll) {
    for (size_t n : {0u, 1u, 100u, 4096u, 65537u, 1u << 20}) {
      for (bool comp : {true, false}) {
        auto in = Sample(n, static_cast<uint32_t>(n), comp);
        auto packed = Compress(c, in);
        ASSERT_TRUE(packed.ok()) << CompressorName(c);
        if (c != Compressor::kNone && comp && n >= 4096) {
          EXPECT_LT(packed->size(), n / 2) << CompressorName(c);
        }
        std::vector<uint8_t> out(n);
        ASSERT_TRUE(Decompress(c, *packed, out).ok()) << CompressorName(c) << " " << n;
        EXPECT_EQ(out, in);
      }
    }
  }
}

TEST(CodecTest, SizeMismatchIsDataLoss) {
  auto in = Sample(10000, 1, true);
  for (Compressor c : kAll) {
    auto packed = Compress(c, in);
    ASSERT_TRUE(packed.ok());
    std::vector<uint8_t> small(9999), big(10001);
    EXPECT_EQ(Decompress(c, *packed, small).code(), StatusCode::kDataLoss) << CompressorName(c);
    EXPECT_EQ(Decompress(c, *packed, big).code(), StatusCode::kDataLoss) << CompressorName(c);
  }
}

TEST(CodecTest, BombIsDataLossWithoutOverflow) {
  // 64 MiB of zeros compresses to a few KiB; decoding into a 1 MiB buffer
  // must stop at the buffer and report kDataLoss.
  std::vector<uint8_t> zeros(64u << 20);
  for (Compressor c : {Compressor::kLz4Block, Compressor::kGzip, Compressor::kZstd}) {
    auto packed = Compress(c, zeros);
    ASSERT_TRUE(packed.ok());
    std::vector<uint8_t> out((1u << 20) + 64, 0xEE);
    auto s = Decompress(c, *packed, base::MutableByteSpan(out.data(), 1u << 20));
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << CompressorName(c);
    for (size_t i = 1u << 20; i < out.size(); ++i) ASSERT_EQ(out[i], 0xEE) << "overflow";
  }
}

TEST(CodecTest, ZstdFrameWithoutContentSizeStillBounded) {
  // A streamed frame has no content size in its header.
  std::vector<uint8_t> zeros(8u << 20);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  std::vector<uint8_t> packed(ZSTD_compressBound(zeros.size()));
  ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
  ZSTD_outBuffer outb{packed.data(), packed.size(), 0};
  ASSERT_EQ(ZSTD_compressStream2(cctx, &outb, &in, ZSTD_e_end), 0u);
  ZSTD_freeCCtx(cctx);
  packed.resize(outb.pos);
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(Decompress(Compressor::kZstd, packed, out).code(), StatusCode::kDataLoss);
  std::vector<uint8_t> exact(zeros.size());
  EXPECT_TRUE(Decompress(Compressor::kZstd, packed, exact).ok());
}

TEST(CodecTest, CorruptAndTruncatedInput) {
  auto in = Sample(50000, 3, false);
  for (Compressor c : {Compressor::kLz4Block, Compressor::kGzip, Compressor::kZstd}) {
    auto packed = *Compress(c, in);
    std::vector<uint8_t> out(in.size());
    std::vector<uint8_t> truncated(packed.begin(), packed.end() - 7);
    EXPECT_EQ(Decompress(c, truncated, out).code(), StatusCode::kDataLoss) << CompressorName(c);
    std::vector<uint8_t> trailing = packed;
    trailing.push_back(0);
    trailing.push_back(1);
    EXPECT_EQ(Decompress(c, trailing, out).code(), StatusCode::kDataLoss) << CompressorName(c);
    std::vector<uint8_t> garbage = Sample(300, 9, false);
    EXPECT_EQ(Decompress(c, garbage, out).code(), StatusCode::kDataLoss) << CompressorName(c);
  }
}

TEST(CodecTest, Names) {
  EXPECT_EQ(*ParseCompressor("zstd"), Compressor::kZstd);
  EXPECT_EQ(*ParseCompressor("lz4_block"), Compressor::kLz4Block);
  EXPECT_EQ(ParseCompressor("brotli").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*CompressorFromCode(3), Compressor::kZstd);
  EXPECT_EQ(CompressorFromCode(4).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace rfs::storage
