// Registry mirrors end to end: two real docker-registry instances, a mirror
// and the origin, each behind a FaultProxy (to count requests, inject
// faults, or stop it), read through RegistryBackend + BlobDevice with a
// chunk cache. Reads must succeed with the source's bytes whichever host
// serves them, fall back from a failing mirror to the origin (counted), not
// contact the origin when the mirror serves, and not wait again for a
// mirror that refused connections a moment ago.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "base/metrics.h"
#include "storage/blob_device.h"
#include "storage/registry_backend.h"
#include "test/storage/test_blob.h"
#include "test/support/fault_proxy.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;
using std::chrono::milliseconds;
using testing::Fault;
using testing::FaultRule;
using Clock = std::chrono::steady_clock;

constexpr char kRepo[] = "mirrored/app";
constexpr uint32_t kChunk = 64u << 10;
constexpr int kChunks = 8;


class RegistryMirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
    auto origin = testing::LocalRegistry::Start(origin_dir_.path());
    ASSERT_TRUE(origin.ok()) << origin.status();
    origin_reg_ = std::move(*origin);
    auto mirror = testing::LocalRegistry::Start(mirror_dir_.path());
    ASSERT_TRUE(mirror.ok()) << mirror.status();
    mirror_reg_ = std::move(*mirror);
    blob_ = MakeBlob(kChunks, kChunk, 11);
    auto id = origin_reg_->PushBlob(kRepo, blob_.bytes);
    ASSERT_TRUE(id.ok()) << id.status();
    blob_.info.blob_id = *id;
    origin_ = StartProxy(*origin_reg_);
    mirror_ = StartProxy(*mirror_reg_);
  }

  static std::unique_ptr<testing::FaultProxy> StartProxy(const testing::LocalRegistry& reg,
                                                         bool bearer = false) {
    testing::FaultProxy::Options o;
    o.upstream = reg.host();
    o.bearer_tokens = bearer;
    auto p = testing::FaultProxy::Start(o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  void PushToMirror() {
    auto id = mirror_reg_->PushBlob(kRepo, blob_.bytes);
    ASSERT_TRUE(id.ok()) << id.status();
  }

  RegistryOptions Options(const std::string& mirror_origin) {
    RegistryOptions o;
    o.host = origin_->host();
    o.repository = kRepo;
    o.plain_http = true;
    o.retry.max_attempts = 3;
    o.retry.initial_backoff = milliseconds(10);
    o.retry.max_backoff = milliseconds(50);
    o.connect_timeout = milliseconds(2000);
    RegistryMirror m;
    m.origin = mirror_origin;
    m.host = mirror_origin.substr(mirror_origin.find("://") + 3);
    m.resolve = true;
    o.mirrors.push_back(m);
    o.metrics = &metrics_;
    return o;
  }

  void Open(RegistryOptions o) {
    device_.reset();
    auto backend = RegistryBackend::Create(std::move(o));
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *backend;
    FreshCache();
  }

  // An empty cache: every chunk is fetched again.
  void FreshCache() {
    device_.reset();
    cache_ = std::make_unique<testing::TempDir>();
    DeviceOptions d;
    d.cache_dir = cache_->path();
    d.metrics = &metrics_;
    auto dev = BlobDevice::Create(backend_, {blob_.info}, d);
    ASSERT_TRUE(dev.ok()) << dev.status();
    device_ = std::move(*dev);
  }

  // Reads chunks `which`; on success the bytes must be the source's.
  base::Status Read(const std::vector<int>& which) {
    IoContext ctx;
    ctx.deadline = base::Deadline::After(std::chrono::seconds(20));
    ChunkIoVec plan = PlanFor(blob_, which);
    std::vector<uint8_t> out(plan.total);
    const auto t0 = Clock::now();
    base::Status s = device_->Read(plan, out, ctx);
    elapsed_ = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
    if (s.ok()) {
      EXPECT_EQ(out, Concat(blob_, which)) << "wrong bytes for a successful read";
    }
    return s;
  }

  uint64_t Counter(const std::string& name, const base::Labels& labels = {}) {
    return metrics_.GetCounter(name, "", labels)->value();
  }
  uint64_t Fallbacks() { return Counter("rfs_registry_mirror_fallbacks_total"); }
  uint64_t Requests(const char* role) {
    return Counter("rfs_registry_requests_total", {{"role", role}});
  }

  testing::TempDir origin_dir_, mirror_dir_;
  std::unique_ptr<testing::LocalRegistry> origin_reg_, mirror_reg_;
  std::unique_ptr<testing::FaultProxy> origin_, mirror_;
  TestBlob blob_;
  base::MetricsRegistry metrics_;
  std::shared_ptr<RegistryBackend> backend_;
  std::unique_ptr<testing::TempDir> cache_;
  std::unique_ptr<BlobDevice> device_;
  milliseconds elapsed_{0};
};

TEST_F(RegistryMirrorTest, BlobOnlyOnTheOriginFallsBack) {
  Open(Options(mirror_->origin()));
  ASSERT_TRUE(Read({0, 1, 2}).ok());
  EXPECT_EQ(mirror_->Count("/blobs/"), 1) << "the mirror is asked first";
  EXPECT_EQ(origin_->Count("/blobs/"), 1);
  EXPECT_EQ(Fallbacks(), 1u);
  EXPECT_EQ(Requests("mirror"), 1u);
  EXPECT_EQ(Requests("origin"), 1u);
  // containerd's convention: the mirror learns which registry is meant.
  const auto seen = mirror_->Requests();
  ASSERT_FALSE(seen.empty());
  EXPECT_NE(seen[0].path.find("/v2/mirrored/app/blobs/sha256:" + blob_.info.blob_id +
                              "?ns=127.0.0.1%3A"),
            std::string::npos)
      << seen[0].path;
  // A 404 says nothing about the mirror's health: it is asked again.
  ASSERT_TRUE(Read({5}).ok());
  EXPECT_EQ(mirror_->Count("/blobs/"), 2);
  EXPECT_EQ(Fallbacks(), 2u);
  // Mirror server errors and truncated bodies fall back too, never wrong bytes.
  FaultRule err = testing::OnBlobGets(Fault::Kind::kStatus);
  err.fault.status = 500;
  mirror_->AddRule(err);
  ASSERT_TRUE(Read({6}).ok());
  EXPECT_EQ(Fallbacks(), 3u);
}

TEST_F(RegistryMirrorTest, MirrorServingTheBlobLeavesTheOriginAlone) {
  PushToMirror();
  Open(Options(mirror_->origin()));
  ASSERT_TRUE(Read({0, 1}).ok());
  EXPECT_EQ(origin_->Count(), 0);
  EXPECT_EQ(mirror_->Count("/blobs/"), 1);
  // Stop the origin: every read still works, through the mirror alone.
  origin_.reset();
  ASSERT_TRUE(Read({2, 3, 4, 5, 6, 7}).ok());
  FreshCache();
  ASSERT_TRUE(Read({0, 1, 2, 3, 4, 5, 6, 7}).ok());
  EXPECT_EQ(Fallbacks(), 0u);
  EXPECT_EQ(Requests("origin"), 0u);
  EXPECT_GE(Requests("mirror"), 3u);
  auto reader = backend_->Open(blob_.info.blob_id);
  ASSERT_TRUE(reader.ok());
  auto size = (*reader)->Size();
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, blob_.bytes.size());
}

