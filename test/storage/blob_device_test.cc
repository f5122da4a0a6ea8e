// BlobDevice + BlobCache: verified chunk cache, one fetch per chunk under
// concurrency, request merging, retries, persistence and crash safety.
#include "storage/blob_device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "base/metrics.h"
#include "storage/codec.h"
#include "test/storage/test_blob.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;

// Backend over one in-memory blob that counts requests per offset and can
// inject faults.
class FakeBackend final : public BlobBackend {
 public:
  explicit FakeBackend(TestBlob* blob) : blob_(blob) {}
  base::Result<std::unique_ptr<BlobReader>> Open(const std::string& id) override {
    if (id != blob_->info.blob_id) return base::NotFoundError("no blob ", id);
    return std::unique_ptr<BlobReader>(new Reader(this));
  }
  std::atomic<int> requests{0};
  std::atomic<int> unavailable_left{0};  // next N requests fail with kUnavailable
  std::atomic<int> corrupt_left{0};      // next N requests return a flipped byte
  std::atomic<int> delay_ms{0};
  base::Mutex mu;
  std::map<uint64_t, int> per_offset GUARDED_BY(mu);

 private:
  class Reader final : public BlobReader {
   public:
    explicit Reader(FakeBackend* b) : b_(b) {}
    const std::string& blob_id() const override { return b_->blob_->info.blob_id; }
    base::Result<uint64_t> Size() override { return b_->blob_->bytes.size(); }

   private:
    base::Status TryReadAt(uint64_t off, base::MutableByteSpan dst, const IoContext&) override {
      b_->requests++;
      {
        base::MutexLock l(&b_->mu);
        b_->per_offset[off]++;
      }
      if (b_->delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(b_->delay_ms));
      if (b_->unavailable_left.fetch_sub(1) > 0) return base::UnavailableError("injected 503");
      const auto& bytes = b_->blob_->bytes;
      if (!base::RangeInside(off, dst.size(), bytes.size())) return base::OutOfRangeError("past end");
      std::memcpy(dst.data(), bytes.data() + off, dst.size());
      if (b_->corrupt_left.fetch_sub(1) > 0 && !dst.empty()) dst[dst.size() / 2] ^= 0x40;
      return base::Status::Ok();
    }
    FakeBackend* b_;
  };
  TestBlob* blob_;
};

struct Fixture {
  explicit Fixture(int chunks = 8, uint32_t size = 64 << 10, DeviceOptions o = {})
      : blob(MakeBlob(chunks, size, 1)), backend(std::make_shared<FakeBackend>(&blob)) {
    o.cache_dir = dir.path();
    o.metrics = &metrics;
    options = o;
    device = *BlobDevice::Create(backend, {blob.info}, o);
  }
  testing::TempDir dir;
  base::MetricsRegistry metrics;
  TestBlob blob;
  std::shared_ptr<FakeBackend> backend;
  DeviceOptions options;
  std::unique_ptr<BlobDevice> device;
};

TEST(BlobDeviceTest, ReadsThroughTheCacheOnce) {
  Fixture f;
  std::vector<uint8_t> out(f.blob.plain[2].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {2}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[2]);
  EXPECT_EQ(f.backend->requests, 1);
  std::fill(out.begin(), out.end(), 0);
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {2}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[2]);
  EXPECT_EQ(f.backend->requests, 1) << "second read must come from the cache";
  // A slice in the middle of a chunk.
  ChunkIoVec part = PlanFor(f.blob, {2});
  part.segments[0].offset_in_chunk = 1000;
  part.segments[0].length = part.total = 5000;
  std::vector<uint8_t> p(5000);
  ASSERT_TRUE(f.device->Read(part, p, {}).ok());
  EXPECT_TRUE(std::equal(p.begin(), p.end(), f.blob.plain[2].begin() + 1000));
  EXPECT_NE(f.metrics.RenderPrometheus().find("rfs_storage_cache_hits_total 2"),
            std::string::npos)
      << f.metrics.RenderPrometheus();
}

TEST(BlobDeviceTest, AdjacentMissingChunksAreOneRequest) {
  Fixture f;
  std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<uint8_t> out(PlanFor(f.blob, all).total);
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, all), out, {}).ok());
  EXPECT_EQ(out, Concat(f.blob, all));
  EXPECT_EQ(f.backend->requests, 1);
}

