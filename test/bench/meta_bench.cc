// Benchmark: open a bootstrap of ~100k inodes and walk every entry
// (attributes, symlink targets, xattrs, read plans of every file).
// Reports time and the peak memory the walk adds, against the bootstrap size.
//
//   meta_bench [ENTRIES]          generate an image with the test writer, then
//                                 measure `meta_bench walk` on it in a child
//   meta_bench walk BOOTSTRAP     measure one open + full walk
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

namespace {

// VmRSS or VmHWM of this process in KiB.
long ProcStatusKib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::string(key).size() + 1);
  }
  return -1;
}

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

int Walk(const char* path) {
  // Reset the high-water mark so it measures only what follows.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const long base_kib = ProcStatusKib("VmRSS:");
  auto t0 = std::chrono::steady_clock::now();
  auto m = rfs::rafs::meta::OpenMetadataFile(path);
  if (!m.ok()) {
    std::fprintf(stderr, "open: %s\n", m.status().ToString().c_str());
    return 1;
  }
  const double open_s = Seconds(t0);
  uint64_t entries = 0, chunks = 0;
  auto t1 = std::chrono::steady_clock::now();
  rfs::rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const rfs::rafs::meta::WalkEntry& e) -> rfs::base::Status {
    ++entries;
    ASSIGN_OR_RETURN(auto x, (*m)->GetXattrs(e.ino));
    (void)x;
    if (S_ISLNK(e.attr.mode)) {
      ASSIGN_OR_RETURN(auto t, (*m)->ReadLink(e.ino));
      (void)t;
    }
    if (S_ISREG(e.attr.mode)) {
      ASSIGN_OR_RETURN(auto plan, (*m)->Read(e.ino, 0, e.attr.size));
      chunks += plan.segments.size();
    }
    return rfs::base::Status::Ok();
  };
  auto s = rfs::rafs::meta::WalkTree(**m, "/", cb);
  if (!s.ok()) {
    std::fprintf(stderr, "walk: %s\n", s.ToString().c_str());
    return 1;
  }
  const double walk_s = Seconds(t1);
  const long peak_kib = ProcStatusKib("VmHWM:");
  const double size_mib = (*m)->super().bootstrap_size / 1048576.0;
  const double added_mib = (peak_kib - base_kib) / 1024.0;
  std::printf("bootstrap: %s, %.1f MiB, rafs v%d\n", path, size_mib, (*m)->super().version);
  std::printf("entries walked: %llu (%llu chunk segments planned)\n",
              static_cast<unsigned long long>(entries), static_cast<unsigned long long>(chunks));
  std::printf("open: %.3f s, walk: %.3f s, total: %.3f s (target < 1 s)\n", open_s, walk_s,
              open_s + walk_s);
  std::printf("peak memory added: %.1f MiB = %.2fx the bootstrap (target <= 2x)\n", added_mib,
              added_mib / size_mib);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "walk") return Walk(argv[2]);
  const int entries = argc >= 2 ? std::atoi(argv[1]) : 100000;
  rfs::testing::TempDir dir;
  for (int version : {6, 5}) {
    rfs::testing::WriterOptions o;
    o.fs_version = version;
    auto t0 = std::chrono::steady_clock::now();
    auto img = rfs::testing::WriteImage(rfs::testing::MakeWideTree(entries, 1), o);
    if (!img.ok()) {
      std::fprintf(stderr, "write: %s\n", img.status().ToString().c_str());
      return 1;
    }
    const std::string boot = dir.Sub("bootstrap-v" + std::to_string(version));
    rfs::testing::WriteFileBytes(boot, img->bootstrap);
    std::printf("\n[v%d] generated %d entries in %.1f s\n", version, entries, Seconds(t0));
    std::fflush(stdout);
    // Measure in a fresh process so the writer's memory does not count.
    pid_t pid = fork();
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], "walk", boot.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
  }
  return 0;
}
