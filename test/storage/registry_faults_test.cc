// RegistryBackend + BlobDevice (with a chunk cache) against a real
// docker-registry behind a FaultProxy, one fault at a time. For each: the
// documented outcome (recovered by a retry, or kUnavailable / kDataLoss /
// kDeadlineExceeded / kUnauthenticated), bytes that equal the source
// whenever a read succeeds, no read outliving its deadline (measured), and
// no chunk marked ready in the cache when its bytes were wrong.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/digest.h"
#include "base/logging.h"
#include "storage/blob_cache.h"
#include "storage/blob_device.h"
#include "storage/registry_backend.h"
#include "test/storage/test_blob.h"
#include "test/support/fault_proxy.h"
#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;
using std::chrono::milliseconds;
using testing::Fault;
using testing::FaultRule;
using Clock = std::chrono::steady_clock;

constexpr char kRepo[] = "faults/app";
constexpr uint32_t kChunk = 64u << 10;
constexpr int kChunks = 8;


milliseconds Since(Clock::time_point t0) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
}

class RegistryFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(testing::FaultProxy::Options{}); }

  void Start(testing::FaultProxy::Options proxy_options, bool credentials = false) {
    if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
    proxy_.reset();
    if (reg_ == nullptr) {
      auto reg = testing::LocalRegistry::Start(regdir_.path());
      ASSERT_TRUE(reg.ok()) << reg.status();
      reg_ = std::move(*reg);
      blob_ = MakeBlob(kChunks, kChunk, 7);
      auto id = reg_->PushBlob(kRepo, blob_.bytes);
      ASSERT_TRUE(id.ok()) << id.status();
      blob_.info.blob_id = *id;
    }
    proxy_options.upstream = reg_->host();
    auto proxy = testing::FaultProxy::Start(proxy_options);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    RegistryOptions o;
    o.host = proxy_->host();
    o.repository = kRepo;
    o.plain_http = true;
    o.retry.max_attempts = 4;
    o.retry.initial_backoff = milliseconds(10);
    o.retry.max_backoff = milliseconds(100);
    if (credentials) {
      auto creds = std::make_shared<StaticCredentials>();
      creds->Set(proxy_->host(), Credential{"dora", "t0ken-pass", ""});
      o.credentials = creds;
    }
    backend_ = *RegistryBackend::Create(o);
    OpenDevice();
  }

  // An empty cache: every chunk is fetched again.
  void FreshCache() {
    device_.reset();
    cache_ = std::make_unique<testing::TempDir>();
    OpenDevice();
  }

  void OpenDevice() {
    device_.reset();
    DeviceOptions d;
    d.cache_dir = cache_->path();
    auto dev = BlobDevice::Create(backend_, {blob_.info}, d);
    ASSERT_TRUE(dev.ok()) << dev.status();
    device_ = std::move(*dev);
  }

  // Reads chunks `which` within `deadline`; on success the bytes must be
  // the source's.
  base::Status Read(const std::vector<int>& which, milliseconds deadline = milliseconds(20000)) {
    IoContext ctx;
    ctx.deadline = base::Deadline::After(deadline);
    ChunkIoVec plan = PlanFor(blob_, which);
    std::vector<uint8_t> out(plan.total);
    const auto t0 = Clock::now();
    base::Status s = device_->Read(plan, out, ctx);
    elapsed_ms_ = Since(t0).count();
    if (s.ok()) {
      EXPECT_EQ(out, Concat(blob_, which)) << "wrong bytes for a successful read";
    }
    return s;
  }

  // Whether the cache has chunk `index` marked ready (closes the device so
  // the map is flushed, then reopens it).
  bool ReadyOnDisk(uint32_t index) {
    device_.reset();
    auto cache = BlobCache::Open(cache_->path(), blob_.info);
    EXPECT_TRUE(cache.ok()) << cache.status();
    bool ready = cache.ok() && (*cache)->IsReady(index);
    cache->reset();
    OpenDevice();
    return ready;
  }

  testing::TempDir regdir_;
  std::unique_ptr<testing::TempDir> cache_ = std::make_unique<testing::TempDir>();
  std::unique_ptr<testing::LocalRegistry> reg_;
  std::unique_ptr<testing::FaultProxy> proxy_;
  TestBlob blob_;
  std::shared_ptr<RegistryBackend> backend_;
  std::unique_ptr<BlobDevice> device_;
  std::atomic<int64_t> elapsed_ms_{0};  // of the last Read
  milliseconds last_elapsed() const { return milliseconds(elapsed_ms_.load()); }
};

