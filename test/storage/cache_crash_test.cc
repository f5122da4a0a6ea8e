// kill -9 in the middle of fetches and evictions: whatever a killed process
// leaves in the cache directory, every chunk a map marks ready has exactly
// its bytes, and the next process reuses them.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/blob_cache.h"
#include "storage/blob_device.h"
#include "storage/cache_manager.h"
#include "storage/chunk_reader.h"
#include "test/storage/test_blob.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

constexpr uint32_t kFillerChunks = 8;
constexpr uint32_t kFillerChunkSize = 4096;

uint8_t FillerByte(const std::string& id, uint32_t chunk) {
  return static_cast<uint8_t>(std::hash<std::string>{}(id) + chunk);
}

// The child: reads random chunks of `blob` through a device on a slow
// backend, and (with `evict`) meanwhile creates small filler blobs and
// evicts them under a cap, until it is killed.
[[noreturn]] void RunChild(const std::string& dir, const TestBlob& blob, uint32_t seed,
                           bool evict) {
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&blob});
  backend->delay_us = 2000;
  base::MetricsRegistry metrics;
  DeviceOptions o;
  o.cache_dir = dir;
  o.metrics = &metrics;
  o.flush_interval = std::chrono::milliseconds(3);
  auto dev = BlobDevice::Create(backend, {blob.info}, o);
  if (!dev.ok()) ::_exit(10);
  std::thread filler;
  if (evict) {
    filler = std::thread([&] {
      CacheManagerOptions mo;
      mo.dir = dir;
      mo.metrics = &metrics;
      auto m = CacheManager::Open(mo);
      if (!m.ok()) ::_exit(11);
      std::vector<uint8_t> data(kFillerChunkSize);
      for (int k = 0;; ++k) {
        BlobInfo info;
        info.blob_id = "filler-" + std::to_string(seed) + "-" + std::to_string(k);
        info.chunk_count = kFillerChunks;
        info.uncompressed_size = kFillerChunks * kFillerChunkSize;
        {
          auto cache = BlobCache::Open(dir, info);
          if (!cache.ok()) ::_exit(12);
          for (uint32_t i = 0; i < kFillerChunks; ++i) {
            if ((*cache)->Claim(i).result != BlobCache::ClaimResult::kClaimed) ::_exit(13);
            std::fill(data.begin(), data.end(), FillerByte(info.blob_id, i));
            if (!(*cache)->MarkReady(i, uint64_t{i} * kFillerChunkSize, data).ok()) ::_exit(14);
            if (i % 3 == 0 && !(*cache)->Flush().ok()) ::_exit(15);
          }
        }
        // The big blob (in use) alone exceeds this: every finished filler goes.
        const uint64_t cap = 256u << 10;
        if (!(*m)->EnforceCap(cap, false).ok()) ::_exit(16);
      }
    });
  }
  std::mt19937 rng(seed);
  const int n = static_cast<int>(blob.chunks.size());
  for (;;) {
    int first = static_cast<int>(rng() % static_cast<uint32_t>(n));
    std::vector<int> which = {first};
    if (rng() % 4 == 0 && first + 1 < n) which.push_back(first + 1);
    ChunkIoVec plan = PlanFor(blob, which);
    std::vector<uint8_t> out(plan.total);
    if (!(*dev)->Read(plan, out, {}).ok() || out != Concat(blob, which)) ::_exit(17);
  }
}

struct MapOnDisk {
  bool present = false;
  BlobCache::MapContents contents;
};

MapOnDisk ReadMapFile(const std::string& path) {
  MapOnDisk m;
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return m;
  m.present = true;
  m.contents = BlobCache::ReadMap(fd.get());
  return m;
}

std::vector<uint8_t> ReadAt(const std::string& path, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  ssize_t got = ::pread(fd.get(), out.data(), n, static_cast<off_t>(offset));
  if (got != static_cast<ssize_t>(n)) return {};
  return out;
}

