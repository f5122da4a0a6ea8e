// BlobDevice: executes chunk I/O plans against the blob backend through the
// local chunk cache. The hot path of every lazy read.
//
//   per chunk: cached?  yes -> bytes from the cache file
//                       no  -> claim it (one fetch per chunk however many
//                              readers), fetch adjacent missing chunks of
//                              the plan with one range request (up to
//                              merge_max_bytes), decompress, verify the
//                              digest, write to the cache, mark ready
//
// A chunk whose bytes fail verification, or whose range came back wrong (a
// body longer than asked, another Content-Range), is fetched alone once more
// (within the same deadline) and then reported as kDataLoss; it is never
// cached and never returned. Chunks of blobs without a chunk count (plain
// EROFS devices), and every chunk when no cache directory is configured, are
// read and verified on each use.
//
// The blobs a device has opened are in use for its CacheManager (see
// cache_manager.h) until it is destroyed: never evicted or collected. The
// background flusher also records their use and enforces the cache's size
// cap; the read path only sets a flag.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/metrics.h"
#include "base/mutex.h"
#include "base/status.h"
#include "storage/blob_cache.h"
#include "storage/blob_reader.h"
#include "storage/cache_manager.h"
#include "storage/chunk.h"

namespace rfs::storage {

struct DeviceOptions {
  // Where chunk data is cached; empty for no cache (every read fetches and
  // verifies, as the tools do on local blobs).
  std::string cache_dir;
  // Adjacent missing chunks are fetched together up to this many bytes.
  uint64_t merge_max_bytes = 4u << 20;
  // A plan missing at least 2 x parallel_min_bytes is fetched with up to
  // this many range requests at once (pieces of at least parallel_min_bytes).
  int fetch_parallelism = 4;
  uint64_t parallel_min_bytes = 1u << 20;
  // An on-demand fetch of less than this many bytes is widened with the
  // chunks that follow it in the blob and are not cached yet, up to this
  // size in all: files read together usually lie together in a blob (one
  // directory's files, a program's libraries), so one request brings what
  // the next reads want, at the price of fetching some bytes no one reads.
  // Needs `chunk_lookup`; 0 = off (the default: for a python start through
  // a 20 ms link it saved requests but not time). Prefetch is never widened.
  uint64_t amplify_bytes = 0;
  // Chunk `index` of blob `blob_index` from the image's chunk table, for
  // widening; an error stops the widening there.
  std::function<base::Result<ChunkInfo>(uint32_t blob_index, uint32_t index)> chunk_lookup;
  // Fetch attempts of a chunk whose bytes fail verification.
  int verify_attempts = 2;
  // How often ready marks are made durable in the background (they are
  // also flushed at shutdown). Syncing never happens on the read path.
  std::chrono::milliseconds flush_interval{1000};
  // Maintenance of the cache directory, normally one manager per directory
  // shared by the devices of a process. An empty cache_dir takes the
  // manager's; another one is an error. Without a manager the device makes
  // its own, capped at cache_max_bytes (0 = unlimited; with a manager given,
  // the manager's cap applies and this must stay 0).
  std::shared_ptr<CacheManager> cache_manager;
  uint64_t cache_max_bytes = 0;
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

// Where a segment's bytes are for a zero-copy reply: a range of a cache
// file, zeros, or bytes in memory owned by the plan's producer.
struct DataSlice {
  enum class Kind : uint8_t { kFd, kZero, kBytes };
  Kind kind = Kind::kZero;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  const uint8_t* bytes = nullptr;
};

class BlobDevice {
 public:
  static base::Result<std::unique_ptr<BlobDevice>> Create(std::shared_ptr<BlobBackend> backend,
                                                          std::vector<BlobInfo> blobs,
                                                          DeviceOptions options);
  ~BlobDevice();

  // Fills dst (dst.size() == iov.total).
  base::Status Read(const ChunkIoVec& iov, base::MutableByteSpan dst, const IoContext& ctx);

