// RafsMount over a real /dev/fuse (root only; skipped with the reason
// otherwise): the mounted tree equals the source directory, the image's
// metadata and a kernel EROFS mount of the same image; writes are refused;
// broken blobs give EIO for the affected files only; the mount survives a
// hand-over of its /dev/fuse descriptor, within a process and from a process
// killed with SIGKILL.
#include "rafs/mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <filesystem>
#include <random>
#include <thread>

#include "base/metrics.h"
#include "rafs/builder/builder.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "storage/blob_reader.h"
#include "test/rafs/builder/tree_gen.h"
#include "storage/registry_backend.h"
#include "test/support/dir_compare.h"
#include "test/support/fault_proxy.h"
#include "test/support/local_registry.h"
#include "test/support/kernel_mount.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs {
namespace {

using testing::TempDir;

// Why FUSE mounts cannot run here, or "" when they can.
std::string FuseUnavailable() {
  if (!testing::IsRoot()) return "needs root to mount FUSE";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not available";
  return "";
}

#define REQUIRE_FUSE()                                       \
  do {                                                       \
    std::string why = FuseUnavailable();                     \
    if (!why.empty()) GTEST_SKIP() << why;                   \
  } while (0)

std::shared_ptr<fs::Image> OpenImage(const std::string& boot, const std::string& blob_dir,
                                     storage::DeviceOptions device = {}) {
  auto meta = meta::OpenMetadataFile(boot);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (!meta.ok()) return nullptr;
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*meta)),
                               std::make_shared<storage::LocalFsBackend>(blob_dir), {},
                               std::move(device));
  EXPECT_TRUE(image.ok()) << image.status();
  if (!image.ok()) return nullptr;
  return std::shared_ptr<fs::Image>(std::move(*image));
}

std::unique_ptr<RafsMount> MountAt(std::shared_ptr<fs::Image> image, const std::string& mnt,
                                   MountOptions o = {}) {
  o.mountpoint = mnt;
  auto m = RafsMount::Start(o, std::move(image));
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  return std::move(*m);
}

struct Built {
  std::string src, boot, blobs, blob_path;
};

// Builds `src` (already filled) as an aligned, uncompressed image, which the
// kernel EROFS driver can also mount.
Built BuildAligned(const TempDir& t, const std::string& src) {
  Built b{src, t.Sub("boot"), t.Sub("blobs"), ""};
  ::mkdir(b.blobs.c_str(), 0755);
  builder::BuildOptions o;
  o.aligned = true;
  o.compressor = storage::Compressor::kNone;
  o.digester = base::DigestAlgo::kSha256;
  o.chunk_size = 64 * 1024;
  auto r = builder::BuildFromDirectory(src, b.boot, b.blobs, o);
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) b.blob_path = r->blob_path;
  return b;
}

std::string MakeDir(const TempDir& t, const std::string& name) {
  std::string p = t.Sub(name);
  ::mkdir(p.c_str(), 0755);
  return p;
}

TEST(RafsMountTest, UpstreamFixtureMatchesItsMetadata) {
  REQUIRE_FUSE();
  TempDir t;
  auto image = OpenImage(testing::UpstreamFixture("rafs-v6-2.2.boot"), testing::UpstreamFixture(""));
  ASSERT_NE(image, nullptr);
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(IsMountPoint(mnt).value_or(false));
  auto diffs = testing::CompareImageWithDirectory(*image, mnt);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  ASSERT_TRUE(m->Stop().ok());
  EXPECT_FALSE(IsMountPoint(mnt).value_or(true));
}

