// The `rafs` binary end to end: output, exit codes and error messages.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include <cstdlib>
#include <fstream>

#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "test/support/local_registry.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs {
namespace {

using testing::RunCommand;
using testing::TempDir;
using testing::UpstreamFixture;

constexpr char kBlobId[] = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";

std::string Rafs() { return RFS_RAFS_BINARY; }

std::string Fixture() { return UpstreamFixture("rafs-v6-2.2.boot"); }

// Runs rafs with arguments; stdout+stderr in *out; returns the exit code.
int RunRafs(const std::string& args, std::string* out) {
  return RunCommand(Rafs() + " " + args + " 2>&1", out);
}

TEST(RafsCliTest, InspectTextAndJson) {
  std::string out;
  ASSERT_EQ(RunRafs("inspect " + Fixture(), &out), 0) << out;
  EXPECT_NE(out.find("rafs v6"), std::string::npos) << out;
  EXPECT_NE(out.find(kBlobId), std::string::npos) << out;
  EXPECT_NE(out.find("HASH_BLAKE3|EXPLICIT_UID_GID|COMPRESSION_ZSTD|INLINED_CHUNK_DIGEST"),
            std::string::npos)
      << out;
  out.clear();
  ASSERT_EQ(RunRafs("inspect --json " + Fixture(), &out), 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["version"], 6);
  EXPECT_EQ(j["compressor"], "zstd");
  EXPECT_EQ(j["digester"], "blake3");
  EXPECT_EQ(j["chunk_size"], 1048576);
  EXPECT_EQ(j["files"], 2);
  EXPECT_EQ(j["directories"], 1);
  EXPECT_EQ(j["blobs"][0]["id"], kBlobId);
  EXPECT_EQ(j["blobs"][0]["chunk_count"], 2);
}

TEST(RafsCliTest, LsRecursiveAndJson) {
  std::string out;
  ASSERT_EQ(RunRafs("ls -R " + Fixture(), &out), 0) << out;
  EXPECT_EQ(out,
            "drwxr-xr-x 2 0 0 67 0.000000000 /\n"
            "-rw-r--r-- 1 0 0 16931 1676819553.628661334 /lib.rs\n"
            "-rw-r--r-- 1 0 0 13400 1676819553.628993084 /sync_io.rs\n");
  out.clear();
  ASSERT_EQ(RunRafs("ls --json " + Fixture() + " /lib.rs", &out), 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["path"], "/lib.rs");
  EXPECT_EQ(j[0]["size"], 16931);
  EXPECT_EQ(j[0]["mtime_nsec"], 628661334);
}

TEST(RafsCliTest, CatAndCheck) {
  std::string out;
  ASSERT_EQ(RunCommand(Rafs() + " cat " + Fixture() + " /sync_io.rs | md5sum", &out), 0);
  EXPECT_EQ(out.substr(0, 32), "5442bc7dc9dc5f985c7594e23866ae6f");
  out.clear();
  ASSERT_EQ(RunRafs("check " + Fixture(), &out), 0) << out;
  EXPECT_NE(out.find("verified 2 chunks"), std::string::npos) << out;
}

TEST(RafsCliTest, CheckNamesTheBadChunkAndExitsThree) {
  TempDir dir;
  auto blob = testing::ReadFileBytes(UpstreamFixture(kBlobId));
  blob[0x1300] ^= 0x20;  // inside chunk 1 (compressed offset 0x12DC, 0xB9E bytes)
  testing::WriteFileBytes(dir.Sub(kBlobId), blob);
  std::string out;
  EXPECT_EQ(RunRafs("check " + Fixture() + " --blob-dir " + dir.path(), &out), 3) << out;
  EXPECT_NE(out.find("rafs check: /sync_io.rs: blob " + std::string(kBlobId) +
                     " chunk 1 (blob offset 4828, 2974 bytes)"),
            std::string::npos)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
}

TEST(RafsCliTest, ErrorsAndExitCodes) {
  std::string out;
  EXPECT_EQ(RunRafs("inspect /nonexistent/image", &out), 1) << out;
  EXPECT_NE(out.find("rafs inspect: open blob /nonexistent/image: no such file or directory"),
            std::string::npos)
      << out;
  out.clear();
  EXPECT_EQ(RunRafs("frobnicate", &out), 2) << out;
  out.clear();
  EXPECT_EQ(RunRafs("cat " + Fixture() + " /missing", &out), 1) << out;
  EXPECT_NE(out.find("no such file or directory: /missing"), std::string::npos) << out;
  out.clear();
  TempDir dir;
  testing::WriteFileBytes(dir.Sub("garbage"), std::vector<uint8_t>(5000, 0x42));
  EXPECT_EQ(RunRafs("inspect " + dir.Sub("garbage"), &out), 3) << out;
  EXPECT_NE(out.find("not a rafs bootstrap"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunRafs("--help", &out), 0);
  EXPECT_NE(out.find("Exit codes"), std::string::npos) << out;
}

TEST(RafsCliTest, ExtractReproducesTheTree) {
  std::vector<testing::TreeEntry> tree;
  auto add = [&](std::string path, uint32_t mode) -> testing::TreeEntry& {
    testing::TreeEntry e;
    e.path = std::move(path);
    e.mode = mode;
    e.uid = testing::IsRoot() ? 1234 : ::getuid();
    e.gid = testing::IsRoot() ? 4321 : ::getgid();
    e.mtime = 1650000000;
    e.mtime_nsec = 42;
    tree.push_back(e);
    return tree.back();
  };
  add("/", S_IFDIR | 0755);
  add("/a", S_IFDIR | 0710).xattrs = {{"user.dir", "d"}};
  add("/a/file", S_IFREG | 0640).data = std::string(200000, 'f');
  add("/a/setuid", S_IFREG | 04755).data = "#!/bin/sh\n";
  add("/a/hard", S_IFREG | 0640).hardlink_to = "/a/file";
  add("/a/link", S_IFLNK | 0777).symlink_target = "file";
  add("/fifo", S_IFIFO | 0644);
  std::string sparse(5u << 20, '\0');
  sparse[3u << 20] = 'x';
  add("/sparse", S_IFREG | 0644).data = sparse;
  add("/x", S_IFREG | 0644).xattrs = {{"user.one", "1"}, {"user.two", std::string(300, 't')}};
  if (testing::IsRoot()) {
    add("/dev", S_IFDIR | 0755);
    add("/dev/null", S_IFCHR | 0666).rdev = makedev(1, 3);
    add("/dev/blk", S_IFBLK | 0600).rdev = makedev(259, 65536);
    add("/x2", S_IFREG | 0644).xattrs = {{"trusted.t", "v"}};
    // A file capability (VFS_CAP_REVISION_2, cap_net_bind_service) on a file
    // with an owner: it must survive the chown that extraction does.
    const char cap[20] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
                          0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    auto& capfile = add("/ping", S_IFREG | 0755);
    capfile.data = "binary";
    capfile.xattrs = {{"security.capability", std::string(cap, sizeof(cap))}};
  }
  testing::WriterOptions o;
  o.chunk_size = 64 << 10;
  auto w = testing::WriteImage(tree, o);
  ASSERT_TRUE(w.ok()) << w.status();
  TempDir dir;
  ASSERT_TRUE(testing::WriteImageToDir(*w, dir.path()).ok());
  std::string out;
  ASSERT_EQ(RunRafs("extract " + dir.Sub("bootstrap") + " " + dir.Sub("out") + " --blob-dir " +
                    dir.Sub("blobs"),
                &out),
            0)
      << out;
  auto m = rafs::meta::OpenMetadataFile(dir.Sub("bootstrap"));
  ASSERT_TRUE(m.ok());
  auto image = rafs::fs::Image::Open(std::shared_ptr<rafs::meta::Metadata>(std::move(*m)),
                                     std::make_shared<storage::LocalFsBackend>(dir.Sub("blobs")));
  ASSERT_TRUE(image.ok());
  testing::CompareOptions co;
  co.dir_nlink = true;
  auto diffs = testing::CompareImageWithDirectory(**image, dir.Sub("out"), co);
  for (const auto& d : diffs) ADD_FAILURE() << d;
  // The sparse file was written with holes.
  struct stat st;
  ASSERT_EQ(::stat(dir.Sub("out/sparse").c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  // A second extract into the same directory refuses: nothing is overwritten.
  out.clear();
  EXPECT_EQ(RunRafs("extract " + dir.Sub("bootstrap") + " " + dir.Sub("out") + " --blob-dir " +
                    dir.Sub("blobs"),
                &out),
            1)
      << out;
  EXPECT_NE(out.find("is not empty"), std::string::npos) << out;
}

// A hostile image: a symlink "aa" pointing outside, and a directory with
// the same name holding a file. Extraction must fail without writing
// through the symlink.
TEST(RafsCliTest, ExtractNeverWritesOutsideTarget) {
  TempDir dir;
  const std::string outside = dir.Sub("outside");
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  auto entry = [](std::string path, uint32_t mode) {
    testing::TreeEntry e;
    e.path = std::move(path);
    e.mode = mode;
    return e;
  };
  testing::TreeEntry link = entry("/aa", S_IFLNK | 0777);
  link.symlink_target = outside;
  testing::TreeEntry f = entry("/ab/pwned", S_IFREG | 0644);
  f.data = "x";
  std::vector<testing::TreeEntry> tree = {entry("/", S_IFDIR | 0755), link,
                                          entry("/ab", S_IFDIR | 0755), f};
  testing::WriterOptions o;
  auto w = testing::WriteImage(tree, o);
  ASSERT_TRUE(w.ok());
  // Rename "ab" to "aa" in the root directory block (v6: names follow dirents).
  std::vector<uint8_t>& b = w->bootstrap;
  size_t renamed = 0;
  for (size_t i = 0; i + 2 < b.size(); ++i) {
    if (b[i] == 'a' && b[i + 1] == 'a' && b[i + 2] == 'a' && b[i + 3] == 'b') {
      b[i + 3] = 'a';
      ++renamed;
    }
  }
  ASSERT_EQ(renamed, 1u);
  ASSERT_TRUE(testing::WriteImageToDir(*w, dir.path()).ok());
  std::string out;
  int rc = RunRafs("extract " + dir.Sub("bootstrap") + " " + dir.Sub("out") + " --blob-dir " +
                   dir.Sub("blobs"),
               &out);
  EXPECT_NE(rc, 0) << out;
  struct stat st;
  EXPECT_NE(::stat((outside + "/pwned").c_str(), &st), 0) << "wrote through the symlink";
}

// Blobs read lazily from a loopback registry, cached, and served from the
// cache once the registry is gone.
TEST(RafsCliTest, RegistryBlobsWithCache) {
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  std::vector<testing::TreeEntry> tree(3);
  tree[0].path = "/";
  tree[0].mode = S_IFDIR | 0755;
  tree[1].path = "/big";
  tree[1].mode = S_IFREG | 0644;
  for (int i = 0; i < 300000; ++i) tree[1].data.push_back(static_cast<char>(i * 31 % 251));
  tree[2].path = "/small";
  tree[2].mode = S_IFREG | 0644;
  tree[2].data = "small file\n";
  testing::WriterOptions o;
  o.chunk_size = 64 << 10;
  auto w = testing::WriteImage(tree, o);
  ASSERT_TRUE(w.ok());
  TempDir dir;
  ASSERT_TRUE(testing::WriteImageToDir(*w, dir.path()).ok());
  const std::string boot = dir.Sub("bootstrap");
  const std::string cache = dir.Sub("cache");
  ASSERT_EQ(::mkdir(cache.c_str(), 0700), 0);
  std::string out;
  {
    TempDir regdir;
    auto reg = testing::LocalRegistry::Start(regdir.path());
    ASSERT_TRUE(reg.ok()) << reg.status();
    for (const auto& [id, bytes] : w->blobs) {
      auto pushed = (*reg)->PushBlob("demo/app", bytes);
      ASSERT_TRUE(pushed.ok());
      ASSERT_EQ(*pushed, id);
    }
    const std::string remote = " --registry " + (*reg)->host() + "/demo/app --plain-http";
    ASSERT_EQ(RunRafs("check " + boot + remote + " --cache-dir " + cache, &out), 0) << out;
    EXPECT_NE(out.find("verified"), std::string::npos) << out;
    out.clear();
    ASSERT_EQ(RunCommand(Rafs() + " cat " + boot + " /small" + remote + " 2>&1", &out), 0);
    EXPECT_EQ(out, "small file\n");
    // A repository that does not hold the blobs: a clear error.
    out.clear();
    EXPECT_EQ(RunRafs("cat " + boot + " /big --registry " + (*reg)->host() +
                          "/other/repo --plain-http",
                      &out),
              1)
        << out;
    EXPECT_NE(out.find("not found (404)"), std::string::npos) << out;
  }  // registry stopped
  out.clear();
  ASSERT_EQ(RunCommand(Rafs() + " cat " + boot + " /big --registry 127.0.0.1:1/demo/app " +
                           "--plain-http --cache-dir " + cache + " | md5sum",
                       &out),
            0);
  EXPECT_EQ(out.substr(0, 32), testing::Md5Hex(std::vector<uint8_t>(tree[1].data.begin(),
                                                                      tree[1].data.end())));
}

}  // namespace
}  // namespace rfs
