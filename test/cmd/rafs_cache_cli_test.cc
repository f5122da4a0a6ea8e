// `rafs cache ls|gc` and `--cache-max-size` end to end through the rafs
// binary, and `rafs check` killed with SIGKILL while it fills a cache.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "storage/blob_cache.h"
#include "storage/chunk_reader.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

namespace rfs {
namespace {

using testing::RunCommand;
using testing::TempDir;

std::string Rafs() { return RFS_RAFS_BINARY; }

int RunRafs(const std::string& args, std::string* out) {
  return RunCommand(Rafs() + " " + args + " 2>&1", out);
}

nlohmann::json RunJson(const std::string& args) {
  std::string out;
  EXPECT_EQ(RunCommand(Rafs() + " " + args, &out), 0) << args;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// An image with one file of `bytes` pseudo-random bytes in 64 KiB chunks,
// written to `dir` (bootstrap, blobs/<id>). Returns the blob id.
std::string MakeImage(const std::string& dir, size_t bytes, uint32_t seed) {
  std::vector<testing::TreeEntry> tree(2);
  tree[0].path = "/";
  tree[0].mode = S_IFDIR | 0755;
  tree[1].path = "/data";
  tree[1].mode = S_IFREG | 0644;
  std::mt19937 rng(seed);
  tree[1].data.resize(bytes);
  for (char& c : tree[1].data) c = static_cast<char>(rng() % 61);  // compressible somewhat
  testing::WriterOptions o;
  o.chunk_size = 64 << 10;
  auto w = testing::WriteImage(tree, o);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return "";
  EXPECT_TRUE(testing::WriteImageToDir(*w, dir).ok());
  EXPECT_EQ(w->blob_ids.size(), 1u);
  return w->blob_ids.empty() ? "" : w->blob_ids[0];
}

struct Images {
  TempDir tmp;
  std::string a, b;          // image directories
  std::string id_a, id_b;    // their blob ids
  std::string cache;
  Images() {
    a = tmp.Sub("a");
    b = tmp.Sub("b");
    cache = tmp.Sub("cache");
    EXPECT_EQ(::mkdir(cache.c_str(), 0700), 0);
    id_a = MakeImage(a, 600000, 1);
    id_b = MakeImage(b, 400000, 2);
  }
  std::string Check(const std::string& image_dir, const std::string& extra = "") const {
    return "check " + image_dir + "/bootstrap --blob-dir " + image_dir + "/blobs --cache-dir " +
           cache + " " + extra;
  }
};

std::map<std::string, nlohmann::json> ListCache(const std::string& cache) {
  nlohmann::json j = RunJson("cache ls --json --cache-dir " + cache);
  std::map<std::string, nlohmann::json> out;
  for (const auto& b : j["blobs"]) out[b["blob_id"].get<std::string>()] = b;
  return out;
}

TEST(RafsCacheCliTest, LsShowsWhatCheckCached) {
  Images im;
  std::string out;
  ASSERT_EQ(RunRafs(im.Check(im.a), &out), 0) << out;
  ASSERT_EQ(RunRafs(im.Check(im.b), &out), 0) << out;
  nlohmann::json j = RunJson("cache ls --json --cache-dir " + im.cache);
  ASSERT_EQ(j["blobs"].size(), 2u) << j.dump();
  uint64_t total = 0;
  for (const auto& b : j["blobs"]) {
    EXPECT_EQ(b["ready_chunks"], b["chunks"]) << b.dump();
    EXPECT_GT(b["chunks"].get<int>(), 0);
    EXPECT_EQ(b["in_use"], false);
    EXPECT_EQ(b["map_valid"], true);
    EXPECT_GT(b["bytes"].get<uint64_t>(), 0u);
    total += b["bytes"].get<uint64_t>();
  }
  EXPECT_EQ(j["total_bytes"].get<uint64_t>(), total);
  auto by = ListCache(im.cache);
  ASSERT_TRUE(by.count(im.id_a) && by.count(im.id_b));
  EXPECT_EQ(by[im.id_a]["chunks"], 10);  // 600000 bytes in 64 KiB chunks
  out.clear();
  ASSERT_EQ(RunRafs("cache ls --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("BLOB"), std::string::npos) << out;
  EXPECT_NE(out.find(im.id_a), std::string::npos) << out;
  EXPECT_NE(out.find(" 10/10 "), std::string::npos) << out;
  EXPECT_NE(out.find("2 blobs, "), std::string::npos) << out;
  // A corrupt map is listed, not fatal.
  testing::WriteFileBytes(storage::BlobCache::MapPath(im.cache, im.id_b), {'x'});
  out.clear();
  ASSERT_EQ(RunRafs("cache ls --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("(corrupt chunk map)"), std::string::npos) << out;
  // Bad input: one clear line.
  out.clear();
  EXPECT_EQ(RunRafs("cache ls --cache-dir " + im.tmp.Sub("nope"), &out), 1) << out;
  EXPECT_NE(out.find("rafs cache ls: chunk cache directory " + im.tmp.Sub("nope")),
            std::string::npos)
      << out;
  out.clear();
  EXPECT_EQ(RunRafs("cache ls", &out), 2) << out;
}

TEST(RafsCacheCliTest, GcKeepsWhatBootstrapsReference) {
  Images im;
  std::string out;
  ASSERT_EQ(RunRafs(im.Check(im.a), &out), 0) << out;
  ASSERT_EQ(RunRafs(im.Check(im.b), &out), 0) << out;
  const std::string keep_a = " --keep " + im.a + "/bootstrap";
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --dry-run --cache-dir " + im.cache + keep_a, &out), 0) << out;
  EXPECT_NE(out.find("would remove " + im.id_b + " (unreferenced, "), std::string::npos) << out;
  EXPECT_EQ(out.find(im.id_a), std::string::npos) << out;
  EXPECT_TRUE(Exists(storage::BlobCache::DataPath(im.cache, im.id_b))) << "dry run";
  // A --keep that does not load stops everything.
  out.clear();
  EXPECT_EQ(RunRafs("cache gc --cache-dir " + im.cache + keep_a + " --keep " + im.tmp.Sub("typo"),
                    &out),
            1)
      << out;
  EXPECT_NE(out.find("rafs cache gc: --keep " + im.tmp.Sub("typo")), std::string::npos) << out;
  EXPECT_TRUE(Exists(storage::BlobCache::DataPath(im.cache, im.id_b)));
  const uint64_t bytes_b = ListCache(im.cache)[im.id_b]["bytes"].get<uint64_t>();
  nlohmann::json j = RunJson("cache gc --json --cache-dir " + im.cache + keep_a);
  ASSERT_EQ(j["removed"].size(), 1u) << j.dump();
  EXPECT_EQ(j["removed"][0]["name"], im.id_b);
  EXPECT_EQ(j["removed"][0]["reason"], "unreferenced");
  EXPECT_EQ(j["bytes_freed"].get<uint64_t>(), bytes_b);
  EXPECT_FALSE(Exists(storage::BlobCache::DataPath(im.cache, im.id_b)));
  EXPECT_FALSE(Exists(storage::BlobCache::MapPath(im.cache, im.id_b)));
  auto by = ListCache(im.cache);
  EXPECT_EQ(by.size(), 1u);
  EXPECT_TRUE(by.count(im.id_a));
  // Both images referenced: nothing goes.
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --cache-dir " + im.cache + keep_a + " --keep " + im.b + "/bootstrap",
                    &out),
            0)
      << out;
  EXPECT_NE(out.find("freed 0 B (0 bytes) in 0 items"), std::string::npos) << out;
}

TEST(RafsCacheCliTest, GcMaxSizeEvictsLeastRecentlyUsedButNotBlobsInUse) {
  Images im;
  std::string out;
  ASSERT_EQ(RunRafs(im.Check(im.a), &out), 0) << out;
  ASSERT_EQ(RunRafs(im.Check(im.b), &out), 0) << out;
  // a used long ago, b just now.
  const auto old = std::chrono::system_clock::now() - std::chrono::hours(5);
  const time_t secs = std::chrono::system_clock::to_time_t(old);
  struct timespec times[2] = {{secs, 0}, {secs, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, storage::BlobCache::MapPath(im.cache, im.id_a).c_str(), times, 0),
            0);
  auto by = ListCache(im.cache);
  const uint64_t bytes_b = by[im.id_b]["bytes"].get<uint64_t>();
  out.clear();
  EXPECT_EQ(RunRafs("cache gc --max-size 10Q --cache-dir " + im.cache, &out), 2) << out;
  EXPECT_NE(out.find("unknown unit 'Q'"), std::string::npos) << out;
  // Room for b only: a goes.
  nlohmann::json j = RunJson("cache gc --json --max-size " + std::to_string(bytes_b) +
                             " --cache-dir " + im.cache);
  ASSERT_EQ(j["removed"].size(), 1u) << j.dump();
  EXPECT_EQ(j["removed"][0]["name"], im.id_a);
  EXPECT_EQ(j["removed"][0]["reason"], "lru");
  EXPECT_EQ(j["bytes_after"].get<uint64_t>(), bytes_b);
  // This process holds b open: `--max-size 0` must keep it.
  storage::BlobInfo info;
  info.blob_id = im.id_b;
  info.chunk_count = by[im.id_b]["chunks"].get<uint32_t>();
  auto held = storage::BlobCache::Open(im.cache, info);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ((*held)->ready_count(), info.chunk_count);
  EXPECT_EQ(ListCache(im.cache)[im.id_b]["in_use"], true);
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --max-size 0 --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("kept " + im.id_b + " (in use)"), std::string::npos) << out;
  EXPECT_NE(out.find("blobs in use keep the cache above --max-size 0"), std::string::npos) << out;
  EXPECT_TRUE(Exists(storage::BlobCache::DataPath(im.cache, im.id_b)));
  held->reset();
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --max-size 0 --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("removed " + im.id_b + " (lru, "), std::string::npos) << out;
  EXPECT_TRUE(ListCache(im.cache).empty());
}

TEST(RafsCacheCliTest, GcRemovesOldStrays) {
  Images im;
  std::string out;
  ASSERT_EQ(RunRafs(im.Check(im.a), &out), 0) << out;
  testing::WriteFileBytes(im.cache + "/leftover.blob.data", std::vector<uint8_t>(8192, 7));
  testing::WriteFileBytes(im.cache + "/x.blob.data.tmp.99", std::vector<uint8_t>(100, 7));
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("in 0 items"), std::string::npos) << "fresh strays stay: " << out;
  out.clear();
  EXPECT_EQ(RunRafs("cache gc --grace 1w --cache-dir " + im.cache, &out), 2) << out;
  out.clear();
  ASSERT_EQ(RunRafs("cache gc --grace 0 --cache-dir " + im.cache, &out), 0) << out;
  EXPECT_NE(out.find("removed leftover (stray, "), std::string::npos) << out;
  EXPECT_NE(out.find("removed x.blob.data.tmp.99 (temp, "), std::string::npos) << out;
  EXPECT_NE(out.find("in 2 items"), std::string::npos) << out;
  EXPECT_TRUE(Exists(storage::BlobCache::DataPath(im.cache, im.id_a)));
}

TEST(RafsCacheCliTest, CacheMaxSizeCapsTheCacheOfOtherCommands) {
  Images im;
  std::string out;
  ASSERT_EQ(RunRafs(im.Check(im.a), &out), 0) << out;
  const uint64_t bytes_a = ListCache(im.cache)[im.id_a]["bytes"].get<uint64_t>();
  // With a cap just above a, checking b evicts a (least recently used).
  out.clear();
  ASSERT_EQ(RunRafs(im.Check(im.b, "--cache-max-size " + std::to_string(bytes_a + 4096)), &out), 0)
      << out;
  auto by = ListCache(im.cache);
  EXPECT_FALSE(by.count(im.id_a)) << out;
  ASSERT_TRUE(by.count(im.id_b));
  EXPECT_EQ(by[im.id_b]["ready_chunks"], by[im.id_b]["chunks"]);
  // Bad values are clear errors.
  out.clear();
  EXPECT_EQ(RunRafs(im.Check(im.b, "--cache-max-size lots"), &out), 1) << out;
  EXPECT_NE(out.find("rafs check: --cache-max-size: bad size 'lots'"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunRafs("check " + im.b + "/bootstrap --blob-dir " + im.b +
                        "/blobs --cache-max-size 1G",
                    &out),
            1)
      << out;
  EXPECT_NE(out.find("--cache-max-size needs --cache-dir"), std::string::npos) << out;
}

// A registry serving blobs from memory, slowly: each range GET waits
// `delay` first (so that a `rafs check` reading through it runs for
// seconds and flushes its cache map several times on the way).
class SlowRegistry {
 public:
  SlowRegistry(std::map<std::string, std::vector<uint8_t>> blobs, std::chrono::milliseconds delay)
      : blobs_(std::move(blobs)), delay_(delay) {
    server_.Get(R"(/v2/.+/blobs/sha256:([0-9a-f]{64}))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  std::this_thread::sleep_for(delay_);
                  auto it = blobs_.find(req.matches[1]);
                  if (it == blobs_.end()) {
                    res.status = 404;
                    return;
                  }
                  // httplib answers a Range request with 206 and the slice.
                  res.set_content(reinterpret_cast<const char*>(it->second.data()),
                                  it->second.size(), "application/octet-stream");
                });
    port_ = server_.bind_to_any_port("127.0.0.1");
    // Bound and listening already: connections queue until the loop runs.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~SlowRegistry() {
    server_.stop();
    thread_.join();
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  bool ok() const { return port_ > 0; }

 private:
  std::map<std::string, std::vector<uint8_t>> blobs_;
  std::chrono::milliseconds delay_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
};

// Where every chunk of the image's one file is.
std::vector<storage::ChunkInfo> FileChunks(const rafs::meta::Metadata& m) {
  std::vector<storage::ChunkInfo> out;
  auto ino = rafs::meta::ResolvePath(m, "/data");
  EXPECT_TRUE(ino.ok());
  auto attr = m.GetAttr(*ino);
  auto plan = m.Read(*ino, 0, attr->size);
  EXPECT_TRUE(plan.ok()) << plan.status();
  for (const auto& s : plan->segments) {
    if (s.kind == storage::IoSegment::Kind::kChunk) out.push_back(s.chunk);
  }
  return out;
}

// `rafs check` filling a cache from a slow registry, killed at varied
// moments: every chunk the map marks ready verifies, and a last check
// completes the cache.
TEST(RafsCacheCliTest, CheckKilledWithSigkillLeavesAConsistentCache) {
  TempDir tmp;
  const std::string image = tmp.Sub("img");
  const std::string cache = tmp.Sub("cache");
  ASSERT_EQ(::mkdir(cache.c_str(), 0700), 0);
  const std::string id = MakeImage(image, 12u << 20, 3);
  auto meta = rafs::meta::OpenMetadataFile(image + "/bootstrap");
  ASSERT_TRUE(meta.ok()) << meta.status();
  const storage::BlobInfo info = (*meta)->BlobInfos()[0];
  const std::vector<storage::ChunkInfo> chunks = FileChunks(**meta);
  ASSERT_EQ(chunks.size(), 192u);
  SlowRegistry registry({{id, testing::ReadFileBytes(image + "/blobs/" + id)}},
                        std::chrono::milliseconds(10));
  ASSERT_TRUE(registry.ok());
  const std::string rafs = Rafs();
  const std::string boot = image + "/bootstrap";
  const std::string remote = registry.host() + "/demo/app";
  std::mt19937 rng(77);
  uint32_t ready = 0;
  int kills = 0;
  for (int round = 0; round < 8 && ready < chunks.size(); ++round) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execl(rafs.c_str(), rafs.c_str(), "check", boot.c_str(), "--registry", remote.c_str(),
              "--plain-http", "--cache-dir", cache.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Varied kill moments are the point here, not synchronisation.
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 1400));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++kills;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "check failed, round " << round;
    }
    base::UniqueFd fd(::open(storage::BlobCache::MapPath(cache, id).c_str(), O_RDONLY));
    if (!fd.valid()) continue;  // killed before it got that far
    storage::BlobCache::MapContents map = storage::BlobCache::ReadMap(fd.get());
    if (!map.valid) continue;
    ASSERT_EQ(map.chunk_count, info.chunk_count);
    base::UniqueFd data(::open(storage::BlobCache::DataPath(cache, id).c_str(), O_RDONLY));
    uint32_t now_ready = 0;
    for (const storage::ChunkInfo& c : chunks) {
      if (!map.IsReady(c.index)) continue;
      ++now_ready;
      std::vector<uint8_t> bytes(c.uncompressed_size);
      ASSERT_EQ(::pread(data.get(), bytes.data(), bytes.size(),
                        static_cast<off_t>(c.uncompressed_offset)),
                static_cast<ssize_t>(bytes.size()))
          << "chunk " << c.index << " marked ready without its data";
      EXPECT_TRUE(storage::VerifyChunk(info, c, bytes).ok()) << "chunk " << c.index;
    }
    EXPECT_GE(now_ready, ready) << "a killed run lost chunks an earlier run made durable";
    ready = now_ready;
    std::printf("round %d: %s, %u of %zu chunks durable\n", round,
                WIFSIGNALED(status) ? "killed" : "finished", ready, chunks.size());
  }
  EXPECT_GT(kills, 0) << "every run finished before its kill: nothing was tested";
  std::string out;
  ASSERT_EQ(RunRafs("check " + boot + " --registry " + remote + " --plain-http --cache-dir " +
                        cache,
                    &out),
            0)
      << out;
  auto by = ListCache(cache);
  ASSERT_TRUE(by.count(id));
  EXPECT_EQ(by[id]["ready_chunks"], by[id]["chunks"]);
}

}  // namespace
}  // namespace rfs