TEST(RafsMountTest, BuiltImageEqualsSourceAndKernelErofs) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRichTree(src);
  ASSERT_EQ(::mkdir((src + "/random").c_str(), 0755), 0);
  testing::MakeRandomTree(src + "/random", 7, 600);
  testing::SetMtime(src, 0, 0);  // the builder writes 0 for the root
  Built b = BuildAligned(t, src);
  ASSERT_FALSE(b.blob_path.empty());
  auto image = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image, nullptr);
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);

  testing::DirCompareOptions vs_source;
  auto diffs = testing::CompareDirectories(src, mnt, vs_source);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);

  // Against the kernel's own EROFS driver on the same bytes: everything,
  // including directory sizes and inode numbers. Not st_blocks: like nydusd
  // we report ceil(size / 512) (RAFS-FORMAT 9) where the kernel rounds the
  // size up to whole 4 KiB blocks.
  const std::string kmnt = MakeDir(t, "kernel");
  testing::KernelErofsMount km;
  std::string why;
  if (!km.MountImage(b.boot, b.blob_path, kmnt, &why)) {
    if (testing::RunCommand("grep -qw erofs /proc/filesystems") != 0) {
      GTEST_SKIP() << "kernel without erofs: " << why;
    }
    FAIL() << "kernel EROFS mount failed: " << why;
  }
  testing::DirCompareOptions exact;
  exact.dir_size = true;
  exact.inode_numbers = true;
  diffs = testing::CompareDirectories(kmnt, mnt, exact);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
}

TEST(RafsMountTest, ReadOnlySemantics) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRichTree(src);
  Built b = BuildAligned(t, src);
  auto image = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image, nullptr);
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);

  std::string any_file;
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    if (e.is_regular_file() && !e.is_symlink()) {
      any_file = e.path().string().substr(src.size());
      break;
    }
  }
  ASSERT_FALSE(any_file.empty());
  const std::string f = mnt + any_file;
  errno = 0;
  EXPECT_LT(::open(f.c_str(), O_WRONLY | O_CLOEXEC), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::mkdir((mnt + "/newdir").c_str(), 0755), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::unlink(f.c_str()), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::setxattr(f.c_str(), "user.x", "y", 1, 0), 0);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_NE(::creat((mnt + "/new").c_str(), 0644), 0);
  EXPECT_EQ(errno, EROFS);

  // `.` and `..`, statfs figures.
  struct stat root {}, dot {}, dotdot {};
  ASSERT_EQ(::stat(mnt.c_str(), &root), 0);
  ASSERT_EQ(::stat((mnt + "/.").c_str(), &dot), 0);
  EXPECT_EQ(root.st_ino, dot.st_ino);
  EXPECT_EQ(root.st_ino, 1u);
  ASSERT_EQ(::stat((mnt + "/").c_str(), &dotdot), 0);
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(mnt.c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_bsize, 4096u);
  EXPECT_EQ(vfs.f_files, image->metadata().super().inode_count);
  EXPECT_GT(vfs.f_blocks, 0u);
  EXPECT_NE(vfs.f_flag & ST_RDONLY, 0u);
  EXPECT_EQ(vfs.f_namemax, 255u);

  // xattr size probing and ERANGE.
  std::string with_xattr;
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    if (!e.is_symlink() && ::getxattr(e.path().c_str(), "user.big", nullptr, 0) > 0) {
      with_xattr = e.path().string().substr(src.size());
    }
  }
  if (!with_xattr.empty()) {
    ssize_t n = ::getxattr((mnt + with_xattr).c_str(), "user.big", nullptr, 0);
    ASSERT_GT(n, 1);
    std::string v(static_cast<size_t>(n) - 1, '\0');
    errno = 0;
    EXPECT_LT(::getxattr((mnt + with_xattr).c_str(), "user.big", v.data(), v.size()), 0);
    EXPECT_EQ(errno, ERANGE);
  }
  errno = 0;
  EXPECT_LT(::getxattr(f.c_str(), "user.does-not-exist", nullptr, 0), 0);
  EXPECT_EQ(errno, ENODATA);
}

