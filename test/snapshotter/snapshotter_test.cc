#include "snapshotter/snapshotter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test/support/test_util.h"

namespace rfs::snapshotter {
namespace {

using base::StatusCode;
namespace fs = std::filesystem;

class SnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(bool in_memory = true) {
    sn_.reset();
    Snapshotter::Options o;
    o.root = tmp_.Sub("root");
    o.in_memory_store = in_memory;
    o.sync_remove = sync_remove_;
    o.overlay = overlay_;
    auto r = Snapshotter::Open(o);
    ASSERT_TRUE(r.ok()) << r.status();
    sn_ = std::move(*r);
  }

  std::string Dir(int64_t id) const { return tmp_.Sub("root/snapshots/") + std::to_string(id); }
  std::string Fs(int64_t id) const { return Dir(id) + "/fs"; }

  // Names under root/snapshots, sorted.
  std::vector<std::string> SnapshotDirs() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp_.Sub("root/snapshots"))) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  void MustPrepareCommit(const std::string& name, const std::string& parent) {
    ASSERT_TRUE(sn_->Prepare(name + "-tmp", parent, {}).ok());
    ASSERT_TRUE(sn_->Commit(name, name + "-tmp", {}).ok());
  }

  rfs::testing::TempDir tmp_;
  bool sync_remove_ = false;
  OverlayOptions overlay_;
  std::unique_ptr<Snapshotter> sn_;
};

TEST_F(SnapshotterTest, MountShapesLikeOverlayfs) {
  auto m = sn_->Prepare("a", "", {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, (std::vector<Mount>{{"bind", Fs(1), {"rw", "rbind"}}}));
  struct stat st;
  ASSERT_EQ(::stat(Fs(1).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((Dir(1) + "/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);

  ASSERT_TRUE(sn_->Commit("c1", "a", {}).ok());
  m = sn_->Prepare("b", "c1", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<Mount>{
                    {"overlay",
                     "overlay",
                     {"workdir=" + Dir(2) + "/work", "upperdir=" + Fs(2), "lowerdir=" + Fs(1)}}}));
  ASSERT_TRUE(sn_->Commit("c2", "b", {}).ok());

  // A view of one layer is a read-only bind of it; of two, a read-only overlay.
  m = sn_->View("v1", "c1", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<Mount>{{"bind", Fs(1), {"ro", "rbind"}}}));
  EXPECT_FALSE(fs::exists(Dir(3) + "/work"));
  m = sn_->View("v2", "c2", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<Mount>{{"overlay", "overlay", {"lowerdir=" + Fs(2) + ":" + Fs(1)}}}));
  m = sn_->View("v0", "", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<Mount>{{"bind", Fs(5), {"ro", "rbind"}}}));

  // Mounts returns what Prepare/View returned.
  auto again = sn_->Mounts("v2");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again,
            (std::vector<Mount>{{"overlay", "overlay", {"lowerdir=" + Fs(2) + ":" + Fs(1)}}}));
  auto committed = sn_->Mounts("c1");
  EXPECT_EQ(committed.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SnapshotterTest, OverlayOptionsAndVolatileLabel) {
  overlay_.index_off = true;
  overlay_.userxattr = true;
  Reopen();
  MustPrepareCommit("base", "");
  auto m = sn_->Prepare("a", "base", {{std::string(kVolatileLabel), "true"}});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].options, (std::vector<std::string>{"index=off", "userxattr", "volatile",
                                                       "workdir=" + Dir(2) + "/work",
                                                       "upperdir=" + Fs(2), "lowerdir=" + Fs(1)}));
  m = sn_->Prepare("b", "base", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)[0].options.size(), 5u);  // no volatile without the label
}