  // Makes every chunk of the plan ready and returns, in order, where each
  // segment's bytes are. Slices of cache files stay valid while the device
  // lives. Uncacheable chunks come back as kBytes in `scratch`.
  base::Result<std::vector<DataSlice>> ReadSlices(const ChunkIoVec& iov, const IoContext& ctx,
                                                  std::vector<uint8_t>* scratch);

  // Reads and verifies one whole chunk into `out` (chunk.uncompressed_size
  // bytes), through the cache when there is one.
  base::Status ReadChunk(const ChunkInfo& chunk, base::MutableByteSpan out, const IoContext& ctx);

  // Fetches the given chunks into the cache (prefetch); already cached ones
  // cost nothing.
  base::Status Fetch(const std::vector<ChunkInfo>& chunks, const IoContext& ctx);

  // Persists the ready maps of every open cache.
  base::Status Flush();

  const std::vector<BlobInfo>& blobs() const { return blobs_; }

  // Bytes this device fetched from its backend (both sources).
  uint64_t fetched_bytes() const { return fetched_bytes_.load(std::memory_order_relaxed); }

  // Backend fetches for on-demand reads running right now.
  int OnDemandInFlight() const { return on_demand_in_flight_.load(std::memory_order_relaxed); }

 private:
  BlobDevice(std::shared_ptr<BlobBackend> backend, std::vector<BlobInfo> blobs,
             DeviceOptions options);
  struct Blob;
  base::Result<Blob*> BlobFor(uint32_t blob_index) EXCLUDES(mu_);
  // Ensures every listed chunk (all of one blob) is in the cache.
  base::Status EnsureCached(Blob* blob, std::vector<ChunkInfo> chunks, const IoContext& ctx,
                            int depth = 0);
  // Adds to `claimed` (sorted by offset) the chunks that follow its runs in
  // the blob, claimed for fetching, up to amplify_bytes in all.
  // Returns the indexes it added.
  std::set<uint32_t> Widen(Blob* blob, std::vector<ChunkInfo>* claimed,
                           std::map<uint32_t, bool>* seen);
  // Fetches a run of chunks adjacent in the blob with one request. Failures
  // of the chunks in `optional` (widening) are not reported: they are just
  // not cached.
  base::Status FetchRun(Blob* blob, const std::vector<ChunkInfo>& run, const IoContext& ctx,
                        const std::set<uint32_t>& optional = {});
  // One chunk alone, verified, up to verify_attempts times; every attempt
  // after bad bytes (and the first when `after_bad_bytes`) asks the backend
  // for its authoritative source (IoContext::after_bad_bytes).
  base::Status FetchOneVerified(Blob* blob, const ChunkInfo& c, base::MutableByteSpan out,
                                const IoContext& ctx, bool after_bad_bytes);
  static bool Cacheable(const Blob& blob, const ChunkInfo& c);

  void FlushLoop();
  // Records the use of blobs read since the last call and enforces the
  // cache's size cap when due (`force`: whenever anything was added).
  void MaintainCache(bool force);

  std::shared_ptr<BlobBackend> backend_;
  std::vector<BlobInfo> blobs_;
  DeviceOptions options_;
  std::shared_ptr<CacheManager> cache_manager_;  // null without a cache dir
  base::Mutex flusher_mu_;
  base::CondVar flusher_cv_;
  bool stopping_ GUARDED_BY(flusher_mu_) = false;
  std::thread flusher_;
  base::Mutex mu_;
  std::vector<std::unique_ptr<Blob>> open_ GUARDED_BY(mu_);  // by blob index
  std::atomic<int> on_demand_in_flight_{0};
  std::atomic<uint64_t> fetched_bytes_{0};

  struct Metrics {
    base::Counter* requests[2];
    base::Counter* bytes[2];
    base::Counter* chunks_fetched[2];
    base::Counter* cache_hits;
    base::Counter* cache_misses;
    base::Counter* verify_failures;
    base::Counter* fetch_errors;
    base::Counter* amplified_bytes;
    base::Histogram* request_seconds;
  } m_;
};

}  // namespace rfs::storage