// Options whose chunk_lookup serves `ref`'s chunks (one of them with a
// wrong digest when `bad` >= 0) and widen on-demand fetches to `amplify`.
DeviceOptions Widening(const TestBlob& ref, uint64_t amplify, int bad = -1) {
  DeviceOptions o;
  o.amplify_bytes = amplify;
  o.chunk_lookup = [chunks = ref.chunks, bad](uint32_t, uint32_t i) -> base::Result<ChunkInfo> {
    if (i >= chunks.size()) return base::NotFoundError("no chunk ", i);
    ChunkInfo c = chunks[i];
    if (static_cast<int>(i) == bad) c.digest[0] ^= 1;
    return c;
  };
  return o;
}

TEST(BlobDeviceTest, SmallOnDemandReadsAreWidenedToTheChunksThatFollow) {
  const TestBlob ref = MakeBlob(8, 64 << 10, 1);
  const auto& c = ref.chunks;
  // Room for chunks 2, 3 and 4 in one request, not for 5.
  const uint64_t amplify = c[2].compressed_size + c[3].compressed_size + c[4].compressed_size;
  Fixture f(8, 64 << 10, Widening(ref, amplify));
  std::vector<uint8_t> out(f.blob.plain[2].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {2}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[2]);
  EXPECT_EQ(f.backend->requests, 1);
  std::vector<uint8_t> two(PlanFor(f.blob, {3, 4}).total);
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {3, 4}), two, {}).ok());
  EXPECT_EQ(two, Concat(f.blob, {3, 4}));
  EXPECT_EQ(f.backend->requests, 1) << "chunks 3 and 4 came with chunk 2";
  EXPECT_NE(f.metrics.RenderPrometheus().find("rfs_storage_amplified_bytes_total " +
                                              std::to_string(c[3].compressed_size +
                                                             c[4].compressed_size)),
            std::string::npos)
      << f.metrics.RenderPrometheus();
  // Chunk 5 was past the budget; widening from 1 stops at the cached 2.
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {1}), out, {}).ok());
  EXPECT_EQ(f.backend->requests, 2);
  std::vector<uint8_t> five(f.blob.plain[5].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {5}), five, {}).ok());
  EXPECT_EQ(five, f.blob.plain[5]);
  EXPECT_EQ(f.backend->requests, 3);
  {
    base::MutexLock l(&f.backend->mu);
    EXPECT_EQ(f.backend->per_offset[c[1].compressed_offset], 1);
    EXPECT_EQ(f.backend->per_offset.count(c[2].compressed_offset), 1u);
  }

  // Prefetch is never widened.
  Fixture p(8, 64 << 10, Widening(ref, amplify));
  IoContext prefetch;
  prefetch.source = IoSource::kPrefetch;
  ASSERT_TRUE(p.device->Fetch({p.blob.chunks[2]}, prefetch).ok());
  ASSERT_TRUE(p.device->Read(PlanFor(p.blob, {3}), out, {}).ok());
  EXPECT_EQ(p.backend->requests, 2);
}

TEST(BlobDeviceTest, AWidenedChunkThatFailsDoesNotFailTheRead) {
  const TestBlob ref = MakeBlob(8, 64 << 10, 1);
  // The chunk table claims another digest for chunk 3 than the plans do.
  Fixture f(8, 64 << 10, Widening(ref, 4u << 20, /*bad=*/3));
  std::vector<uint8_t> out(f.blob.plain[2].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {2}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[2]);
  EXPECT_EQ(f.backend->requests, 1) << "no second request for a widened chunk that failed";
  // Chunk 3 was not cached under the wrong digest: the real plan fetches it.
  std::vector<uint8_t> three(f.blob.plain[3].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {3}), three, {}).ok());
  EXPECT_EQ(three, f.blob.plain[3]);
  EXPECT_EQ(f.backend->requests, 2);
}

TEST(BlobDeviceTest, MergeLimitSplitsRequests) {
  DeviceOptions o;
  o.merge_max_bytes = 1;  // no merging at all
  Fixture f(8, 64 << 10, o);
  std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<uint8_t> out(PlanFor(f.blob, all).total);
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, all), out, {}).ok());
  EXPECT_EQ(out, Concat(f.blob, all));
  EXPECT_EQ(f.backend->requests, 8);
  // Non-adjacent chunks cannot merge either.
  Fixture g;
  std::vector<uint8_t> out2(PlanFor(g.blob, {1, 3, 5}).total);
  ASSERT_TRUE(g.device->Read(PlanFor(g.blob, {1, 3, 5}), out2, {}).ok());
  EXPECT_EQ(g.backend->requests, 3);
}

