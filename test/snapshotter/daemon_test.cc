// The rafs-snapshotter binary as a process: flags, config errors, refusing a
// root owned by a running instance, SIGTERM stopping it cleanly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cmd/rafs-snapshotter/config.h"
#include "test/support/test_util.h"

extern char** environ;

namespace rfs::cmd {
namespace {

// Set by CMake to the built binary (the test depends on it).
std::string DaemonPath() { return RFS_SNAPSHOTTER_BIN; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts the daemon with stdout+stderr to `out`; returns its pid.
pid_t Spawn(const std::vector<std::string>& args, const std::string& out) {
  std::vector<std::string> all = {DaemonPath()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

int WaitExit(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Runs to completion; returns the exit code, output in *out.
int RunDaemon(const std::vector<std::string>& args, const std::string& out_path, std::string* out) {
  pid_t pid = Spawn(args, out_path);
  if (pid < 0) return -1;
  int rc = WaitExit(pid);
  *out = ReadAll(out_path);
  return rc;
}

// The daemon is another process: poll for its socket, bounded.
bool WaitForSocket(const std::string& path, pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return true;
    if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(DaemonPath().c_str(), X_OK), 0) << DaemonPath();
    std::string cfg = "metrics: {address: \"\"}\n";
    rfs::testing::WriteFileBytes(tmp_.Sub("c.yaml"), std::vector<uint8_t>(cfg.begin(), cfg.end()));
  }
  std::vector<std::string> Args(const std::string& root, const std::string& sock) {
    return {"--root", tmp_.Sub(root), "--address", tmp_.Sub(sock), "--config", tmp_.Sub("c.yaml")};
  }
  rfs::testing::TempDir tmp_;
};

TEST_F(DaemonTest, VersionAndDefaultConfig) {
  std::string out;
  ASSERT_EQ(RunDaemon({"--version"}, tmp_.Sub("v.out"), &out), 0);
  EXPECT_EQ(out.rfind("rafs-snapshotter ", 0), 0u) << out;
  ASSERT_EQ(RunDaemon({"--print-default-config"}, tmp_.Sub("d.out"), &out), 0);
  EXPECT_EQ(out, kDefaultConfigYaml);
  auto parsed = ParseConfig(out, "printed");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(RunDaemon({"--no-such-flag"}, tmp_.Sub("u.out"), &out), 2);
}

TEST_F(DaemonTest, BadConfigNamesTheKey) {
  std::string bad = "log: {level: chatty}\n";
  rfs::testing::WriteFileBytes(tmp_.Sub("bad.yaml"), std::vector<uint8_t>(bad.begin(), bad.end()));
  std::string out;
  EXPECT_EQ(RunDaemon({"--root", tmp_.Sub("r"), "--address", tmp_.Sub("s"), "--config",
                       tmp_.Sub("bad.yaml")},
                      tmp_.Sub("b.out"), &out),
            1);
  EXPECT_NE(out.find("key \"log.level\": \"chatty\""), std::string::npos) << out;
  EXPECT_NE(::access(tmp_.Sub("r").c_str(), F_OK), 0) << "root created despite the bad config";
}

TEST_F(DaemonTest, OneInstancePerRootAndSocketThenCleanStop) {
  std::string log = tmp_.Sub("d1.out");
  pid_t pid = Spawn(Args("r", "s.sock"), log);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitForSocket(tmp_.Sub("s.sock"), pid)) << ReadAll(log);
  struct stat st;
  ASSERT_EQ(::lstat(tmp_.Sub("s.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  std::string out;
  EXPECT_EQ(RunDaemon(Args("r", "other.sock"), tmp_.Sub("d2.out"), &out), 1);
  EXPECT_NE(out.find("is in use by another rafs-snapshotter"), std::string::npos) << out;
  EXPECT_EQ(RunDaemon(Args("r2", "s.sock"), tmp_.Sub("d3.out"), &out), 1);
  EXPECT_NE(out.find("is served by another running process"), std::string::npos) << out;

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitExit(pid), 0);
  EXPECT_NE(::lstat(tmp_.Sub("s.sock").c_str(), &st), 0) << "socket left behind";
  EXPECT_NE(ReadAll(log).find("stopped"), std::string::npos);
  // The root is free again.
  pid = Spawn(Args("r", "s.sock"), tmp_.Sub("d4.out"));
  ASSERT_TRUE(WaitForSocket(tmp_.Sub("s.sock"), pid)) << ReadAll(tmp_.Sub("d4.out"));
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  EXPECT_EQ(WaitExit(pid), 0);
}

}  // namespace
}  // namespace rfs::cmd
