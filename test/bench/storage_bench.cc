// Storage benchmark against a loopback docker-registry, side by side in one
// run:
//   1. cold sequential read of a blob through BlobDevice (cache on) vs curl
//      fetching the same blob in one request: throughput ratio
//   2. cold random 4 KiB reads across the blob: requests and bytes fetched
//      per byte read, with merging (default) and without
//   3. warm sequential read through the cache vs reading the cache file
//      directly: throughput ratio
//   4. peak RSS of the process
//
//   storage_bench [BLOB_MIB] [PARALLELISM] [MIN_PIECE_MIB]
//     BLOB_MIB default 1024 (1 MiB chunks, incompressible); the device's
//     fetch_parallelism and parallel_min_bytes default to DeviceOptions'.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/digest.h"
#include "storage/blob_device.h"
#include "storage/registry_backend.h"
#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace {

using rfs::storage::ChunkInfo;
using rfs::storage::ChunkIoVec;
using rfs::storage::IoSegment;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// High-water mark of resident memory since the last ResetPeakRss(), in MiB.
long PeakRssMib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6) / 1024;
  }
  return -1;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1024;
  rfs::storage::DeviceOptions defaults;
  const int parallelism = argc > 2 ? std::atoi(argv[2]) : defaults.fetch_parallelism;
  const uint64_t min_piece =
      argc > 3 ? std::strtoull(argv[3], nullptr, 10) << 20 : defaults.parallel_min_bytes;
  constexpr uint32_t kChunk = 1 << 20;
  rfs::testing::TempDir dir;
  auto reg = rfs::testing::LocalRegistry::Start(dir.Sub(""));
  if (!reg.ok()) {
    std::fprintf(stderr, "registry: %s\n", reg.status().ToString().c_str());
    return 1;
  }
  // Incompressible chunks, stored raw (the transport is what is measured).
  std::vector<uint8_t> blob(mib * kChunk);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(blob.data() + i, &v, 8);
  }
  rfs::storage::BlobInfo info;
  std::vector<ChunkInfo> chunks;
  for (uint64_t i = 0; i < mib; ++i) {
    ChunkInfo c;
    c.index = static_cast<uint32_t>(i);
    c.compressed_offset = c.uncompressed_offset = i * kChunk;
    c.compressed_size = c.uncompressed_size = kChunk;
    c.has_digest = true;
    c.digest = rfs::base::ComputeDigest(rfs::base::DigestAlgo::kBlake3,
                                        rfs::base::ByteSpan(blob.data() + i * kChunk, kChunk));
    chunks.push_back(c);
  }
  auto id = (*reg)->PushBlob("bench/blob", blob);
  if (!id.ok()) return 1;
  info.blob_id = *id;
  info.compressor = rfs::storage::Compressor::kNone;
  info.chunk_count = static_cast<uint32_t>(mib);
  info.chunk_size = kChunk;
  info.uncompressed_size = info.compressed_size = blob.size();
  blob.clear();
  blob.shrink_to_fit();
  ResetPeakRss();  // measure what reading costs, not the test data

  rfs::storage::RegistryOptions ro;
  ro.host = (*reg)->host();
  ro.repository = "bench/blob";
  ro.plain_http = true;
  auto backend = *rfs::storage::RegistryBackend::Create(ro);

  auto device_with = [&](const std::string& cache, uint64_t merge) {
    rfs::base::MetricsRegistry* m = new rfs::base::MetricsRegistry();  // leaked: per run
    rfs::storage::DeviceOptions o;
    o.cache_dir = cache;
    o.merge_max_bytes = merge;
    o.fetch_parallelism = parallelism;
    o.parallel_min_bytes = min_piece;
    o.metrics = m;
    return std::make_pair(*rfs::storage::BlobDevice::Create(backend, {info}, o), m);
  };
  auto counter = [](rfs::base::MetricsRegistry* m, const char* name) {
    return m->GetCounter(name, "", {{"source", "on_demand"}})->value();
  };
  std::printf("blob: %llu MiB in %llu chunks of 1 MiB, registry %s; fetch_parallelism %d, "
              "parallel_min_bytes %llu MiB\n",
              static_cast<unsigned long long>(mib), static_cast<unsigned long long>(mib),
              ro.host.c_str(), parallelism, static_cast<unsigned long long>(min_piece >> 20));

  // 1. Cold sequential read vs curl.
  const std::string url = "http://" + ro.host + "/v2/bench/blob/blobs/sha256:" + *id;
  double t0 = Now();
  int rc = rfs::testing::RunCommand("curl -fsS -o /dev/null " + url);
  const double curl_s = Now() - t0;
  if (rc != 0) return 1;
  const std::string cache1 = dir.Sub("cache1");
  ::mkdir(cache1.c_str(), 0700);
  auto [dev, m1] = device_with(cache1, 16u << 20);
  std::vector<uint8_t> buf(16u << 20);
  // Reads the whole blob in plans of 16 chunks.
  auto read_all = [&](rfs::storage::BlobDevice* d) {
    for (uint64_t first = 0; first < mib; first += 16) {
      ChunkIoVec iov;
      for (uint64_t i = first; i < std::min(mib, first + 16); ++i) {
        IoSegment s;
        s.kind = IoSegment::Kind::kChunk;
        s.chunk = chunks[i];
        s.length = kChunk;
        iov.segments.push_back(s);
        iov.total += kChunk;
      }
      if (!d->Read(iov, rfs::base::MutableByteSpan(buf.data(), iov.total), {}).ok()) return false;
    }
    return true;
  };
  t0 = Now();
  if (!read_all(dev.get())) return 1;
  const double ours_s = Now() - t0;
  std::printf("\n1. cold sequential read: ours %.0f MiB/s (%llu requests), curl %.0f MiB/s -> "
              "ratio %.2f (target >= 0.8)\n",
              mib / ours_s, static_cast<unsigned long long>(counter(m1, "rfs_storage_backend_requests_total")),
              mib / curl_s, curl_s / ours_s);

  // 3. Warm read through the cache vs the cache file directly.
  t0 = Now();
  for (int rep = 0; rep < 3; ++rep) {
    if (!read_all(dev.get())) return 1;
  }
  const double warm_s = (Now() - t0) / 3;
  int fd = ::open(rfs::storage::BlobCache::DataPath(cache1, *id).c_str(), O_RDONLY);
  t0 = Now();
  for (int rep = 0; rep < 3; ++rep) {
    for (uint64_t off = 0; off < mib * kChunk; off += buf.size()) {
      if (::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off)) <= 0) return 1;
    }
  }
  const double direct_s = (Now() - t0) / 3;
  ::close(fd);
  std::printf("3. warm sequential read: ours %.0f MiB/s, cache file directly %.0f MiB/s -> ratio "
              "%.2f (target >= 0.9)\n",
              mib / warm_s, mib / direct_s, direct_s / warm_s);

  // 2. Cold random 4 KiB reads, with and without merging.
  for (uint64_t merge : {uint64_t{16} << 20, uint64_t{1}}) {
    const std::string cache = dir.Sub(merge > 1 ? "cache-merge" : "cache-nomerge");
    ::mkdir(cache.c_str(), 0700);
    auto [d, m] = device_with(cache, merge);
    std::mt19937_64 r(7);
    const int reads = 2000;
    std::vector<uint8_t> small(8192);
    for (int k = 0; k < reads; ++k) {
      // 4 KiB at a random 4 KiB-aligned place; some straddle two chunks.
      uint64_t off = (r() % (mib * kChunk / 4096 - 1)) * 4096 + (k % 4 == 0 ? kChunk - 2048 : 0);
      off = std::min(off, mib * kChunk - 4096);
      ChunkIoVec iov;
      uint64_t pos = off;
      while (pos < off + 4096) {
        uint64_t i = pos / kChunk;
        IoSegment s;
        s.kind = IoSegment::Kind::kChunk;
        s.chunk = chunks[i];
        s.offset_in_chunk = static_cast<uint32_t>(pos - i * kChunk);
        s.length = std::min<uint64_t>(off + 4096, (i + 1) * kChunk) - pos;
        iov.segments.push_back(s);
        iov.total += s.length;
        pos += s.length;
      }
      if (!d->Read(iov, rfs::base::MutableByteSpan(small.data(), iov.total), {}).ok()) return 1;
    }
    const double read_bytes = reads * 4096.0;
    std::printf("2. cold random 4 KiB reads (%s): %d reads, %llu requests, %.2f requests/read, "
                "%.1f bytes fetched per byte read\n",
                merge > 1 ? "merging" : "no merging", reads,
                static_cast<unsigned long long>(counter(m, "rfs_storage_backend_requests_total")),
                counter(m, "rfs_storage_backend_requests_total") / static_cast<double>(reads),
                counter(m, "rfs_storage_backend_bytes_total") / read_bytes);
  }
  std::printf("4. peak RSS while reading: %ld MiB for a %llu MiB blob\n", PeakRssMib(),
              static_cast<unsigned long long>(mib));
  return 0;
}
