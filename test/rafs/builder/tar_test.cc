// rafs/builder from layer tarballs: plain, gzip and zstd layers made by GNU
// tar from a source tree read back equal to that tree; the upstream
// all-entry-type fixture equals what tar extracts; hostile archives give
// clear errors or the documented interpretation (tar_source.h) and never
// write anything but the blob and the bootstrap.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>

#include "rafs/builder/builder.h"
#include "rafs/fs/checker.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "test/rafs/builder/tree_gen.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs::builder {
namespace {

using testing::TempDir;

// ustar header + data padded to 512.
std::string TarEntry(const std::string& name, char type, const std::string& data,
                     const std::string& link = "", uint64_t size_override = ~0ull) {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(h + 100, 8, "%07o", 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  uint64_t size = size_override != ~0ull ? size_override : data.size();
  std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h + 136, 12, "%011o", 1600000000);
  h[156] = type;
  std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  std::string out(h, 512);
  out += data;
  out.resize((out.size() + 511) / 512 * 512, '\0');
  return out;
}

std::string TarEnd() { return std::string(1024, '\0'); }

class TarBuild {
 public:
  TarBuild() {
    EXPECT_EQ(mkdir(t_.Sub("out").c_str(), 0755), 0);
    EXPECT_EQ(mkdir(t_.Sub("blobs").c_str(), 0755), 0);
  }
  std::string Layer(const std::string& bytes) {
    std::string p = t_.Sub("layer.tar");
    testing::WriteFileBytes(p, std::vector<uint8_t>(bytes.begin(), bytes.end()));
    return p;
  }
  base::Result<BuildResult> Build(const std::string& layer, BuildOptions o = {}) {
    return BuildImage(layer, boot(), t_.Sub("blobs"), o);
  }
  std::string boot() const { return t_.Sub("out") + "/boot"; }
  std::string blobs() const { return t_.Sub("blobs"); }
  const TempDir& dir() const { return t_; }
  // Nothing but the blob(s) and the bootstrap were written.
  void ExpectOnlyOutputs() const {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::recursive_directory_iterator(t_.path())) {
      names.insert(std::filesystem::relative(e.path(), t_.path()).string());
    }
    for (const auto& n : names) {
      bool ok = n == "out" || n == "blobs" || n == "layer.tar" || n == "out/boot" ||
                (n.rfind("blobs/", 0) == 0 && n.size() == 6 + 64);
      EXPECT_TRUE(ok) << "unexpected file " << n;
    }
  }

 private:
  TempDir t_;
};

