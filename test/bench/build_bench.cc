// Benchmark: `rafs build` against the kernel project's mkfs.erofs and
// against `tar -c | zstd`, on a generated tree (and optionally a copy of a
// real directory). Prints wall times, throughput, output sizes and each
// builder's peak resident memory (wait4 ru_maxrss).
//
//   build_bench RAFS_BINARY WORKDIR [--size-mib N] [--entries N] [--real DIR]
//
// The generated tree has ENTRIES entries (directories of at most 1000) and
// about SIZE_MIB MiB of data: mostly small files, a few large ones, half of
// the bytes compressible text and half random, some duplicated files.
// Every source is read once before timing so all tools see a warm cache.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace {

struct RunResult {
  double seconds = 0;
  long max_rss_kib = 0;
  int status = -1;
};

// Runs argv (no shell) and measures wall time and peak RSS of the child.
RunResult Run(const std::vector<std::string>& argv) {
  RunResult r;
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int st = 0;
  struct rusage ru {};
  wait4(pid, &st, 0, &ru);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kib = ru.ru_maxrss;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

void WriteFile(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

std::string Content(size_t n, std::mt19937_64& rng) {
  std::string s(n, '\0');
  uint64_t x = rng() | 1;
  static const char* kWords[] = {"alpha ", "beta ", "gamma ", "delta\n", "lib", "so.1 ", "0x7f "};
  size_t i = 0;
  while (i < n) {
    // Alternate 64 KiB of text and 64 KiB of random bytes.
    size_t end = std::min(n, i + 65536);
    bool text = ((i / 65536) + (x & 1)) % 2 == 0;
    for (; i < end; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      if (text) {
        const char* w = kWords[(x >> 20) % 7];
        size_t len = std::strlen(w);
        for (size_t k = 0; k < len && i < end; ++k) s[i++] = w[k];
        --i;
      } else {
        s[i] = static_cast<char>(x >> 32);
      }
    }
  }
  return s;
}

void Generate(const std::string& dir, uint64_t size_bytes, int entries) {
  std::mt19937_64 rng(12345);
  std::filesystem::create_directories(dir);
  // 1% of entries are large files holding 60% of the bytes.
  const int large = std::max(1, entries / 100);
  const uint64_t large_bytes = size_bytes * 6 / 10 / static_cast<uint64_t>(large);
  const uint64_t small_avg = size_bytes * 4 / 10 / static_cast<uint64_t>(entries);
  std::string shared = Content(200000, rng);
  std::string dpath;
  for (int i = 0; i < entries; ++i) {
    if (i % 1000 == 0) {
      dpath = dir + "/d" + std::to_string(i / 1000);
      std::filesystem::create_directories(dpath);
      continue;
    }
    std::string p = dpath + "/f" + std::to_string(i);
    if (i % 100 == 1 && i / 100 < large) {
      WriteFile(p, Content(large_bytes, rng));
    } else if (i % 50 == 7) {
      WriteFile(p, shared);  // duplicates
    } else {
      WriteFile(p, Content(rng() % (2 * small_avg + 1), rng));
    }
  }
}

uint64_t FileSize(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && !e.is_symlink()) total += e.file_size();
  }
  return total;
}

std::string OnlyFile(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string()[0] != '.' && e.path().filename() != "boot") {
      return e.path().string();
    }
  }
  return "";
}

void Bench(const std::string& rafs, const std::string& work, const std::string& tree,
           const char* label) {
  const uint64_t bytes = DirBytes(tree);
  std::printf("\n== %s: %s, %.1f MiB of file data\n", label, tree.c_str(), bytes / 1048576.0);
  Run({"sh", "-c", "find '" + tree + "' -type f -print0 | xargs -0 cat > /dev/null"});

  const std::string out = work + "/out";
  auto fresh = [&]() {
    std::filesystem::remove_all(out);
    std::filesystem::create_directories(out);
  };
  fresh();
  RunResult none = Run({rafs, "build", tree, "--bootstrap", out + "/boot", "--blob-dir", out,
                        "--compressor", "none"});
  fresh();
  RunResult mkfs = Run({"mkfs.erofs", "--chunksize=1048576", "--blobdev=" + out + "/blob",
                        out + "/img", tree});
  fresh();
  RunResult zstd = Run({rafs, "build", tree, "--bootstrap", out + "/boot", "--blob-dir", out});
  const uint64_t zstd_blob = FileSize(OnlyFile(out));
  fresh();
  RunResult tarz = Run({"sh", "-c", "tar -cf - -C '" + tree + "' . | zstd -q -T1 -o '" + out +
                                        "/layer.tar.zst'"});
  const uint64_t tar_size = FileSize(out + "/layer.tar.zst");
  std::filesystem::remove_all(out);

  std::printf("%-44s %9s %12s %10s\n", "", "wall s", "MB/s", "peak RSS");
  auto row = [&](const char* name, const RunResult& r) {
    std::printf("%-44s %9.2f %12.1f %7.1f MiB%s\n", name, r.seconds, bytes / 1e6 / r.seconds,
                r.max_rss_kib / 1024.0, r.status == 0 ? "" : "  (FAILED)");
  };
  row("rafs build --compressor none", none);
  row("mkfs.erofs --chunksize=1048576 --blobdev", mkfs);
  row("rafs build (zstd)", zstd);
  row("tar -c | zstd -T1", tarz);
  std::printf("time ratio rafs none / mkfs.erofs: %.2fx\n", none.seconds / mkfs.seconds);
  std::printf("zstd blob %.1f MiB vs tar|zstd %.1f MiB: %+.1f%%\n", zstd_blob / 1048576.0,
              tar_size / 1048576.0, 100.0 * (static_cast<double>(zstd_blob) / tar_size - 1));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s RAFS_BINARY WORKDIR [--size-mib N] [--entries N] [--real DIR]\n",
                 argv[0]);
    return 2;
  }
  std::string rafs = argv[1], work = argv[2], real;
  uint64_t size_mib = 2048;
  int entries = 100000;
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--size-mib") size_mib = std::strtoull(argv[i + 1], nullptr, 10);
    if (k == "--entries") entries = std::atoi(argv[i + 1]);
    if (k == "--real") real = argv[i + 1];
  }
  std::filesystem::create_directories(work);
  const std::string tree = work + "/tree";
  if (!std::filesystem::exists(tree)) {
    std::printf("generating %d entries, %llu MiB in %s\n", entries,
                static_cast<unsigned long long>(size_mib), tree.c_str());
    Generate(tree, size_mib << 20, entries);
  }
  Bench(rafs, work, tree, "generated tree");
  if (!real.empty()) {
    const std::string copy = work + "/real";
    if (!std::filesystem::exists(copy)) {
      Run({"cp", "-a", real, copy});
    }
    Bench(rafs, work, copy, "copy of a real directory");
  }
  return 0;
}
