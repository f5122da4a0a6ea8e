// CacheManager: listing of real cache files, LRU eviction under a size cap,
// blobs in use (this process, another open file, another process) never
// removed, garbage collection of unreferenced blobs and stray files, corrupt
// chunk maps, last-used times that survive restarts.
#include "storage/cache_manager.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "storage/blob_cache.h"
#include "storage/blob_device.h"
#include "test/storage/test_blob.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;
using std::chrono::system_clock;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

uint64_t Allocated(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

void SetMtime(const std::string& path, system_clock::time_point t) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  struct timespec times[2] = {{secs, 0}, {secs, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

system_clock::time_point Mtime(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec));
}

// Reads chunks `which` of `blob` through a short-lived device with its own
// manager, so that they land in `dir`.
void CacheChunks(const std::string& dir, const TestBlob& blob, const std::vector<int>& which) {
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&blob});
  base::MetricsRegistry metrics;
  DeviceOptions o;
  o.cache_dir = dir;
  o.metrics = &metrics;
  auto dev = BlobDevice::Create(backend, {blob.info}, o);
  ASSERT_TRUE(dev.ok()) << dev.status();
  std::vector<uint8_t> out(PlanFor(blob, which).total);
  ASSERT_TRUE((*dev)->Read(PlanFor(blob, which), out, {}).ok());
  ASSERT_EQ(out, Concat(blob, which));
}

std::vector<int> AllChunks(const TestBlob& b) {
  std::vector<int> all(b.chunks.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return all;
}

std::shared_ptr<CacheManager> Manager(const std::string& dir, base::MetricsRegistry* metrics,
                                      uint64_t max_bytes = 0) {
  CacheManagerOptions o;
  o.dir = dir;
  o.max_bytes = max_bytes;
  o.metrics = metrics;
  auto m = CacheManager::Open(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : nullptr;
}

std::map<std::string, CacheEntry> ByName(const std::vector<CacheEntry>& list) {
  std::map<std::string, CacheEntry> out;
  for (const CacheEntry& e : list) out[e.blob_id] = e;
  return out;
}

std::vector<std::string> Names(const CacheRemoval& r) {
  std::vector<std::string> out;
  for (const auto& item : r.removed) out.push_back(item.name);
  return out;
}

TEST(CacheManagerTest, ListsWhatADeviceCached) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(8, 64 << 10, 11);
  TestBlob b = MakeBlob(6, 64 << 10, 12);
  CacheChunks(dir.path(), a, AllChunks(a));
  CacheChunks(dir.path(), b, {1, 4});
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  auto list = m->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].blob_id, "blob11");  // sorted by id
  auto by = ByName(*list);
  const CacheEntry& ea = by["blob11"];
  EXPECT_TRUE(ea.has_data && ea.has_map && ea.map_valid);
  EXPECT_EQ(ea.chunk_count, 8u);
  EXPECT_EQ(ea.ready_chunks, 8u);
  EXPECT_FALSE(ea.in_use);
  EXPECT_EQ(ea.data_bytes, Allocated(BlobCache::DataPath(dir.path(), "blob11")));
  EXPECT_EQ(ea.map_bytes, Allocated(BlobCache::MapPath(dir.path(), "blob11")));
  EXPECT_GE(ea.data_bytes, 7u * (64 << 10));
  const CacheEntry& eb = by["blob12"];
  EXPECT_EQ(eb.chunk_count, 6u);
  EXPECT_EQ(eb.ready_chunks, 2u);
  // Sparse: two chunks allocate about two chunks, not the whole range.
  EXPECT_LT(eb.data_bytes, 3u * (64 << 10));
  EXPECT_EQ(eb.apparent_bytes, b.chunks[4].uncompressed_offset + b.plain[4].size());
  auto now = system_clock::now();
  EXPECT_LT(now - ea.last_used, std::chrono::minutes(5));
  auto total = m->TotalBytes();
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(*total, ea.bytes() + eb.bytes());
  EXPECT_NE(metrics.RenderPrometheus().find("rfs_storage_cache_bytes " + std::to_string(*total)),
            std::string::npos)
      << metrics.RenderPrometheus();
}