// Opening files and directories costs no round trip: the first OPEN and
// OPENDIR are answered ENOSYS, after which the kernel opens by itself (and
// sends no RELEASE); contents, O_DIRECTORY checks and the page cache still
// behave.
TEST(RafsMountTest, OpensNeedNoRoundTrips) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  ::mkdir((src + "/d").c_str(), 0755);
  testing::WriteFileBytes(src + "/d/a", std::vector<uint8_t>(70000, 'a'));
  testing::WriteFileBytes(src + "/d/b", std::vector<uint8_t>(5000, 'b'));
  Built b = BuildAligned(t, src);
  auto image = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image, nullptr);
  base::MetricsRegistry metrics;
  const std::string mnt = MakeDir(t, "mnt");
  MountOptions o;
  o.metrics = &metrics;
  auto m = MountAt(image, mnt, o);
  ASSERT_NE(m, nullptr);
  auto requests = [&](const char* op) {
    return metrics.GetCounter("rafs_fuse_requests_total", "", {{"op", op}})->value();
  };

  for (int i = 0; i < 20; ++i) {
    for (const char* name : {"a", "b"}) {
      auto bytes = testing::ReadFileBytes(mnt + "/d/" + name);
      ASSERT_EQ(bytes.size(), name[0] == 'a' ? 70000u : 5000u);
      EXPECT_EQ(bytes.front(), static_cast<uint8_t>(name[0]));
    }
    DIR* d = ::opendir((mnt + "/d").c_str());
    ASSERT_NE(d, nullptr);
    int names = 0;
    while (::readdir(d) != nullptr) ++names;
    ::closedir(d);
    EXPECT_EQ(names, 4);
  }
  EXPECT_LE(requests("open"), 1u) << "the kernel kept asking to open files";
  EXPECT_LE(requests("opendir"), 1u) << "the kernel kept asking to open directories";
  EXPECT_EQ(requests("release"), 0u);
  // Read once each: the page cache is kept across opens.
  EXPECT_LE(requests("read"), 4u);
  EXPECT_GE(requests("read"), 2u);
  EXPECT_LE(requests("readdir"), 2u) << "directory entries are cached across opens";

  errno = 0;
  EXPECT_LT(::open((mnt + "/d/a").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0);
  EXPECT_EQ(errno, ENOTDIR);
  errno = 0;
  EXPECT_LT(::open((mnt + "/d").c_str(), O_RDWR | O_CLOEXEC), 0);
  EXPECT_EQ(errno, EISDIR);
  errno = 0;
  EXPECT_LT(::open((mnt + "/d/b").c_str(), O_RDWR | O_CLOEXEC), 0);
  EXPECT_EQ(errno, EROFS);
}

TEST(RafsMountTest, MountErrorsAreClear) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::WriteFileBytes(src + "/f", {1, 2, 3});
  Built b = BuildAligned(t, src);
  auto image = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image, nullptr);
  MountOptions o;
  o.mountpoint = t.Sub("missing");
  auto missing = RafsMount::Start(o, image);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), base::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos);

  o.mountpoint = src + "/f";
  auto not_dir = RafsMount::Start(o, image);
  ASSERT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.status().message().find("not a directory"), std::string::npos);

  const std::string mnt = MakeDir(t, "mnt");
  auto first = MountAt(image, mnt);
  ASSERT_NE(first, nullptr);
  o.mountpoint = mnt;
  auto busy = RafsMount::Start(o, image);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), base::StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.status().message().find("busy"), std::string::npos);
  // The first mount still serves.
  EXPECT_EQ(testing::ReadFileBytes(mnt + "/f"), (std::vector<uint8_t>{1, 2, 3}));
}

