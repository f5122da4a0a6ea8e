// Plain EROFS images written by mkfs.erofs (the v6 metadata layout RAFS
// shares) read identically through our reader: chunk-based files with an
// extra blob device, chunk-based files inside the image, and flat files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <random>

#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs {
namespace {

using testing::TempDir;

void Write(const std::string& path, const std::string& data) {
  testing::WriteFileBytes(path, std::vector<uint8_t>(data.begin(), data.end()));
}

// Builds the source tree; returns false (with *why) when a feature is
// unavailable to this user.
void BuildSource(const std::string& root) {
  ASSERT_EQ(::mkdir((root + "/dir").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir((root + "/dir/sub").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((root + "/many").c_str(), 0755), 0);
  Write(root + "/empty", "");
  Write(root + "/small", "hello\n");
  Write(root + "/dir/page", std::string(4097, 'p'));
  std::mt19937 rng(42);
  std::string random(300000, '\0');
  for (auto& c : random) c = static_cast<char>(rng());
  Write(root + "/dir/random", random);
  std::string sparse(3 << 20, '\0');
  for (int i = 0; i < 4096; ++i) sparse[(2 << 20) + i] = static_cast<char>(rng());
  Write(root + "/sparse", sparse);
  for (int i = 0; i < 400; ++i) Write(root + "/many/file-" + std::to_string(i), std::to_string(i));
  for (const char* odd : {"-dash", "+plus", "#hash", " space", "zz\xc3\xa9"}) {
    Write(root + "/many/" + odd, odd);
  }
  ASSERT_EQ(::symlink("small", (root + "/link").c_str()), 0);
  ASSERT_EQ(::symlink(std::string(300, 'x').c_str(), (root + "/dir/longlink").c_str()), 0);
  ASSERT_EQ(::symlink("../nowhere", (root + "/dir/dangling").c_str()), 0);
  ASSERT_EQ(::link((root + "/small").c_str(), (root + "/dir/hard1").c_str()), 0);
  ASSERT_EQ(::link((root + "/small").c_str(), (root + "/dir/sub/hard2").c_str()), 0);
  ASSERT_EQ(::mkfifo((root + "/fifo").c_str(), 0640), 0);
  // user.* xattrs: empty, 1000-byte, and one on three files (mkfs shares it).
  for (const char* f : {"/small", "/dir/page", "/dir/random"}) {
    ASSERT_EQ(::setxattr((root + f).c_str(), "user.common", "shared-value", 12, 0), 0);
  }
  ASSERT_EQ(::setxattr((root + "/dir").c_str(), "user.empty", "", 0, 0), 0);
  std::string big(1000, 'v');
  ASSERT_EQ(::setxattr((root + "/empty").c_str(), "user.big", big.data(), big.size(), 0), 0);
  if (testing::IsRoot()) {
    ASSERT_EQ(::setxattr((root + "/dir/sub").c_str(), "trusted.t", "tv", 2, 0), 0);
    ASSERT_EQ(::mknod((root + "/chr").c_str(), S_IFCHR | 0600, makedev(300, 70000)), 0);
    ASSERT_EQ(::mknod((root + "/blk").c_str(), S_IFBLK | 0600, makedev(8, 1)), 0);
    ASSERT_EQ(::mknod((root + "/sock").c_str(), S_IFSOCK | 0600, 0), 0);
    ASSERT_EQ(::chown((root + "/dir/random").c_str(), 1234, 5678), 0);
    ASSERT_EQ(::lchown((root + "/link").c_str(), 99, 98), 0);
  }
  // Distinct mtimes with nanoseconds.
  struct timespec ts[2] = {{1600000000, 123456789}, {1600000000, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root + "/dir/page").c_str(), ts, 0), 0);
}

class ErofsCompatTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ErofsCompatTest, ReadsLikeTheSource) {
  if (!testing::HaveCommand("mkfs.erofs")) GTEST_SKIP() << "mkfs.erofs is not installed";
  TempDir tmp;
  const std::string src = tmp.Sub("src");
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  BuildSource(src);
  if (HasFatalFailure()) return;
  const std::string img = tmp.Sub("image.erofs"), blob = tmp.Sub("blob");
  std::string args = GetParam();
  const bool blobdev = args.find("--blobdev") != std::string::npos;
  if (blobdev) args += "=" + blob;
  const bool preserve_mtime = args.find("--preserve-mtime") != std::string::npos;
  std::string out;
  ASSERT_EQ(testing::RunCommand("mkfs.erofs --quiet " + args + " " + img + " " + src + " 2>&1",
                                &out),
            0)
      << out;

  auto m = meta::OpenMetadataFile(img);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->super().plain_erofs);
  std::map<std::string, std::string> files;
  if (blobdev) {
    ASSERT_EQ((*m)->blobs().size(), 1u);
    files[(*m)->blobs()[0].info.blob_id] = blob;
  }
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                               std::make_shared<storage::LocalFsBackend>("", files));
  ASSERT_TRUE(image.ok()) << image.status();
  testing::CompareOptions o;
  o.mtime = preserve_mtime;
  auto diffs = testing::CompareImageWithDirectory(**image, src, o);
  for (const auto& d : diffs) ADD_FAILURE() << d;
}

// The comparison itself notices changes (so the test above can fail).
TEST(ErofsCompatTest, ComparisonDetectsDifferences) {
  if (!testing::HaveCommand("mkfs.erofs")) GTEST_SKIP() << "mkfs.erofs is not installed";
  TempDir tmp;
  const std::string src = tmp.Sub("src");
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  BuildSource(src);
  if (HasFatalFailure()) return;
  const std::string img = tmp.Sub("image.erofs");
  ASSERT_EQ(testing::RunCommand("mkfs.erofs --quiet " + img + " " + src + " >/dev/null 2>&1"), 0);
  Write(src + "/dir/page", std::string(4097, 'q'));
  ASSERT_EQ(::chmod((src + "/small").c_str(), 0600), 0);
  ASSERT_EQ(::setxattr((src + "/dir").c_str(), "user.new", "x", 1, 0), 0);
  Write(src + "/extra", "x");
  auto m = meta::OpenMetadataFile(img);
  ASSERT_TRUE(m.ok());
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)), nullptr);
  ASSERT_TRUE(image.ok());
  testing::CompareOptions o;
  o.mtime = false;
  auto diffs = testing::CompareImageWithDirectory(**image, src, o);
  std::string all;
  for (const auto& d : diffs) all += d + "\n";
  EXPECT_NE(all.find("/dir/page: content md5"), std::string::npos) << all;
  EXPECT_NE(all.find("/small: mode"), std::string::npos) << all;
  EXPECT_NE(all.find("/dir: xattrs"), std::string::npos) << all;
  EXPECT_NE(all.find("/extra: missing from the image"), std::string::npos) << all;
}

std::string LayoutName(const ::testing::TestParamInfo<std::string>& p) {
  static const char* kNames[] = {"ChunksInBlob4k", "ChunksInBlob64kMtime", "ChunksInImage",
                                 "FlatMtime", "FlatDefault"};
  return kNames[p.index];
}

INSTANTIATE_TEST_SUITE_P(Layouts, ErofsCompatTest,
                         ::testing::Values("--chunksize=4096 --blobdev",
                                           "--preserve-mtime --chunksize=65536 --blobdev",
                                           "--preserve-mtime --chunksize=1048576",
                                           "--preserve-mtime", ""),
                         LayoutName);

}  // namespace
}  // namespace rfs::rafs
