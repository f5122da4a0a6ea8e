#include "base/digest.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace rfs::base {
namespace {

TEST(DigestTest, Sha256KnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(DigestHex(Sha256(AsBytes(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestHex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, IncrementalMatchesOneShot) {
  std::mt19937 rng(7);
  std::vector<uint8_t> data(300000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (DigestAlgo algo : {DigestAlgo::kSha256, DigestAlgo::kBlake3}) {
    auto h = Hasher::Create(algo);
    size_t pos = 0;
    while (pos < data.size()) {
      size_t n = std::min<size_t>(data.size() - pos, rng() % 5000);
      h->Update(ByteSpan(data.data() + pos, n));
      pos += n;
    }
    Digest inc = h->Finish();
    EXPECT_EQ(inc, ComputeDigest(algo, data)) << DigestAlgoName(algo);
    // Finish resets: hashing again gives the same digest.
    h->Update(data);
    EXPECT_EQ(h->Finish(), inc);
  }
}

TEST(DigestTest, Names) {
  EXPECT_EQ(*ParseDigestAlgo("blake3"), DigestAlgo::kBlake3);
  EXPECT_EQ(*ParseDigestAlgo("sha256"), DigestAlgo::kSha256);
  EXPECT_EQ(ParseDigestAlgo("md5").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rfs::base