TEST(CacheManagerTest, InUseThroughASharedManagerAndThroughAnotherOpenFile) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(4, 16 << 10, 21);
  base::MetricsRegistry metrics;
  auto shared = Manager(dir.path(), &metrics);
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&a});
  DeviceOptions o;
  o.cache_manager = shared;  // cache_dir comes from the manager
  o.metrics = &metrics;
  auto dev = BlobDevice::Create(backend, {a.info}, o);
  ASSERT_TRUE(dev.ok()) << dev.status();
  std::vector<uint8_t> out(PlanFor(a, {0}).total);
  ASSERT_TRUE((*dev)->Read(PlanFor(a, {0}), out, {}).ok());
  EXPECT_TRUE(shared->HeldHere("blob21"));
  auto list = shared->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE((*list)[0].in_use);
  // Another manager of the same directory knows nothing of the lease; it
  // sees the lock the open cache holds.
  auto other = Manager(dir.path(), &metrics);
  list = other->List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE((*list)[0].in_use);
  auto evicted = other->EnforceCap(1, false);
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_TRUE(evicted->removed.empty());
  EXPECT_EQ(evicted->skipped_in_use, std::vector<std::string>{"blob21"});
  EXPECT_GT(evicted->bytes_after, 1u);
  auto gc = other->Gc(std::set<std::string>{});
  ASSERT_TRUE(gc.ok());
  EXPECT_TRUE(gc->removed.empty());
  EXPECT_EQ(gc->skipped_in_use, std::vector<std::string>{"blob21"});
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "blob21")));
  dev->reset();
  EXPECT_FALSE(shared->HeldHere("blob21"));
  gc = other->Gc(std::set<std::string>{});
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(Names(*gc), std::vector<std::string>{"blob21"});
  EXPECT_FALSE(Exists(BlobCache::DataPath(dir.path(), "blob21")));
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob21")));
}

TEST(CacheManagerTest, AcquireAloneKeepsABlob) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(2, 16 << 10, 31);
  CacheChunks(dir.path(), a, {0});
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  CacheManager::Lease lease = m->Acquire("blob31");
  CacheManager::Lease moved = std::move(lease);
  auto r = m->EnforceCap(1, false);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->removed.empty());
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob31")));
  lease.Reset();  // moved-from: releases nothing
  EXPECT_TRUE(m->HeldHere("blob31"));
  moved.Reset();
  EXPECT_FALSE(m->HeldHere("blob31"));
  r = m->EnforceCap(1, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), std::vector<std::string>{"blob31"});
  EXPECT_EQ(r->bytes_after, 0u);
}

TEST(CacheManagerTest, EvictsLeastRecentlyUsedFirst) {
  testing::TempDir dir;
  std::vector<TestBlob> blobs;
  for (uint32_t i = 0; i < 4; ++i) blobs.push_back(MakeBlob(4, 32 << 10, 40 + i));
  for (const TestBlob& b : blobs) CacheChunks(dir.path(), b, AllChunks(b));
  // Last use, oldest first: blob42, blob40, blob43, blob41.
  const auto now = system_clock::now();
  const std::map<std::string, int> age_s = {
      {"blob42", 400}, {"blob40", 300}, {"blob43", 200}, {"blob41", 100}};
  for (const auto& [id, age] : age_s) {
    SetMtime(BlobCache::MapPath(dir.path(), id), now - std::chrono::seconds(age));
  }
  base::MetricsRegistry metrics;
  CacheManagerOptions mo;
  mo.dir = dir.path();
  mo.metrics = &metrics;
  mo.touch_interval = std::chrono::milliseconds(0);
  auto m = *CacheManager::Open(mo);
  auto list = *m->List();
  auto by = ByName(list);
  uint64_t total = 0;
  for (const auto& e : list) total += e.bytes();
  // A dry run names the victim and removes nothing.
  auto dry = m->EnforceCap(total - 1, true);
  ASSERT_TRUE(dry.ok());
  EXPECT_EQ(Names(*dry), std::vector<std::string>{"blob42"});
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob42")));
  // Just over the cap by one byte: only the oldest goes.
  auto r = m->EnforceCap(total - 1, false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), std::vector<std::string>{"blob42"});
  EXPECT_EQ(r->bytes_freed, by["blob42"].bytes());
  EXPECT_EQ(r->bytes_after, total - by["blob42"].bytes());
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob42")));
  EXPECT_FALSE(Exists(BlobCache::DataPath(dir.path(), "blob42")));
  // Under the cap: nothing to do.
  r = m->EnforceCap(total, false);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->removed.empty());
  // Room for about two blobs: the next two oldest go, in order.
  const uint64_t two = by["blob41"].bytes() + by["blob43"].bytes();
  r = m->EnforceCap(two, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"blob40"}));
  // Using blob43 makes blob41 the least recently used.
  m->Touch("blob43");
  EXPECT_GT(Mtime(BlobCache::MapPath(dir.path(), "blob43")), now - std::chrono::seconds(150));
  r = m->EnforceCap(by["blob43"].bytes(), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"blob41"}));
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "blob43")));
  const std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("rfs_storage_cache_evictions_total 3"), std::string::npos) << text;
  EXPECT_NE(text.find("rfs_storage_cache_evicted_bytes_total " +
                      std::to_string(by["blob40"].bytes() + by["blob41"].bytes() +
                                     by["blob42"].bytes())),
            std::string::npos)
      << text;
}

