#include "storage/blob_device.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <unordered_map>

#include "base/logging.h"
#include "storage/chunk_reader.h"

namespace rfs::storage {

using base::DataLossError;
using base::MutableByteSpan;
using base::MutexLock;
using base::Result;
using base::Status;

struct BlobDevice::Blob {
  const BlobInfo* info = nullptr;
  std::unique_ptr<BlobReader> reader;
  CacheManager::Lease lease;  // held while the cache is open (declared before it)
  std::unique_ptr<BlobCache> cache;  // null when the blob cannot be cached
  std::atomic<bool> used{false};     // read since the flusher last looked
  // Digest each cached chunk was last verified against in this process.
  // Cached chunks are verified once per process and whenever a plan expects
  // a different digest for the same chunk index, so bytes cached for one
  // expectation never satisfy another unchecked.
  base::Mutex mu;
  std::unordered_map<uint32_t, base::Digest> verified GUARDED_BY(mu);
};

namespace {

int SourceIndex(const IoContext& ctx) { return ctx.source == IoSource::kPrefetch ? 1 : 0; }

Status AsDataLoss(const Status& s) {
  // A chunk past the end of its blob is corrupt metadata, not a caller error.
  if (s.code() == base::StatusCode::kOutOfRange) return DataLossError(s.message());
  return s;
}

}  // namespace

BlobDevice::BlobDevice(std::shared_ptr<BlobBackend> backend, std::vector<BlobInfo> blobs,
                       DeviceOptions options)
    : backend_(std::move(backend)), blobs_(std::move(blobs)), options_(std::move(options)) {
  base::MetricsRegistry& r = *options_.metrics;
  for (int i = 0; i < 2; ++i) {
    base::Labels l = {{"source", std::string(IoSourceName(static_cast<IoSource>(i)))}};
    m_.requests[i] = r.GetCounter("rfs_storage_backend_requests_total",
                                  "Range requests made to the blob backend.", l);
    m_.bytes[i] = r.GetCounter("rfs_storage_backend_bytes_total",
                               "Bytes fetched from the blob backend.", l);
    m_.chunks_fetched[i] = r.GetCounter("rfs_storage_chunks_fetched_total",
                                        "Chunks fetched, verified and cached.", l);
  }
  m_.cache_hits = r.GetCounter("rfs_storage_cache_hits_total", "Chunk reads served by the cache.");
  m_.cache_misses =
      r.GetCounter("rfs_storage_cache_misses_total", "Chunk reads that needed a fetch.");
  m_.verify_failures = r.GetCounter("rfs_storage_chunk_errors_total",
                                    "Chunks that failed, by reason.", {{"reason", "digest"}});
  m_.fetch_errors = r.GetCounter("rfs_storage_chunk_errors_total",
                                 "Chunks that failed, by reason.", {{"reason", "fetch"}});
  m_.amplified_bytes = r.GetCounter(
      "rfs_storage_amplified_bytes_total",
      "Bytes of chunks fetched because an on-demand read was widened to amplify_bytes.");
  m_.request_seconds = r.GetHistogram("rfs_storage_backend_request_seconds",
                                      "Latency of backend range requests.",
                                      base::ExponentialBuckets(0.0005, 2, 16));
}

BlobDevice::~BlobDevice() {
  if (flusher_.joinable()) {
    {
      MutexLock lock(&flusher_mu_);
      stopping_ = true;
    }
    flusher_cv_.SignalAll();
    flusher_.join();
  }
  (void)Flush();
  if (cache_manager_ != nullptr) {
    MaintainCache(/*force=*/false);
    // Our blobs are no longer in use: the cap now applies to them too.
    std::vector<std::unique_ptr<Blob>> closing;
    {
      MutexLock lock(&mu_);
      closing.swap(open_);
    }
    closing.clear();
    Status s = cache_manager_->MaybeEnforceCap(/*force=*/true);
    if (!s.ok()) {
      RFS_LOG(kWarning) << "chunk cache size cap: " << s;
    }
  }
}

void BlobDevice::MaintainCache(bool force) {
  std::vector<std::string> used;
  {
    MutexLock lock(&mu_);
    for (const auto& b : open_) {
      if (b != nullptr && b->cache != nullptr && b->used.exchange(false)) {
        used.push_back(b->info->blob_id);
      }
    }
  }
  for (const std::string& id : used) cache_manager_->Touch(id);
  Status s = cache_manager_->MaybeEnforceCap(force);
  if (!s.ok()) {
    RFS_LOG(kWarning) << "chunk cache size cap: " << s;
  }
}

void BlobDevice::FlushLoop() {
  MutexLock lock(&flusher_mu_);
  while (!stopping_) {
    flusher_cv_.WaitUntil(&flusher_mu_,
                          std::chrono::steady_clock::now() + options_.flush_interval);
    if (stopping_) break;
    Status s = Flush();
    if (!s.ok()) {
      RFS_LOG(kWarning) << "chunk cache flush failed: " << s;
    }
    if (cache_manager_ != nullptr) MaintainCache(/*force=*/false);
  }
}

Result<std::unique_ptr<BlobDevice>> BlobDevice::Create(std::shared_ptr<BlobBackend> backend,
                                                       std::vector<BlobInfo> blobs,
                                                       DeviceOptions options) {
  std::shared_ptr<CacheManager> manager = options.cache_manager;
  if (manager != nullptr) {
    if (options.cache_dir.empty()) options.cache_dir = manager->dir();
    if (options.cache_dir != manager->dir()) {
      return base::InvalidArgumentError("cache dir ", options.cache_dir,
                                        " is not the directory of the cache manager given (",
                                        manager->dir(), ")");
    }
    if (options.cache_max_bytes != 0) {
      return base::InvalidArgumentError(
          "cache_max_bytes is the cap of the manager the device makes; with a cache manager "
          "given, set its max_bytes instead");
    }
  }
  struct stat st;
  if (!options.cache_dir.empty() &&
      (::stat(options.cache_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    return base::InvalidArgumentError("cache dir ", options.cache_dir, " is not a directory");
  }
  if (!options.cache_dir.empty() && manager == nullptr) {
    CacheManagerOptions mo;
    mo.dir = options.cache_dir;
    mo.max_bytes = options.cache_max_bytes;
    mo.metrics = options.metrics;
    ASSIGN_OR_RETURN(manager, CacheManager::Open(std::move(mo)));
  }
  std::unique_ptr<BlobDevice> d(
      new BlobDevice(std::move(backend), std::move(blobs), std::move(options)));
  d->cache_manager_ = std::move(manager);
  {
    MutexLock lock(&d->mu_);
    d->open_.resize(d->blobs_.size());
  }
  if (!d->options_.cache_dir.empty()) d->flusher_ = std::thread([dev = d.get()] { dev->FlushLoop(); });
  return d;
}

Result<BlobDevice::Blob*> BlobDevice::BlobFor(uint32_t blob_index) {
  if (blob_index >= blobs_.size()) {
    return DataLossError("chunk refers to blob index ", blob_index, " of ", blobs_.size());
  }
  if (backend_ == nullptr) {
    return base::FailedPreconditionError("no blob backend to read blob ",
                                         blobs_[blob_index].blob_id);
  }
  MutexLock lock(&mu_);
  if (open_[blob_index] != nullptr) return open_[blob_index].get();
  auto b = std::make_unique<Blob>();
  b->info = &blobs_[blob_index];
  ASSIGN_OR_RETURN(b->reader, backend_->Open(b->info->blob_id));
  if (!options_.cache_dir.empty() && b->info->chunk_count > 0 && IsSafeBlobId(b->info->blob_id)) {
    b->lease = cache_manager_->Acquire(b->info->blob_id);
    ASSIGN_OR_RETURN(b->cache, BlobCache::Open(options_.cache_dir, *b->info));
  }
  open_[blob_index] = std::move(b);
  return open_[blob_index].get();
}

bool BlobDevice::Cacheable(const Blob& blob, const ChunkInfo& c) {
  return blob.cache != nullptr && c.index < blob.cache->chunk_count() &&
         blob.info->uncompressed_size > 0 &&
         c.uncompressed_offset <= blob.info->uncompressed_size &&
         c.uncompressed_size <= blob.info->uncompressed_size - c.uncompressed_offset;
}

Status BlobDevice::FetchOneVerified(Blob* blob, const ChunkInfo& c, MutableByteSpan out,
                                    const IoContext& first_ctx, bool after_bad_bytes) {
  const int src = SourceIndex(first_ctx);
  IoContext ctx = first_ctx;
  ctx.after_bad_bytes = after_bad_bytes;
  Status last;
  for (int attempt = 0; attempt < std::max(1, options_.verify_attempts); ++attempt) {
    if (attempt > 0) ctx.after_bad_bytes = true;
    m_.requests[src]->Increment();
    m_.bytes[src]->Increment(c.compressed_size);
    fetched_bytes_.fetch_add(c.compressed_size, std::memory_order_relaxed);
    last = AsDataLoss(storage::ReadChunk(*blob->reader, *blob->info, c, out, ctx));
    if (last.ok() || last.code() != base::StatusCode::kDataLoss) return last;
    m_.verify_failures->Increment();
  }
  return last;
}

Status BlobDevice::FetchRun(Blob* blob, const std::vector<ChunkInfo>& run, const IoContext& ctx,
                            const std::set<uint32_t>& optional) {
  const int src = SourceIndex(ctx);
  // Prefetchers hold back while on-demand fetches run (OnDemandInFlight).
  struct InFlight {
    std::atomic<int>* n;
    ~InFlight() {
      if (n != nullptr) n->fetch_sub(1);
    }
  } in_flight{ctx.source == IoSource::kOnDemand ? &on_demand_in_flight_ : nullptr};
  if (in_flight.n != nullptr) in_flight.n->fetch_add(1);
  const uint64_t start = run.front().compressed_offset;
  const uint64_t end = run.back().compressed_offset + run.back().compressed_size;
  // Not zero-filled: every byte is written by the read or the run fails.
  std::unique_ptr<uint8_t[]> stored_buf(new uint8_t[end - start]);
  base::MutableByteSpan stored(stored_buf.get(), end - start);
  m_.requests[src]->Increment();
  m_.bytes[src]->Increment(stored.size());
  fetched_bytes_.fetch_add(stored.size(), std::memory_order_relaxed);
  // Chunks are decoded, verified and cached as soon as their bytes have
  // arrived (IoContext::on_progress), so receiving the rest of the range
  // overlaps with hashing and writing the cache. Only chunks with a digest
  // that end before the range does are taken early: the digest vouches for
  // their bytes whatever the rest of the answer turns out to be; the others
  // wait for the whole answer to be judged. A chunk whose bytes fail
  // verification is fetched again alone once the range is done.
  Status first_error;
  std::vector<uint8_t> out;
  std::vector<bool> done(run.size(), false);
  std::vector<Status> bad(run.size());  // verification failures
  auto finish = [&](size_t k, Status s) {
    const ChunkInfo& c = run[k];
    if (s.ok()) s = blob->cache->MarkReady(c.index, c.uncompressed_offset, out);
    if (s.ok()) {
      m_.chunks_fetched[src]->Increment();
      cache_manager_->NoteAdded(c.uncompressed_size);
      MutexLock lock(&blob->mu);
      blob->verified[c.index] = c.digest;
    } else {
      m_.fetch_errors->Increment();
      blob->cache->Abort(c.index, s);
      if (first_error.ok() && optional.count(c.index) == 0) first_error = s;
    }
    done[k] = true;
  };
  size_t next = 0;
  bool complete = false;  // the read succeeded: every chunk may be taken
  std::function<void(uint64_t)> arrived = [&](uint64_t filled) {
    for (; next < run.size(); ++next) {
      const ChunkInfo& c = run[next];
      const uint64_t chunk_end = c.compressed_offset + c.compressed_size - start;
      if (chunk_end > filled || (!complete && (chunk_end == stored.size() || !c.has_digest))) {
        break;
      }
      out.resize(c.uncompressed_size);
      Status s = DecodeChunk(*blob->info, c,
                             base::ByteSpan(stored.data() + (c.compressed_offset - start),
                                            c.compressed_size),
                             out);
      if (s.code() == base::StatusCode::kDataLoss) {
        m_.verify_failures->Increment();
        bad[next] = s;
      } else {
        finish(next, s);
      }
    }
  };
  IoContext read_ctx = ctx;
  read_ctx.on_progress = &arrived;
  auto t0 = std::chrono::steady_clock::now();
  Status read = AsDataLoss(blob->reader->ReadAt(start, stored, read_ctx));
  m_.request_seconds->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (read.ok()) {
    complete = true;
    arrived(stored.size());
  }
  for (size_t k = 0; k < run.size(); ++k) {
    if (done[k]) continue;
    const ChunkInfo& c = run[k];
    out.resize(c.uncompressed_size);
    Status s = read;
    if (!bad[k].ok() || s.code() == base::StatusCode::kDataLoss) {
      // Wrong bytes for this chunk, or the answer for the whole range was
      // wrong (a body longer than the range, another Content-Range, a chunk
      // past the blob's end): this chunk alone, once more. Widened chunks
      // are just given up.
      s = optional.count(c.index) != 0
              ? (bad[k].ok() ? s : bad[k])
              : FetchOneVerified(blob, c, out, ctx, /*after_bad_bytes=*/true);
    }
    finish(k, s);
  }
  return first_error;
}

std::set<uint32_t> BlobDevice::Widen(Blob* blob, std::vector<ChunkInfo>* claimed,
                                     std::map<uint32_t, bool>* seen) {
  std::set<uint32_t> added;
  if (options_.amplify_bytes == 0 || !options_.chunk_lookup) return added;
  uint64_t total = 0;
  for (const ChunkInfo& c : *claimed) total += c.compressed_size;
  if (total >= options_.amplify_bytes) return added;
  uint64_t budget = options_.amplify_bytes - total;
  std::vector<ChunkInfo> extra;
  // After the last chunk of each run of the plan (claimed is sorted by
  // offset), take the chunks that follow it in the blob while they are
  // adjacent, missing from the cache and within the budget.
  for (size_t i = 0; i < claimed->size() && budget > 0; ++i) {
    const ChunkInfo& c = (*claimed)[i];
    if (i + 1 < claimed->size() &&
        (*claimed)[i + 1].compressed_offset == c.compressed_offset + c.compressed_size) {
      continue;
    }
    ChunkInfo last = c;
    while (budget > 0 && last.index + 1 < blob->info->chunk_count) {
      Result<ChunkInfo> next = options_.chunk_lookup(blob->info->blob_index, last.index + 1);
      if (!next.ok() || next->compressed_offset != last.compressed_offset + last.compressed_size ||
          next->compressed_size > budget || !Cacheable(*blob, *next) ||
          seen->count(next->index) != 0) {
        break;
      }
      if (blob->cache->Claim(next->index).result != BlobCache::ClaimResult::kClaimed) break;
      seen->emplace(next->index, true);
      added.insert(next->index);
      budget -= next->compressed_size;
      m_.amplified_bytes->Increment(next->compressed_size);
      extra.push_back(*next);
      last = *next;
    }
  }
  if (extra.empty()) return added;
  claimed->insert(claimed->end(), extra.begin(), extra.end());
  std::sort(claimed->begin(), claimed->end(), [](const ChunkInfo& a, const ChunkInfo& b) {
    return a.compressed_offset < b.compressed_offset;
  });
  return added;
}

Status BlobDevice::EnsureCached(Blob* blob, std::vector<ChunkInfo> chunks, const IoContext& ctx,
                                int depth) {
  if (!blob->used.load(std::memory_order_relaxed)) blob->used.store(true, std::memory_order_relaxed);
  std::sort(chunks.begin(), chunks.end(), [](const ChunkInfo& a, const ChunkInfo& b) {
    return a.compressed_offset != b.compressed_offset ? a.compressed_offset < b.compressed_offset
                                                      : a.index < b.index;
  });
  std::vector<ChunkInfo> claimed, ready;
  std::vector<std::pair<ChunkInfo, std::shared_ptr<BlobCache::Pending>>> busy;
  std::map<uint32_t, bool> seen;
  for (const ChunkInfo& c : chunks) {
    if (!seen.emplace(c.index, true).second) continue;
    BlobCache::Claimed r = blob->cache->Claim(c.index);
    switch (r.result) {
      case BlobCache::ClaimResult::kReady: ready.push_back(c); break;
      case BlobCache::ClaimResult::kClaimed: claimed.push_back(c); break;
      case BlobCache::ClaimResult::kBusy: busy.emplace_back(c, std::move(r.pending)); break;
    }
  }
  m_.cache_hits->Increment(ready.size());
  m_.cache_misses->Increment(claimed.size() + busy.size());
  std::set<uint32_t> widened;
  if (ctx.source == IoSource::kOnDemand && !claimed.empty()) {
    widened = Widen(blob, &claimed, &seen);
  }

  // Fetch what we claimed: adjacent chunks in one request each, up to
  // merge_max_bytes. A large plan is cut into up to fetch_parallelism
  // requests fetched at once, so that receiving, verifying and writing the
  // cache overlap instead of taking turns.
  uint64_t total = 0;
  for (const ChunkInfo& c : claimed) total += c.compressed_size;
  const int parallel = std::max(1, options_.fetch_parallelism);
  uint64_t piece = options_.merge_max_bytes;
  if (parallel > 1 && total >= 2 * options_.parallel_min_bytes) {
    piece = std::min(piece, std::max(options_.parallel_min_bytes, base::CeilDiv(total, parallel)));
  }
  std::vector<std::vector<ChunkInfo>> runs;
  for (size_t i = 0; i < claimed.size();) {
    std::vector<ChunkInfo> run = {claimed[i]};
    uint64_t bytes = claimed[i].compressed_size;
    size_t j = i + 1;
    while (j < claimed.size() &&
           claimed[j].compressed_offset == run.back().compressed_offset +
                                               run.back().compressed_size &&
           bytes + claimed[j].compressed_size <= piece) {
      bytes += claimed[j].compressed_size;
      run.push_back(claimed[j++]);
    }
    runs.push_back(std::move(run));
    i = j;
  }
  // Every run ends all its claims (ready or aborted), whatever happens.
  std::vector<Status> results(runs.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k = next.fetch_add(1); k < runs.size(); k = next.fetch_add(1)) {
      results[k] = FetchRun(blob, runs[k], ctx, widened);
    }
  };
  std::vector<std::thread> helpers;
  const size_t extra = std::min(runs.size(), static_cast<size_t>(parallel)) - (runs.empty() ? 0 : 1);
  for (size_t t = 0; t < extra; ++t) helpers.emplace_back(work);
  work();
  for (auto& t : helpers) t.join();
  for (const Status& r : results) {
    if (!r.ok()) return r;
  }
  for (auto& [c, pending] : busy) {
    RETURN_IF_ERROR(blob->cache->Wait(pending, c.index, ctx.deadline));
    ready.push_back(c);
  }
  // Chunks cached earlier (or by others) are verified once against what
  // this plan expects.
  for (const ChunkInfo& c : ready) {
    if (!c.has_digest) continue;
    {
      MutexLock lock(&blob->mu);
      auto it = blob->verified.find(c.index);
      if (it != blob->verified.end() && it->second == c.digest) continue;
    }
    std::vector<uint8_t> data(c.uncompressed_size);
    RETURN_IF_ERROR(blob->cache->ReadCached(c.uncompressed_offset, data));
    if (VerifyChunk(*blob->info, c, data).ok()) {
      MutexLock lock(&blob->mu);
      blob->verified[c.index] = c.digest;
      continue;
    }
    // The cached bytes are not this chunk: drop them and fetch it again
    // (once; a chunk index that keeps changing content is corrupt metadata).
    m_.verify_failures->Increment();
    if (depth >= 2) {
      return DataLossError(ChunkName(*blob->info, c),
                           ": cached bytes keep failing verification (conflicting chunk digests)");
    }
    blob->cache->Invalidate(c.index);
    RETURN_IF_ERROR(EnsureCached(blob, {c}, ctx, depth + 1));
  }
  return Status::Ok();
}

Result<std::vector<DataSlice>> BlobDevice::ReadSlices(const ChunkIoVec& iov, const IoContext& ctx,
                                                      std::vector<uint8_t>* scratch) {
  // Group the plan's cacheable chunks by blob and make them ready.
  std::map<uint32_t, std::vector<ChunkInfo>> by_blob;
  uint64_t uncacheable_bytes = 0;
  for (const IoSegment& s : iov.segments) {
    if (s.kind != IoSegment::Kind::kChunk) continue;
    if (uint64_t{s.offset_in_chunk} + s.length > s.chunk.uncompressed_size) {
      return DataLossError("blob index ", s.chunk.blob_index, " chunk ", s.chunk.index,
                           ": read outside the chunk");
    }
    ASSIGN_OR_RETURN(Blob * blob, BlobFor(s.chunk.blob_index));
    if (Cacheable(*blob, s.chunk)) {
      by_blob[s.chunk.blob_index].push_back(s.chunk);
    } else {
      uncacheable_bytes += s.length;
    }
  }
  for (auto& [index, chunks] : by_blob) {
    ASSIGN_OR_RETURN(Blob * blob, BlobFor(index));
    RETURN_IF_ERROR(EnsureCached(blob, std::move(chunks), ctx));
  }
  scratch->clear();
  scratch->reserve(uncacheable_bytes);  // pointers into it must stay valid
  std::vector<DataSlice> out;
  out.reserve(iov.segments.size());
  std::vector<uint8_t> chunk_buf;
  for (const IoSegment& s : iov.segments) {
    DataSlice d;
    d.length = s.length;
    switch (s.kind) {
      case IoSegment::Kind::kZero: d.kind = DataSlice::Kind::kZero; break;
      case IoSegment::Kind::kBytes:
        d.kind = DataSlice::Kind::kBytes;
        d.bytes = s.bytes;
        break;
      case IoSegment::Kind::kChunk: {
        ASSIGN_OR_RETURN(Blob * blob, BlobFor(s.chunk.blob_index));
        if (Cacheable(*blob, s.chunk)) {
          d.kind = DataSlice::Kind::kFd;
          d.fd = blob->cache->data_fd();
          d.offset = s.chunk.uncompressed_offset + s.offset_in_chunk;
        } else {
          chunk_buf.resize(s.chunk.uncompressed_size);
          RETURN_IF_ERROR(FetchOneVerified(blob, s.chunk, chunk_buf, ctx, false));
          const size_t at = scratch->size();
          scratch->insert(scratch->end(), chunk_buf.begin() + s.offset_in_chunk,
                          chunk_buf.begin() + s.offset_in_chunk + s.length);
          d.kind = DataSlice::Kind::kBytes;
          d.bytes = scratch->data() + at;
        }
        break;
      }
    }
    out.push_back(d);
  }
  return out;
}

Status BlobDevice::Read(const ChunkIoVec& iov, MutableByteSpan dst, const IoContext& ctx) {
  if (dst.size() != iov.total) {
    return base::InternalError("read buffer of ", dst.size(), " bytes for a plan of ", iov.total);
  }
  std::vector<uint8_t> scratch;
  ASSIGN_OR_RETURN(std::vector<DataSlice> slices, ReadSlices(iov, ctx, &scratch));
  uint64_t pos = 0;
  for (const DataSlice& d : slices) {
    if (d.length > dst.size() - pos) return base::InternalError("read plan overflows buffer");
    uint8_t* out = dst.data() + pos;
    switch (d.kind) {
      case DataSlice::Kind::kZero: std::memset(out, 0, d.length); break;
      case DataSlice::Kind::kBytes: std::memcpy(out, d.bytes, d.length); break;
      case DataSlice::Kind::kFd: {
        size_t done = 0;
        while (done < d.length) {
          ssize_t n = ::pread(d.fd, out + done, d.length - done,
                              static_cast<off_t>(d.offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) return base::ErrnoToStatus(n < 0 ? errno : EIO, "read chunk cache");
          done += static_cast<size_t>(n);
        }
        break;
      }
    }
    pos += d.length;
  }
  return Status::Ok();
}

Status BlobDevice::ReadChunk(const ChunkInfo& chunk, MutableByteSpan out, const IoContext& ctx) {
  if (out.size() != chunk.uncompressed_size) {
    return base::InternalError("chunk buffer of ", out.size(), " bytes for a chunk of ",
                               chunk.uncompressed_size);
  }
  ChunkIoVec iov;
  IoSegment s;
  s.kind = IoSegment::Kind::kChunk;
  s.chunk = chunk;
  s.length = chunk.uncompressed_size;
  iov.segments.push_back(s);
  iov.total = s.length;
  return Read(iov, out, ctx);
}

Status BlobDevice::Fetch(const std::vector<ChunkInfo>& chunks, const IoContext& ctx) {
  std::map<uint32_t, std::vector<ChunkInfo>> by_blob;
  for (const ChunkInfo& c : chunks) by_blob[c.blob_index].push_back(c);
  for (auto& [index, list] : by_blob) {
    ASSIGN_OR_RETURN(Blob * blob, BlobFor(index));
    std::vector<ChunkInfo> cacheable;
    for (const ChunkInfo& c : list) {
      if (Cacheable(*blob, c)) cacheable.push_back(c);
    }
    RETURN_IF_ERROR(EnsureCached(blob, std::move(cacheable), ctx));
  }
  return Status::Ok();
}

Status BlobDevice::Flush() {
  std::vector<BlobCache*> caches;
  {
    MutexLock lock(&mu_);
    for (auto& b : open_) {
      if (b != nullptr && b->cache != nullptr) caches.push_back(b->cache.get());
    }
  }
  Status first;
  for (BlobCache* c : caches) {
    Status s = c->Flush();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace rfs::storage