TEST(TarBuildTest, LayersFromGnuTarEqualTheSourceTree) {
  if (!testing::HaveCommand("tar")) GTEST_SKIP() << "tar not installed";
  TempDir t;
  const std::string src = t.Sub("src");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  testing::MakeRandomTree(src, 42, 300);
  // Extra kinds GNU tar stores: a large xattr, empty file, long symlink.
  testing::WriteFileBytes(src + "/empty", {});
  ASSERT_EQ(symlink(std::string(3000, 'l').c_str(), (src + "/longsym").c_str()), 0);
  if (testing::IsRoot()) {
    ASSERT_EQ(mknod((src + "/chr").c_str(), S_IFCHR | 0600, makedev(300, 70000)), 0);
    ASSERT_EQ(lchown((src + "/empty").c_str(), 100000, 100001), 0);
  }
  testing::SetMtime(src, 0, 0);
  const std::string tar = t.Sub("layer.tar");
  ASSERT_EQ(testing::RunCommand("tar --format=posix --xattrs --xattrs-include='*' -cf " + tar +
                                " -C " + src + " . 2>&1"),
            0);
  ASSERT_EQ(testing::RunCommand("gzip -k " + tar), 0);
  bool have_zstd = testing::HaveCommand("zstd");
  if (have_zstd) {
    ASSERT_EQ(testing::RunCommand("zstd -q -k " + tar), 0);
  }
  std::vector<std::string> layers{tar, tar + ".gz"};
  if (have_zstd) layers.push_back(tar + ".zst");
  std::vector<uint8_t> first_boot;
  for (const std::string& layer : layers) {
    SCOPED_TRACE(layer);
    const std::string out = t.Sub("out_" + std::filesystem::path(layer).extension().string());
    ASSERT_EQ(mkdir(out.c_str(), 0755), 0);
    auto r = BuildImage(layer, out + "/boot", out, {});
    ASSERT_TRUE(r.ok()) << r.status();
    auto image = testing::OpenBuilt(out + "/boot", out);
    ASSERT_NE(image, nullptr);
    auto report = fs::CheckImage(*image, {});
    ASSERT_TRUE(report.ok()) << report.status();
    auto diffs = testing::CompareImageWithDirectory(*image, src);
    EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
    // The compression of the layer does not change the image, and building
    // again gives the same bytes.
    auto boot = testing::ReadFileBytes(out + "/boot");
    if (first_boot.empty()) first_boot = boot;
    EXPECT_TRUE(boot == first_boot);
    const auto blob = testing::ReadFileBytes(r->blob_path);
    auto again = BuildImage(layer, out + "/boot2", out, {});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->blob_id, r->blob_id);
    EXPECT_TRUE(testing::ReadFileBytes(out + "/boot2") == boot);
    EXPECT_TRUE(testing::ReadFileBytes(again->blob_path) == blob);
    if (testing::HaveCommand("fsck.erofs")) {
      std::string msg;
      EXPECT_EQ(testing::RunCommand(
                    "fsck.erofs --device=" + r->blob_path + " " + out + "/boot 2>&1", &msg),
                0)
          << msg;
    }
  }
}