TEST(CacheManagerTest, NeverEvictsBlobsInUseAndTheirReadsStayCached) {
  testing::TempDir dir;
  TestBlob old_blob = MakeBlob(4, 32 << 10, 50);
  TestBlob b1 = MakeBlob(4, 32 << 10, 51);
  TestBlob b2 = MakeBlob(4, 32 << 10, 52);
  for (const TestBlob* b : {&old_blob, &b1, &b2}) CacheChunks(dir.path(), *b, AllChunks(*b));
  SetMtime(BlobCache::MapPath(dir.path(), "blob50"),
           system_clock::now() - std::chrono::hours(24));
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&old_blob});
  DeviceOptions o;
  o.cache_manager = m;
  o.metrics = &metrics;
  auto dev = *BlobDevice::Create(backend, {old_blob.info}, o);
  std::vector<uint8_t> out(PlanFor(old_blob, {1}).total);
  ASSERT_TRUE(dev->Read(PlanFor(old_blob, {1}), out, {}).ok());
  EXPECT_EQ(backend->requests, 0u) << "cached by the first device";
  auto r = m->EnforceCap(1, false);
  ASSERT_TRUE(r.ok());
  std::vector<std::string> removed = Names(*r);
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{"blob51", "blob52"}));
  EXPECT_EQ(r->skipped_in_use, std::vector<std::string>{"blob50"});
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob50")));
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "blob50")));
  std::vector<uint8_t> all(PlanFor(old_blob, AllChunks(old_blob)).total);
  ASSERT_TRUE(dev->Read(PlanFor(old_blob, AllChunks(old_blob)), all, {}).ok());
  EXPECT_EQ(all, Concat(old_blob, AllChunks(old_blob)));
  EXPECT_EQ(backend->requests, 0u) << "the in-use blob kept its cache";
}