TEST_F(RegistryFaultsTest, NoFaultsReadsAndCaches) {
  ASSERT_TRUE(Read({0, 1, 2}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), 1) << "adjacent chunks in one range request";
  ASSERT_TRUE(Read({0, 1, 2}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), 1) << "served from the cache";
  for (const auto& r : proxy_->Requests()) {
    EXPECT_EQ(r.headers.at("range").rfind("bytes=0-", 0), 0u) << "Range forwarded";
  }
  EXPECT_TRUE(ReadyOnDisk(2));
}

TEST_F(RegistryFaultsTest, PlanMatchesByMethodPathAndCount) {
  // Let the first blob request through, fail the second, then nothing.
  FaultRule r = testing::OnBlobGets(Fault::Kind::kStatus);
  r.skip = 1;
  r.fault.status = 503;
  proxy_->AddRule(r);
  FaultRule other = testing::OnBlobGets(Fault::Kind::kStatus, -1);
  other.path_contains = "/manifests/";  // never matches a blob read
  proxy_->AddRule(other);
  FaultRule head = testing::OnBlobGets(Fault::Kind::kStatus, -1);
  head.method = "HEAD";
  proxy_->AddRule(head);
  ASSERT_TRUE(Read({0}).ok());
  ASSERT_TRUE(Read({2}).ok());
  ASSERT_TRUE(Read({4}).ok());
  const auto seen = proxy_->Requests();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].fault, "");
  EXPECT_EQ(seen[1].fault, "status");
  EXPECT_EQ(seen[2].fault, "");
  EXPECT_EQ(seen[3].fault, "");
  EXPECT_EQ(proxy_->faults_applied(), 1);
}

TEST_F(RegistryFaultsTest, ServerErrorBurstsAreRetriedThenUnavailable) {
  FaultRule r = testing::OnBlobGets(Fault::Kind::kStatus, 2);
  r.fault.status = 503;
  proxy_->AddRule(r);
  ASSERT_TRUE(Read({0, 1}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), 3);
  // 500 that does not stop: kUnavailable after the policy's 4 attempts.
  proxy_->ClearRules();
  r.fault.status = 500;
  r.times = -1;
  proxy_->AddRule(r);
  base::Status s = Read({3});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("registry error (500)"), std::string::npos) << s;
  EXPECT_EQ(proxy_->Count("/blobs/"), 3 + 4);
  EXPECT_LT(last_elapsed(), milliseconds(5000));
  EXPECT_FALSE(ReadyOnDisk(3));
  proxy_->ClearRules();
  ASSERT_TRUE(Read({3}).ok());
}

TEST_F(RegistryFaultsTest, TooManyRequestsHonoursRetryAfterWithinTheDeadline) {
  FaultRule r = testing::OnBlobGets(Fault::Kind::kStatus);
  r.fault.status = 429;
  r.fault.retry_after = "1";
  proxy_->AddRule(r);
  ASSERT_TRUE(Read({0}).ok());
  EXPECT_GE(last_elapsed(), milliseconds(1000)) << "Retry-After: 1 was not honoured";
  EXPECT_EQ(proxy_->Count("/blobs/"), 2);
  // Retry-After longer than the deadline: no sleeping past it.
  proxy_->ClearRules();
  r.fault.retry_after = "30";
  r.times = -1;
  proxy_->AddRule(r);
  base::Status s = Read({1}, milliseconds(1500));
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded)
      << s;
  EXPECT_LT(last_elapsed(), milliseconds(1500 + 1000));
  EXPECT_FALSE(ReadyOnDisk(1));
}