// Every chunk a map marks ready has exactly its bytes. Returns the number
// of ready chunks of the big blob.
uint32_t VerifyCache(const std::string& dir, const TestBlob& blob) {
  uint32_t big_ready = 0;
  DIR* d = ::opendir(dir.c_str());
  EXPECT_NE(d, nullptr);
  if (d == nullptr) return 0;
  const std::string suffix = BlobCache::kMapSuffix;
  while (struct dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - suffix.size());
    MapOnDisk m = ReadMapFile(dir + "/" + name);
    if (!m.present || !m.contents.valid || m.contents.ready_count == 0) continue;
    const std::string data = BlobCache::DataPath(dir, id);
    if (id == blob.info.blob_id) {
      EXPECT_EQ(m.contents.chunk_count, blob.info.chunk_count);
      for (uint32_t i = 0; i < m.contents.chunk_count; ++i) {
        if (!m.contents.IsReady(i)) continue;
        ++big_ready;
        const ChunkInfo& c = blob.chunks[i];
        std::vector<uint8_t> bytes = ReadAt(data, c.uncompressed_offset, c.uncompressed_size);
        EXPECT_TRUE(VerifyChunk(blob.info, c, bytes).ok()) << "chunk " << i << " marked ready";
      }
    } else {
      EXPECT_EQ(id.rfind("filler-", 0), 0u) << "unexpected blob " << id;
      EXPECT_EQ(m.contents.chunk_count, kFillerChunks) << id;
      for (uint32_t i = 0; i < m.contents.chunk_count; ++i) {
        if (!m.contents.IsReady(i)) continue;
        std::vector<uint8_t> bytes = ReadAt(data, uint64_t{i} * kFillerChunkSize, kFillerChunkSize);
        EXPECT_EQ(bytes, std::vector<uint8_t>(kFillerChunkSize, FillerByte(id, i)))
            << id << " chunk " << i << " marked ready";
      }
    }
  }
  ::closedir(d);
  return big_ready;
}

TEST(CacheCrashTest, KillNineMidFetchAndEvictionLeavesOnlyGoodChunks) {
  testing::TempDir dir;
  TestBlob blob = MakeBlob(1024, 8 << 10, 301);
  std::mt19937 rng(20240611);
  uint32_t ready = 0;
  for (int round = 0; round < 14; ++round) {
    const bool evict = round % 2 == 1;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) RunChild(dir.path(), blob, static_cast<uint32_t>(round), evict);
    // The point of the test: kill at varied moments (not synchronisation).
    std::this_thread::sleep_for(std::chrono::milliseconds(3 + rng() % 120));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child stopped by itself (exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1)
        << ") in round " << round;
    const uint32_t now_ready = VerifyCache(dir.path(), blob);
    if (HasFatalFailure() || HasNonfatalFailure()) FAIL() << "after round " << round;
    ready = now_ready;
    std::printf("round %d: killed, %u chunks durable\n", round, ready);
  }
  ASSERT_GT(ready, 0u) << "no chunk ever became durable: the test exercised nothing";
  ASSERT_LT(ready, blob.info.chunk_count) << "nothing left to fetch: kill earlier";

  // The next process: reads everything, fetching only what is not ready.
  uint64_t missing_bytes = 0;
  MapOnDisk m = ReadMapFile(BlobCache::MapPath(dir.path(), blob.info.blob_id));
  ASSERT_TRUE(m.contents.valid);
  for (const ChunkInfo& c : blob.chunks) {
    if (!m.contents.IsReady(c.index)) missing_bytes += c.compressed_size;
  }
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&blob});
  base::MetricsRegistry metrics;
  DeviceOptions o;
  o.cache_dir = dir.path();
  o.metrics = &metrics;
  o.merge_max_bytes = 1;  // one request per chunk, to count them
  {
    auto dev = *BlobDevice::Create(backend, {blob.info}, o);
    std::vector<int> all;
    for (int i = 0; i < static_cast<int>(blob.chunks.size()); ++i) all.push_back(i);
    std::vector<uint8_t> out(PlanFor(blob, all).total);
    ASSERT_TRUE(dev->Read(PlanFor(blob, all), out, {}).ok());
    EXPECT_EQ(out, Concat(blob, all));
  }
  EXPECT_EQ(backend->bytes.load(), missing_bytes);
  EXPECT_EQ(backend->requests.load(), blob.info.chunk_count - ready);
  EXPECT_EQ(VerifyCache(dir.path(), blob), blob.info.chunk_count);
  // What the kills left (filler data files without maps, empty maps) is
  // garbage to gc, and the big blob survives it.
  CacheManagerOptions mo;
  mo.dir = dir.path();
  mo.metrics = &metrics;
  mo.stray_grace = std::chrono::seconds(0);
  auto manager = *CacheManager::Open(mo);
  auto gc = manager->Gc(std::set<std::string>{blob.info.blob_id});
  ASSERT_TRUE(gc.ok()) << gc.status();
  auto list = *manager->List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].blob_id, blob.info.blob_id);
  EXPECT_EQ(list[0].ready_chunks, blob.info.chunk_count);
}

}  // namespace
}  // namespace rfs::storage