TEST_F(SnapshotterTest, ErrorCodesAsContainerdExpects) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  EXPECT_EQ(sn_->Prepare("a", "", {}).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->View("a", "", {}).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(sn_->Prepare("b", "missing", {}).status().code(), StatusCode::kNotFound);
  // Parent is checked before the key.
  EXPECT_EQ(sn_->Prepare("a", "missing", {}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(sn_->Prepare("b", "a", {}).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(sn_->View("v", "", {}).ok());
  EXPECT_EQ(sn_->Commit("cv", "v", {}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sn_->Commit("c", "missing", {}).code(), StatusCode::kNotFound);
  ASSERT_TRUE(sn_->Commit("c", "a", {}).ok());
  ASSERT_TRUE(sn_->Prepare("a2", "", {}).ok());
  EXPECT_EQ(sn_->Commit("c", "a2", {}).code(), StatusCode::kAlreadyExists);
  // Unknown key: NotFound for every keyed call.
  EXPECT_EQ(sn_->Stat("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(sn_->Mounts("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(sn_->Remove("nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(sn_->GetUsage("nope").status().code(), StatusCode::kNotFound);
  Info info;
  info.name = "nope";
  EXPECT_EQ(sn_->Update(info, {}).status().code(), StatusCode::kNotFound);
  // Remove of a parent with children.
  ASSERT_TRUE(sn_->Prepare("child", "c", {}).ok());
  EXPECT_EQ(sn_->Remove("c").code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(sn_->Remove("child").ok());
  EXPECT_TRUE(sn_->Remove("c").ok());
}

TEST_F(SnapshotterTest, CommitReplacesLabelsAndStoresUsage) {
  ASSERT_TRUE(sn_->Prepare("a", "", {{"prep", "1"}}).ok());
  auto before = sn_->Stat("a");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->kind, Kind::kActive);
  EXPECT_EQ(before->created_at_ns, before->updated_at_ns);
  EXPECT_EQ(before->labels, (Labels{{"prep", "1"}}));
  rfs::testing::WriteFileBytes(Fs(1) + "/file", std::vector<uint8_t>(10000, 'x'));
  auto live = sn_->GetUsage("a");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->inodes, 2);  // fs dir + file
  EXPECT_GE(live->size_bytes, 10000);

  ASSERT_TRUE(sn_->Commit("c", "a", {{"commit", "2"}, {"empty", ""}}).ok());
  EXPECT_EQ(sn_->Stat("a").status().code(), StatusCode::kNotFound);
  auto after = sn_->Stat("c");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->kind, Kind::kCommitted);
  EXPECT_EQ(after->labels, (Labels{{"commit", "2"}}));
  EXPECT_EQ(after->created_at_ns, after->updated_at_ns);
  EXPECT_GE(after->created_at_ns, before->created_at_ns);
  // The committed layer keeps the same dir; its usage is the one stored.
  EXPECT_TRUE(fs::exists(Fs(1) + "/file"));
  rfs::testing::WriteFileBytes(Fs(1) + "/more", std::vector<uint8_t>(50000, 'y'));
  auto stored = sn_->GetUsage("c");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->inodes, live->inodes);
  EXPECT_EQ(stored->size_bytes, live->size_bytes);
}

TEST_F(SnapshotterTest, UsageCountsHardLinksOnce) {
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  rfs::testing::WriteFileBytes(Fs(1) + "/f", std::vector<uint8_t>(8192, 'x'));
  ASSERT_EQ(::link((Fs(1) + "/f").c_str(), (Fs(1) + "/g").c_str()), 0);
  ASSERT_EQ(::mkdir((Fs(1) + "/d").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("/etc/passwd", (Fs(1) + "/d/s").c_str()), 0);
  auto u = sn_->GetUsage("a");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->inodes, 4);  // fs, f (=g), d, s
}

TEST_F(SnapshotterTest, UpdateOnlyLabels) {
  ASSERT_TRUE(sn_->Prepare("a", "", {{"keep", "k"}, {"l2", "v2"}}).ok());
  auto st = sn_->Stat("a");
  ASSERT_TRUE(st.ok());
  Info in = *st;
  in.parent = "doesnotexist";
  in.labels = {{"l1", "updated"}, {"l4", "v4"}};
  auto out = sn_->Update(in, {"labels.l1", "labels.l2"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->labels, (Labels{{"keep", "k"}, {"l1", "updated"}}));
  EXPECT_EQ(out->parent, "");
  EXPECT_EQ(out->created_at_ns, st->created_at_ns);
  EXPECT_GT(out->updated_at_ns, st->updated_at_ns);
  out = sn_->Update(in, {"labels"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, in.labels);
  in.labels = {{"only", "1"}};
  out = sn_->Update(in, {});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, in.labels);
  for (const char* path : {"parent", "name", "kind", "created_at", "bogus"}) {
    EXPECT_EQ(sn_->Update(in, {path}).status().code(), StatusCode::kInvalidArgument) << path;
  }
  in.labels = {{"big", std::string(kMaxLabelBytes, 'x')}};
  EXPECT_EQ(sn_->Update(in, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sn_->Stat("a")->labels, (Labels{{"only", "1"}}));
}

TEST_F(SnapshotterTest, WalkWithFilters) {
  ASSERT_TRUE(sn_->Prepare("a-np", "", {{"r", "w"}}).ok());
  MustPrepareCommit("p", "");
  ASSERT_TRUE(sn_->Prepare("a", "p", {{"l", "2"}}).ok());
  ASSERT_TRUE(sn_->View("v", "p", {}).ok());
  auto names = [&](const std::vector<std::string>& filters) {
    std::vector<std::string> out;
    auto f = Filter::Parse(filters);
    EXPECT_TRUE(f.ok());
    EXPECT_TRUE(sn_->Walk(*f,
                          [&](const Info& i) {
                            out.push_back(i.name);
                            return base::Status::Ok();
                          })
                    .ok());
    return out;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"a", "a-np", "p", "v"}));
  EXPECT_EQ(names({"kind==active"}), (std::vector<std::string>{"a", "a-np"}));
  EXPECT_EQ(names({"parent==p"}), (std::vector<std::string>{"a", "v"}));
  EXPECT_EQ(names({"labels.l==2", "kind==committed"}), (std::vector<std::string>{"a", "p"}));
  // The callback's error stops the walk and is returned.
  int calls = 0;
  auto st = sn_->Walk(Filter(), [&](const Info&) {
    ++calls;
    return base::CancelledError("stop");
  });
  EXPECT_EQ(st.code(), StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST_F(SnapshotterTest, BadKeysAndLabelsCreateNothing) {
  for (const std::string& key :
       {std::string(""), std::string("../x"), std::string("a/../../b"), std::string(".."),
        std::string("a\nb"), std::string("a\0b", 3), std::string(kMaxKeyBytes + 1, 'k')}) {
    EXPECT_EQ(sn_->Prepare(key, "", {}).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(sn_->View(key, "", {}).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(sn_->Prepare("ok", "../p", {}).status().code(), StatusCode::kInvalidArgument);
  Labels huge{{"k", std::string(kMaxLabelBytes, 'v')}};
  EXPECT_EQ(sn_->Prepare("ok", "", huge).status().code(), StatusCode::kInvalidArgument);
  Labels at_limit{{"k", std::string(kMaxLabelBytes - 1, 'v')}};
  EXPECT_TRUE(sn_->Prepare("ok", "", at_limit).ok());
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1"}));
  // Keys are opaque otherwise: containerd's namespaced keys, spaces, absolute paths.
  EXPECT_TRUE(sn_->Prepare("k8s.io/398/extract-1-x sha256:4e5f", "", {}).ok());
  EXPECT_TRUE(sn_->Prepare("/tmp/work/preparing", "", {}).ok());
  EXPECT_TRUE(sn_->Prepare("a..b/c..", "", {}).ok());
}

TEST_F(SnapshotterTest, RemoveDefersDirectoriesToCleanup) {
  MustPrepareCommit("c", "");
  ASSERT_TRUE(sn_->Prepare("a", "c", {}).ok());
  ASSERT_TRUE(sn_->Remove("a").ok());
  EXPECT_TRUE(fs::exists(Dir(2)));
  ASSERT_TRUE(sn_->Cleanup().ok());
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1"}));
  // Ids are never reused, even after removal.
  ASSERT_TRUE(sn_->Prepare("b", "c", {}).ok());
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1", "3"}));
}

TEST_F(SnapshotterTest, SyncRemoveDeletesAtOnce) {
  sync_remove_ = true;
  Reopen();
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  rfs::testing::WriteFileBytes(Fs(1) + "/f", {1, 2, 3});
  ASSERT_TRUE(sn_->Remove("a").ok());
  EXPECT_TRUE(SnapshotDirs().empty());
}

TEST_F(SnapshotterTest, StartRepairsWhatACrashLeft) {
  sn_.reset();
  Reopen(/*in_memory=*/false);
  MustPrepareCommit("c", "");
  ASSERT_TRUE(sn_->Prepare("a", "c", {{"x", "y"}}).ok());
  sn_.reset();
  // What a kill -9 can leave: a temp dir, an uncommitted id dir, a half
  // deleted rm- dir, with symlinks that must not be followed out of root.
  std::string snaps = tmp_.Sub("root/snapshots");
  std::string outside = tmp_.Sub("outside");
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  rfs::testing::WriteFileBytes(outside + "/precious", {1});
  for (const char* d : {"new-abc123", "3", "rm-7", "00"}) {
    ASSERT_EQ(::mkdir((snaps + "/" + d).c_str(), 0700), 0);
    ASSERT_EQ(::mkdir((snaps + "/" + d + "/fs").c_str(), 0755), 0);
    ASSERT_EQ(::symlink(outside.c_str(), (snaps + "/" + d + "/fs/link").c_str()), 0);
  }
  Reopen(/*in_memory=*/false);
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1", "2"}));
  EXPECT_TRUE(fs::exists(outside + "/precious"));
  auto a = sn_->Stat("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->parent, "c");
  EXPECT_EQ(a->labels, (Labels{{"x", "y"}}));
  // The next id does not collide with anything.
  ASSERT_TRUE(sn_->Prepare("b", "c", {}).ok());
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1", "2", "3"}));
}

TEST_F(SnapshotterTest, RootIsLockedByOneInstance) {
  Snapshotter::Options o;
  o.root = tmp_.Sub("root");
  o.in_memory_store = true;
  auto second = Snapshotter::Open(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
  sn_.reset();
  EXPECT_TRUE(Snapshotter::Open(o).ok());
  o.root = tmp_.Sub("deep/er/root");
  EXPECT_TRUE(Snapshotter::Open(o).ok());
  o.root = "relative/root";
  EXPECT_EQ(Snapshotter::Open(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SnapshotterTest, ConcurrentPrepareOfOneKey) {
  MustPrepareCommit("c", "");
  constexpr int kThreads = 8;
  std::atomic<int> ok{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      auto r = sn_->Prepare("same", "c", {});
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == StatusCode::kAlreadyExists) {
        ++exists;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exists.load(), kThreads - 1);
  EXPECT_EQ(SnapshotDirs(), (std::vector<std::string>{"1", "2"}));
}

TEST_F(SnapshotterTest, ChildFsTakesParentOwner) {
  if (!rfs::testing::IsRoot()) GTEST_SKIP() << "chown needs root";
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  ASSERT_EQ(::chown(Fs(1).c_str(), 1234, 5678), 0);
  ASSERT_TRUE(sn_->Commit("c", "a", {}).ok());
  ASSERT_TRUE(sn_->Prepare("b", "c", {}).ok());
  struct stat st;
  ASSERT_EQ(::stat(Fs(2).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(SnapshotterTest, LongChainsNearestParentFirstAndBounded) {
  std::string parent;
  for (size_t i = 0; i < kMaxOverlayLowers; ++i) {
    std::string name = "l" + std::to_string(i);
    ASSERT_TRUE(sn_->Prepare(name + "-tmp", parent, {}).ok()) << i;
    ASSERT_TRUE(sn_->Commit(name, name + "-tmp", {}).ok());
    parent = name;
  }
  auto m = sn_->View("top", parent, {});
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string& lower = (*m)[0].options.back();
  EXPECT_EQ(
      lower.rfind("lowerdir=" + Fs(kMaxOverlayLowers) + ":" + Fs(kMaxOverlayLowers - 1) + ":", 0),
      0u);
  EXPECT_EQ(lower.substr(lower.size() - Fs(1).size() - 1), ":" + Fs(1));
  // One more layer would be more than overlayfs stacks.
  ASSERT_TRUE(sn_->Prepare("over-tmp", parent, {}).ok());
  ASSERT_TRUE(sn_->Commit("over", "over-tmp", {}).ok());
  EXPECT_EQ(sn_->Prepare("x", "over", {}).status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace rfs::snapshotter

namespace rfs::snapshotter {
namespace {

// A container's upper dir can hold anything, including a mount point (a
// leaked bind mount): deleting the snapshot never enters another filesystem.
TEST_F(SnapshotterTest, RemovalNeverCrossesIntoAMount) {
  if (!rfs::testing::IsRoot()) GTEST_SKIP() << "mounting a tmpfs needs root";
  ASSERT_TRUE(sn_->Prepare("a", "", {}).ok());
  std::string mnt = Fs(1) + "/mnt";
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  ASSERT_EQ(::mount("rfs-test", mnt.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  rfs::testing::WriteFileBytes(mnt + "/precious", {42});
  rfs::testing::WriteFileBytes(Fs(1) + "/plain", {1});
  ASSERT_TRUE(sn_->Remove("a").ok());
  EXPECT_EQ(sn_->Cleanup().code(), StatusCode::kFailedPrecondition);
  // What could be deleted is gone; the mounted filesystem is untouched.
  EXPECT_TRUE(fs::exists(tmp_.Sub("root/snapshots/rm-1/fs/mnt/precious")));
  EXPECT_FALSE(fs::exists(tmp_.Sub("root/snapshots/rm-1/fs/plain")));
  ASSERT_EQ(::umount(tmp_.Sub("root/snapshots/rm-1/fs/mnt").c_str()), 0);
  EXPECT_TRUE(sn_->Cleanup().ok());
  EXPECT_TRUE(SnapshotDirs().empty());
}

}  // namespace
}  // namespace rfs::snapshotter