// A child process holds a blob open through its own device; this process
// must neither evict nor collect it, and may once the child is gone.
TEST(CacheManagerTest, AnotherProcessUsingABlobKeepsIt) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(4, 32 << 10, 61);
  TestBlob b = MakeBlob(4, 32 << 10, 62);
  CacheChunks(dir.path(), b, AllChunks(b));
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    int rc = 0;
    {
      auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&a});
      base::MetricsRegistry metrics;
      DeviceOptions o;
      o.cache_dir = dir.path();
      o.metrics = &metrics;
      auto dev = BlobDevice::Create(backend, {a.info}, o);
      std::vector<uint8_t> out(PlanFor(a, {0, 1}).total);
      if (!dev.ok() || !(*dev)->Read(PlanFor(a, {0, 1}), out, {}).ok() ||
          out != Concat(a, {0, 1})) {
        rc = 1;
      }
      char c = 'r';
      if (::write(ready[1], &c, 1) != 1) rc = 2;
      (void)::read(release[0], &c, 1);  // until the parent closes its end
    }
    ::_exit(rc);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "child failed before reading";
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  auto by = ByName(*m->List());
  EXPECT_TRUE(by["blob61"].in_use);
  EXPECT_FALSE(by["blob62"].in_use);
  EXPECT_LE(by["blob61"].ready_chunks, 2u) << "never more than the child read";
  auto r = m->EnforceCap(1, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), std::vector<std::string>{"blob62"});
  EXPECT_EQ(r->skipped_in_use, std::vector<std::string>{"blob61"});
  auto gc = m->Gc(std::set<std::string>{});
  ASSERT_TRUE(gc.ok());
  EXPECT_TRUE(gc->removed.empty());
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob61")));
  ::close(release[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ::close(ready[0]);
  by = ByName(*m->List());
  EXPECT_FALSE(by["blob61"].in_use);
  EXPECT_EQ(by["blob61"].ready_chunks, 2u) << "flushed when the child's device closed";
  gc = m->Gc(std::set<std::string>{});
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(Names(*gc), std::vector<std::string>{"blob61"});
  EXPECT_FALSE(Exists(BlobCache::DataPath(dir.path(), "blob61")));
}

TEST(CacheManagerTest, GcRemovesUnreferencedBlobsAndOldStrays) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(3, 16 << 10, 71);
  TestBlob b = MakeBlob(3, 16 << 10, 72);
  TestBlob c = MakeBlob(3, 16 << 10, 73);
  for (const TestBlob* t : {&a, &b, &c}) CacheChunks(dir.path(), *t, {0, 2});
  // Strays: a data file without map, a map without data, a temp file.
  testing::WriteFileBytes(dir.Sub("lonely.blob.data"), std::vector<uint8_t>(10000, 1));
  // The map alone is a copy of a real one.
  testing::WriteFileBytes(dir.Sub("orphan.blob.data.chunk_map"),
                          testing::ReadFileBytes(BlobCache::MapPath(dir.path(), "blob71")));
  testing::WriteFileBytes(dir.Sub("blob71.blob.data.tmp.1234"), std::vector<uint8_t>(5000, 2));
  testing::WriteFileBytes(dir.Sub("notes.txt"), {'h', 'i'});
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  const uint64_t bytes_b = ByName(*m->List())["blob72"].bytes();
  const uint64_t bytes_c = ByName(*m->List())["blob73"].bytes();
  // Without a reference list only strays go, and fresh ones are left alone
  // (they may be files being created right now).
  auto r = m->Gc(CacheManager::GcOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->removed.empty()) << r->removed.size() << " removed, first " << r->removed[0].name;
  // A dry run names what would go and removes nothing.
  CacheManager::GcOptions o;
  o.referenced = std::set<std::string>{"blob71", "lonely", "orphan"};
  o.dry_run = true;
  auto dry = m->Gc(o);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(Names(*dry), (std::vector<std::string>{"blob72", "blob73"}));
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "blob72")));
  r = m->Gc(*o.referenced);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"blob72", "blob73"}));
  EXPECT_EQ(r->removed[0].reason, "unreferenced");
  EXPECT_EQ(r->bytes_freed, bytes_b + bytes_c);
  EXPECT_FALSE(Exists(BlobCache::DataPath(dir.path(), "blob72")));
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob73")));
  EXPECT_TRUE(Exists(dir.Sub("lonely.blob.data")));
  // Once old, strays go; nothing else does without a reference list.
  const auto old = system_clock::now() - std::chrono::hours(2);
  for (const char* f : {"lonely.blob.data", "orphan.blob.data.chunk_map",
                        "blob71.blob.data.tmp.1234", "notes.txt"}) {
    SetMtime(dir.Sub(f), old);
  }
  SetMtime(BlobCache::MapPath(dir.path(), "blob71"), old);
  SetMtime(BlobCache::DataPath(dir.path(), "blob71"), old);
  r = m->Gc(CacheManager::GcOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  std::map<std::string, std::string> reasons;
  for (const auto& item : r->removed) reasons[item.name] = item.reason;
  EXPECT_EQ(reasons, (std::map<std::string, std::string>{{"lonely", "stray"},
                                                         {"orphan", "stray"},
                                                         {"blob71.blob.data.tmp.1234", "temp"}}));
  EXPECT_FALSE(Exists(dir.Sub("lonely.blob.data")));
  EXPECT_FALSE(Exists(dir.Sub("orphan.blob.data.chunk_map")));
  EXPECT_FALSE(Exists(dir.Sub("blob71.blob.data.tmp.1234")));
  EXPECT_TRUE(Exists(dir.Sub("notes.txt"))) << "not a cache file";
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "blob71")));
  auto list = *m->List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].ready_chunks, 2u);
  const std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("rfs_storage_cache_gc_removed_total 5"), std::string::npos) << text;
}