TEST(BlobDeviceTest, ConcurrentReadersFetchEachChunkOnce) {
  Fixture f(16, 32 << 10);
  f.backend->delay_ms = 5;  // widen the race window
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int r = 0; r < 20; ++r) {
        int first = static_cast<int>(rng() % 16);
        std::vector<int> which = {first, (first + 1) % 16};
        ChunkIoVec plan = PlanFor(f.blob, which);
        std::vector<uint8_t> out(plan.total);
        if (!f.device->Read(plan, out, {}).ok() || out != Concat(f.blob, which)) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  base::MutexLock l(&f.backend->mu);
  // Each chunk's bytes were requested exactly once (possibly as part of a
  // merged request starting at another chunk).
  std::map<int, int> fetched;
  for (auto [off, n] : f.backend->per_offset) {
    EXPECT_EQ(n, 1) << "offset " << off << " requested " << n << " times";
  }
  EXPECT_LE(f.backend->requests, 16);
}

TEST(BlobDeviceTest, WrongBytesAreRefetchedThenDataLossAndNeverCached) {
  Fixture f;
  f.backend->corrupt_left = 1;  // first response corrupt, the retry good
  std::vector<uint8_t> out(f.blob.plain[0].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {0}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[0]);
  EXPECT_EQ(f.backend->requests, 2);

  f.backend->corrupt_left = 100;  // the source keeps sending wrong bytes
  std::vector<uint8_t> out1(f.blob.plain[1].size(), 0xAA);
  base::Status s = f.device->Read(PlanFor(f.blob, {1}), out1, {});
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("chunk 1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("digest mismatch"), std::string::npos) << s;
  EXPECT_EQ(out1, std::vector<uint8_t>(out1.size(), 0xAA)) << "no bytes handed out";
  // Once the source is good again, the chunk is fetched (it was not cached).
  f.backend->corrupt_left = 0;
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {1}), out1, {}).ok());
  EXPECT_EQ(out1, f.blob.plain[1]);
}

TEST(BlobDeviceTest, TransientErrorsAreRetried) {
  Fixture f;
  auto& global = base::MetricsRegistry::Global();
  base::Counter* retries = global.GetCounter("rfs_storage_retries_total", "");
  auto failures = [&](const char* code) {
    return global.GetCounter("rfs_storage_request_failures_total", "", {{"code", code}})->value();
  };
  const uint64_t retries_before = retries->value();
  const uint64_t failed_before = failures("unavailable") + failures("deadline_exceeded");
  f.backend->unavailable_left = 2;
  std::vector<uint8_t> out(f.blob.plain[3].size());
  ASSERT_TRUE(f.device->Read(PlanFor(f.blob, {3}), out, {}).ok());
  EXPECT_EQ(out, f.blob.plain[3]);
  EXPECT_EQ(f.backend->requests, 3);
  EXPECT_EQ(retries->value(), retries_before + 2);
  EXPECT_EQ(failures("unavailable") + failures("deadline_exceeded"), failed_before);
  // Past the retry budget: the error surfaces, and a deadline bounds it.
  f.backend->unavailable_left = 1000;
  IoContext ctx;
  ctx.deadline = base::Deadline::After(std::chrono::milliseconds(300));
  auto t0 = std::chrono::steady_clock::now();
  base::Status s = f.device->Read(PlanFor(f.blob, {4}), out, ctx);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded)
      << s;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  // The request that gave up is counted by its code.
  EXPECT_GT(failures("unavailable") + failures("deadline_exceeded"), failed_before);
}

TEST(BlobDeviceTest, CacheSurvivesRestartAndIsReverified) {
  testing::TempDir dir;
  TestBlob blob = MakeBlob(4, 16 << 10, 7);
  auto backend = std::make_shared<FakeBackend>(&blob);
  DeviceOptions o;
  o.cache_dir = dir.path();
  base::MetricsRegistry metrics;
  o.metrics = &metrics;
  {
    auto d = *BlobDevice::Create(backend, {blob.info}, o);
    std::vector<uint8_t> out(PlanFor(blob, {0, 1, 2, 3}).total);
    ASSERT_TRUE(d->Read(PlanFor(blob, {0, 1, 2, 3}), out, {}).ok());
  }  // destruction flushes
  EXPECT_EQ(backend->requests, 1);
  {
    auto d = *BlobDevice::Create(backend, {blob.info}, o);
    std::vector<uint8_t> out(PlanFor(blob, {2}).total);
    ASSERT_TRUE(d->Read(PlanFor(blob, {2}), out, {}).ok());
    EXPECT_EQ(out, blob.plain[2]);
    EXPECT_EQ(backend->requests, 1) << "served from the persisted cache";
  }
  // Damage the cached bytes of chunk 1 on disk: the next process notices
  // and fetches it again instead of returning them.
  const std::string data = BlobCache::DataPath(dir.path(), blob.info.blob_id);
  auto bytes = testing::ReadFileBytes(data);
  bytes[blob.chunks[1].uncompressed_offset + 10] ^= 1;
  testing::WriteFileBytes(data, bytes);
  {
    auto d = *BlobDevice::Create(backend, {blob.info}, o);
    std::vector<uint8_t> out(PlanFor(blob, {1}).total);
    ASSERT_TRUE(d->Read(PlanFor(blob, {1}), out, {}).ok());
    EXPECT_EQ(out, blob.plain[1]);
    EXPECT_EQ(backend->requests, 2);
  }
}