TEST_F(RegistryMirrorTest, ManifestsFromAMirrorThatResolves) {
  // A nydus image on the mirror only, the origin down.
  std::vector<testing::TreeEntry> tree(2);
  tree[0].path = "/";
  tree[0].mode = S_IFDIR | 0755;
  tree[1].path = "/f";
  tree[1].mode = S_IFREG | 0644;
  tree[1].data = "mirrored\n";
  auto image = testing::WriteImage(tree, testing::WriterOptions{});
  ASSERT_TRUE(image.ok()) << image.status();
  testing::PushOptions po;
  po.tag = "v1";
  auto pushed = testing::PushNydusImage(*mirror_reg_, kRepo, *image, po);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  RegistryOptions o = Options(mirror_->origin());
  origin_.reset();
  auto backend = *RegistryBackend::Create(o);
  IoContext ctx;
  ctx.deadline = base::Deadline::After(std::chrono::seconds(20));
  for (const std::string& ref : {std::string("v1"), pushed->manifest_digest}) {
    auto m = backend->GetManifest(ref, ctx);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->digest, pushed->manifest_digest);
  }
  EXPECT_EQ(mirror_->Count("/manifests/"), 2);
  // Without the resolve capability manifests come from the origin only.
  o.mirrors[0].resolve = false;
  auto pull_only = *RegistryBackend::Create(o);
  auto m = pull_only->GetManifest("v1", ctx);
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable) << m.status();
  EXPECT_EQ(mirror_->Count("/manifests/"), 2);
}

