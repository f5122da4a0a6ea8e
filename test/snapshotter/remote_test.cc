// RAFS images in the snapshotter (remote_fs.h).
//
// RemoteSnapshotTest drives the decision logic with a fake RemoteFs: data
// layers are committed without download (AlreadyExists), the bootstrap layer
// unpacks normally, containers and views of the image get an overlay on the
// image's mount, Mounts is idempotent and restarts a missing instance, a
// failure to serve removes the snapshot again, removing the image stops it.
//
// RafsManagerTest: a meta snapshot without an image reference label is named
// by RafsManagerOptions::resolve_image_ref.
//
// RafsEndToEndTest (root, FUSE, docker-registry) runs the real RafsManager:
// an image built by the builder, its blob in a loopback registry, snapshots
// created as containerd's unpacker creates them, the container's overlay
// mounted for real: the rootfs equals the source tree, and only the chunks
// read were fetched.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <cstring>

#include "base/metrics.h"
#include "rafs/builder/builder.h"
#include "snapshotter/rafs_manager.h"
#include "snapshotter/snapshotter.h"
#include "test/support/dir_compare.h"
#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace rfs::snapshotter {
namespace {

using base::StatusCode;

class FakeRemoteFs final : public RemoteFs {
 public:
  base::Result<std::string> Mount(int64_t id, const std::string& layer_dir,
                                  const Labels& labels) override {
    std::lock_guard<std::mutex> l(mu);
    ++mount_calls;
    last_layer_dir = layer_dir;
    last_labels = labels;
    if (!fail_with.ok()) return fail_with;
    live.insert(id);
    return "/fake/rafs/" + std::to_string(id);
  }
  base::Status Unmount(int64_t id) override {
    std::lock_guard<std::mutex> l(mu);
    unmounted.push_back(id);
    live.erase(id);
    return base::Status::Ok();
  }
  std::vector<int64_t> Instances() override {
    std::lock_guard<std::mutex> l(mu);
    return {live.begin(), live.end()};
  }
  std::mutex mu;
  int mount_calls = 0;
  std::string last_layer_dir;
  Labels last_labels;
  base::Status fail_with;
  std::set<int64_t> live;
  std::vector<int64_t> unmounted;
};

class RemoteSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = std::make_shared<FakeRemoteFs>();
    Snapshotter::Options o;
    o.root = tmp_.Sub("root");
    o.in_memory_store = true;
    o.remote = fake_;
    auto sn = Snapshotter::Open(o);
    ASSERT_TRUE(sn.ok()) << sn.status();
    sn_ = std::move(*sn);
  }
  // What containerd's unpacker does for the image: two data layers, then the
  // bootstrap layer; returns the meta snapshot's name.
  std::string Unpack(const Labels& extra = {}) {
    Labels data = extra;
    data[kNydusBlobLabel] = "true";
    data[kTargetRefLabel] = "sha256:layer1";
    auto r = sn_->Prepare("extract-1", "", data);
    EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status();
    data[kTargetRefLabel] = "sha256:layer2";
    r = sn_->Prepare("extract-2", "sha256:layer1", data);
    EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status();
    Labels boot = extra;
    boot[kNydusBootstrapLabel] = "true";
    boot[kTargetRefLabel] = "sha256:meta";
    auto m = sn_->Prepare("extract-3", "sha256:layer2", boot);
    EXPECT_TRUE(m.ok()) << m.status();
    // Native mounts: containerd unpacks the bootstrap tar into them.
    EXPECT_EQ(m->size(), 1u);
    EXPECT_EQ((*m)[0].type, "overlay");
    EXPECT_EQ(fake_->mount_calls, 0);
    EXPECT_TRUE(sn_->Commit("sha256:meta", "extract-3", boot).ok());
    return "sha256:meta";
  }
  testing::TempDir tmp_;
  std::shared_ptr<FakeRemoteFs> fake_;
  std::unique_ptr<Snapshotter> sn_;
};