TEST_F(RegistryFaultsTest, BodiesCutOrShortAreRetried) {
  for (Fault::Kind kind : {Fault::Kind::kCutBody, Fault::Kind::kShortBody}) {
    SCOPED_TRACE(static_cast<int>(kind));
    OpenDevice();
    proxy_->ClearRules();
    FaultRule r = testing::OnBlobGets(kind);
    r.fault.bytes = kind == Fault::Kind::kCutBody ? 1000 : 10;
    proxy_->AddRule(r);
    const int before = proxy_->Count("/blobs/");
    const int first = kind == Fault::Kind::kCutBody ? 0 : 4;
    ASSERT_TRUE(Read({first, first + 1}).ok());
    EXPECT_EQ(proxy_->Count("/blobs/"), before + 2);
    // Every answer broken: kUnavailable, nothing cached.
    proxy_->ClearRules();
    r.times = -1;
    proxy_->AddRule(r);
    base::Status s = Read({first + 2});
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
    EXPECT_FALSE(ReadyOnDisk(static_cast<uint32_t>(first + 2)));
  }
  // Cut right after the headers.
  proxy_->ClearRules();
  FaultRule r = testing::OnBlobGets(Fault::Kind::kCutBody);
  r.fault.bytes = 0;
  proxy_->AddRule(r);
  ASSERT_TRUE(Read({7}).ok());
}

TEST_F(RegistryFaultsTest, ChunksThatArrivedBeforeACutAreKept) {
  // Every answer is cut after chunks 0 and 1 of a four-chunk range: the
  // read fails, but those two were verified and cached as they arrived,
  // and reading them later costs no request.
  proxy_->ClearRules();
  FaultRule r = testing::OnBlobGets(Fault::Kind::kCutBody, -1);
  r.fault.bytes = blob_.chunks[2].compressed_offset + 10;
  proxy_->AddRule(r);
  base::Status s = Read({0, 1, 2, 3});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_TRUE(ReadyOnDisk(0));
  EXPECT_TRUE(ReadyOnDisk(1));
  EXPECT_FALSE(ReadyOnDisk(2));
  EXPECT_FALSE(ReadyOnDisk(3));
  proxy_->ClearRules();
  const int before = proxy_->Count("/blobs/");
  ASSERT_TRUE(Read({0, 1}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), before);
  ASSERT_TRUE(Read({2, 3}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), before + 1);
}

TEST_F(RegistryFaultsTest, LyingBodiesAreRefetchedOnceThenDataLoss) {
  // Over-long bodies and a Content-Range for other bytes never reach the
  // cache; a single glitch is fetched again.
  for (Fault::Kind kind : {Fault::Kind::kLongBody, Fault::Kind::kWrongContentRange}) {
    SCOPED_TRACE(static_cast<int>(kind));
    OpenDevice();
    proxy_->ClearRules();
    FaultRule r = testing::OnBlobGets(kind);
    r.fault.bytes = 7;
    proxy_->AddRule(r);
    const int chunk = kind == Fault::Kind::kLongBody ? 0 : 3;
    ASSERT_TRUE(Read({chunk}).ok());
    proxy_->ClearRules();
    r.times = -1;
    proxy_->AddRule(r);
    base::Status s = Read({chunk + 1});
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
    EXPECT_FALSE(ReadyOnDisk(static_cast<uint32_t>(chunk + 1)));
    proxy_->ClearRules();
    ASSERT_TRUE(Read({chunk + 1}).ok());
  }
}