// Files whose chunks live in a missing or corrupt blob read as EIO; the rest
// of the image keeps working and the counter says why.
TEST(RafsMountTest, BrokenBlobGivesEioForAffectedFilesOnly) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  std::string big(300000, '\0');
  std::mt19937 rng(3);
  for (auto& c : big) c = static_cast<char>(rng());
  testing::WriteFileBytes(src + "/data", std::vector<uint8_t>(big.begin(), big.end()));
  ::mkdir((src + "/dir").c_str(), 0755);
  ::symlink("data", (src + "/link").c_str());
  testing::WriteFileBytes(src + "/empty", {});
  Built b = BuildAligned(t, src);
  ASSERT_FALSE(b.blob_path.empty());
  // Flip one byte in the middle of the blob: the chunk holding it fails its
  // digest; other chunks of the same file still verify.
  {
    int fd = ::open(b.blob_path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t c;
    ASSERT_EQ(::pread(fd, &c, 1, 100000), 1);
    c ^= 0xff;
    ASSERT_EQ(::pwrite(fd, &c, 1, 100000), 1);
    ::close(fd);
  }
  base::MetricsRegistry metrics;
  auto image = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image, nullptr);
  const std::string mnt = MakeDir(t, "mnt");
  MountOptions o;
  o.metrics = &metrics;
  o.read_timeout = std::chrono::seconds(10);
  auto m = MountAt(image, mnt, o);
  ASSERT_NE(m, nullptr);

  int fd = ::open((mnt + "/data").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> buf(4096);
  // A good chunk (first 64 KiB) reads fine, the bad one is EIO.
  ASSERT_EQ(::pread(fd, buf.data(), buf.size(), 0), 4096);
  EXPECT_EQ(std::memcmp(buf.data(), big.data(), 4096), 0);
  errno = 0;
  EXPECT_LT(::pread(fd, buf.data(), buf.size(), 100000 & ~4095), 0);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  // The rest of the image is fine.
  struct stat st {};
  EXPECT_EQ(::stat((mnt + "/dir").c_str(), &st), 0);
  char target[16] = {};
  EXPECT_EQ(::readlink((mnt + "/link").c_str(), target, sizeof(target)), 4);
  EXPECT_TRUE(m->serving());
  EXPECT_NE(metrics.RenderPrometheus().find("rafs_fuse_eio_total{reason=\"corrupt\"}"),
            std::string::npos)
      << metrics.RenderPrometheus();

  // A missing blob: every data read is EIO, metadata still works.
  ASSERT_TRUE(m->Stop().ok());
  ASSERT_EQ(::rename(b.blob_path.c_str(), (b.blob_path + ".gone").c_str()), 0);
  auto image2 = OpenImage(b.boot, b.blobs);
  ASSERT_NE(image2, nullptr);
  auto m2 = MountAt(image2, mnt, o);
  ASSERT_NE(m2, nullptr);
  fd = ::open((mnt + "/data").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  errno = 0;
  EXPECT_LT(::pread(fd, buf.data(), buf.size(), 0), 0);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  EXPECT_EQ(::stat((mnt + "/empty").c_str(), &st), 0);
  EXPECT_EQ(testing::ReadFileBytes(mnt + "/empty").size(), 0u);
  EXPECT_TRUE(m2->serving());
}

// Walks `dir` (bounded depth and entry count, whatever the image claims),
// touching every entry the way programs do; returns entries seen.
int HostileWalk(const std::string& dir, int depth) {
  if (depth > 32) return 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  int n = 0;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != ".." && names.size() < 2000) names.push_back(name);
  }
  ::closedir(d);
  for (const std::string& name : names) {
    const std::string p = dir + "/" + name;
    ++n;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;
    char buf[8192];
    ::lgetxattr(p.c_str(), "user.big", buf, sizeof(buf));
    ::llistxattr(p.c_str(), buf, sizeof(buf));
    if (S_ISLNK(st.st_mode)) {
      (void)!::readlink(p.c_str(), buf, sizeof(buf));
    } else if (S_ISREG(st.st_mode)) {
      int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd >= 0) {
        while (::read(fd, buf, sizeof(buf)) > 0) {
        }
        ::close(fd);
      }
    } else if (S_ISDIR(st.st_mode)) {
      n += HostileWalk(p, depth + 1);
    }
  }
  return n;
}

// Bootstraps with flipped bytes either fail to open with a clear error or
// mount and serve what they can (errors for the broken parts); nothing
// crashes or hangs, and the mount keeps serving afterwards.
TEST(RafsMountTest, HostileBootstrapsFailClearlyOrServeErrors) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRichTree(src);
  Built b = BuildAligned(t, src);
  ASSERT_FALSE(b.blob_path.empty());
  const std::vector<uint8_t> good = testing::ReadFileBytes(b.boot);
  const std::string mnt = MakeDir(t, "mnt");
  int refused = 0, mounted = 0;
  for (int seed = 0; seed < 60; ++seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> bad = good;
    const int flips = 1 + seed % 4;
    for (int i = 0; i < flips; ++i) {
      // Mostly past the superblock, where inodes and directories live.
      size_t at = 1024 + rng() % (bad.size() - 1024);
      bad[at] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    const std::string boot = t.Sub("bad-" + std::to_string(seed));
    testing::WriteFileBytes(boot, bad);
    auto meta = meta::OpenMetadataFile(boot);
    if (!meta.ok()) {
      EXPECT_FALSE(meta.status().message().empty());
      ++refused;
      continue;
    }
    auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*meta)),
                                 std::make_shared<storage::LocalFsBackend>(b.blobs));
    if (!image.ok()) {
      ++refused;
      continue;
    }
    MountOptions o;
    o.mountpoint = mnt;
    o.read_timeout = std::chrono::seconds(5);
    auto m = RafsMount::Start(o, std::shared_ptr<fs::Image>(std::move(*image)));
    ASSERT_TRUE(m.ok()) << m.status();
    ++mounted;
    auto start = std::chrono::steady_clock::now();
    HostileWalk(mnt, 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << "seed " << seed;
    struct stat st {};
    EXPECT_EQ(::stat(mnt.c_str(), &st), 0) << "seed " << seed;
    EXPECT_TRUE((*m)->serving()) << "seed " << seed;
    EXPECT_TRUE((*m)->Stop().ok());
  }
  std::cout << refused << " corrupt bootstraps refused, " << mounted << " mounted and walked\n";
  EXPECT_GT(mounted, 0);
}