TEST_F(RegistryMirrorTest, DeadMirrorIsSkippedQuicklyAndForAWhile) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  RegistryOptions o = Options(dead);
  o.mirror_retry_after = milliseconds(1500);
  Open(o);
  ASSERT_TRUE(Read({0}).ok());
  EXPECT_LT(elapsed_, milliseconds(1000)) << "connection refused is no timeout";
  EXPECT_EQ(Fallbacks(), 1u);
  EXPECT_EQ(origin_->Count("/blobs/"), 1);
  // The next reads go straight to the origin: no new fallback.
  const auto t0 = Clock::now();
  ASSERT_TRUE(Read({2}).ok());
  ASSERT_TRUE(Read({4}).ok());
  EXPECT_EQ(Fallbacks(), 1u);
  EXPECT_EQ(Requests("mirror"), 1u);
  EXPECT_EQ(origin_->Count("/blobs/"), 3);
  // Once the while has passed the mirror is tried again (still dead).
  std::this_thread::sleep_until(t0 + milliseconds(1600));
  ASSERT_TRUE(Read({6}).ok());
  EXPECT_EQ(Fallbacks(), 2u);
  EXPECT_EQ(Requests("mirror"), 2u);
}

TEST_F(RegistryMirrorTest, FlippedByteFromTheMirrorIsRefetchedFromTheOrigin) {
  PushToMirror();
  Open(Options(mirror_->origin()));
  // The mirror corrupts every answer: chunk verification catches it and
  // the chunk is fetched again from the origin.
  FaultRule flip = testing::OnBlobGets(Fault::Kind::kFlipByte, -1);
  flip.fault.bytes = blob_.chunks[1].compressed_offset + 5;  // inside chunk 1
  mirror_->AddRule(flip);
  ASSERT_TRUE(Read({0, 1, 2}).ok());
  EXPECT_EQ(mirror_->Count("/blobs/"), 1);
  EXPECT_EQ(origin_->Count("/blobs/"), 1) << "chunk 1 alone, from the origin";
  const auto seen = origin_->Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].headers.at("range"),
            "bytes=" + std::to_string(blob_.chunks[1].compressed_offset) + "-" +
                std::to_string(blob_.chunks[1].compressed_offset +
                               blob_.chunks[1].compressed_size - 1));
  // Every chunk it sends is bad: all read correctly all the same.
  mirror_->ClearRules();
  flip.fault.bytes = 3;
  mirror_->AddRule(flip);
  for (int i = 3; i < kChunks; ++i) ASSERT_TRUE(Read({i}).ok()) << i;
  EXPECT_EQ(origin_->Count("/blobs/"), 1 + kChunks - 3);
  // The good chunks were cached: read again, nothing is fetched.
  const int before = mirror_->Count() + origin_->Count();
  ASSERT_TRUE(Read({0, 1, 2, 3, 4, 5, 6, 7}).ok());
  EXPECT_EQ(mirror_->Count() + origin_->Count(), before);
}

TEST_F(RegistryMirrorTest, EachHostHasItsOwnTokenAndCredentials) {
  PushToMirror();
  // Both demand bearer tokens; each token endpoint checks its own user, so
  // a token from either proves that host's credentials were sent to it.
  testing::FaultProxy::Options mo;
  mo.upstream = mirror_reg_->host();
  mo.bearer_tokens = true;
  mo.token_user = "mirror-user";
  mo.token_password = "mirror-pass";
  mirror_ = std::move(*testing::FaultProxy::Start(mo));
  testing::FaultProxy::Options oo;
  oo.upstream = origin_reg_->host();
  oo.bearer_tokens = true;
  oo.token_user = "origin-user";
  oo.token_password = "origin-pass";
  origin_ = std::move(*testing::FaultProxy::Start(oo));
  auto creds = std::make_shared<StaticCredentials>();
  creds->Set(mirror_->host(), Credential{"mirror-user", "mirror-pass", ""});
  creds->Set(origin_->host(), Credential{"origin-user", "origin-pass", ""});
  RegistryOptions o = Options(mirror_->origin());
  o.credentials = creds;
  Open(o);
  ASSERT_TRUE(Read({0}).ok());
  EXPECT_EQ(mirror_->token_requests(), 1);
  EXPECT_EQ(origin_->token_requests(), 0);
  // The mirror loses the blob: the origin answers, with its own token.
  FaultRule gone = testing::OnBlobGets(Fault::Kind::kStatus, -1);
  gone.fault.status = 404;
  mirror_->AddRule(gone);
  ASSERT_TRUE(Read({1}).ok());
  ASSERT_TRUE(Read({2}).ok());
  EXPECT_EQ(origin_->token_requests(), 1);
  EXPECT_EQ(mirror_->token_requests(), 1) << "the mirror's token is still cached";
  // A mirror whose challenge we cannot answer (no credentials for it) is
  // skipped like any other failure.
  mirror_->ClearRules();
  auto origin_only = std::make_shared<StaticCredentials>();
  origin_only->Set(origin_->host(), Credential{"origin-user", "origin-pass", ""});
  o.credentials = origin_only;
  Open(o);
  const uint64_t fallbacks = Fallbacks();
  ASSERT_TRUE(Read({3}).ok());
  EXPECT_EQ(Fallbacks(), fallbacks + 1);
}

}  // namespace
}  // namespace rfs::storage
