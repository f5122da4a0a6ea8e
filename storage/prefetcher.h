// Prefetcher: fills the chunk cache in the background, ahead of readers.
//
// Chunks are queued in the order given (the image's prefetch list first,
// whole blobs after, whatever the caller decides), de-duplicated, and fetched
// by a bounded pool of workers in batches that BlobDevice merges into range
// requests. On-demand reads always go first: a worker waits while any
// on-demand fetch is running before it starts its next batch, and a chunk
// someone is already fetching is simply waited for (one fetch per chunk).
// A bandwidth limit (token bucket on compressed bytes) keeps prefetch from
// saturating the node's link. Failures are counted and left to on-demand
// reads, which retry on their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "base/deadline.h"
#include "base/metrics.h"
#include "base/mutex.h"
#include "storage/blob_device.h"
#include "storage/chunk.h"

namespace rfs::storage {

struct PrefetchOptions {
  int threads = 2;                        // 1..16 workers
  uint64_t bandwidth_bytes_per_second = 0;  // compressed bytes; 0 = unlimited
  uint64_t batch_bytes = 4u << 20;        // compressed bytes per Fetch call
  std::chrono::milliseconds batch_timeout{60000};
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

class Prefetcher {
 public:
  // `device` must outlive the prefetcher.
  Prefetcher(BlobDevice* device, PrefetchOptions options);
  ~Prefetcher();  // Stop()
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues chunks behind those already queued; ones queued before are skipped.
  void Add(const std::vector<ChunkInfo>& chunks) EXCLUDES(mu_);
  // Drops the queue and joins the workers (a running batch finishes).
  void Stop() EXCLUDES(mu_);
  // True once the queue is empty and no batch runs, false at the deadline.
  bool WaitIdle(base::Deadline deadline) EXCLUDES(mu_);

  struct Stats {
    uint64_t queued = 0;  // chunks accepted
    uint64_t done = 0;    // chunks in batches that succeeded
    uint64_t failed = 0;  // chunks in batches that failed
  };
  Stats stats() const EXCLUDES(mu_);

 private:
  void Worker() EXCLUDES(mu_);
  // Waits until `bytes` may be sent under the bandwidth limit.
  void Throttle(uint64_t bytes) EXCLUDES(mu_);

  BlobDevice* const device_;
  const PrefetchOptions options_;
  mutable base::Mutex mu_;
  base::CondVar cv_;
  std::deque<ChunkInfo> queue_ GUARDED_BY(mu_);
  std::set<std::pair<uint32_t, uint32_t>> seen_ GUARDED_BY(mu_);  // (blob, chunk)
  int running_ GUARDED_BY(mu_) = 0;  // batches in progress
  bool stopping_ GUARDED_BY(mu_) = false;
  Stats stats_ GUARDED_BY(mu_);
  // Token bucket.
  double tokens_ GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point refill_ GUARDED_BY(mu_);
  std::vector<std::thread> workers_;

  base::Counter* m_chunks_;
  base::Counter* m_failed_;
  base::Gauge* m_queued_;
};

}  // namespace rfs::storage
