// rafs merge: per-layer images built from directories with OCI whiteouts
// merge into what overlayfs shows for the same layers (with overlayfs
// whiteouts) mounted as lowerdirs; blobs no longer referenced leave the
// blob table; overlayfs-style whiteouts in layers work the same way.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "rafs/builder/builder.h"
#include "rafs/builder/merger.h"
#include "rafs/fs/checker.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "test/rafs/builder/tree_gen.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs::builder {
namespace {

using testing::TempDir;

// One layer written twice: with OCI whiteouts (what layer tarballs carry,
// built into RAFS) and with overlayfs whiteouts (what overlayfs reads).
// `overlay` false writes overlayfs-style whiteouts into the OCI copy too.
class Layer {
 public:
  Layer(const std::string& oci, const std::string& ovl, bool overlay_style_in_image)
      : oci_(oci), ovl_(ovl), ovl_style_(overlay_style_in_image) {
    EXPECT_EQ(mkdir(oci.c_str(), 0755), 0);
    EXPECT_EQ(mkdir(ovl.c_str(), 0755), 0);
  }
  void Dir(const std::string& p) {
    for (const auto& root : {oci_, ovl_}) std::filesystem::create_directories(root + p);
  }
  void File(const std::string& p, const std::string& data) {
    for (const auto& root : {oci_, ovl_}) {
      std::filesystem::create_directories(std::filesystem::path(root + p).parent_path());
      testing::WriteFileBytes(root + p, std::vector<uint8_t>(data.begin(), data.end()));
    }
  }
  void Whiteout(const std::string& p) {
    auto slash = p.find_last_of('/');
    std::string dir = p.substr(0, slash), name = p.substr(slash + 1);
    std::filesystem::create_directories(oci_ + dir);
    std::filesystem::create_directories(ovl_ + dir);
    if (ovl_style_) {
      ASSERT_EQ(mknod((oci_ + p).c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
    } else {
      testing::WriteFileBytes(oci_ + dir + "/.wh." + name, {});
    }
    ASSERT_EQ(mknod((ovl_ + p).c_str(), S_IFCHR | 0600, makedev(0, 0)), 0);
  }
  void Opaque(const std::string& p) {
    Dir(p);
    if (ovl_style_) {
      ASSERT_EQ(lsetxattr((oci_ + p).c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
    } else {
      testing::WriteFileBytes(oci_ + p + "/.wh..wh..opq", {});
    }
    ASSERT_EQ(lsetxattr((ovl_ + p).c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  }
  // Same mtimes in both copies (directory mtimes change as entries are made).
  void FixTimes() {
    for (const auto& root : {oci_, ovl_}) {
      ASSERT_EQ(testing::RunCommand("find " + root + " -exec touch -h -d @1600000000 {} +"), 0);
      ASSERT_EQ(testing::RunCommand("touch -h -d @0 " + root), 0);
    }
  }
  const std::string& oci() const { return oci_; }
  const std::string& ovl() const { return ovl_; }

 private:
  std::string oci_, ovl_;
  bool ovl_style_;
};

// Loop devices and a mount, undone however the test ends.
struct Loops {
  std::vector<std::string> devs;
  std::string mounted;
  ~Loops() {
    if (!mounted.empty()) testing::RunCommand("umount " + mounted + " 2>/dev/null");
    for (const auto& d : devs) testing::RunCommand("losetup -d " + d + " 2>/dev/null");
  }
  bool Add(const std::string& file, std::string* dev) {
    std::string out;
    if (testing::RunCommand("losetup -f --show " + file + " 2>/dev/null", &out) != 0) return false;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    devs.push_back(out);
    *dev = out;
    return true;
  }
};

// Three layers with deletions, opaque directories and replacements.
std::vector<std::unique_ptr<Layer>> MakeLayers(const TempDir& t, bool ovl_style) {
  std::vector<std::unique_ptr<Layer>> l;
  for (int i = 0; i < 3; ++i) {
    l.push_back(std::make_unique<Layer>(t.Sub("oci" + std::to_string(i)),
                                        t.Sub("ovl" + std::to_string(i)), ovl_style));
  }
  Layer& l0 = *l[0];
  l0.File("/etc/a", "a0");
  l0.File("/etc/b", "b0");
  l0.File("/usr/lib/x", std::string(100000, 'x'));
  l0.File("/usr/lib/y", "y0");
  l0.File("/usr/lib/sub/deep", "deep0");
  l0.File("/opt/app/bin", std::string(5000, 'o'));
  l0.File("/replaced/child", "c0");
  l0.File("/keep", "keep0");
  Layer& l1 = *l[1];
  l1.Whiteout("/etc/a");
  l1.Opaque("/usr/lib");
  l1.File("/usr/lib/z", "z1");
  l1.File("/replaced", "now a file");
  l1.File("/newdir/f", "f1");
  l1.File("/etc/c", "c1");
  l1.File("/only1/data", std::string(7000, '1'));  // whited out by layer 2
  Layer& l2 = *l[2];
  l2.Whiteout("/opt");
  l2.Whiteout("/only1");
  l2.File("/etc/b", "b2 changed");
  l2.Whiteout("/never/existed");
  l2.Dir("/usr/lib");
  l2.File("/usr/lib/w", "w2");
  l2.Opaque("/newdir");
  l2.File("/newdir/g", "g2");
  for (auto& x : l) x->FixTimes();
  return l;
}

TEST(MergeTest, OciAndOverlayWhiteoutsMatchOverlayfs) {
  if (!testing::IsRoot()) GTEST_SKIP() << "needs root for overlay mounts, 0/0 devices, trusted.*";
  for (bool ovl_style : {false, true}) {
    SCOPED_TRACE(ovl_style ? "overlayfs-style whiteouts in the layers" : "OCI whiteouts");
    TempDir t;
    auto layers = MakeLayers(t, ovl_style);
    const std::string blobs = t.Sub("blobs");
    ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
    std::vector<std::string> boots;
    std::vector<std::string> ids;
    for (size_t i = 0; i < layers.size(); ++i) {
      boots.push_back(t.Sub("layer" + std::to_string(i) + ".boot"));
      // Blobs usable as EROFS devices, so the kernel can mount the merge.
      BuildOptions o;
      o.aligned = true;
      o.compressor = storage::Compressor::kNone;
      o.digester = base::DigestAlgo::kSha256;
      auto r = BuildFromDirectory(layers[i]->oci(), boots.back(), blobs, o);
      ASSERT_TRUE(r.ok()) << r.status();
      ids.push_back(r->blob_id);
    }
    auto m = MergeLayers(boots, t.Sub("merged.boot"));
    ASSERT_TRUE(m.ok()) << m.status();
    // Layer 1's blob holds /only1/data (whited out), /usr/lib/z, ... : still
    // referenced; the blob order follows the merged tree.
    ASSERT_EQ(m->blob_ids.size(), 3u);
    auto image = testing::OpenBuilt(t.Sub("merged.boot"), blobs);
    ASSERT_NE(image, nullptr);
    auto report = fs::CheckImage(*image, {});
    ASSERT_TRUE(report.ok()) << report.status();

    const std::string mnt = t.Sub("mnt");
    ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
    std::string out;
    int rc =
        testing::RunCommand("mount -t overlay overlay -o lowerdir=" + layers[2]->ovl() + ":" +
                                layers[1]->ovl() + ":" + layers[0]->ovl() + " " + mnt + " 2>&1",
                            &out);
    if (rc != 0) GTEST_SKIP() << "overlay mount failed: " << out;
    testing::CompareOptions co;
    co.dir_nlink = false;  // overlayfs reports 1 for merged directories
    auto diffs = testing::CompareImageWithDirectory(*image, mnt, co);
    testing::RunCommand("umount " + mnt);
    EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);

    // The kernel EROFS driver mounts the merged bootstrap with the blobs as
    // devices in blob-table order, and shows the same tree.
    if (testing::HaveCommand("fsck.erofs")) {
      std::string devs;
      for (const auto& id : m->blob_ids) devs += " --device=" + blobs + "/" + id;
      EXPECT_EQ(
          testing::RunCommand("fsck.erofs" + devs + " " + t.Sub("merged.boot") + " 2>&1", &out), 0)
          << out;
    }
    Loops loops;
    std::string boot_dev, options = "ro";
    ASSERT_TRUE(loops.Add(t.Sub("merged.boot"), &boot_dev));
    for (const auto& id : m->blob_ids) {
      std::string dev;
      ASSERT_TRUE(loops.Add(blobs + "/" + id, &dev));
      options += ",device=" + dev;
    }
    const std::string emnt = t.Sub("emnt");
    ASSERT_EQ(mkdir(emnt.c_str(), 0755), 0);
    ASSERT_EQ(testing::RunCommand(
                  "mount -t erofs -o " + options + " " + boot_dev + " " + emnt + " 2>&1", &out),
              0)
        << out;
    loops.mounted = emnt;
    auto ediffs = testing::CompareImageWithDirectory(*image, emnt);
    EXPECT_TRUE(ediffs.empty()) << testing::JoinLines(ediffs);
  }
}

TEST(MergeTest, WhitedOutBlobsLeaveTheBlobTable) {
  TempDir t;
  const std::string blobs = t.Sub("blobs");
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  for (const char* d : {"l0", "l1", "l2"}) ASSERT_EQ(mkdir(t.Sub(d).c_str(), 0755), 0);
  testing::WriteFileBytes(t.Sub("l0") + "/gone", {1, 2, 3});
  testing::WriteFileBytes(t.Sub("l0") + "/.wh.nothing", {});  // bottom whiteout: dropped
  testing::WriteFileBytes(t.Sub("l1") + "/stays", {4, 5, 6});
  testing::WriteFileBytes(t.Sub("l2") + "/.wh.gone", {});
  std::vector<std::string> boots, ids;
  for (const char* d : {"l0", "l1", "l2"}) {
    boots.push_back(t.Sub(std::string(d) + ".boot"));
    auto r = BuildFromDirectory(t.Sub(d), boots.back(), blobs, {});
    ASSERT_TRUE(r.ok()) << r.status();
    ids.push_back(r->blob_id);
  }
  EXPECT_TRUE(ids[2].empty());  // metadata-only layer: no blob
  auto m = MergeLayers(boots, t.Sub("merged"));
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->blob_ids, std::vector<std::string>{ids[1]});
  // Reproducible: merging again gives the same bytes.
  ASSERT_TRUE(MergeLayers(boots, t.Sub("merged2")).ok());
  EXPECT_TRUE(testing::ReadFileBytes(t.Sub("merged")) == testing::ReadFileBytes(t.Sub("merged2")));
  auto image = testing::OpenBuilt(t.Sub("merged"), blobs);
  ASSERT_NE(image, nullptr);
  EXPECT_FALSE(image->fs().Lookup(1, "gone").ok());
  EXPECT_FALSE(image->fs().Lookup(1, ".wh.nothing").ok());
  EXPECT_FALSE(image->fs().Lookup(1, ".wh.gone").ok());
  auto stays = image->fs().Lookup(1, "stays");
  ASSERT_TRUE(stays.ok());
  auto data = image->ReadFile(stays->attr.ino, 0, 10);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(*data, (std::vector<uint8_t>{4, 5, 6}));
  auto report = fs::CheckImage(*image, {});
  EXPECT_TRUE(report.ok()) << report.status();
  if (testing::HaveCommand("fsck.erofs")) {
    std::string msg;
    EXPECT_EQ(
        testing::RunCommand(
            "fsck.erofs --device=" + blobs + "/" + ids[1] + " " + t.Sub("merged") + " 2>&1", &msg),
        0)
        << msg;
  }
}

TEST(MergeTest, PrefetchPathsBecomeTheMergedPrefetchTable) {
  TempDir t;
  const std::string blobs = t.Sub("blobs");
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  for (const char* d : {"l0", "l1"}) ASSERT_EQ(mkdir(t.Sub(d).c_str(), 0755), 0);
  ASSERT_EQ(mkdir((t.Sub("l0") + "/lib").c_str(), 0755), 0);
  testing::WriteFileBytes(t.Sub("l0") + "/lib/base", {1, 2, 3});
  testing::WriteFileBytes(t.Sub("l1") + "/app", {4, 5, 6});
  std::vector<std::string> boots;
  for (const char* d : {"l0", "l1"}) {
    boots.push_back(t.Sub(std::string(d) + ".boot"));
    ASSERT_TRUE(BuildFromDirectory(t.Sub(d), boots.back(), blobs, {}).ok());
  }
  // Paths from both layers, in the given order; a missing one is skipped.
  auto m = MergeLayers(boots, t.Sub("merged"), {"/app", "/missing", "/lib"});
  ASSERT_TRUE(m.ok()) << m.status();
  auto meta = meta::OpenMetadataFile(t.Sub("merged"));
  ASSERT_TRUE(meta.ok()) << meta.status();
  auto pf = (*meta)->PrefetchInodes();
  ASSERT_TRUE(pf.ok()) << pf.status();
  auto app = meta::ResolvePath(**meta, "/app");
  auto lib = meta::ResolvePath(**meta, "/lib");
  ASSERT_TRUE(app.ok() && lib.ok());
  EXPECT_EQ(*pf, (std::vector<uint64_t>{*app, *lib}));
  // Without paths: no table.
  ASSERT_TRUE(MergeLayers(boots, t.Sub("plain")).ok());
  auto plain = meta::OpenMetadataFile(t.Sub("plain"));
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->PrefetchInodes()->empty());
}

std::vector<uint8_t> Random(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return v;
}

TEST(ChunkDictTest, UpperLayerReusesLowerLayerChunks) {
  TempDir t;
  const std::string blobs = t.Sub("blobs");
  for (const char* d : {"blobs", "a", "b"}) ASSERT_EQ(mkdir(t.Sub(d).c_str(), 0755), 0);
  const auto shared = Random(300000, 1);
  testing::WriteFileBytes(t.Sub("a") + "/lib.so", shared);
  testing::WriteFileBytes(t.Sub("a") + "/only_a", Random(5000, 2));
  testing::WriteFileBytes(t.Sub("b") + "/a_copy.so", shared);  // sorts before b's own data
  testing::WriteFileBytes(t.Sub("b") + "/new", Random(7000, 3));
  testing::SetMtime(t.Sub("b"), 0, 0);
  BuildOptions o;
  o.chunk_size = 64 * 1024;
  auto a = BuildFromDirectory(t.Sub("a"), t.Sub("a.boot"), blobs, o);
  ASSERT_TRUE(a.ok()) << a.status();
  o.chunk_dict = t.Sub("a.boot");
  auto b = BuildFromDirectory(t.Sub("b"), t.Sub("b.boot"), blobs, o);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->chunks_from_dict, 5u);  // 300000 bytes in 64 KiB chunks
  EXPECT_EQ(b->chunks_stored, 1u);
  EXPECT_LT(b->blob_size, 7000u + 8192u);  // only the new file's data
  auto meta = meta::OpenMetadataFile(t.Sub("b.boot"));
  ASSERT_TRUE(meta.ok());
  ASSERT_EQ((*meta)->blobs().size(), 2u);
  EXPECT_EQ((*meta)->blobs()[0].info.blob_id, a->blob_id);  // first used first
  EXPECT_EQ((*meta)->blobs()[1].info.blob_id, b->blob_id);
  auto image = testing::OpenBuilt(t.Sub("b.boot"), blobs);
  ASSERT_NE(image, nullptr);
  auto report = fs::CheckImage(*image, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto diffs = testing::CompareImageWithDirectory(*image, t.Sub("b"));
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  if (testing::HaveCommand("fsck.erofs")) {
    std::string msg;
    EXPECT_EQ(testing::RunCommand("fsck.erofs --device=" + a->blob_path +
                                      " --device=" + b->blob_path + " " + t.Sub("b.boot") + " 2>&1",
                                  &msg),
              0)
        << msg;
  }
  // Merged, the layers share A's blob.
  auto m = MergeLayers({t.Sub("a.boot"), t.Sub("b.boot")}, t.Sub("merged"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->blob_ids, (std::vector<std::string>{a->blob_id, b->blob_id}));
  // A dictionary with another chunk size is refused.
  o.chunk_size = 4096;
  auto bad = BuildFromDirectory(t.Sub("b"), t.Sub("c.boot"), blobs, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("chunk size"), std::string::npos) << bad.status();
}

TEST(MergeTest, MismatchedChunkSizesAreRefused) {
  TempDir t;
  ASSERT_EQ(mkdir(t.Sub("a").c_str(), 0755), 0);
  testing::WriteFileBytes(t.Sub("a") + "/f", {1});
  BuildOptions small;
  small.chunk_size = 4096;
  ASSERT_TRUE(BuildFromDirectory(t.Sub("a"), t.Sub("a.boot"), t.path(), {}).ok());
  ASSERT_TRUE(BuildFromDirectory(t.Sub("a"), t.Sub("b.boot"), t.path(), small).ok());
  auto m = MergeLayers({t.Sub("a.boot"), t.Sub("b.boot")}, t.Sub("merged"));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("chunk size 4096"), std::string::npos) << m.status();
}

}  // namespace
}  // namespace rfs::rafs::builder