// One gc run with a cap: unreferenced blobs go first, then LRU eviction
// counts what is left, and a dry run plans exactly what the real run does.
TEST(CacheManagerTest, GcWithACapPlansOnce) {
  testing::TempDir dir;
  std::vector<TestBlob> blobs;
  for (uint32_t i = 0; i < 4; ++i) blobs.push_back(MakeBlob(3, 32 << 10, 120 + i));
  for (const TestBlob& b : blobs) CacheChunks(dir.path(), b, AllChunks(b));
  const auto now = system_clock::now();
  // blob120 oldest ... blob123 newest.
  for (int i = 0; i < 4; ++i) {
    SetMtime(BlobCache::MapPath(dir.path(), "blob12" + std::to_string(i)),
             now - std::chrono::minutes(40 - i));
  }
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  auto by = ByName(*m->List());
  CacheManager::GcOptions o;
  // blob120 (the oldest) is unreferenced; room for one more blob.
  o.referenced = std::set<std::string>{"blob121", "blob122", "blob123"};
  o.max_bytes = by["blob123"].bytes() + by["blob122"].bytes();
  o.dry_run = true;
  auto plan = m->Gc(o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(Names(*plan), (std::vector<std::string>{"blob120", "blob121"}));
  EXPECT_EQ(plan->removed[0].reason, "unreferenced");
  EXPECT_EQ(plan->removed[1].reason, "lru");
  o.dry_run = false;
  auto done = m->Gc(o);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(Names(*done), Names(*plan));
  EXPECT_EQ(done->bytes_freed, plan->bytes_freed);
  EXPECT_EQ(done->bytes_after, plan->bytes_after);
  EXPECT_EQ(*m->TotalBytes(), done->bytes_after);
  auto left = ByName(*m->List());
  EXPECT_EQ(left.size(), 2u);
  EXPECT_TRUE(left.count("blob122") && left.count("blob123"));
  const std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("rfs_storage_cache_gc_removed_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find("rfs_storage_cache_evictions_total 1"), std::string::npos) << text;
}

TEST(CacheManagerTest, CorruptMapsCountAsNothingReady) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(10, 16 << 10, 81);
  CacheChunks(dir.path(), a, AllChunks(a));
  const std::string map = BlobCache::MapPath(dir.path(), "blob81");
  const std::vector<uint8_t> good = testing::ReadFileBytes(map);
  ASSERT_EQ(good.size(), 16u + 2u);
  base::MetricsRegistry metrics;
  auto m = Manager(dir.path(), &metrics);
  EXPECT_EQ((*m->List())[0].ready_chunks, 10u);
  auto check = [&](std::vector<uint8_t> bytes, bool valid, uint32_t ready, const char* what) {
    testing::WriteFileBytes(map, bytes);
    auto list = m->List();
    ASSERT_TRUE(list.ok()) << what << ": " << list.status();
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].map_valid, valid) << what;
    EXPECT_EQ((*list)[0].ready_chunks, ready) << what;
    EXPECT_TRUE((*list)[0].has_data) << what;
  };
  check({}, false, 0, "empty");
  check({'R', 'F', 'S'}, false, 0, "truncated header");
  std::vector<uint8_t> bad_magic = good;
  bad_magic[0] = 'X';
  check(bad_magic, false, 0, "bad magic");
  std::vector<uint8_t> huge = good;
  base::StoreLe32(huge.data() + 8, 0xFFFFFFFF);
  check(huge, false, 0, "chunk count past the bitmap");
  std::vector<uint8_t> zero = good;
  base::StoreLe32(zero.data() + 8, 0);
  check(zero, false, 0, "zero chunks");
  std::vector<uint8_t> stray_bits = good;
  stray_bits[17] = 0xFF;  // bits for chunks 10..15 do not exist
  check(stray_bits, true, 10, "bits past the chunk count");
  check(std::vector<uint8_t>(good.begin(), good.end() - 1), false, 0, "short bitmap");
  // A corrupt map is garbage once old; a device reopening the blob resets
  // it instead (the data is refetched).
  testing::WriteFileBytes(map, bad_magic);
  CacheManagerOptions mo;
  mo.dir = dir.path();
  mo.metrics = &metrics;
  mo.stray_grace = std::chrono::seconds(0);
  auto gc = (*CacheManager::Open(mo))->Gc(CacheManager::GcOptions{});
  ASSERT_TRUE(gc.ok()) << gc.status();
  ASSERT_EQ(gc->removed.size(), 1u);
  EXPECT_EQ(gc->removed[0].reason, "corrupt");
  EXPECT_FALSE(Exists(map));
  EXPECT_FALSE(Exists(BlobCache::DataPath(dir.path(), "blob81")));
}