TEST(BlobCacheTest, ReadyMarksReachDiskOnlyAfterFlush) {
  testing::TempDir dir;
  BlobInfo info;
  info.blob_id = "b";
  info.chunk_count = 20;
  info.uncompressed_size = 20 * 4096;
  auto cache = *BlobCache::Open(dir.path(), info);
  ASSERT_EQ(cache->Claim(3).result, BlobCache::ClaimResult::kClaimed);
  std::vector<uint8_t> data(4096, 0x33);
  ASSERT_TRUE(cache->MarkReady(3, 3 * 4096, data).ok());
  EXPECT_TRUE(cache->IsReady(3));
  auto map_bytes = [&] { return testing::ReadFileBytes(BlobCache::MapPath(dir.path(), "b")); };
  // Header (16 bytes) + 3 bytes of bits; chunk 3 is bit 3 of byte 16.
  ASSERT_EQ(map_bytes().size(), 19u);
  EXPECT_EQ(map_bytes()[16] & 0x08, 0) << "marked durable before the data was synced";
  // What a process killed now would leave: a cache without chunk 3.
  {
    testing::TempDir copy;
    std::string cmd = "cp -a " + dir.path() + "/. " + copy.path() + "/";
    ASSERT_EQ(testing::RunCommand(cmd), 0);
    auto after_crash = *BlobCache::Open(copy.path(), info);
    EXPECT_FALSE(after_crash->IsReady(3));
    EXPECT_EQ(after_crash->Claim(3).result, BlobCache::ClaimResult::kClaimed);
  }
  ASSERT_TRUE(cache->Flush().ok());
  EXPECT_EQ(map_bytes()[16] & 0x08, 0x08);
  auto reopened = *BlobCache::Open(dir.path(), info);
  EXPECT_TRUE(reopened->IsReady(3));
  EXPECT_EQ(reopened->ready_count(), 1u);
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(reopened->ReadCached(3 * 4096, back).ok());
  EXPECT_EQ(back, data);
  // A map for another chunk count is not trusted.
  info.chunk_count = 21;
  auto other = *BlobCache::Open(dir.path(), info);
  EXPECT_EQ(other->ready_count(), 0u);
}

TEST(BlobCacheTest, WaitersGetTheFetchersOutcome) {
  testing::TempDir dir;
  BlobInfo info;
  info.blob_id = "w";
  info.chunk_count = 2;
  info.uncompressed_size = 8192;
  auto cache = *BlobCache::Open(dir.path(), info);
  ASSERT_EQ(cache->Claim(0).result, BlobCache::ClaimResult::kClaimed);
  BlobCache::Claimed second = cache->Claim(0);
  ASSERT_EQ(second.result, BlobCache::ClaimResult::kBusy);
  // The outcome reaches the waiter whether the fetch ends before or while it waits.
  std::thread t([&] { cache->Abort(0, base::UnavailableError("registry down")); });
  base::Status s = cache->Wait(second.pending, 0, base::Deadline::After(std::chrono::seconds(10)));
  t.join();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_FALSE(cache->IsReady(0));
  ASSERT_EQ(cache->Claim(1).result, BlobCache::ClaimResult::kClaimed);
  BlobCache::Claimed waiting = cache->Claim(1);
  EXPECT_EQ(cache->Wait(waiting.pending, 1, base::Deadline::After(std::chrono::milliseconds(50)))
                .code(),
            StatusCode::kDeadlineExceeded);
  std::vector<uint8_t> data(4096, 1);
  ASSERT_TRUE(cache->MarkReady(1, 4096, data).ok());
  EXPECT_TRUE(cache->Wait(waiting.pending, 1, base::Deadline::Infinite()).ok());
}

}  // namespace
}  // namespace rfs::storage