TEST_F(RemoteSnapshotTest, DataLayersAreCommittedWithoutDownload) {
  Labels data{{kNydusBlobLabel, "true"}, {kTargetRefLabel, "sha256:abc"}, {"x", "y"}};
  auto r = sn_->Prepare("extract-a", "", data);
  ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status();
  auto info = sn_->Stat("sha256:abc");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->labels.at("x"), "y");
  EXPECT_EQ(sn_->Stat("extract-a").status().code(), StatusCode::kNotFound);
  // A second pull of the same layer: AlreadyExists again, nothing left behind.
  r = sn_->Prepare("extract-b", "", data);
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->Stat("extract-b").status().code(), StatusCode::kNotFound);
}

TEST_F(RemoteSnapshotTest, ContainerGetsOverlayOnTheImageMount) {
  const std::string meta = Unpack({{kCriImageRefLabel, "127.0.0.1:5000/app:1"}});
  auto m = sn_->Prepare("container-1", meta, {});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 1u);
  const Mount& mt = (*m)[0];
  EXPECT_EQ(mt.type, "overlay");
  auto meta_info = sn_->Stat(meta);
  ASSERT_TRUE(meta_info.ok());
  ASSERT_EQ(fake_->mount_calls, 1);
  EXPECT_EQ(fake_->last_labels.at(kCriImageRefLabel), "127.0.0.1:5000/app:1");
  EXPECT_NE(fake_->last_layer_dir.find("/snapshots/"), std::string::npos);
  ASSERT_FALSE(mt.options.empty());
  const std::string lower = mt.options.back();
  EXPECT_EQ(lower.rfind("lowerdir=/fake/rafs/", 0), 0u) << lower;
  EXPECT_EQ(lower.find(':'), std::string::npos) << "only the image mount below: " << lower;
  bool upper = false;
  for (const auto& o : mt.options) upper |= o.rfind("upperdir=", 0) == 0;
  EXPECT_TRUE(upper);

  auto c1 = sn_->Stat("container-1");
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->labels.at(kRafsStatusLabel), "lazy");

  // A second container shares the instance (the RemoteFs keys by meta id).
  auto m2 = sn_->Prepare("container-2", meta, {});
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ((*m2)[0].options.back(), lower);

  // Mounts: same answer; after the instance vanished, it is started again.
  auto again = sn_->Mounts("container-1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *m);
  fake_->live.clear();
  const int calls = fake_->mount_calls;
  again = sn_->Mounts("container-1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *m);
  EXPECT_EQ(fake_->mount_calls, calls + 1);

  // A view of the image: read-only overlay, image mount then its own dir.
  auto v = sn_->View("view-1", meta, {});
  ASSERT_TRUE(v.ok()) << v.status();
  const std::string vlower = (*v)[0].options.back();
  EXPECT_EQ(vlower.rfind("lowerdir=/fake/rafs/", 0), 0u) << vlower;
  EXPECT_NE(vlower.find(':'), std::string::npos);
  for (const auto& o : (*v)[0].options) EXPECT_EQ(o.rfind("upperdir=", 0), std::string::npos);

  // Removing the image (after its containers) stops the instance.
  ASSERT_TRUE(sn_->Remove("container-1").ok());
  ASSERT_TRUE(sn_->Remove("container-2").ok());
  ASSERT_TRUE(sn_->Remove("view-1").ok());
  EXPECT_TRUE(fake_->unmounted.empty() ||
              std::find(fake_->unmounted.begin(), fake_->unmounted.end(), 0) ==
                  fake_->unmounted.end());
  const size_t before = fake_->unmounted.size();
  ASSERT_TRUE(sn_->Remove(meta).ok());
  ASSERT_EQ(fake_->unmounted.size(), before + 1);
}

TEST_F(RemoteSnapshotTest, ContainerLabelsCanNameTheImage) {
  const std::string meta = Unpack();  // no image reference on the layers
  auto m = sn_->Prepare("container-1", meta, {{kCriImageRefLabel, "127.0.0.1:1/x:y"}});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(fake_->last_labels.at(kCriImageRefLabel), "127.0.0.1:1/x:y");
  EXPECT_EQ(fake_->last_labels.count(kNydusBootstrapLabel), 1u);
}

TEST_F(RemoteSnapshotTest, FailureToServeRemovesTheSnapshotAndSaysWhy) {
  const std::string meta = Unpack();
  fake_->fail_with = base::FailedPreconditionError("the image reference is unknown");
  auto m = sn_->Prepare("container-1", meta, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("cannot be served"), std::string::npos) << m.status();
  EXPECT_NE(m.status().message().find("reference is unknown"), std::string::npos);
  EXPECT_EQ(sn_->Stat("container-1").status().code(), StatusCode::kNotFound);
  // Once it works, the same key can be prepared.
  fake_->fail_with = base::Status::Ok();
  EXPECT_TRUE(sn_->Prepare("container-1", meta, {}).ok());
}

TEST_F(RemoteSnapshotTest, PlainLayersAboveStayNative) {
  // A layer being unpacked on top of the image (snapshot.ref set) is not a
  // container: it gets native mounts; a container above it sees both.
  const std::string meta = Unpack();
  Labels plain{{kTargetRefLabel, "sha256:plain"}};
  auto m = sn_->Prepare("extract-plain", meta, plain);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(fake_->mount_calls, 0);
  ASSERT_TRUE(sn_->Commit("sha256:plain", "extract-plain", plain).ok());
  auto c = sn_->Prepare("container", "sha256:plain", {});
  ASSERT_TRUE(c.ok());
  const std::string lower = (*c)[0].options.back();
  // The plain layer's dir, then the image mount.
  EXPECT_NE(lower.find(":/fake/rafs/"), std::string::npos) << lower;
}

TEST(RemoteSnapshotNoRemoteTest, WithoutRemoteFsEverythingIsNative) {
  testing::TempDir tmp;
  Snapshotter::Options o;
  o.root = tmp.Sub("root");
  o.in_memory_store = true;
  auto sn = Snapshotter::Open(o);
  ASSERT_TRUE(sn.ok());
  Labels data{{kNydusBlobLabel, "true"}, {kTargetRefLabel, "sha256:abc"}};
  auto r = (*sn)->Prepare("extract-a", "", data);
  ASSERT_TRUE(r.ok()) << r.status();  // unpacked like any layer
}

// Without an image reference label RafsManager asks resolve_image_ref: its
// answer is where the blobs come from, its failure the reason it says.
TEST(RafsManagerTest, ImageWithoutReferenceLabelIsNamedByTheResolver) {
  testing::TempDir tmp;
  base::MetricsRegistry metrics;
  RafsManagerOptions mo;
  mo.snapshots_dir = tmp.Sub("snapshots");
  mo.cache_dir = tmp.Sub("cache");
  mo.metrics = &metrics;
  std::vector<Labels> asked;
  base::Result<std::string> answer = base::NotFoundError("no image in containerd has it");
  mo.resolve_image_ref = [&](const Labels& l) -> base::Result<std::string> {
    asked.push_back(l);
    return answer;
  };
  std::string backend_for;
  mo.backend_factory = [&](const storage::ImageReference& ref, const Labels&)
      -> base::Result<std::shared_ptr<storage::BlobBackend>> {
    backend_for = ref.ToString();
    return base::UnavailableError("test: stop before mounting");
  };
  auto manager = RafsManager::Create(mo);
  ASSERT_TRUE(manager.ok()) << manager.status();
  const std::string layer = tmp.Sub("layer");
  ASSERT_EQ(::mkdir(layer.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((layer + "/image").c_str(), 0755), 0);
  testing::WriteFileBytes(layer + "/image/image.boot", {0});
  Labels meta{{kNydusBootstrapLabel, "true"}, {kTargetRefLabel, "sha256:meta"}};

  auto m = (*manager)->Mount(1, layer, meta);
  ASSERT_EQ(m.status().code(), StatusCode::kNotFound) << m.status();
  EXPECT_NE(m.status().message().find(std::string("no ") + kCriImageRefLabel + " label"),
            std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("no image in containerd has it"), std::string::npos);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0], meta);

  answer = std::string("127.0.0.1:5000/team/app:1");
  m = (*manager)->Mount(1, layer, meta);
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable) << m.status();
  EXPECT_EQ(backend_for, "127.0.0.1:5000/team/app:1");

  answer = std::string("Not A Reference");
  m = (*manager)->Mount(1, layer, meta);
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status();
  EXPECT_NE(m.status().message().find("Not A Reference"), std::string::npos) << m.status();

  // A label wins; the resolver is not asked.
  asked.clear();
  Labels labelled = meta;
  labelled[kCriImageRefLabel] = "127.0.0.1:5000/other:2";
  m = (*manager)->Mount(1, layer, labelled);
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable) << m.status();
  EXPECT_EQ(backend_for, "127.0.0.1:5000/other:2");
  EXPECT_TRUE(asked.empty());

  // No resolver: the label is required.
  mo.resolve_image_ref = nullptr;
  mo.cache_dir = tmp.Sub("cache2");
  auto plain = RafsManager::Create(mo);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Mount(1, layer, meta).status().code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------