TEST(CacheManagerTest, LastUseIsRecordedAndSurvivesARestart) {
  testing::TempDir dir;
  TestBlob a = MakeBlob(3, 16 << 10, 91);
  CacheChunks(dir.path(), a, AllChunks(a));
  const std::string map = BlobCache::MapPath(dir.path(), "blob91");
  const auto long_ago = system_clock::now() - std::chrono::hours(48);
  SetMtime(map, long_ago);
  const auto before = system_clock::now() - std::chrono::seconds(2);
  {
    // Reading cached chunks writes nothing to the map; the release records
    // the use.
    auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&a});
    base::MetricsRegistry metrics;
    DeviceOptions o;
    o.cache_dir = dir.path();
    o.metrics = &metrics;
    auto dev = *BlobDevice::Create(backend, {a.info}, o);
    std::vector<uint8_t> out(PlanFor(a, {2}).total);
    ASSERT_TRUE(dev->Read(PlanFor(a, {2}), out, {}).ok());
    EXPECT_EQ(backend->requests, 0u);
  }
  EXPECT_GE(Mtime(map), before);
  base::MetricsRegistry metrics;
  auto list = *Manager(dir.path(), &metrics)->List();
  EXPECT_GE(list[0].last_used, before);
}

TEST(CacheManagerTest, DeviceEnforcesItsCap) {
  testing::TempDir dir;
  TestBlob old1 = MakeBlob(4, 32 << 10, 101);
  TestBlob old2 = MakeBlob(4, 32 << 10, 102);
  TestBlob fresh = MakeBlob(4, 32 << 10, 103);
  CacheChunks(dir.path(), old1, AllChunks(old1));
  CacheChunks(dir.path(), old2, AllChunks(old2));
  SetMtime(BlobCache::MapPath(dir.path(), "blob101"), system_clock::now() - std::chrono::hours(3));
  SetMtime(BlobCache::MapPath(dir.path(), "blob102"), system_clock::now() - std::chrono::hours(2));
  base::MetricsRegistry metrics;
  const uint64_t one = ByName(*Manager(dir.path(), &metrics)->List())["blob101"].bytes();
  // In the background: the flusher checks once enough was added.
  CacheManagerOptions mo;
  mo.dir = dir.path();
  mo.metrics = &metrics;
  mo.max_bytes = 2 * one + one / 2;  // room for two of the three
  mo.check_bytes = 1;
  auto m = *CacheManager::Open(mo);
  auto backend = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&fresh});
  DeviceOptions o;
  o.cache_manager = m;
  o.metrics = &metrics;
  o.flush_interval = std::chrono::milliseconds(5);
  auto dev = *BlobDevice::Create(backend, {fresh.info}, o);
  std::vector<uint8_t> out(PlanFor(fresh, AllChunks(fresh)).total);
  ASSERT_TRUE(dev->Read(PlanFor(fresh, AllChunks(fresh)), out, {}).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Exists(BlobCache::MapPath(dir.path(), "blob101")) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob101"))) << "least recently used";
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob102")));
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob103")));
  dev.reset();

  // A device making its own manager applies cache_max_bytes when it closes
  // (a short-lived tool run): down to the cap, oldest first.
  DeviceOptions own;
  own.cache_dir = dir.path();
  own.metrics = &metrics;
  own.cache_max_bytes = one / 2;  // less than one whole blob
  TestBlob next = MakeBlob(4, 32 << 10, 104);
  auto backend2 = std::make_shared<SlowMemoryBackend>(std::vector<const TestBlob*>{&next});
  auto dev2 = *BlobDevice::Create(backend2, {next.info}, own);
  std::vector<uint8_t> first(PlanFor(next, {0}).total);
  ASSERT_TRUE(dev2->Read(PlanFor(next, {0}), first, {}).ok());
  dev2.reset();
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob102")));
  EXPECT_FALSE(Exists(BlobCache::MapPath(dir.path(), "blob103")));
  EXPECT_TRUE(Exists(BlobCache::MapPath(dir.path(), "blob104"))) << "most recently used";
}