TEST(TarBuildTest, UpstreamAllEntryTypeFixtureEqualsTarExtraction) {
  const std::string fixture = testing::UpstreamFixture("all-entry-type.tar");
  if (access(fixture.c_str(), R_OK) != 0) GTEST_SKIP() << "fixture missing: " << fixture;
  if (!testing::HaveCommand("tar")) GTEST_SKIP() << "tar not installed";
  TempDir t;
  const std::string x = t.Sub("x");
  ASSERT_EQ(mkdir(x.c_str(), 0755), 0);
  ASSERT_EQ(testing::RunCommand("tar --xattrs -xpf " + fixture + " -C " + x + " 2>&1"), 0);
  testing::SetMtime(x, 0, 0);
  auto r = BuildImage(fixture, t.Sub("boot"), t.path(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto image = testing::OpenBuilt(t.Sub("boot"), t.path());
  ASSERT_NE(image, nullptr);
  testing::CompareOptions co;
  co.owners = testing::IsRoot();
  auto diffs = testing::CompareImageWithDirectory(*image, x, co);
  // The archive gives the symlink mode 0755; Linux symlinks are always 0777
  // once extracted, the image keeps the archive's bits.
  std::erase(diffs, "/tar/dir2/symlink1.txt: mode is 41453, expected 41471");
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  auto report = fs::CheckImage(*image, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->hardlinks, 3u);
}

TEST(TarHostileTest, AbsolutePathsAreRelativeToTheRoot) {
  TarBuild b;
  auto r = b.Build(
      b.Layer(TarEntry("/etc/passwd", '0', "abs") + TarEntry("./x", '0', "dot") + TarEnd()));
  ASSERT_TRUE(r.ok()) << r.status();
  auto image = testing::OpenBuilt(b.boot(), b.blobs());
  ASSERT_NE(image, nullptr);
  auto etc = image->fs().Lookup(1, "etc");
  ASSERT_TRUE(etc.ok());
  EXPECT_EQ(etc->attr.mode, S_IFDIR | 0755u);  // implicit parent
  auto passwd = image->fs().Lookup(etc->attr.ino, "passwd");
  ASSERT_TRUE(passwd.ok());
  auto data = image->ReadFile(passwd->attr.ino, 0, 100);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(std::string(data->begin(), data->end()), "abs");
  EXPECT_TRUE(image->fs().Lookup(1, "x").ok());
  b.ExpectOnlyOutputs();
}

TEST(TarHostileTest, DotDotIsAnError) {
  TarBuild b;
  auto r = b.Build(b.Layer(TarEntry("a/../../evil", '0', "x") + TarEnd()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), base::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("a/../../evil"), std::string::npos) << r.status();
  b.ExpectOnlyOutputs();
}

TEST(TarHostileTest, PathThroughSymlinkIsAnError) {
  TarBuild b;
  auto r = b.Build(b.Layer(TarEntry("link", '2', "", "/etc") +
                           TarEntry("link/passwd", '0', "owned") + TarEnd()));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("symlink"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("link/passwd"), std::string::npos) << r.status();
  b.ExpectOnlyOutputs();
}

TEST(TarHostileTest, DuplicatesLastOneWins) {
  TarBuild b;
  auto r = b.Build(b.Layer(TarEntry("d/", '5', "") + TarEntry("d/f", '0', "first") +
                           TarEntry("f", '0', "old") + TarEntry("f", '0', "new") +
                           TarEntry("d", '5', "") + TarEntry("d2/g", '0', "g") +
                           TarEntry("d2", '0', "now a file") + TarEnd()));
  ASSERT_TRUE(r.ok()) << r.status();
  auto image = testing::OpenBuilt(b.boot(), b.blobs());
  ASSERT_NE(image, nullptr);
  auto f = image->fs().Lookup(1, "f");
  ASSERT_TRUE(f.ok());
  auto data = image->ReadFile(f->attr.ino, 0, 100);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(std::string(data->begin(), data->end()), "new");
  auto d = image->fs().Lookup(1, "d");  // directory over directory keeps children
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(image->fs().Lookup(d->attr.ino, "f").ok());
  auto d2 = image->fs().Lookup(1, "d2");  // file over directory drops it
  ASSERT_TRUE(d2.ok());
  EXPECT_TRUE(S_ISREG(d2->attr.mode));
  auto report = fs::CheckImage(*image, {});
  EXPECT_TRUE(report.ok()) << report.status();
}

TEST(TarHostileTest, HardLinksToMissingOrLaterEntriesAreErrors) {
  {
    TarBuild b;
    auto r = b.Build(b.Layer(TarEntry("h", '1', "", "missing") + TarEnd()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("missing"), std::string::npos) << r.status();
  }
  {
    TarBuild b;
    auto r =
        b.Build(b.Layer(TarEntry("h", '1', "", "later") + TarEntry("later", '0', "x") + TarEnd()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("earlier"), std::string::npos) << r.status();
    b.ExpectOnlyOutputs();
  }
}

TEST(TarHostileTest, SizeBeyondTheArchiveAndTruncationAreDataLoss) {
  {
    TarBuild b;
    std::string bytes = TarEntry("big", '0', std::string(100, 'x'), "", 1 << 20);
    auto r = b.Build(b.Layer(bytes));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), base::StatusCode::kDataLoss) << r.status();
    EXPECT_NE(r.status().message().find("big"), std::string::npos) << r.status();
    b.ExpectOnlyOutputs();
  }
  {
    TarBuild b;
    std::string bytes = TarEntry("a", '0', "aaaa") + TarEntry("b", '0', "bbbb");
    bytes.resize(512 + 512 + 200);  // cut inside the second header
    auto r = b.Build(b.Layer(bytes));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), base::StatusCode::kDataLoss) << r.status();
  }
}

TEST(TarHostileTest, NonUtf8NamesAreKeptByteForByte) {
  TarBuild b;
  const std::string name = "bad\xff\xfename";
  auto r = b.Build(b.Layer(TarEntry(name, '0', "x") + TarEnd()));
  ASSERT_TRUE(r.ok()) << r.status();
  auto image = testing::OpenBuilt(b.boot(), b.blobs());
  ASSERT_NE(image, nullptr);
  EXPECT_TRUE(image->fs().Lookup(1, name).ok());
}