std::string RealSkipReason() {
  if (!testing::IsRoot()) return "needs root (FUSE and overlay mounts)";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not available";
  if (!testing::LocalRegistry::Available()) return "docker-registry is not installed";
  return "";
}

TEST(RafsEndToEndTest, ContainerRootfsIsTheImageFetchedLazily) {
  std::string why = RealSkipReason();
  if (!why.empty()) GTEST_SKIP() << why;
  testing::TempDir tmp;
  // The image: a few big files and many small ones.
  const std::string src = tmp.Sub("src");
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::mt19937 rng(1);
  for (int i = 0; i < 8; ++i) {
    std::vector<uint8_t> big(1 << 20);
    for (auto& c : big) c = static_cast<uint8_t>(rng());
    testing::WriteFileBytes(src + "/big" + std::to_string(i), big);
  }
  ASSERT_EQ(::mkdir((src + "/etc").c_str(), 0755), 0);
  testing::WriteFileBytes(src + "/etc/hello", {'h', 'i', '\n'});
  const std::string boot = tmp.Sub("image.boot"), blobs = tmp.Sub("blobs");
  ASSERT_EQ(::mkdir(blobs.c_str(), 0755), 0);
  rafs::builder::BuildOptions bo;
  bo.chunk_size = 64 * 1024;
  auto built = rafs::builder::BuildFromDirectory(src, boot, blobs, bo);
  ASSERT_TRUE(built.ok()) << built.status();
  auto reg = testing::LocalRegistry::Start(tmp.Sub("registry"));
  ASSERT_TRUE(reg.ok()) << reg.status();
  const std::vector<uint8_t> blob = testing::ReadFileBytes(built->blob_path);
  auto blob_id = (*reg)->PushBlob("team/app", blob);
  ASSERT_TRUE(blob_id.ok()) << blob_id.status();

  base::MetricsRegistry metrics;
  RafsManagerOptions mo;
  mo.snapshots_dir = tmp.Sub("root") + "/snapshots";
  mo.cache_dir = tmp.Sub("root") + "/cache";
  mo.plain_http_hosts = {(*reg)->host()};
  mo.docker_config = tmp.Sub("no-docker-config.json");
  mo.metrics = &metrics;
  mo.mount.prefetch = rafs::fs::PrefetchPolicy::kNone;
  Snapshotter::Options so;
  so.root = tmp.Sub("root");
  so.in_memory_store = true;
  auto opened = Snapshotter::Open(so);  // creates root/snapshots
  ASSERT_TRUE(opened.ok());
  opened->reset();
  auto manager = RafsManager::Create(mo);
  ASSERT_TRUE(manager.ok()) << manager.status();
  so.remote = *manager;
  auto sn = Snapshotter::Open(so);
  ASSERT_TRUE(sn.ok()) << sn.status();

  // containerd's unpacker: the data layer is remote, the bootstrap layer is
  // unpacked (here: its image/image.boot written into the bind mount dir).
  const std::string ref = (*reg)->host() + "/team/app:1";
  Labels data{{kNydusBlobLabel, "true"}, {kTargetRefLabel, "sha256:data"},
              {kCriImageRefLabel, ref}};
  ASSERT_EQ((*sn)->Prepare("extract-1", "", data).status().code(), StatusCode::kAlreadyExists);
  Labels bl{{kNydusBootstrapLabel, "true"}, {kTargetRefLabel, "sha256:meta"},
            {kCriImageRefLabel, ref}};
  auto bm = (*sn)->Prepare("extract-2", "sha256:data", bl);
  ASSERT_TRUE(bm.ok()) << bm.status();
  // A single parent (the empty data layer): an overlay; write into its upper dir.
  std::string upper;
  for (const auto& o : (*bm)[0].options) {
    if (o.rfind("upperdir=", 0) == 0) upper = o.substr(9);
  }
  ASSERT_FALSE(upper.empty());
  ASSERT_EQ(::mkdir((upper + "/image").c_str(), 0755), 0);
  testing::WriteFileBytes(upper + "/image/image.boot", testing::ReadFileBytes(boot));
  ASSERT_TRUE((*sn)->Commit("sha256:meta", "extract-2", bl).ok());

  // The container.
  auto cm = (*sn)->Prepare("container", "sha256:meta", {});
  ASSERT_TRUE(cm.ok()) << cm.status();
  const Mount& m = (*cm)[0];
  std::string opts;
  for (const auto& o : m.options) opts += (opts.empty() ? "" : ",") + o;
  const std::string rootfs = tmp.Sub("rootfs");
  ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
  ASSERT_EQ(::mount(m.source.c_str(), rootfs.c_str(), m.type.c_str(), 0, opts.c_str()), 0)
      << std::strerror(errno) << " " << opts;
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{rootfs};

  // Reading one small file fetches a small part of the image.
  EXPECT_EQ(testing::ReadFileBytes(rootfs + "/etc/hello"), (std::vector<uint8_t>{'h', 'i', '\n'}));
  const std::string text = metrics.RenderPrometheus();
  EXPECT_EQ(text.find("rafs_snapshotter_instance_start_failures_total 1"), std::string::npos);
  // Bytes fetched so far: the chunk of that file, not the 8 MiB image.
  const std::string key = "rfs_storage_backend_bytes_total{source=\"on_demand\"} ";
  size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos) << text;
  const uint64_t fetched = std::strtoull(text.c_str() + at + key.size(), nullptr, 10);
  EXPECT_GT(fetched, 0u);
  EXPECT_LT(fetched, 256u * 1024) << "fetched " << fetched << " bytes of " << blob.size();
  // The container writes to its upper dir, not the image.
  testing::WriteFileBytes(rootfs + "/new-file", {1});
  EXPECT_EQ(testing::ReadFileBytes(rootfs + "/new-file"), (std::vector<uint8_t>{1}));
  // The whole rootfs equals the source (plus the new file).
  ::unlink((rootfs + "/new-file").c_str());
  testing::DirCompareOptions dco;
  dco.mtime = false;      // the root of the image has mtime 0 -> mount time
  dco.dir_nlink = false;  // overlayfs reports 1 for merged directories
  auto diffs = testing::CompareDirectories(src, rootfs, dco);
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " differences, first: " << diffs[0];

  ASSERT_EQ(::umount2(rootfs.c_str(), 0), 0);
  unmount.dir.clear();
  ASSERT_TRUE((*sn)->Remove("container").ok());
  ASSERT_EQ((*manager)->Instances().size(), 1u);
  ASSERT_TRUE((*sn)->Remove("sha256:meta").ok());
  EXPECT_TRUE((*manager)->Instances().empty());
}

}  // namespace
}  // namespace rfs::snapshotter
