// `rafs mount` end to end (root only; skipped with the reason otherwise):
// background start returns once the mount serves, files equal `rafs cat`,
// SIGTERM to a foreground server unmounts cleanly, bad mountpoints and
// corrupt images fail with a clear message and exit code, the metrics
// endpoint serves the FUSE counters.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace rfs::testing {
namespace {

std::string Rafs() { return RFS_RAFS_BINARY; }
std::string Fixture() { return UpstreamFixture("rafs-v6-2.2.boot"); }

std::string SkipReason() {
  if (!IsRoot()) return "needs root to mount FUSE";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is not available";
  return "";
}

bool Mounted(const std::string& dir) {
  return RunCommand("mountpoint -q " + dir) == 0;
}

// Unmounts whatever the test left behind.
struct Unmounter {
  std::string dir;
  ~Unmounter() {
    if (Mounted(dir)) RunCommand("umount -l " + dir);
  }
};

TEST(MountCliTest, BackgroundMountServesTheImage) {
  std::string why = SkipReason();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir t;
  const std::string mnt = t.Sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  Unmounter u{mnt};
  std::string out;
  ASSERT_EQ(RunCommand(Rafs() + " mount " + Fixture() + " " + mnt + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("mounted"), std::string::npos) << out;
  const std::string started = out;
  ASSERT_TRUE(Mounted(mnt));
  std::string via_mount, via_cat;
  ASSERT_EQ(RunCommand("md5sum < " + mnt + "/sync_io.rs", &via_mount), 0);
  ASSERT_EQ(RunCommand(Rafs() + " cat " + Fixture() + " /sync_io.rs | md5sum", &via_cat), 0);
  EXPECT_EQ(via_mount, via_cat);
  // Busy mountpoint: clear error, exit 1, the first mount keeps serving.
  ASSERT_EQ(RunCommand(Rafs() + " mount " + Fixture() + " " + mnt + " 2>&1", &out), 1) << out;
  EXPECT_NE(out.find("busy"), std::string::npos) << out;
  ASSERT_EQ(RunCommand("umount " + mnt), 0);
  // The background server (pid printed at start) exits once unmounted.
  size_t at = started.find("(pid ");
  ASSERT_NE(at, std::string::npos) << started;
  const int pid = std::atoi(started.c_str() + at + 5);
  ASSERT_GT(pid, 0);
  auto alive = [pid] {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string id, comm, state;
    return static_cast<bool>(stat >> id >> comm >> state) && state != "Z";
  };
  for (int i = 0; i < 100 && alive(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(alive());
}

TEST(MountCliTest, ForegroundServerUnmountsOnSigterm) {
  std::string why = SkipReason();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir t;
  const std::string mnt = t.Sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  Unmounter u{mnt};
  const int port = FreeLoopbackPort();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string addr = "127.0.0.1:" + std::to_string(port);
    ::execl(Rafs().c_str(), "rafs", "mount", "--foreground", "--metrics-address", addr.c_str(),
            Fixture().c_str(), mnt.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 200 && !Mounted(mnt); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(Mounted(mnt));
  std::string out;
  ASSERT_EQ(RunCommand("cat " + mnt + "/lib.rs > /dev/null"), 0);
  if (HaveCommand("curl")) {
    ASSERT_EQ(RunCommand("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/metrics", &out),
              0);
    EXPECT_NE(out.find("rafs_fuse_read_bytes_total"), std::string::npos) << out;
    EXPECT_NE(out.find("rafs_memory_usage_kilobytes"), std::string::npos);
    std::string health;
    ASSERT_EQ(RunCommand("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/healthz",
                         &health),
              0);
    EXPECT_EQ(health, "ok\n");
  }
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(Mounted(mnt));
}

TEST(MountCliTest, BadInputFailsClearly) {
  std::string why = SkipReason();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir t;
  std::string out;
  EXPECT_EQ(RunCommand(Rafs() + " mount " + Fixture() + " " + t.Sub("nope") + " 2>&1", &out),
            1);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  // A truncated bootstrap: corrupt image, exit 3, nothing mounted.
  auto bytes = ReadFileBytes(Fixture());
  bytes.resize(bytes.size() / 3);
  const std::string bad = t.Sub("bad.boot");
  WriteFileBytes(bad, bytes);
  const std::string mnt = t.Sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  Unmounter u{mnt};
  EXPECT_EQ(RunCommand(Rafs() + " mount " + bad + " " + mnt + " 2>&1", &out), 3) << out;
  EXPECT_NE(out.find("rafs mount:"), std::string::npos) << out;
  EXPECT_FALSE(Mounted(mnt));
}

}  // namespace
}  // namespace rfs::testing
