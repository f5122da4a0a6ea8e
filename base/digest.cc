#include "base/digest.h"

#include <openssl/evp.h>

#include "base/blake3.h"

namespace rfs::base {

std::string_view DigestAlgoName(DigestAlgo algo) {
  switch (algo) {
    case DigestAlgo::kBlake3: return "blake3";
    case DigestAlgo::kSha256: return "sha256";
  }
  return "unknown";
}

Result<DigestAlgo> ParseDigestAlgo(std::string_view name) {
  if (name == "blake3") return DigestAlgo::kBlake3;
  if (name == "sha256") return DigestAlgo::kSha256;
  return InvalidArgumentError("unknown digester '", name, "' (want blake3 or sha256)");
}

namespace {

class Sha256Hasher final : public Hasher {
 public:
  Sha256Hasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256Hasher() override { EVP_MD_CTX_free(ctx_); }
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(ByteSpan data) override { EVP_DigestUpdate(ctx_, data.data(), data.size()); }
  Digest Finish() override {
    Digest d{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, d.data(), &len);
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
    return d;
  }

 private:
  EVP_MD_CTX* ctx_;
};

class Blake3DigestHasher final : public Hasher {
 public:
  void Update(ByteSpan data) override { h_.Update(data); }
  Digest Finish() override {
    Digest d = h_.Finalize();
    h_.Reset();
    return d;
  }

 private:
  Blake3Hasher h_;
};

}  // namespace

Digest Sha256(ByteSpan data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

Digest ComputeDigest(DigestAlgo algo, ByteSpan data) {
  if (algo == DigestAlgo::kSha256) return Sha256(data);
  return Blake3(data);
}

std::unique_ptr<Hasher> Hasher::Create(DigestAlgo algo) {
  if (algo == DigestAlgo::kSha256) return std::make_unique<Sha256Hasher>();
  return std::make_unique<Blake3DigestHasher>();
}

}  // namespace rfs::base
