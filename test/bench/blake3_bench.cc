// Single-thread BLAKE3 throughput: our code paths against b3sum --num-threads 1.
//
// Ours: 1 MiB one-shot digests (the RAFS chunk case) and 256 MiB streamed
// through one hasher in 1 MiB updates. b3sum: the same 256 MiB in a file in
// the page cache; wall time of the whole process (start-up and mapping the
// file included, nothing subtracted), best of 3. The b3sum digest is checked
// against ours, so the comparison is on identical work.
//
// Usage: blake3_bench [total MiB, default 256]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/blake3.h"
#include "base/bytes.h"

extern char** environ;

namespace {

using rfs::base::Blake3;
using rfs::base::Blake3Hasher;
using rfs::base::ByteSpan;
using Clock = std::chrono::steady_clock;

constexpr size_t kMiB = 1 << 20;
constexpr int kRuns = 3;

// Keeps the one-shot digests from being optimized away.
volatile uint8_t g_sink;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Runs argv without a shell; stdout captured. nullopt unless it exits 0.
std::optional<std::string> Run(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (rc == 0 && ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (rc != 0) return std::nullopt;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

struct OursResult {
  double one_shot_mibs;  // 1 MiB Blake3() calls
  double stream_mibs;    // one hasher, 1 MiB updates
  std::string stream_digest;
};

OursResult BenchOurs(const std::vector<uint8_t>& buf, size_t reps) {
  OursResult r{0, 0, ""};
  uint8_t sink = 0;
  for (int run = 0; run < kRuns; ++run) {
    auto t0 = Clock::now();
    for (size_t i = 0; i < reps; ++i) sink ^= Blake3(buf)[i % 32];
    const double one_shot = static_cast<double>(reps) / Seconds(Clock::now() - t0);

    t0 = Clock::now();
    Blake3Hasher h;
    for (size_t i = 0; i < reps; ++i) h.Update(buf);
    const auto digest = h.Finalize();
    const double stream = static_cast<double>(reps) / Seconds(Clock::now() - t0);

    r.one_shot_mibs = std::max(r.one_shot_mibs, one_shot);
    r.stream_mibs = std::max(r.stream_mibs, stream);
    r.stream_digest = rfs::base::ToHex(ByteSpan(digest));
  }
  g_sink = sink;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  size_t reps = 256;
  if (argc > 1) reps = std::max<size_t>(1, std::strtoul(argv[1], nullptr, 10));

  std::vector<uint8_t> buf(kMiB);
  std::mt19937 rng(20240601);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());

  const std::string default_impl = Blake3Hasher::Implementation();
  std::vector<std::string> impls = {default_impl};
  for (auto name : rfs::base::Blake3Implementations()) {
    if (name != default_impl) impls.emplace_back(name);
  }

  std::printf("input: 1 MiB random buffer, %zu MiB total per measurement, best of %d\n", reps,
              kRuns);
  std::vector<std::pair<std::string, OursResult>> ours;
  for (const auto& impl : impls) {
    rfs::base::SetBlake3ImplementationForTesting(impl);
    OursResult r = BenchOurs(buf, reps);
    std::printf("blake3 ours (%s): %.1f MiB/s  [1 MiB one-shot: %.1f MiB/s]\n", impl.c_str(),
                r.stream_mibs, r.one_shot_mibs);
    ours.emplace_back(impl, r);
  }
  rfs::base::SetBlake3ImplementationForTesting(default_impl);

  // The same bytes in a file for b3sum.
  const char* tmp = std::getenv("TMPDIR");
  std::string dir =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/blake3_bench.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string file = dir + "/data";
  const std::string empty_file = dir + "/empty";
  int rc = 0;
  {
    FILE* f = std::fopen(file.c_str(), "wb");
    FILE* e = std::fopen(empty_file.c_str(), "wb");
    bool ok = f != nullptr && e != nullptr;
    for (size_t i = 0; ok && i < reps; ++i) ok = std::fwrite(buf.data(), 1, kMiB, f) == kMiB;
    if (f != nullptr && std::fclose(f) != 0) ok = false;
    if (e != nullptr && std::fclose(e) != 0) ok = false;
    if (!ok) {
      std::fprintf(stderr, "writing %s failed\n", file.c_str());
      rc = 1;
    }
  }
  const std::string b3sum = "/usr/bin/b3sum";
  if (rc == 0 && access(b3sum.c_str(), X_OK) != 0) {
    std::printf("b3sum not found at %s; no comparison\n", b3sum.c_str());
  } else if (rc == 0) {
    const std::vector<std::string> cmd = {b3sum, "--num-threads", "1", "--no-names", file};
    // Untimed run: brings the file into the page cache (it mostly is already).
    std::optional<std::string> digest = Run(cmd);
    double best = 1e30;
    for (int run = 0; run < kRuns && digest; ++run) {
      const auto t0 = Clock::now();
      digest = Run(cmd);
      best = std::min(best, Seconds(Clock::now() - t0));
    }
    double startup = 1e30;
    for (int run = 0; run < kRuns; ++run) {
      const auto t0 = Clock::now();
      Run({b3sum, "--num-threads", "1", "--no-names", empty_file});
      startup = std::min(startup, Seconds(Clock::now() - t0));
    }
    if (!digest) {
      std::fprintf(stderr, "b3sum failed\n");
      rc = 1;
    } else {
      const double b3_mibs = static_cast<double>(reps) / best;
      std::printf(
          "b3sum --num-threads 1: %.1f MiB/s  [%.3f s; start-up alone %.1f ms, "
          "not subtracted]\n",
          b3_mibs, best, startup * 1e3);
      for (const auto& [impl, r] : ours) {
        const bool same = r.stream_digest == *digest;
        std::printf("ratio ours/b3sum (%s): %.2f%s\n", impl.c_str(), r.stream_mibs / b3_mibs,
                    same ? "" : "  DIGEST MISMATCH");
        if (!same) rc = 1;
      }
      std::printf("ratio ours/b3sum: %.2f\n", ours.front().second.stream_mibs / b3_mibs);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
