// Images written by the independent test writer (test/support/rafs_writer)
// read back identically through the reader, for v5 and v6, every
// compressor, digester and blob layout.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <random>

#include "rafs/fs/checker.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "test/support/memory_backend.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs {
namespace {

using testing::BlobLayout;
using testing::TreeEntry;
using testing::WriterOptions;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Every inode kind, xattrs, a multi-block directory, hard links, multi-chunk
// and large sparse files. `chunk` scales the file sizes.
std::vector<TreeEntry> RichTree(uint32_t chunk, bool large_sparse) {
  std::vector<TreeEntry> t;
  auto add = [&](std::string path, uint32_t mode) -> TreeEntry& {
    TreeEntry e;
    e.path = std::move(path);
    e.mode = mode;
    e.uid = 1000;
    e.gid = 100;
    e.mtime = 1700000000 + t.size();
    e.mtime_nsec = static_cast<uint32_t>(t.size() * 1000 + 7);
    t.push_back(e);
    return t.back();
  };
  add("/", S_IFDIR | 0755).xattrs = {{"user.root", "r"}};
  add("/bin", S_IFDIR | 0755);
  add("/bin/tool", S_IFREG | 04755).data = RandomBytes(chunk * 3 + 1234, 1);
  add("/bin/empty", S_IFREG | 0644);
  add("/bin/small", S_IFREG | 0600).data = "hello, world\n";
  auto& x = add("/bin/xattrs", S_IFREG | 0644);
  x.data = "x";
  x.xattrs = {{"user.a", ""},
              {"user.long", std::string(1000, 'v')},
              {"trusted.overlay.opaque", "y"},
              {"security.capability", std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8)}};
  add("/bin/hard-a", S_IFREG | 0644).data = "shared contents";
  add("/bin/hard-b", S_IFREG | 0644).hardlink_to = "/bin/hard-a";
  add("/etc", S_IFDIR | 0700).uid = 0;
  add("/etc/sub", S_IFDIR | 0750);
  add("/etc/sub/hard-c", S_IFREG | 0644).hardlink_to = "/bin/hard-a";
  add("/etc/sub/deep", S_IFDIR | 0755);
  add("/etc/sub/deep/file", S_IFREG | 0444).data = std::string(chunk, 'z');  // exactly one chunk
  add("/links", S_IFDIR | 0755);
  add("/links/rel", S_IFLNK | 0777).symlink_target = "../bin/tool";
  add("/links/dangling", S_IFLNK | 0777).symlink_target = "no/such/target";
  add("/links/long", S_IFLNK | 0777).symlink_target = std::string(3000, 'L');
  add("/dev", S_IFDIR | 0755);
  add("/dev/null", S_IFCHR | 0666).rdev = makedev(1, 3);
  add("/dev/big", S_IFBLK | 0660).rdev = makedev(300, 70000);
  add("/dev/fifo", S_IFIFO | 0620);
  add("/dev/sock", S_IFSOCK | 0755);
  add("/many", S_IFDIR | 0755);
  for (int i = 0; i < 400; ++i) {
    add("/many/entry-with-a-long-name-" + std::to_string(i), S_IFREG | 0644).data =
        std::to_string(i);
  }
  for (const char* odd : {"-dash", "+plus", "#hash", " space", "\x7f" "del", "\xc3\xa9t\xc3\xa9"}) {
    add(std::string("/many/") + odd, S_IFREG | 0644).data = odd;
  }
  // Identical contents in two files: one stored chunk.
  add("/dup1", S_IFREG | 0644).data = RandomBytes(chunk + 17, 9);
  add("/dup2", S_IFREG | 0644).data = RandomBytes(chunk + 17, 9);
  if (large_sparse) {
    std::string sparse(64u << 20, '\0');
    for (int i = 0; i < 100; ++i) sparse[(40u << 20) + i] = 'S';
    add("/sparse", S_IFREG | 0644).data = std::move(sparse);
  }
  return t;
}

struct Case {
  std::string name;
  WriterOptions options;
  bool large = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  std::vector<Case> cases;
  auto add = [&](std::string name, auto tweak, bool large = false) {
    Case c;
    c.name = std::move(name);
    c.options.chunk_size = 64 << 10;
    tweak(c.options);
    c.large = large;
    cases.push_back(c);
  };
  add("V6Default", [](WriterOptions&) {});
  add("V6OneMiBChunksSparse", [](WriterOptions& o) { o.chunk_size = 1 << 20; }, true);
  add("V6Lz4Sha256", [](WriterOptions& o) {
    o.compressor = storage::Compressor::kLz4Block;
    o.digester = base::DigestAlgo::kSha256;
  });
  add("V6GzipCiV2", [](WriterOptions& o) {
    o.compressor = storage::Compressor::kGzip;
    o.ci_v2 = true;
  });
  add("V6NoneCompact", [](WriterOptions& o) {
    o.compressor = storage::Compressor::kNone;
    o.compact_inodes = true;
  });
  add("V6TocThreeBlobs", [](WriterOptions& o) {
    o.layout = BlobLayout::kToc;
    o.blob_count = 3;
  });
  add("V6InlineMetaToc", [](WriterOptions& o) { o.layout = BlobLayout::kInlineMetaToc; });
  add("V6InlineMetaNoToc", [](WriterOptions& o) { o.layout = BlobLayout::kInlineMetaNoToc; });
  add("V6SmallChunks", [](WriterOptions& o) { o.chunk_size = 4096; });
  add("V6NoExplicitIds", [](WriterOptions& o) { o.explicit_uid_gid = false; });
  add("V5Zstd", [](WriterOptions& o) { o.fs_version = 5; });
  add("V5NoneSha256", [](WriterOptions& o) {
    o.fs_version = 5;
    o.compressor = storage::Compressor::kNone;
    o.digester = base::DigestAlgo::kSha256;
  });
  add("V5Lz4TwoBlobsSparse", [](WriterOptions& o) {
    o.fs_version = 5;
    o.compressor = storage::Compressor::kLz4Block;
    o.blob_count = 2;
    o.chunk_size = 1 << 20;
  }, true);
  return cases;
}

