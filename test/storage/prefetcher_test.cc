// Prefetcher: queued chunks become ready with one fetch each, on-demand
// fetches go first, the bandwidth cap holds, Stop is prompt.
#include "storage/prefetcher.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "storage/blob_device.h"
#include "test/storage/test_blob.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using Clock = std::chrono::steady_clock;

// Serves one TestBlob and records every request with its source and time.
class RecordingBackend final : public BlobBackend {
 public:
  struct Request {
    IoSource source;
    Clock::time_point start, end;
    uint64_t bytes;
  };
  explicit RecordingBackend(const TestBlob* blob) : blob_(blob) {}
  base::Result<std::unique_ptr<BlobReader>> Open(const std::string& id) override {
    if (id != blob_->info.blob_id) return base::NotFoundError("no blob ", id);
    return std::unique_ptr<BlobReader>(new Reader(this));
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  std::atomic<int> on_demand_delay_ms{0};
  std::atomic<int> prefetch_delay_ms{0};

 private:
  class Reader final : public BlobReader {
   public:
    explicit Reader(RecordingBackend* o) : o_(o) {}
    const std::string& blob_id() const override { return o_->blob_->info.blob_id; }
    base::Result<uint64_t> Size() override { return o_->blob_->bytes.size(); }

   private:
    base::Status TryReadAt(uint64_t off, base::MutableByteSpan dst, const IoContext& ctx) override {
      Request r{ctx.source, Clock::now(), {}, dst.size()};
      int ms = ctx.source == IoSource::kOnDemand ? o_->on_demand_delay_ms.load()
                                                 : o_->prefetch_delay_ms.load();
      if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      if (!base::RangeInside(off, dst.size(), o_->blob_->bytes.size())) {
        return base::OutOfRangeError("past the end");
      }
      std::memcpy(dst.data(), o_->blob_->bytes.data() + off, dst.size());
      r.end = Clock::now();
      std::lock_guard<std::mutex> l(o_->mu_);
      o_->requests_.push_back(r);
      return base::Status::Ok();
    }
    RecordingBackend* o_;
  };
  const TestBlob* blob_;
  std::mutex mu_;
  std::vector<Request> requests_;
};

struct Rig {
  testing::TempDir dir;
  TestBlob blob;
  std::shared_ptr<RecordingBackend> backend;
  std::unique_ptr<BlobDevice> device;
  base::MetricsRegistry metrics;

  Rig(int chunks, uint32_t chunk_size) : blob(MakeBlob(chunks, chunk_size, 5)) {
    backend = std::make_shared<RecordingBackend>(&blob);
    DeviceOptions o;
    o.cache_dir = dir.path();
    o.metrics = &metrics;
    auto d = BlobDevice::Create(backend, {blob.info}, o);
    EXPECT_TRUE(d.ok()) << d.status();
    device = std::move(*d);
  }
  PrefetchOptions Options() {
    PrefetchOptions p;
    p.metrics = &metrics;
    return p;
  }
};

TEST(PrefetcherTest, QueuedChunksBecomeReadyOnce) {
  Rig rig(40, 64 * 1024);
  Prefetcher p(rig.device.get(), rig.Options());
  p.Add(rig.blob.chunks);
  p.Add(rig.blob.chunks);  // duplicates are skipped
  ASSERT_TRUE(p.WaitIdle(base::Deadline::After(std::chrono::seconds(30))));
  EXPECT_EQ(p.stats().queued, 40u);
  EXPECT_EQ(p.stats().done, 40u);
  EXPECT_EQ(p.stats().failed, 0u);
  const size_t fetched = rig.backend->requests().size();
  EXPECT_GT(fetched, 0u);
  EXPECT_LE(fetched, 40u);  // merged into ranges
  // Everything is cached: reading it all costs no request.
  std::vector<int> all;
  for (int i = 0; i < 40; ++i) all.push_back(i);
  ChunkIoVec plan = PlanFor(rig.blob, all);
  std::vector<uint8_t> out(plan.total);
  ASSERT_TRUE(rig.device->Read(plan, out, {}).ok());
  EXPECT_EQ(out, Concat(rig.blob, all));
  EXPECT_EQ(rig.backend->requests().size(), fetched);
  for (const auto& r : rig.backend->requests()) EXPECT_EQ(r.source, IoSource::kPrefetch);
}

TEST(PrefetcherTest, OnDemandFetchesGoFirst) {
  Rig rig(120, 64 * 1024);
  rig.backend->prefetch_delay_ms = 10;
  rig.backend->on_demand_delay_ms = 300;
  PrefetchOptions o = rig.Options();
  o.threads = 2;
  o.batch_bytes = 1;  // one chunk per batch: many chances to overtake
  Prefetcher p(rig.device.get(), o);
  p.Add(rig.blob.chunks);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // An on-demand read of the last chunk while prefetch runs.
  ChunkIoVec plan = PlanFor(rig.blob, {119});
  std::vector<uint8_t> out(plan.total);
  ASSERT_TRUE(rig.device->Read(plan, out, {}).ok());
  EXPECT_EQ(out, rig.blob.plain[119]);
  p.Stop();
  Clock::time_point od_start{}, od_end{};
  for (const auto& r : rig.backend->requests()) {
    if (r.source == IoSource::kOnDemand) od_start = r.start, od_end = r.end;
  }
  ASSERT_NE(od_end, Clock::time_point{});
  int overtaking = 0;
  for (const auto& r : rig.backend->requests()) {
    if (r.source == IoSource::kPrefetch && r.start > od_start + std::chrono::milliseconds(50) &&
        r.start < od_end) {
      ++overtaking;
    }
  }
  EXPECT_EQ(overtaking, 0) << "prefetch requests started while an on-demand fetch ran";
}

TEST(PrefetcherTest, BandwidthCapHolds) {
  Rig rig(24, 128 * 1024);
  uint64_t total = 0;
  for (const auto& c : rig.blob.chunks) total += c.compressed_size;
  PrefetchOptions o = rig.Options();
  o.batch_bytes = 128 * 1024;
  o.bandwidth_bytes_per_second = 512 * 1024;
  Prefetcher p(rig.device.get(), o);
  auto t0 = Clock::now();
  p.Add(rig.blob.chunks);
  ASSERT_TRUE(p.WaitIdle(base::Deadline::After(std::chrono::seconds(60))));
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  // The first burst (one second's worth) is free; the rest waits for tokens.
  const double expected = (static_cast<double>(total) - 512 * 1024) / (512 * 1024);
  EXPECT_GE(took, expected * 0.9) << total << " bytes";
  EXPECT_EQ(p.stats().done, 24u);
}

TEST(PrefetcherTest, StopIsPrompt) {
  Rig rig(64, 64 * 1024);
  PrefetchOptions o = rig.Options();
  o.batch_bytes = 64 * 1024;
  o.bandwidth_bytes_per_second = 16 * 1024;  // minutes for the whole queue
  Prefetcher p(rig.device.get(), o);
  p.Add(rig.blob.chunks);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = Clock::now();
  p.Stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_LT(p.stats().done, 64u);
}

}  // namespace
}  // namespace rfs::storage