TEST_F(RegistryFaultsTest, FlippedByteIsNeverCachedOrReturned) {
  // One flipped byte in a run of three chunks: that chunk is fetched again
  // alone; the others are fine.
  FaultRule r = testing::OnBlobGets(Fault::Kind::kFlipByte);
  r.fault.bytes = blob_.chunks[1].compressed_offset + 5;  // inside chunk 1
  proxy_->AddRule(r);
  ASSERT_TRUE(Read({0, 1, 2}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), 2);
  // Flipped in every answer: kDataLoss naming the chunk; never cached.
  proxy_->ClearRules();
  r.fault.bytes = 100;
  r.times = -1;
  proxy_->AddRule(r);
  base::Status s = Read({5});
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("chunk 5"), std::string::npos) << s;
  EXPECT_FALSE(ReadyOnDisk(5));
  EXPECT_TRUE(ReadyOnDisk(1));
  proxy_->ClearRules();
  const int before = proxy_->Count("/blobs/");
  ASSERT_TRUE(Read({5}).ok());
  EXPECT_EQ(proxy_->Count("/blobs/"), before + 1) << "chunk 5 fetched, not taken from the cache";
}

TEST_F(RegistryFaultsTest, SlowResponsesEndAtTheDeadline) {
  // Headers that never come in time.
  FaultRule r = testing::OnBlobGets(Fault::Kind::kDelayHeaders, -1);
  r.fault.delay = milliseconds(5000);
  proxy_->AddRule(r);
  base::Status s = Read({0}, milliseconds(800));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(last_elapsed(), milliseconds(800 + 1000)) << s;
  // A body that trickles (4 KiB every 150 ms: each read is quick, the
  // whole is not) must not outlive the deadline either.
  proxy_->ClearRules();
  r = testing::OnBlobGets(Fault::Kind::kSlowBody, -1);
  r.fault.delay = milliseconds(150);
  proxy_->AddRule(r);
  s = Read({1, 2, 3}, milliseconds(1000));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(last_elapsed(), milliseconds(1000 + 1000)) << s;
  EXPECT_FALSE(ReadyOnDisk(1));
  // A flipped byte makes the device fetch the chunk again: that fetch runs
  // under the same deadline.
  proxy_->ClearRules();
  FaultRule flip = testing::OnBlobGets(Fault::Kind::kFlipByte, -1);
  flip.fault.bytes = 10;
  flip.fault.delay = milliseconds(700);  // before each answer
  proxy_->AddRule(flip);
  s = Read({4}, milliseconds(1000));
  EXPECT_TRUE(s.code() == StatusCode::kDeadlineExceeded || s.code() == StatusCode::kDataLoss)
      << s;
  EXPECT_LT(last_elapsed(), milliseconds(1000 + 1000)) << s;
  EXPECT_FALSE(ReadyOnDisk(4));
  proxy_->ClearRules();
  ASSERT_TRUE(Read({1, 2, 3, 4}).ok());
}

TEST_F(RegistryFaultsTest, RedirectToAFailingUrl) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  FaultRule r = testing::OnBlobGets(Fault::Kind::kRedirect);
  r.fault.location = dead + "/storage/blob?sig=x";
  proxy_->AddRule(r);
  ASSERT_TRUE(Read({0}).ok());  // the retry goes back through the registry
  EXPECT_EQ(proxy_->Count("/blobs/"), 2);
  // Always redirected to storage that answers 500: kUnavailable.
  proxy_->ClearRules();
  r.times = -1;
  r.fault.location = proxy_->origin() + "/storage/blob?sig=y";
  proxy_->AddRule(r);
  FaultRule storage;
  storage.path_contains = "/storage/";
  storage.times = -1;
  storage.fault.kind = Fault::Kind::kStatus;
  storage.fault.status = 500;
  proxy_->AddRule(storage);
  base::Status s = Read({1});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_EQ(proxy_->Count("/storage/"), 4);
  EXPECT_FALSE(ReadyOnDisk(1));
  proxy_->ClearRules();
  ASSERT_TRUE(Read({1}).ok());
}