class RoundTripTest : public ::testing::TestWithParam<Case> {};

TEST_P(RoundTripTest, ReadsBackIdentically) {
  const Case& c = GetParam();
  std::vector<TreeEntry> tree = RichTree(c.options.chunk_size, c.large);
  auto written = testing::WriteImage(tree, c.options);
  ASSERT_TRUE(written.ok()) << written.status();
  testing::TempDir dir;
  ASSERT_TRUE(testing::WriteImageToDir(*written, dir.path()).ok());

  const bool inline_meta = c.options.layout == BlobLayout::kInlineMetaToc ||
                           c.options.layout == BlobLayout::kInlineMetaNoToc;
  // Inline-meta images are opened from the blob file itself (its name is
  // the blob id); others from the bootstrap.
  std::string image_path = dir.Sub("bootstrap");
  if (inline_meta) {
    ASSERT_EQ(written->blobs.size(), 1u);
    image_path = dir.Sub("blobs/" + written->blobs.begin()->first);
  }
  auto m = meta::OpenMetadataFile(image_path);
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& sb = (*m)->super();
  EXPECT_EQ(sb.version, c.options.fs_version);
  EXPECT_EQ(sb.compressor, c.options.compressor);
  EXPECT_EQ(sb.digester, c.options.digester);
  EXPECT_EQ(sb.chunk_size, c.options.chunk_size);
  EXPECT_EQ((*m)->blobs().size(), written->blobs.size());
  for (const auto& b : (*m)->blobs()) {
    EXPECT_TRUE(written->blobs.count(b.info.blob_id)) << "unknown blob id " << b.info.blob_id;
  }
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                               std::make_shared<testing::MemoryBackend>(written->blobs));
  ASSERT_TRUE(image.ok()) << image.status();

  testing::CompareOptions o;
  o.owners = c.options.explicit_uid_gid;
  o.mtime = !c.options.compact_inodes;  // compact inodes carry no mtime
  auto diffs = testing::CompareImageWithTree(**image, tree, o);
  for (const auto& d : diffs) ADD_FAILURE() << d;

  auto report = fs::CheckImage(**image, {});
  ASSERT_TRUE(report.ok()) << report.status();
  // 8 in /bin and /etc, 406 in /many, /dup1, /dup2 (+ /sparse).
  EXPECT_EQ(report->files, 416u + (c.large ? 1 : 0));
  EXPECT_EQ(report->hardlinks, 2u);
  EXPECT_GT(report->chunks_verified, 0u);
  if (c.options.fs_version == 5) {
    EXPECT_GT(report->inode_digests, 400u);
  }
}

TEST_P(RoundTripTest, RandomReadsMatchContents) {
  const Case& c = GetParam();
  if (c.large) GTEST_SKIP() << "covered by the small cases";
  std::vector<TreeEntry> tree = RichTree(c.options.chunk_size, false);
  auto written = testing::WriteImage(tree, c.options);
  ASSERT_TRUE(written.ok()) << written.status();
  std::vector<uint8_t> boot = written->bootstrap;
  auto m = meta::OpenMetadata(std::move(boot));
  ASSERT_TRUE(m.ok()) << m.status();
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                               std::make_shared<testing::MemoryBackend>(written->blobs));
  ASSERT_TRUE(image.ok()) << image.status();
  std::mt19937 rng(5);
  const TreeEntry& tool = tree[2];
  ASSERT_EQ(tool.path, "/bin/tool");
  auto ino = meta::ResolvePath((*image)->metadata(), tool.path);
  ASSERT_TRUE(ino.ok());
  for (int i = 0; i < 200; ++i) {
    uint64_t off = rng() % (tool.data.size() + 10);
    uint64_t len = rng() % (3 * c.options.chunk_size);
    auto got = (*image)->ReadFile(*ino, off, len);
    ASSERT_TRUE(got.ok()) << got.status();
    std::string want = off < tool.data.size() ? tool.data.substr(off, len) : "";
    ASSERT_EQ(std::string(got->begin(), got->end()), want) << off << "+" << len;
  }
}

INSTANTIATE_TEST_SUITE_P(Writers, RoundTripTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

}  // namespace
}  // namespace rfs::rafs