TEST(CacheManagerTest, BadOptionsAreClearErrors) {
  testing::TempDir dir;
  base::MetricsRegistry metrics;
  CacheManagerOptions mo;
  mo.metrics = &metrics;
  mo.dir = dir.Sub("missing");
  auto m = CacheManager::Open(mo);
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound) << m.status();
  EXPECT_NE(m.status().message().find(dir.Sub("missing")), std::string::npos) << m.status();
  testing::WriteFileBytes(dir.Sub("file"), {1});
  mo.dir = dir.Sub("file");
  EXPECT_EQ(CacheManager::Open(mo).status().code(), StatusCode::kInvalidArgument);
  mo.dir = dir.path();
  auto ok = *CacheManager::Open(mo);
  TestBlob a = MakeBlob(2, 16 << 10, 111);
  DeviceOptions o;
  o.metrics = &metrics;
  o.cache_manager = ok;
  o.cache_dir = dir.Sub("elsewhere");
  auto d = BlobDevice::Create(nullptr, {a.info}, o);
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status();
  o.cache_dir = dir.path();
  o.cache_max_bytes = 100;
  d = BlobDevice::Create(nullptr, {a.info}, o);
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << d.status();
}

// Two open files in one process: the shared lock of an open cache blocks
// the exclusive one deleters take, until the cache closes.
TEST(BlobCacheLockTest, OpenCacheHoldsTheMapLock) {
  testing::TempDir dir;
  BlobInfo info;
  info.blob_id = "locked";
  info.chunk_count = 4;
  info.uncompressed_size = 4 * 4096;
  const std::string map = BlobCache::MapPath(dir.path(), "locked");
  auto cache = BlobCache::Open(dir.path(), info);
  ASSERT_TRUE(cache.ok());
  auto second = BlobCache::Open(dir.path(), info);  // shared with the first
  ASSERT_TRUE(second.ok());
  auto ex = BlobCache::LockMapFile(map, BlobCache::MapLock::kExclusive, false, false);
  EXPECT_EQ(ex.status().code(), StatusCode::kUnavailable) << ex.status();
  cache->reset();
  ex = BlobCache::LockMapFile(map, BlobCache::MapLock::kExclusive, false, false);
  EXPECT_EQ(ex.status().code(), StatusCode::kUnavailable) << "the second still holds it";
  second->reset();
  ex = BlobCache::LockMapFile(map, BlobCache::MapLock::kExclusive, false, false);
  ASSERT_TRUE(ex.ok()) << ex.status();
  // While a deleter holds it, a cache opening waits; once the deleter has
  // unlinked the map, the cache starts on a new one.
  std::thread opener([&] {
    auto c = BlobCache::Open(dir.path(), info);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->ready_count(), 0u);
  });
  // Not synchronisation: gives the opener time to block on the lock, which
  // exercises the retry; the outcome is the same either way.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(::unlink(map.c_str()), 0);
  ASSERT_EQ(::unlink(BlobCache::DataPath(dir.path(), "locked").c_str()), 0);
  ex->Reset();
  opener.join();
  EXPECT_TRUE(Exists(map));
  EXPECT_TRUE(Exists(BlobCache::DataPath(dir.path(), "locked")));
  EXPECT_EQ(BlobCache::LockMapFile(dir.Sub("none"), BlobCache::MapLock::kExclusive, false, false)
                .status()
                .code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace rfs::storage