// The image's prefetch table is fetched into the cache in the background:
// once done, those files read with the blob gone; others do not.
TEST(RafsMountTest, PrefetchTableFillsTheCache) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  std::mt19937 rng(9);
  auto random_bytes = [&rng](size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& c : v) c = static_cast<uint8_t>(rng());
    return v;
  };
  ::mkdir((src + "/hot").c_str(), 0755);
  testing::WriteFileBytes(src + "/hot/a", random_bytes(200000));
  testing::WriteFileBytes(src + "/hot/b", random_bytes(70000));
  testing::WriteFileBytes(src + "/listed", random_bytes(90000));
  testing::WriteFileBytes(src + "/cold", random_bytes(300000));
  const std::string boot = t.Sub("boot"), blobs = MakeDir(t, "blobs");
  builder::BuildOptions bo;
  bo.chunk_size = 64 * 1024;
  bo.digester = base::DigestAlgo::kSha256;
  bo.prefetch_paths = {"/hot", "/listed"};
  auto r = builder::BuildFromDirectory(src, boot, blobs, bo);
  ASSERT_TRUE(r.ok()) << r.status();
  storage::DeviceOptions dev;
  dev.cache_dir = MakeDir(t, "cache");
  auto image = OpenImage(boot, blobs, dev);
  ASSERT_NE(image, nullptr);
  const std::string mnt = MakeDir(t, "mnt");
  MountOptions o;
  o.read_timeout = std::chrono::seconds(5);
  auto m = MountAt(image, mnt, o);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(m->prefetcher(), nullptr);
  // The planner queues asynchronously; wait until something was queued and done.
  for (int i = 0; i < 500 && m->prefetcher()->stats().queued == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(m->prefetcher()->WaitIdle(base::Deadline::After(std::chrono::seconds(30))));
  EXPECT_GT(m->prefetcher()->stats().done, 0u);
  EXPECT_EQ(m->prefetcher()->stats().failed, 0u);
  // Empty the blob (the device keeps it open, so renaming would not do).
  ASSERT_EQ(::truncate(r->blob_path.c_str(), 0), 0);
  for (const char* f : {"/hot/a", "/hot/b", "/listed"}) {
    EXPECT_EQ(testing::ReadFileBytes(mnt + f), testing::ReadFileBytes(src + f)) << f;
  }
  int fd = ::open((mnt + "/cold").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  char buf[4096];
  errno = 0;
  EXPECT_LT(::read(fd, buf, sizeof(buf)), 0);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
}

// The blob comes from a loopback registry through a fault-injecting proxy:
// while the registry answers 503 (retried, then given up at the deadline) a
// reader gets EIO within the read deadline; once it recovers, the same read
// returns the right bytes.
TEST(RafsMountTest, RegistryFaultsGiveEioThenRecover) {
  REQUIRE_FUSE();
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  TempDir t;
  const std::string src = MakeDir(t, "src");
  std::vector<uint8_t> data(600000);
  std::mt19937 rng(4);
  for (auto& c : data) c = static_cast<uint8_t>(rng());
  testing::WriteFileBytes(src + "/data", data);
  const std::string boot = t.Sub("boot"), blobs = MakeDir(t, "blobs");
  builder::BuildOptions bo;
  bo.chunk_size = 64 * 1024;
  bo.digester = base::DigestAlgo::kSha256;
  auto built = builder::BuildFromDirectory(src, boot, blobs, bo);
  ASSERT_TRUE(built.ok()) << built.status();
  auto reg = testing::LocalRegistry::Start(t.Sub("registry"));
  ASSERT_TRUE(reg.ok()) << reg.status();
  ASSERT_TRUE((*reg)->PushBlob("app", testing::ReadFileBytes(built->blob_path)).ok());
  testing::FaultProxy::Options po;
  po.upstream = (*reg)->host();
  auto proxy = testing::FaultProxy::Start(po);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  storage::RegistryOptions ro;
  ro.host = (*proxy)->host();
  ro.repository = "app";
  ro.plain_http = true;
  ro.retry.max_attempts = 3;
  auto backend = storage::RegistryBackend::Create(ro);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto meta = meta::OpenMetadataFile(boot);
  ASSERT_TRUE(meta.ok());
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*meta)), *backend);
  ASSERT_TRUE(image.ok()) << image.status();
  const std::string mnt = MakeDir(t, "mnt");
  base::MetricsRegistry metrics;
  MountOptions o;
  o.read_timeout = std::chrono::seconds(3);
  o.metrics = &metrics;
  auto m = MountAt(std::shared_ptr<fs::Image>(std::move(*image)), mnt, o);
  ASSERT_NE(m, nullptr);

  testing::FaultRule rule;
  rule.path_contains = "/blobs/";
  rule.times = -1;
  rule.fault.kind = testing::Fault::Kind::kStatus;
  rule.fault.status = 503;
  (*proxy)->AddRule(rule);
  int fd = ::open((mnt + "/data").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> buf(65536);
  auto t0 = std::chrono::steady_clock::now();
  errno = 0;
  EXPECT_LT(::pread(fd, buf.data(), buf.size(), 131072), 0);
  EXPECT_EQ(errno, EIO);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_GT((*proxy)->Count("/blobs/"), 0);
  EXPECT_NE(metrics.RenderPrometheus().find("rafs_fuse_eio_total{reason=\"backend\"}"),
            std::string::npos)
      << metrics.RenderPrometheus();

  (*proxy)->ClearRules();
  ASSERT_EQ(::pread(fd, buf.data(), buf.size(), 131072), 65536);
  EXPECT_EQ(std::memcmp(buf.data(), data.data() + 131072, 65536), 0);
  ::close(fd);
  EXPECT_EQ(testing::ReadFileBytes(mnt + "/data"), data);
}