// Authorization from the client reaches the registry (htpasswd basic auth
// behind the proxy).
TEST(RegistryFaultsBasicAuthTest, AuthorizationIsForwarded) {
  if (!testing::LocalRegistry::Available() || !testing::HaveCommand("htpasswd")) {
    GTEST_SKIP() << "docker-registry or htpasswd (apache2-utils) is not installed";
  }
  testing::TempDir dir;
  auto reg = testing::LocalRegistry::Start(dir.path(), "erin", "basic-pass");
  ASSERT_TRUE(reg.ok()) << reg.status();
  TestBlob b = MakeBlob(2, kChunk, 9);
  auto id = (*reg)->PushBlob(kRepo, b.bytes);
  ASSERT_TRUE(id.ok()) << id.status();
  testing::FaultProxy::Options po;
  po.upstream = (*reg)->host();
  auto proxy = testing::FaultProxy::Start(po);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  RegistryOptions o;
  o.host = (*proxy)->host();
  o.repository = kRepo;
  o.plain_http = true;
  auto creds = std::make_shared<StaticCredentials>();
  creds->Set(o.host, Credential{"erin", "basic-pass", ""});
  o.credentials = creds;
  auto reader = (*(*RegistryBackend::Create(o))->Open(*id));
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(reader->ReadAt(10, out).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(b.bytes.begin() + 10, b.bytes.begin() + 1010));
  const auto seen = (*proxy)->Requests();
  ASSERT_EQ(seen.size(), 2u);  // 401 challenge, then with credentials
  EXPECT_EQ(seen[0].headers.count("authorization"), 0u);
  EXPECT_EQ(seen[1].headers.at("authorization").rfind("Basic ", 0), 0u);
}

class RegistryTokenFaultsTest : public RegistryFaultsTest {
 protected:
  void SetUp() override {
    testing::FaultProxy::Options o;
    o.bearer_tokens = true;
    o.token_user = "dora";
    o.token_password = "t0ken-pass";
    Start(o, /*credentials=*/true);
  }
};

TEST_F(RegistryTokenFaultsTest, ExpiredTokenIsDroppedAndFetchedOnce) {
  std::vector<std::string> log;
  base::SetLogSink([&](base::LogLevel, std::string_view l) { log.emplace_back(l); });
  auto prev = base::MinLogLevel();
  base::SetMinLogLevel(base::LogLevel::kDebug);

  ASSERT_TRUE(Read({0}).ok());
  EXPECT_EQ(proxy_->token_requests(), 1);
  ASSERT_TRUE(Read({1}).ok());
  EXPECT_EQ(proxy_->token_requests(), 1) << "the token is cached";
  // The token expires: one 401, one new token, the read succeeds.
  proxy_->ExpireTokens();
  ASSERT_TRUE(Read({2}).ok());
  EXPECT_EQ(proxy_->token_requests(), 2);
  // Many readers meet the expiry at once: still one new token.
  proxy_->ExpireTokens();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 3; i < kChunks; ++i) {
    threads.emplace_back([&, i] {
      if (!Read({i}).ok()) failures++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(proxy_->token_requests(), 3) << "concurrent 401s fetch one token";
  // A registry that keeps refusing new tokens: kUnauthenticated after one
  // more token request, not a loop.
  FreshCache();
  proxy_->AddRule(testing::OnBlobGets(Fault::Kind::kUnauthorized, -1));
  base::Status s = Read({0}, milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
  EXPECT_EQ(proxy_->token_requests(), 4);
  base::SetMinLogLevel(prev);
  base::SetLogSink(nullptr);
  // Tokens and credentials stay out of errors and logs.
  EXPECT_EQ(s.message().find("tok-"), std::string::npos) << s;
  for (const auto& l : log) {
    EXPECT_EQ(l.find("tok-"), std::string::npos) << l;
    EXPECT_EQ(l.find("t0ken-pass"), std::string::npos) << l;
  }
  // Registry credentials never go to a redirect target.
  proxy_->ClearRules();
  FaultRule r = testing::OnBlobGets(Fault::Kind::kRedirect);
  r.fault.location = proxy_->origin() + "/storage/x";
  proxy_->AddRule(r);
  (void)Read({0});
  bool saw_storage = false;
  for (const auto& req : proxy_->Requests()) {
    if (req.path.rfind("/storage/", 0) != 0) continue;
    saw_storage = true;
    EXPECT_EQ(req.headers.count("authorization"), 0u);
  }
  EXPECT_TRUE(saw_storage);
}

}  // namespace
}  // namespace rfs::storage