TEST(TarHostileTest, DecompressionBombIsRefused) {
  if (!testing::HaveCommand("gzip")) GTEST_SKIP() << "gzip not installed";
  TarBuild b;
  const std::string dir = b.dir().Sub("bomb");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(
      testing::RunCommand("head -c 20000000 /dev/zero > " + dir + "/zeros && tar -cf - -C " + dir +
                          " zeros | gzip -1 > " + b.dir().Sub("bomb.tar.gz") + " && rm -r " + dir),
      0);
  BuildOptions o;
  o.max_tar_expansion = 10;
  o.tar_expansion_slack_bytes = 1 << 20;
  auto r = b.Build(b.dir().Sub("bomb.tar.gz"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), base::StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(r.status().message().find("decompression bomb"), std::string::npos) << r.status();
  EXPECT_TRUE(std::filesystem::is_empty(b.blobs()));  // temporary blob removed
}

// A pax extended header ('x') carrying one "key=value" record. Like GNU
// tar, callers also put a truncated link name in the ustar header: with an
// empty one libarchive 3.6 drops a pax linkpath.
std::string Pax(const std::string& key, const std::string& value) {
  std::string body = " " + key + "=" + value + "\n";
  size_t len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len) ++len;
  return TarEntry("PaxHeader", 'x', std::to_string(len) + body);
}

TEST(TarHostileTest, OverlongNamesTargetsAndForeignXattrsAreErrors) {
  {
    TarBuild b;
    auto r = b.Build(
        b.Layer(Pax("path", "d/" + std::string(300, 'n')) + TarEntry("x", '0', "") + TarEnd()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("above 255"), std::string::npos) << r.status();
  }
  {
    TarBuild b;
    auto r = b.Build(b.Layer(Pax("linkpath", std::string(5000, 't')) +
                             TarEntry("longlink", '2', "", std::string(100, 't')) + TarEnd()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("longlink"), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("length 5000"), std::string::npos) << r.status();
  }
  {
    TarBuild b;
    auto r =
        b.Build(b.Layer(Pax("SCHILY.xattr.system.foo", "v") + TarEntry("f", '0', "x") + TarEnd()));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("system.foo"), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("'f'"), std::string::npos) << r.status();
  }
  {
    // A 255-byte name and a 4096-byte target are fine, and so are xattrs
    // with storable prefixes.
    TarBuild b;
    auto r = b.Build(b.Layer(Pax("path", std::string(255, 'n')) + TarEntry("x", '0', "data") +
                             Pax("linkpath", std::string(4096, 't')) +
                             TarEntry("l", '2', "", std::string(100, 't')) +
                             Pax("SCHILY.xattr.user.k", "v") + TarEntry("u", '0', "") + TarEnd()));
    ASSERT_TRUE(r.ok()) << r.status();
    auto image = testing::OpenBuilt(b.boot(), b.blobs());
    ASSERT_NE(image, nullptr);
    EXPECT_TRUE(image->fs().Lookup(1, std::string(255, 'n')).ok());
    auto l = image->fs().Lookup(1, "l");
    ASSERT_TRUE(l.ok());
    auto target = image->fs().ReadLink(l->attr.ino);
    ASSERT_TRUE(target.ok());
    EXPECT_EQ(*target, std::string(4096, 't'));
    auto u = image->fs().Lookup(1, "u");
    ASSERT_TRUE(u.ok());
    auto x = image->fs().GetXattr(u->attr.ino, "user.k");
    ASSERT_TRUE(x.ok()) << x.status();
    EXPECT_EQ(*x, "v");
  }
}

TEST(TarHostileTest, GarbageIsNotATarball) {
  TarBuild b;
  auto r = b.Build(b.Layer(std::string(4096, 'g')));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("neither a directory nor a tar"), std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace rfs::rafs::builder