// Stop() while a file is open detaches and aborts instead of hanging.
TEST(RafsMountTest, StopWithOpenFilesDoesNotHang) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::WriteFileBytes(src + "/f", std::vector<uint8_t>(10000, 7));
  Built b = BuildAligned(t, src);
  auto image = OpenImage(b.boot, b.blobs);
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);
  int fd = ::open((mnt + "/f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(m->Stop().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(IsMountPoint(mnt).value_or(true));
  ::close(fd);
}

// The /dev/fuse descriptor handed to a successor in the same process: an
// open file keeps working and new lookups are served.
TEST(RafsMountTest, DetachAndAdoptKeepsServing) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRandomTree(src, 11, 200);
  Built b = BuildAligned(t, src);
  auto image = OpenImage(b.boot, b.blobs);
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);
  int dirfd = ::open(mnt.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0);
  auto fd = m->Detach();
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_FALSE(m->serving());
  EXPECT_TRUE(IsMountPoint(mnt).value_or(false));  // still mounted

  MountOptions o;
  o.mountpoint = mnt;
  o.adopt_fd = fd->Release();
  auto image2 = OpenImage(b.boot, b.blobs);
  auto m2 = RafsMount::Start(o, image2);
  ASSERT_TRUE(m2.ok()) << m2.status();
  auto diffs = testing::CompareDirectories(src, mnt);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  struct stat st {};
  EXPECT_EQ(::fstat(dirfd, &st), 0);
  ::close(dirfd);
  m.reset();  // the detached one must not unmount on destruction
  EXPECT_TRUE(IsMountPoint(mnt).value_or(false));
  EXPECT_TRUE((*m2)->Stop().ok());
  EXPECT_FALSE(IsMountPoint(mnt).value_or(true));
}

