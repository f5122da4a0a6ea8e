#include "storage/prefetcher.h"

#include <algorithm>

#include "base/logging.h"

namespace rfs::storage {

using base::MutexLock;
using Clock = std::chrono::steady_clock;

Prefetcher::Prefetcher(BlobDevice* device, PrefetchOptions options)
    : device_(device), options_(std::move(options)) {
  base::MetricsRegistry* m = options_.metrics;
  m_chunks_ = m->GetCounter("rfs_prefetch_chunks_total", "Chunks made ready by prefetch batches");
  m_failed_ = m->GetCounter("rfs_prefetch_failed_chunks_total",
                            "Chunks of prefetch batches that failed (left to on-demand reads)");
  m_queued_ = m->GetGauge("rfs_prefetch_queued_chunks", "Chunks waiting to be prefetched");
  {
    MutexLock l(&mu_);
    refill_ = Clock::now();
    tokens_ = static_cast<double>(options_.batch_bytes);
  }
  const int n = std::clamp(options_.threads, 1, 16);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Worker(); });
}

Prefetcher::~Prefetcher() { Stop(); }

void Prefetcher::Add(const std::vector<ChunkInfo>& chunks) {
  MutexLock l(&mu_);
  if (stopping_) return;
  for (const ChunkInfo& c : chunks) {
    if (!seen_.emplace(c.blob_index, c.index).second) continue;
    queue_.push_back(c);
    ++stats_.queued;
  }
  m_queued_->Set(static_cast<int64_t>(queue_.size()));
  cv_.SignalAll();
}

void Prefetcher::Stop() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
    queue_.clear();
    m_queued_->Set(0);
    cv_.SignalAll();
  }
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

bool Prefetcher::WaitIdle(base::Deadline deadline) {
  MutexLock l(&mu_);
  while (!queue_.empty() || running_ > 0) {
    if (deadline.is_infinite()) {
      cv_.Wait(&mu_);
    } else if (!cv_.WaitUntil(&mu_, deadline.when())) {
      return queue_.empty() && running_ == 0;
    }
  }
  return true;
}

Prefetcher::Stats Prefetcher::stats() const {
  MutexLock l(&mu_);
  return stats_;
}

void Prefetcher::Throttle(uint64_t bytes) {
  const double rate = static_cast<double>(options_.bandwidth_bytes_per_second);
  if (rate <= 0) return;
  const double burst = std::max(rate, static_cast<double>(options_.batch_bytes));
  MutexLock l(&mu_);
  for (;;) {
    const auto now = Clock::now();
    tokens_ = std::min(burst, tokens_ + rate * std::chrono::duration<double>(now - refill_).count());
    refill_ = now;
    // A batch larger than the burst waits for a full bucket, then goes.
    const double need = std::min(static_cast<double>(bytes), burst);
    if (tokens_ >= need || stopping_) {
      tokens_ -= static_cast<double>(bytes);
      return;
    }
    const auto wait = std::chrono::duration<double>((need - tokens_) / rate);
    cv_.WaitUntil(&mu_, now + std::chrono::duration_cast<Clock::duration>(wait));
  }
}

void Prefetcher::Worker() {
  for (;;) {
    std::vector<ChunkInfo> batch;
    uint64_t bytes = 0;
    {
      MutexLock l(&mu_);
      while (queue_.empty() && !stopping_) cv_.Wait(&mu_);
      if (stopping_) return;
      // A batch: the next chunks of one blob, up to batch_bytes.
      const uint32_t blob = queue_.front().blob_index;
      while (!queue_.empty() && queue_.front().blob_index == blob &&
             (batch.empty() || bytes + queue_.front().compressed_size <= options_.batch_bytes)) {
        bytes += queue_.front().compressed_size;
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      m_queued_->Set(static_cast<int64_t>(queue_.size()));
      ++running_;
    }
    // On-demand reads first: hold back while any of them is fetching.
    while (device_->OnDemandInFlight() > 0) {
      MutexLock l(&mu_);
      if (stopping_) break;
      cv_.WaitUntil(&mu_, Clock::now() + std::chrono::milliseconds(2));
    }
    Throttle(bytes);
    IoContext ctx;
    ctx.source = IoSource::kPrefetch;
    ctx.deadline = base::Deadline::After(options_.batch_timeout);
    base::Status s = device_->Fetch(batch, ctx);
    if (!s.ok()) {
      RFS_LOG(kDebug) << "prefetch of " << batch.size() << " chunks failed: " << s;
      m_failed_->Increment(batch.size());
    } else {
      m_chunks_->Increment(batch.size());
    }
    MutexLock l(&mu_);
    (s.ok() ? stats_.done : stats_.failed) += batch.size();
    --running_;
    cv_.SignalAll();
  }
}

}  // namespace rfs::storage