// A serving process dies with SIGKILL after passing its /dev/fuse descriptor
// to a keeper (here: the test over a unix socket); a new server adopts it.
TEST(RafsMountTest, SuccessorAdoptsMountOfKilledProcess) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRandomTree(src, 12, 150);
  Built b = BuildAligned(t, src);
  const std::string mnt = MakeDir(t, "mnt");
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(sv[0]);
    auto image = OpenImage(b.boot, b.blobs);
    MountOptions o;
    o.mountpoint = mnt;
    auto m = RafsMount::Start(o, image);
    if (!m.ok()) _exit(1);
    auto fd = (*m)->DupFuseFd();
    if (!fd.ok()) _exit(2);
    char byte = 'f';
    iovec iov{&byte, 1};
    char ctrl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof(ctrl);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int raw = fd->get();
    std::memcpy(CMSG_DATA(c), &raw, sizeof(int));
    if (::sendmsg(sv[1], &msg, 0) != 1) _exit(3);
    for (;;) ::pause();
  }
  ::close(sv[1]);
  char byte = 0;
  iovec iov{&byte, 1};
  char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof(ctrl);
  ASSERT_EQ(::recvmsg(sv[0], &msg, 0), 1);
  int kept = -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  ASSERT_NE(c, nullptr);
  std::memcpy(&kept, CMSG_DATA(c), sizeof(int));
  ::close(sv[0]);
  // The child serves: a first read goes through it.
  auto before = testing::CompareDirectories(src, mnt);
  EXPECT_TRUE(before.empty()) << testing::JoinLines(before);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(IsMountPoint(mnt).value_or(false));

  auto image = OpenImage(b.boot, b.blobs);
  MountOptions o;
  o.mountpoint = mnt;
  o.adopt_fd = kept;
  auto m = RafsMount::Start(o, image);
  ASSERT_TRUE(m.ok()) << m.status();
  // Drop the kernel's caches so the successor really serves the walk.
  testing::RunCommand("echo 3 > /proc/sys/vm/drop_caches");
  auto after = testing::CompareDirectories(src, mnt);
  EXPECT_TRUE(after.empty()) << testing::JoinLines(after);
  EXPECT_TRUE((*m)->Stop().ok());
}

int CountFds() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// 32 threads of random reads and directory walks for a bounded time; every
// byte equals the source; no descriptors leak; the unmount is clean.
TEST(RafsMountTest, StressRandomReadsAndWalks) {
  REQUIRE_FUSE();
  TempDir t;
  const std::string src = MakeDir(t, "src");
  testing::MakeRandomTree(src, 99, 800);
  Built b = BuildAligned(t, src);
  storage::DeviceOptions dev;
  dev.cache_dir = MakeDir(t, "cache");
  auto image = OpenImage(b.boot, b.blobs, dev);
  ASSERT_NE(image, nullptr);
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path().string().substr(src.size()));
  }
  ASSERT_FALSE(files.empty());
  const int fds_before = CountFds();
  const std::string mnt = MakeDir(t, "mnt");
  auto m = MountAt(image, mnt);
  ASSERT_NE(m, nullptr);
  std::atomic<int> failures{0};
  std::atomic<uint64_t> reads{0};
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 rng(i);
      std::vector<uint8_t> a(65536), bb(65536);
      while (std::chrono::steady_clock::now() < until && failures < 5) {
        if (i % 4 == 0) {
          // Walk a directory tree.
          size_t n = 0;
          for (const auto& e : std::filesystem::recursive_directory_iterator(mnt)) {
            (void)e;
            ++n;
          }
          if (n == 0) ++failures;
          continue;
        }
        const std::string& f = files[rng() % files.size()];
        int fs = ::open((src + f).c_str(), O_RDONLY | O_CLOEXEC);
        int fm = ::open((mnt + f).c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        ::fstat(fs, &st);
        off_t off = st.st_size > 0 ? static_cast<off_t>(rng() % st.st_size) : 0;
        size_t len = 1 + rng() % a.size();
        ssize_t na = ::pread(fs, a.data(), len, off);
        ssize_t nb = ::pread(fm, bb.data(), len, off);
        if (fm < 0 || na != nb || (na > 0 && std::memcmp(a.data(), bb.data(), na) != 0)) {
          ++failures;
        }
        ++reads;
        ::close(fs);
        if (fm >= 0) ::close(fm);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 100u);
  ASSERT_TRUE(m->Stop().ok());
  EXPECT_FALSE(IsMountPoint(mnt).value_or(true));
  m.reset();
  image.reset();
  EXPECT_EQ(CountFds(), fds_before);
}

}  // namespace
}  // namespace rfs::rafs
