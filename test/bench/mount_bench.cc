// FUSE mount benchmark (issue 5): our RAFS FUSE mount side by side with the
// kernel's own EROFS driver on the same image and with the source directory,
// in one run on one machine. Root only; a part (or one side of it) that the
// machine cannot run is skipped with the reason printed.
//
//   1. sequential read of DATA_MIB MiB in files of FILE_MIB MiB (random,
//      incompressible): `rafs mount` with a warm chunk cache vs a kernel
//      EROFS mount of the same aligned uncompressed image (loop devices) vs
//      the source directory. The page cache is dropped before every cold
//      pass; a hot pass follows each cold one. MB/s and ratios.
//   2. a walk that lstat()s every entry of a tree of ENTRIES entries (small
//      and empty files, symlinks, directories), caches dropped first: a
//      separate `rafs mount --foreground` process vs kernel EROFS vs the
//      source directory. Entries/s and ratios. Then (2b) both mounts from
//      nothing: caches dropped, mount, one walk.
//   3. VmRSS and VmHWM of that serving process after the walks, against the
//      bootstrap size (target: RSS <= 2 x bootstrap + 64 MiB).
//   4. cold start of a real program from a loopback docker-registry: an
//      image of python3, the libraries ldd lists for it and its standard
//      library, mounted with an empty chunk cache; time of
//      `chroot MNT /usr/bin/python3 -c 'import json'`, bytes fetched from
//      the registry and read through FUSE (the mount's metrics endpoint),
//      against the same command in a chroot of the source directory.
//
//   mount_bench [--rafs PATH] [--data-mib N] [--file-mib N] [--entries N]
//               [--reps N] [--threads N] [--parts 1234] [--fuse-read-ahead-kb N]
//               [--read-amplify SIZE]
//
// --rafs defaults to cmd/rafs of the build tree this program is in; --reps
// (default 3) repeats every measured pass, sides interleaved; the median
// and the best are reported. --threads and --read-amplify are passed to
// `rafs mount`.
// --fuse-read-ahead-kb sets the readahead window of part 1's FUSE mount
// (its bdi read_ahead_kb; the kernel starts a FUSE mount at 128 KiB
// whatever max_readahead the server asks for) to measure what a larger one
// would give.
//
// The machine is shared: the run prints the CPU idle share before it starts
// and, per part, how much CPU this program and its children used and how
// much everything else did, so a disturbed run can be recognised.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "rafs/builder/builder.h"
#include "test/support/kernel_mount.h"
#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace {

using rfs::testing::TempDir;

volatile sig_atomic_t g_interrupted = 0;

void OnSignal(int) { g_interrupted = 1; }

// Ctrl-C and kill end the run through the normal return paths, so every
// mount, loop device, child process and temp directory is undone.
void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
}

bool Interrupted() {
  if (g_interrupted) std::printf("interrupted: cleaning up\n");
  return g_interrupted != 0;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Join(const std::vector<double>& v, const char* fmt) {
  std::string out;
  char buf[64];
  for (double x : v) {
    std::snprintf(buf, sizeof(buf), fmt, x);
    if (!out.empty()) out += " ";
    out += buf;
  }
  return out;
}

double Mib(double bytes) { return bytes / 1048576.0; }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Share of CPU time (all cores) spent idle or waiting for I/O over `seconds`,
// from /proc/stat: how quiet the machine is before the run.
double IdleShare(double seconds) {
  auto sample = [](uint64_t* idle, uint64_t* total) {
    std::ifstream in("/proc/stat");
    std::string cpu;
    in >> cpu;
    *idle = *total = 0;
    for (int i = 0; i < 8; ++i) {
      uint64_t v = 0;
      in >> v;
      *total += v;
      if (i == 3 || i == 4) *idle += v;
    }
  };
  uint64_t i0, t0, i1, t1;
  sample(&i0, &t0);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  sample(&i1, &t1);
  return t1 > t0 ? static_cast<double>(i1 - i0) / static_cast<double>(t1 - t0) : 0;
}

// CPU time since boot, in seconds: all cores busy (not idle or iowait), and
// this process plus its reaped children. Their differences over a part tell
// how much of the machine others used meanwhile (kernel I/O threads, such as
// the loop devices' workers, count as others).
struct CpuSample {
  double busy = 0;
  double ours = 0;
  double wall = 0;
};

CpuSample SampleCpu() {
  CpuSample c;
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (int i = 0; i < 8; ++i) {
    uint64_t v = 0;
    in >> v;
    if (i != 3 && i != 4) c.busy += static_cast<double>(v) / hz;
  }
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    struct rusage ru {};
    ::getrusage(who, &ru);
    c.ours += static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  c.wall = Now();
  return c;
}

void PrintCpu(const char* part, const CpuSample& a, const CpuSample& b) {
  const double cores = std::thread::hardware_concurrency();
  const double span = (b.wall - a.wall) * cores;
  if (b.wall - a.wall < 1) return;  // too short for the tick counters
  const double busy = b.busy - a.busy, ours = b.ours - a.ours;
  std::printf("\n  [%s took %.0f s; CPU busy %.0f%% of %.0f cores: this benchmark and its "
              "children %.0f%%, everything else %.0f%%]\n",
              part, b.wall - a.wall, 100 * busy / span, cores, 100 * ours / span,
              100 * std::max(0.0, busy - ours) / span);
}

// Writes everything to disk and empties the page cache, dentries and
// inodes, so the next pass reads from storage.
bool DropCaches() {
  ::sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  f << "3\n";
  f.flush();
  return f.good();
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Bytes allocated on disk under `dir` (sparse cache files count what they hold).
uint64_t AllocatedBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

bool WriteAll(const std::string& path, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) {
      ::close(fd);
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return ::close(fd) == 0;
}

// Fills `buf` with incompressible bytes (xorshift64*), seeded.
void FillRandom(std::vector<uint8_t>* buf, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i + 8 <= buf->size(); i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t v = x * 0x2545F4914F6CDD1Dull;
    std::memcpy(buf->data() + i, &v, 8);
  }
}

// VmRSS:, VmHWM: ... of a process, in KiB; -1 when unreadable.
long ProcStatusKib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  }
  return -1;
}

// Whether `path` (an absolute path without symlinks) is a mount point in
// our mount namespace; a FUSE mount whose server died still counts.
bool MountedAt(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devs, root, mp;
    if ((ls >> id >> parent >> devs >> root >> mp) && mp == path) return true;
  }
  return false;
}

// The kernel readahead window of the filesystem holding `path`, in KiB
// (/sys/class/bdi/MAJOR:MINOR/read_ahead_kb); -1 when unknown.
std::string BdiPath(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
         std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
}

long ReadAheadKb(const std::string& path) {
  std::ifstream in(BdiPath(path));
  long kb = -1;
  in >> kb;
  return in ? kb : -1;
}

bool SetReadAheadKb(const std::string& path, long kb) {
  std::ofstream out(BdiPath(path));
  out << kb << "\n";
  out.flush();
  return out.good();
}

// Read requests completed and sectors read by the block device holding
// `path` (/sys/dev/block/MAJOR:MINOR/stat), to see how a pass reads storage.
struct DiskReads {
  uint64_t requests = 0;
  uint64_t sectors = 0;
};

std::string SysBlockDir(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  return "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" +
         std::to_string(minor(st.st_dev));
}

std::string DiskName(const std::string& path) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink(SysBlockDir(path), ec);
  return ec ? "?" : target.filename().string();
}

DiskReads ReadDiskStats(const std::string& path) {
  DiskReads d;
  std::ifstream in(SysBlockDir(path) + "/stat");
  uint64_t merged = 0;
  in >> d.requests >> merged >> d.sectors;
  return d;
}

std::string FsType(const std::string& dir) {
  std::string out;
  rfs::testing::RunCommand("findmnt -n -o FSTYPE -T '" + dir + "' 2>/dev/null", &out);
  return Trim(out);
}

std::string TailOf(const std::string& path, size_t max_bytes = 800) {
  auto bytes = rfs::testing::ReadFileBytes(path);
  std::string s(bytes.begin(), bytes.end());
  if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
  return Trim(s);
}

// Sum of every sample of metric `name` (any labels) in Prometheus text, or
// -1 when the metric is absent.
double MetricSum(const std::string& text, const std::string& name) {
  double sum = 0;
  bool found = false;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    sum += std::strtod(line.c_str() + sp + 1, nullptr);
    found = true;
  }
  return found ? sum : -1;
}

std::vector<char*> CArgs(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// ---------------------------------------------------------------------------
// A `rafs mount --foreground` child serving one mount point. The child is in
// its own process group (a terminal's Ctrl-C reaches only us; we stop it)
// and gets SIGTERM should this process die. Destruction stops it with
// SIGTERM (it unmounts), SIGKILL if it hangs, and detaches the mount if one
// is left.
class ServedMount {
 public:
  static std::unique_ptr<ServedMount> Start(const std::string& rafs,
                                            const std::vector<std::string>& args,
                                            const std::string& mountpoint, const std::string& log,
                                            int metrics_port, std::string* why) {
    std::unique_ptr<ServedMount> m(new ServedMount());
    m->mountpoint_ = mountpoint;
    m->metrics_port_ = metrics_port;
    std::vector<std::string> argv = {rafs, "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--foreground");
    if (metrics_port > 0) {
      argv.push_back("--metrics-address");
      argv.push_back("127.0.0.1:" + std::to_string(metrics_port));
    }
    const pid_t parent = ::getpid();
    const double t0 = Now();
    pid_t pid = ::fork();
    if (pid < 0) {
      *why = std::string("fork: ") + std::strerror(errno);
      return nullptr;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) _exit(1);
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int in = ::open("/dev/null", O_RDONLY);
      if (out >= 0) {
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
      }
      if (in >= 0) ::dup2(in, STDIN_FILENO);
      auto cargs = CArgs(argv);
      ::execv(cargs[0], cargs.data());
      _exit(127);
    }
    m->pid_ = pid;
    for (int i = 0; i < 6000 && !g_interrupted; ++i) {
      if (MountedAt(mountpoint)) {
        m->start_seconds_ = Now() - t0;
        return m;
      }
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        m->pid_ = -1;
        *why = "rafs mount exited (status " + std::to_string(st) + "): " + TailOf(log);
        return nullptr;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    *why = g_interrupted ? "interrupted" : "not mounted after 30 s: " + TailOf(log);
    return nullptr;  // the destructor stops the child
  }

  ~ServedMount() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      bool gone = false;
      for (int i = 0; i < 1000 && !gone; ++i) {
        gone = ::waitpid(pid_, &st, WNOHANG) == pid_;
        if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!gone) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
    }
    if (!mountpoint_.empty() && MountedAt(mountpoint_)) {
      ::umount2(mountpoint_.c_str(), MNT_DETACH);
    }
  }
  ServedMount(const ServedMount&) = delete;
  ServedMount& operator=(const ServedMount&) = delete;

  pid_t pid() const { return pid_; }
  double start_seconds() const { return start_seconds_; }

  // The Prometheus text of the mount's metrics endpoint ("" if none).
  std::string Metrics() const {
    if (metrics_port_ <= 0) return "";
    std::string out;
    rfs::testing::RunCommand("curl -fsS --max-time 10 http://127.0.0.1:" +
                                 std::to_string(metrics_port_) + "/metrics 2>/dev/null",
                             &out);
    return out;
  }
  double Metric(const std::string& name) const { return MetricSum(Metrics(), name); }

 private:
  ServedMount() = default;
  pid_t pid_ = -1;
  std::string mountpoint_;
  int metrics_port_ = 0;
  double start_seconds_ = 0;
};

// ---------------------------------------------------------------------------
// Readers used on every side alike.

struct Pass {
  uint64_t bytes = 0;  // or entries for walks
  double seconds = 0;
  bool ok = false;
  std::string error;
};

// Reads `files` under `root` start to end with 1 MiB read(2) calls.
Pass ReadFiles(const std::string& root, const std::vector<std::string>& files) {
  Pass p;
  std::vector<char> buf(1u << 20);
  const double t0 = Now();
  for (const auto& f : files) {
    if (g_interrupted) {
      p.error = "interrupted";
      return p;
    }
    const std::string path = root + "/" + f;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      p.error = path + ": " + std::strerror(errno);
      return p;
    }
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0) p.bytes += static_cast<uint64_t>(n);
    const int err = errno;
    ::close(fd);
    if (n < 0) {
      p.error = path + ": " + std::strerror(err);
      return p;
    }
  }
  p.seconds = Now() - t0;
  p.ok = true;
  return p;
}

// lstat()s every entry below the directory `dirfd` (taken over), counting
// them, like `find DIR -exec stat`: readdir, then fstatat(AT_SYMLINK_NOFOLLOW)
// of every name, descending into directories.
bool WalkDir(int dirfd, uint64_t* entries, std::string* error) {
  DIR* d = ::fdopendir(dirfd);
  if (d == nullptr) {
    *error = std::string("fdopendir: ") + std::strerror(errno);
    ::close(dirfd);
    return false;
  }
  bool ok = true;
  while (ok && !g_interrupted) {
    errno = 0;
    struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) {
        *error = std::string("readdir: ") + std::strerror(errno);
        ok = false;
      }
      break;
    }
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      *error = std::string("lstat ") + e->d_name + ": " + std::strerror(errno);
      ok = false;
      break;
    }
    ++*entries;
    if (S_ISDIR(st.st_mode)) {
      int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        *error = std::string("open ") + e->d_name + ": " + std::strerror(errno);
        ok = false;
        break;
      }
      ok = WalkDir(sub, entries, error);
    }
  }
  ::closedir(d);
  if (g_interrupted && ok) {
    *error = "interrupted";
    ok = false;
  }
  return ok;
}

Pass Walk(const std::string& root) {
  Pass p;
  const double t0 = Now();
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) {
    p.error = root + ": " + std::strerror(errno);
    return p;
  }
  p.bytes = 1;  // the root itself
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    p.error = root + ": " + std::strerror(errno);
    return p;
  }
  p.ok = WalkDir(fd, &p.bytes, &p.error);
  p.seconds = Now() - t0;
  return p;
}

// ---------------------------------------------------------------------------
// What this machine can run.

struct Machine {
  std::string rafs;
  std::string no_fuse;      // why our mount cannot run here ("" if it can)
  std::string no_erofs;     // why kernel EROFS mounts cannot
  std::string no_registry;  // why a loopback docker-registry cannot
  bool have_curl = false;
  int threads = 0;
  std::string read_amplify;  // "" : rafs mount's default
  long fuse_read_ahead_kb = 0;  // 0: leave the kernel's default
};

bool ErofsInKernel() {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() >= 5 && line.compare(line.size() - 5, 5, "erofs") == 0) return true;
  }
  return false;
}

Machine Probe(const std::string& rafs, int threads, long fuse_read_ahead_kb) {
  Machine m;
  m.rafs = rafs;
  m.threads = threads;
  m.fuse_read_ahead_kb = fuse_read_ahead_kb;
  m.have_curl = rfs::testing::HaveCommand("curl");
  if (!rfs::testing::IsRoot()) {
    m.no_fuse = m.no_erofs = m.no_registry = "not root (mounts, drop_caches and chroot need root)";
    return m;
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    m.no_fuse = "/dev/fuse is not available";
  } else if (::access(rafs.c_str(), X_OK) != 0) {
    m.no_fuse = "no rafs binary at " + rafs + " (build it: ninja -C build/gcc rafs, or --rafs)";
  }
  if (!ErofsInKernel()) {
    m.no_erofs = "erofs is not in /proc/filesystems";
  } else if (!rfs::testing::HaveCommand("losetup")) {
    m.no_erofs = "losetup is not installed";
  }
  if (!rfs::testing::LocalRegistry::Available()) {
    m.no_registry = "docker-registry is not installed";
  } else if (!m.have_curl) {
    m.no_registry = "curl is not installed (reads the mount's metrics endpoint)";
  }
  return m;
}

std::string BothReasons(const Machine& m) {
  return m.no_fuse == m.no_erofs ? m.no_fuse : m.no_fuse + "; " + m.no_erofs;
}

std::vector<std::string> MountArgs(const Machine& m) {
  std::vector<std::string> args;
  if (m.threads > 0) args = {"--threads", std::to_string(m.threads)};
  if (!m.read_amplify.empty()) {
    args.push_back("--read-amplify");
    args.push_back(m.read_amplify);
  }
  return args;
}

bool BuildImage(const std::string& src, const std::string& boot, const std::string& blobs,
                rfs::rafs::builder::BuildOptions o, rfs::rafs::builder::BuildResult* out) {
  std::filesystem::create_directories(blobs);
  const double t0 = Now();
  auto r = rfs::rafs::builder::BuildFromDirectory(src, boot, blobs, o);
  if (!r.ok()) {
    std::printf("build failed: %s\n", r.status().ToString().c_str());
    return false;
  }
  *out = *r;
  std::printf("image: %llu entries, %.1f MiB of file data; bootstrap %.2f MiB, blob %.1f MiB "
              "(%s, %s), built in %.1f s\n",
              static_cast<unsigned long long>(r->entries), Mib(static_cast<double>(r->file_bytes)),
              Mib(static_cast<double>(r->bootstrap_size)), Mib(static_cast<double>(r->blob_size)),
              std::string(rfs::storage::CompressorName(o.compressor)).c_str(),
              o.aligned ? "4 KiB-aligned" : "packed", Now() - t0);
  return true;
}

rfs::rafs::builder::BuildOptions ErofsCompatible() {
  rfs::rafs::builder::BuildOptions o;
  o.aligned = true;
  o.compressor = rfs::storage::Compressor::kNone;
  return o;
}

// One side of a comparison: a directory to measure, or why it is skipped.
struct Side {
  std::string name;
  std::string root;
  std::string skipped;
  std::vector<double> cold, hot;  // rates per repetition
  DiskReads disk;                  // summed over the cold passes
};

void PrintSkip(const Side& s) {
  if (!s.skipped.empty()) std::printf("  %-38s skipped: %s\n", s.name.c_str(), s.skipped.c_str());
}

// Block-device reads per cold pass of each side (all sides' storage is the
// disk holding `dir`: source files, the chunk cache, the loop devices' files).
void PrintDiskReads(const std::string& dir, const std::vector<Side*>& sides, int reps) {
  std::printf("  reads from the disk (%s) per cold pass:", DiskName(dir).c_str());
  for (const Side* s : sides) {
    if (!s->skipped.empty()) continue;
    const double n = static_cast<double>(s->disk.requests) / reps;
    std::printf(" %s %.0f", s->name.substr(0, s->name.find_first_of(" :")).c_str(), n);
    if (s->disk.requests > 0) {
      std::printf(" of %.0f KiB on average",
                  s->disk.sectors * 512.0 / 1024 / static_cast<double>(s->disk.requests));
    }
    std::printf(";");
  }
  std::printf("\n");
}

double Best(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// Rates of every side: median and best of the repetitions, cold and hot.
// The machine is shared, so both are shown: the median says what a run
// typically gets, the best what the path can do when nothing interferes.
void PrintRates(const char* unit, const std::vector<Side*>& sides, int reps,
                const std::vector<std::string>& notes) {
  std::printf("\n  %-38s %11s %11s %11s %11s   cold runs (%d)\n", unit, "cold median",
              "cold best", "hot median", "hot best", reps);
  for (size_t i = 0; i < sides.size(); ++i) {
    const Side* s = sides[i];
    if (!s->skipped.empty()) {
      PrintSkip(*s);
      continue;
    }
    std::printf("  %-38s %11.0f %11.0f %11.0f %11.0f   %s%s\n", s->name.c_str(), Median(s->cold),
                Best(s->cold), Median(s->hot), Best(s->hot), Join(s->cold, "%.0f").c_str(),
                i < notes.size() ? notes[i].c_str() : "");
  }
}

void PrintRatio(const char* what, const Side& a, const Side& b, const char* target,
                double target_value) {
  if (!a.skipped.empty() || !b.skipped.empty() || a.cold.empty() || b.cold.empty()) {
    std::printf("  %-38s n/a (a side was skipped)\n", what);
    return;
  }
  const double cold = Median(a.cold) / Median(b.cold);
  const double cold_best = Best(a.cold) / Best(b.cold);
  std::printf("  %-38s %11.2f %11.2f %11.2f %11.2f", what, cold, cold_best,
              Median(a.hot) / Median(b.hot), Best(a.hot) / Best(b.hot));
  if (target != nullptr) {
    std::printf("   target %s (cold): %s on medians, %s on bests", target,
                cold >= target_value ? "MET" : "NOT MET",
                cold_best >= target_value ? "MET" : "NOT MET");
  }
  std::printf("\n");
}

// ---------------------------------------------------------------------------
// 1. Sequential read.

bool PartSequentialRead(const Machine& m, uint64_t data_mib, uint64_t file_mib, int reps) {
  const uint64_t nfiles = std::max<uint64_t>(1, data_mib / file_mib);
  std::printf("\n== 1. Sequential read: %llu files x %llu MiB of random data, 1 MiB read(2) "
              "calls; page cache dropped before each cold pass\n",
              static_cast<unsigned long long>(nfiles), static_cast<unsigned long long>(file_mib));
  if (!m.no_fuse.empty() && !m.no_erofs.empty()) {
    std::printf("skipped: %s\n", BothReasons(m).c_str());
    return true;
  }
  TempDir dir;
  const std::string src = dir.Sub("src"), blobs = dir.Sub("blobs"), boot = dir.Sub("bootstrap");
  const std::string cache = dir.Sub("cache"), mnt_rafs = dir.Sub("mnt-rafs");
  const std::string mnt_erofs = dir.Sub("mnt-erofs");
  for (const auto& d : {src, cache, mnt_rafs, mnt_erofs}) std::filesystem::create_directories(d);

  double t0 = Now();
  std::vector<std::string> files;
  std::vector<uint8_t> buf(file_mib << 20);
  for (uint64_t i = 0; i < nfiles; ++i) {
    if (Interrupted()) return false;
    char name[32];
    std::snprintf(name, sizeof(name), "f%05llu.bin", static_cast<unsigned long long>(i));
    files.push_back(name);
    FillRandom(&buf, i + 1);
    if (!WriteAll(src + "/" + name, buf.data(), buf.size())) {
      std::printf("writing %s/%s failed: %s\n", src.c_str(), name, std::strerror(errno));
      return false;
    }
  }
  buf = {};
  const uint64_t total = nfiles * (file_mib << 20);
  std::printf("source: %s (%s), %.0f MiB written in %.1f s\n", src.c_str(), FsType(src).c_str(),
              Mib(static_cast<double>(total)), Now() - t0);
  rfs::rafs::builder::BuildResult built;
  if (!BuildImage(src, boot, blobs, ErofsCompatible(), &built)) return false;

  Side ours{"ours: rafs mount, warm chunk cache", mnt_rafs, m.no_fuse, {}, {}, {}};
  Side erofs{"kernel EROFS (loop devices)", mnt_erofs, m.no_erofs, {}, {}, {}};
  Side source{"source directory (" + FsType(src) + ")", src, "", {}, {}, {}};

  // Declared after `dir`: unmounted before it is removed.
  rfs::testing::KernelErofsMount kernel;
  std::unique_ptr<ServedMount> served;
  if (erofs.skipped.empty()) {
    std::string why;
    if (!kernel.MountImage(boot, built.blob_path, mnt_erofs, &why)) {
      erofs.skipped = "kernel EROFS mount failed: " + Trim(why);
    }
  }
  if (ours.skipped.empty()) {
    std::string why;
    std::vector<std::string> args = {boot, mnt_rafs, "--blob-dir", blobs, "--cache-dir", cache};
    for (const auto& a : MountArgs(m)) args.push_back(a);
    served = ServedMount::Start(m.rafs, args, mnt_rafs, dir.Sub("rafs-mount.log"),
                                m.have_curl ? rfs::testing::FreeLoopbackPort() : 0, &why);
    if (served == nullptr) {
      ours.skipped = why;
    } else {
      if (m.fuse_read_ahead_kb > 0 && !SetReadAheadKb(mnt_rafs, m.fuse_read_ahead_kb)) {
        std::printf("cannot set read_ahead_kb of the FUSE mount: %s\n", std::strerror(errno));
        return false;
      }
      // Warm the chunk cache: one full read through the mount.
      t0 = Now();
      Pass warm = ReadFiles(mnt_rafs, files);
      if (!warm.ok || warm.bytes != total) {
        std::printf("warming read through the mount failed: %s (%llu bytes)\n",
                    warm.error.c_str(), static_cast<unsigned long long>(warm.bytes));
        return false;
      }
      std::printf("warm-up: first read through the mount (fills the chunk cache from the local "
                  "blob, verifying each chunk) %.1f s, %.0f MB/s; cache dir now holds %.0f MiB\n",
                  warm.seconds, total / 1e6 / warm.seconds,
                  Mib(static_cast<double>(AllocatedBytes(cache))));
    }
  }
  double backend_before = -1;
  if (served != nullptr) backend_before = served->Metric("rfs_storage_backend_bytes_total");
  double cold_fuse_reads = 0, cold_fuse_read_bytes = 0;
  std::vector<Side*> sides = {&ours, &erofs, &source};
  std::printf("kernel readahead window (read_ahead_kb of the backing device):");
  for (Side* s : sides) {
    if (s->skipped.empty()) std::printf(" %s %ld KiB;", s->name.c_str(), ReadAheadKb(s->root));
  }
  std::printf("%s\n", m.fuse_read_ahead_kb > 0 ? " (FUSE value set by --fuse-read-ahead-kb)" : "");
  for (int rep = 0; rep < reps; ++rep) {
    for (Side* s : sides) {
      if (!s->skipped.empty()) continue;
      if (Interrupted()) return false;
      if (!DropCaches()) {
        std::printf("cannot drop caches: %s\n", std::strerror(errno));
        return false;
      }
      std::string before = s == &ours && served != nullptr ? served->Metrics() : "";
      const DiskReads disk0 = ReadDiskStats(dir.path());
      Pass cold = ReadFiles(s->root, files);
      const DiskReads disk1 = ReadDiskStats(dir.path());
      s->disk.requests += disk1.requests - disk0.requests;
      s->disk.sectors += disk1.sectors - disk0.sectors;
      if (!before.empty()) {
        const std::string after = served->Metrics();
        cold_fuse_reads += MetricSum(after, "rafs_fuse_read_seconds_count") -
                           MetricSum(before, "rafs_fuse_read_seconds_count");
        cold_fuse_read_bytes += MetricSum(after, "rafs_fuse_read_bytes_total") -
                                MetricSum(before, "rafs_fuse_read_bytes_total");
      }
      Pass hot = ReadFiles(s->root, files);
      if (Interrupted()) return false;
      if (!cold.ok || !hot.ok || cold.bytes != total || hot.bytes != total) {
        std::printf("%s: read failed: %s%s\n", s->name.c_str(), cold.error.c_str(),
                    hot.error.c_str());
        return false;
      }
      s->cold.push_back(total / 1e6 / cold.seconds);
      s->hot.push_back(total / 1e6 / hot.seconds);
    }
  }
  PrintRates("MB/s (10^6 bytes/s)", sides, reps, {});
  PrintRatio("ratio ours / kernel EROFS", ours, erofs, ">= 0.8", 0.8);
  PrintRatio("ratio ours / source directory", ours, source, nullptr, 0);
  PrintDiskReads(dir.path(), sides, reps);
  if (served != nullptr && backend_before >= 0 && cold_fuse_reads > 0) {
    const std::string text = served->Metrics();
    std::printf("  FUSE read requests per cold pass: %.0f, %.0f KiB each on average; bytes "
                "fetched from the blob after warm-up: %.0f\n",
                cold_fuse_reads / reps, cold_fuse_read_bytes / cold_fuse_reads / 1024,
                MetricSum(text, "rfs_storage_backend_bytes_total") - backend_before);
    std::printf("  serving process after reading: VmRSS %.1f MiB, VmHWM %.1f MiB\n",
                ProcStatusKib(served->pid(), "VmRSS:") / 1024.0,
                ProcStatusKib(served->pid(), "VmHWM:") / 1024.0);
  }
  return true;
}

// ---------------------------------------------------------------------------
// 2 + 3. Metadata walk and the serving process's memory.

// A tree of `entries` entries below `root`: directories of 200 entries
// grouped 20 to a parent; in each, half small files (1..4096 random bytes),
// 30% empty files, 20% symlinks (short and long, some dangling).
bool MakeMetadataTree(const std::string& root, int entries) {
  std::vector<uint8_t> data(4096);
  FillRandom(&data, 99);
  uint64_t x = 0x1234567;
  auto next = [&x]() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  int made = 0;
  int leaf = 0;
  std::string parent;
  while (made < entries) {
    if (g_interrupted) return false;
    if (leaf % 20 == 0) {
      parent = root + "/p" + std::to_string(leaf / 20);
      if (::mkdir(parent.c_str(), 0755) != 0) return false;
      ++made;
    }
    const std::string d = parent + "/d" + std::to_string(leaf);
    if (::mkdir(d.c_str(), 0755) != 0) return false;
    ++made;
    for (int i = 0; i < 198 && made < entries; ++i, ++made) {
      const std::string p = d + "/e" + std::to_string(i);
      const int kind = i % 10;
      bool ok;
      if (kind < 5) {
        ok = WriteAll(p, data.data(), 1 + next() % data.size());
      } else if (kind < 8) {
        ok = WriteAll(p, "", 0);
      } else if (kind == 8) {
        ok = ::symlink(("e" + std::to_string(i - 1)).c_str(), p.c_str()) == 0;
      } else {
        ok = ::symlink(("../../p" + std::to_string(next() % 50) + "/d" +
                        std::to_string(next() % 1000) + "/a-longer-symlink-target-name-" +
                        std::to_string(i))
                           .c_str(),
                       p.c_str()) == 0;
      }
      if (!ok) return false;
    }
    ++leaf;
  }
  return true;
}

// The walks above find our server with the whole bootstrap already in its
// memory, while EROFS reads its metadata from the (dropped) page cache. Here
// both start from nothing: caches dropped, then mount (a new `rafs mount`
// process, which loads its binary and reads the bootstrap; loop devices and
// mount(2) for EROFS) and walk once.
bool ColdMountAndWalk(const Machine& m, const std::string& boot, const std::string& blob_path,
                      const std::string& blobs, const TempDir& dir, const Side& ours,
                      const Side& erofs, int reps) {
  if (!ours.skipped.empty() || !erofs.skipped.empty()) return true;
  const std::string mnt_rafs = dir.Sub("mnt-rafs-cold"), mnt_erofs = dir.Sub("mnt-erofs-cold");
  std::filesystem::create_directories(mnt_rafs);
  std::filesystem::create_directories(mnt_erofs);
  std::vector<double> ours_mount, ours_walk, erofs_mount, erofs_walk;
  for (int rep = 0; rep < reps; ++rep) {
    if (Interrupted()) return false;
    {
      if (!DropCaches()) return false;
      const double t0 = Now();
      std::string why;
      std::vector<std::string> args = {boot, mnt_rafs, "--blob-dir", blobs};
      for (const auto& a : MountArgs(m)) args.push_back(a);
      auto served = ServedMount::Start(m.rafs, args, mnt_rafs, dir.Sub("rafs-mount-cold.log"), 0,
                                       &why);
      if (served == nullptr) {
        std::printf("rafs mount failed: %s\n", why.c_str());
        return false;
      }
      const double t1 = Now();
      Pass w = Walk(mnt_rafs);
      if (!w.ok) {
        std::printf("walk failed: %s\n", w.error.c_str());
        return false;
      }
      ours_mount.push_back(t1 - t0);
      ours_walk.push_back(w.seconds);
    }
    {
      if (!DropCaches()) return false;
      rfs::testing::KernelErofsMount kernel;
      const double t0 = Now();
      std::string why;
      if (!kernel.MountImage(boot, blob_path, mnt_erofs, &why)) {
        std::printf("kernel EROFS mount failed: %s\n", Trim(why).c_str());
        return false;
      }
      const double t1 = Now();
      Pass w = Walk(mnt_erofs);
      if (!w.ok) {
        std::printf("walk failed: %s\n", w.error.c_str());
        return false;
      }
      erofs_mount.push_back(t1 - t0);
      erofs_walk.push_back(w.seconds);
    }
  }
  std::vector<double> ours_total, erofs_total;
  for (int i = 0; i < reps; ++i) {
    ours_total.push_back(ours_mount[static_cast<size_t>(i)] + ours_walk[static_cast<size_t>(i)]);
    erofs_total.push_back(erofs_mount[static_cast<size_t>(i)] + erofs_walk[static_cast<size_t>(i)]);
  }
  std::printf("\n  2b. from nothing: caches dropped, then mount and one walk (median of %d):\n",
              reps);
  std::printf("  %-40s %10s %10s %10s\n", "seconds", "mount", "walk", "total");
  std::printf("  %-40s %10.3f %10.3f %10.3f   (totals %s)\n", "ours: new rafs mount process",
              Median(ours_mount), Median(ours_walk), Median(ours_total),
              Join(ours_total, "%.3f").c_str());
  std::printf("  %-40s %10.3f %10.3f %10.3f   (totals %s)\n", "kernel EROFS (losetup + mount)",
              Median(erofs_mount), Median(erofs_walk), Median(erofs_total),
              Join(erofs_total, "%.3f").c_str());
  std::printf("  %-40s %10s %10.2f %10.2f\n", "ratio ours / EROFS, entries/s", "",
              Median(erofs_walk) / Median(ours_walk), Median(erofs_total) / Median(ours_total));
  return true;
}

bool PartMetadataWalk(const Machine& m, int entries, int reps) {
  std::printf("\n== 2. Metadata walk: readdir + lstat of every entry of a %d-entry tree; caches "
              "dropped before each cold pass\n",
              entries);
  std::printf("== 3. Memory of the serving `rafs mount --foreground` process after the walks\n");
  if (!m.no_fuse.empty() && !m.no_erofs.empty()) {
    std::printf("skipped: %s\n", BothReasons(m).c_str());
    return true;
  }
  TempDir dir;
  const std::string src = dir.Sub("src"), blobs = dir.Sub("blobs"), boot = dir.Sub("bootstrap");
  const std::string mnt_rafs = dir.Sub("mnt-rafs"), mnt_erofs = dir.Sub("mnt-erofs");
  for (const auto& d : {src, mnt_rafs, mnt_erofs}) std::filesystem::create_directories(d);
  double t0 = Now();
  if (!MakeMetadataTree(src, entries - 1)) {
    std::printf("generating the tree failed: %s\n", std::strerror(errno));
    return false;
  }
  std::printf("source: %s (%s), generated in %.1f s\n", src.c_str(), FsType(src).c_str(),
              Now() - t0);
  rfs::rafs::builder::BuildResult built;
  if (!BuildImage(src, boot, blobs, ErofsCompatible(), &built)) return false;

  Side ours{"ours: separate rafs mount process", mnt_rafs, m.no_fuse, {}, {}, {}};
  Side erofs{"kernel EROFS (loop devices)", mnt_erofs, m.no_erofs, {}, {}, {}};
  Side source{"source directory (" + FsType(src) + ")", src, "", {}, {}, {}};
  rfs::testing::KernelErofsMount kernel;
  std::unique_ptr<ServedMount> served;
  if (erofs.skipped.empty()) {
    std::string why;
    if (!kernel.MountImage(boot, built.blob_path, mnt_erofs, &why)) {
      erofs.skipped = "kernel EROFS mount failed: " + Trim(why);
    }
  }
  long rss_before_kib = -1;
  if (ours.skipped.empty()) {
    std::string why;
    std::vector<std::string> args = {boot, mnt_rafs, "--blob-dir", blobs};
    for (const auto& a : MountArgs(m)) args.push_back(a);
    served = ServedMount::Start(m.rafs, args, mnt_rafs, dir.Sub("rafs-mount.log"), 0, &why);
    if (served == nullptr) {
      ours.skipped = why;
    } else {
      rss_before_kib = ProcStatusKib(served->pid(), "VmRSS:");
      std::printf("rafs mount: mounted %.3f s after spawning, VmRSS %.1f MiB before any access\n",
                  served->start_seconds(), rss_before_kib / 1024.0);
    }
  }
  std::vector<Side*> sides = {&ours, &erofs, &source};
  std::vector<uint64_t> counts(sides.size(), 0);
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t i = 0; i < sides.size(); ++i) {
      Side* s = sides[i];
      if (!s->skipped.empty()) continue;
      if (Interrupted()) return false;
      if (!DropCaches()) {
        std::printf("cannot drop caches: %s\n", std::strerror(errno));
        return false;
      }
      const DiskReads disk0 = ReadDiskStats(dir.path());
      Pass cold = Walk(s->root);
      const DiskReads disk1 = ReadDiskStats(dir.path());
      s->disk.requests += disk1.requests - disk0.requests;
      s->disk.sectors += disk1.sectors - disk0.sectors;
      Pass hot = Walk(s->root);
      if (Interrupted()) return false;
      if (!cold.ok || !hot.ok) {
        std::printf("%s: walk failed: %s%s\n", s->name.c_str(), cold.error.c_str(),
                    hot.error.c_str());
        return false;
      }
      counts[i] = cold.bytes;
      s->cold.push_back(static_cast<double>(cold.bytes) / cold.seconds);
      s->hot.push_back(static_cast<double>(hot.bytes) / hot.seconds);
    }
  }
  std::vector<std::string> notes;
  for (uint64_t c : counts) notes.push_back("; " + std::to_string(c) + " entries");
  PrintRates("entries/s", sides, reps, notes);
  PrintRatio("ratio ours / kernel EROFS", ours, erofs, ">= 0.5", 0.5);
  PrintRatio("ratio ours / source directory", ours, source, nullptr, 0);
  PrintDiskReads(dir.path(), sides, reps);

  if (served == nullptr) {
    std::printf("\n  3. memory of the serving process: skipped: %s\n", ours.skipped.c_str());
    return true;
  }
  std::printf("\n  3. memory of the serving process (pid %d) after %d cold and %d hot walks:\n",
              static_cast<int>(served->pid()), reps, reps);
  const double rss = ProcStatusKib(served->pid(), "VmRSS:") / 1024.0;
  const double hwm = ProcStatusKib(served->pid(), "VmHWM:") / 1024.0;
  const double boot_mib = Mib(static_cast<double>(FileSize(boot)));
  const double limit = 2 * boot_mib + 64;
  std::printf("  bootstrap %.2f MiB; VmRSS %.1f MiB (%.1f MiB before the walks), VmHWM %.1f MiB\n",
              boot_mib, rss, rss_before_kib / 1024.0, hwm);
  std::printf("  target RSS <= 2 x bootstrap + 64 MiB = %.1f MiB: %s (VmRSS), %s (VmHWM)\n", limit,
              rss <= limit ? "MET" : "NOT MET", hwm <= limit ? "MET" : "NOT MET");
  served.reset();
  return ColdMountAndWalk(m, boot, built.blob_path, blobs, dir, ours, erofs, reps);
}

// ---------------------------------------------------------------------------
// 4. Cold start from a loopback registry.

// Recreates host path `path` below `tree`: the symlinks met on the way (as
// symlinks), directories, and the final file's bytes, mode and times.
bool Replicate(const std::string& path, const std::string& tree, int depth = 0) {
  if (depth > 16 || path.empty() || path[0] != '/') return false;
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (!part.empty()) parts.push_back(part);
  }
  std::string cur;
  for (size_t i = 0; i < parts.size(); ++i) {
    cur += "/" + parts[i];
    struct stat st;
    if (::lstat(cur.c_str(), &st) != 0) return false;
    const std::string dst = tree + cur;
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> buf(4096);
      ssize_t n = ::readlink(cur.c_str(), buf.data(), buf.size() - 1);
      if (n <= 0) return false;
      const std::string target(buf.data(), static_cast<size_t>(n));
      struct stat dst_st;
      if (::lstat(dst.c_str(), &dst_st) != 0 && ::symlink(target.c_str(), dst.c_str()) != 0) {
        return false;
      }
      std::string resolved =
          target[0] == '/' ? target : cur.substr(0, cur.rfind('/') + 1) + target;
      for (size_t k = i + 1; k < parts.size(); ++k) resolved += "/" + parts[k];
      return Replicate(resolved, tree, depth + 1);
    }
    if (S_ISDIR(st.st_mode)) {
      ::mkdir(dst.c_str(), st.st_mode & 07777);
      continue;
    }
    if (i + 1 != parts.size()) return false;
    return rfs::testing::RunCommand("cp -p '" + cur + "' '" + dst + "'") == 0;
  }
  return true;
}

struct App {
  std::string label;
  std::vector<std::string> argv;
};

// Copies a small real application into `tree`: python3 with the libraries
// ldd lists and its standard library, or bash when python3 is missing.
bool MakeAppTree(const std::string& tree, App* app) {
  std::string exe, stdlib;
  char real[PATH_MAX];
  if (::access("/usr/bin/python3", X_OK) == 0 && ::realpath("/usr/bin/python3", real) != nullptr) {
    exe = "/usr/bin/python3";
    stdlib = "/usr/lib/" + std::filesystem::path(real).filename().string();
    if (::access((stdlib + "/os.py").c_str(), R_OK) != 0) stdlib.clear();
  }
  if (exe.empty() || stdlib.empty()) {
    if (::access("/bin/bash", X_OK) != 0) return false;
    exe = "/bin/bash";
    stdlib.clear();
    app->label = "bash (python3 or its standard library is missing here)";
    app->argv = {exe, "-c", "exit 0"};
  } else {
    app->label = std::string("python3 (") + real + ") with its standard library " + stdlib;
    app->argv = {exe, "-c", "import json"};
  }
  std::string out;
  if (rfs::testing::RunCommand("ldd " + exe + " 2>/dev/null", &out) != 0) return false;
  std::vector<std::string> paths = {exe};
  std::istringstream in(out);
  std::string word;
  while (in >> word) {
    if (word[0] == '/') paths.push_back(word);
  }
  for (const auto& p : paths) {
    if (!Replicate(p, tree)) {
      std::printf("copying %s into the image tree failed\n", p.c_str());
      return false;
    }
  }
  if (!stdlib.empty()) {
    if (!Replicate(stdlib + "/os.py", tree) ||
        rfs::testing::RunCommand("cp -a '" + stdlib + "/.' '" + tree + stdlib + "/'") != 0) {
      return false;
    }
  }
  return true;
}

const std::vector<std::string>& AppEnv() {
  static const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/", "LC_ALL=C",
                                               "PYTHONDONTWRITEBYTECODE=1"};
  return env;
}

// Runs `argv` chrooted into `root` with a fixed environment; wall time of
// fork to exit, the exit status (-1 for a signal).
Pass RunChrooted(const std::string& root, const std::vector<std::string>& argv,
                 const std::string& errlog) {
  Pass p;
  const double t0 = Now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int err = ::open(errlog.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int nul = ::open("/dev/null", O_RDWR);
    if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0) _exit(126);
    ::dup2(nul, STDIN_FILENO);
    ::dup2(nul, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    auto a = CArgs(argv);
    auto e = CArgs(AppEnv());
    ::execve(a[0], a.data(), e.data());
    _exit(127);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  p.seconds = Now() - t0;
  p.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (!p.ok) {
    p.error = "exit status " + std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : -1) + ": " +
              TailOf(errlog);
  }
  return p;
}

// Files the program opened (successful open/openat after its execve), from
// an strace of the same command in a chroot of `src`: count and total size.
bool OpenedFiles(const std::string& src, const App& app, const std::string& log, uint64_t* count,
                 uint64_t* bytes) {
  std::string strace, chroot_bin;
  if (rfs::testing::RunCommand("command -v strace", &strace) != 0 ||
      rfs::testing::RunCommand("command -v chroot", &chroot_bin) != 0) {
    return false;
  }
  std::string cmd = "env -i";
  for (const auto& e : AppEnv()) cmd += " '" + e + "'";
  cmd += " " + Trim(strace) + " -f -qq -e trace=open,openat,execve -o '" + log + "' " +
         Trim(chroot_bin) + " '" + src + "'";
  for (const auto& a : app.argv) cmd += " '" + a + "'";
  if (rfs::testing::RunCommand(cmd + " >/dev/null 2>&1") != 0) return false;
  std::ifstream in(log);
  std::string line;
  bool started = false;
  std::set<std::string> seen;
  *count = *bytes = 0;
  while (std::getline(in, line)) {
    if (!started) {
      started = line.find("execve(\"" + app.argv[0] + "\"") != std::string::npos;
      continue;
    }
    size_t op = line.find("open(\"");
    if (op == std::string::npos) op = line.find("openat(");
    if (op == std::string::npos) continue;
    const size_t eq = line.rfind(") = ");
    if (eq == std::string::npos || line.compare(eq + 4, 1, "-") == 0) continue;
    const size_t q1 = line.find('"', op);
    const size_t q2 = q1 == std::string::npos ? q1 : line.find('"', q1 + 1);
    if (q2 == std::string::npos) continue;
    const std::string path = line.substr(q1 + 1, q2 - q1 - 1);
    if (path.empty() || path[0] != '/' || !seen.insert(path).second) continue;
    struct stat st;
    if (::stat((src + path).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      ++*count;
      *bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  return started;
}

bool PartColdStart(const Machine& m, int reps) {
  std::printf("\n== 4. Cold start from a loopback registry: chroot into the mount (empty chunk "
              "cache) and run a program\n");
  if (!m.no_fuse.empty() || !m.no_registry.empty()) {
    std::printf("skipped: %s\n", (!m.no_fuse.empty() ? m.no_fuse : m.no_registry).c_str());
    return true;
  }
  TempDir dir;
  const std::string src = dir.Sub("app"), blobs = dir.Sub("blobs"), boot = dir.Sub("bootstrap");
  std::filesystem::create_directories(src);
  std::filesystem::create_directories(dir.Sub("registry"));
  App app;
  if (!MakeAppTree(src, &app)) {
    std::printf("skipped: could not copy python3 (or bash) into an image tree\n");
    return true;
  }
  std::string command;
  for (const auto& a : app.argv) {
    command += (command.empty() ? "" : " ") +
               (a.find(' ') == std::string::npos ? a : "'" + a + "'");
  }
  std::printf("program: %s\ncommand: chroot ROOT %s\n", app.label.c_str(), command.c_str());
  // A registry image: default build options (zstd, 1 MiB chunks).
  rfs::rafs::builder::BuildResult built;
  if (!BuildImage(src, boot, blobs, rfs::rafs::builder::BuildOptions(), &built)) return false;
  const uint64_t image_bytes = built.bootstrap_size + built.blob_size;

  auto reg = rfs::testing::LocalRegistry::Start(dir.Sub("registry"));
  if (!reg.ok()) {
    std::printf("skipped: %s\n", reg.status().ToString().c_str());
    return true;
  }
  const std::string repo = "bench/app";
  auto pushed = (*reg)->PushBlob(repo, rfs::testing::ReadFileBytes(built.blob_path));
  if (!pushed.ok() || *pushed != built.blob_id) {
    std::printf("pushing the blob failed: %s\n",
                pushed.ok() ? ("registry id " + *pushed + " != blob id " + built.blob_id).c_str()
                            : pushed.status().ToString().c_str());
    return false;
  }
  std::printf("registry: docker-registry at %s, blob pushed to %s\n", (*reg)->host().c_str(),
              repo.c_str());

  std::vector<double> ours_cold, ours_warm, src_cold, src_warm, mount_s;
  double fetched = 0, requests = 0, fuse_read = 0, chunks = 0;
  double backend_s = 0, fuse_reads = 0, fuse_read_s = 0;
  for (int rep = 0; rep < reps; ++rep) {
    if (Interrupted()) return false;
    {
      // A fresh mount with an empty cache directory each time.
      const std::string cache = dir.Sub("cache" + std::to_string(rep));
      const std::string mnt = dir.Sub("mnt" + std::to_string(rep));
      std::filesystem::create_directories(cache);
      std::filesystem::create_directories(mnt);
      std::string why;
      std::vector<std::string> args = {
          boot, mnt, "--registry", (*reg)->host() + "/" + repo, "--plain-http", "--cache-dir",
          cache};
      for (const auto& a : MountArgs(m)) args.push_back(a);
      if (!DropCaches()) return false;
      auto served = ServedMount::Start(m.rafs, args, mnt, dir.Sub("rafs-mount.log"),
                                       rfs::testing::FreeLoopbackPort(), &why);
      if (served == nullptr) {
        std::printf("rafs mount failed: %s\n", why.c_str());
        return false;
      }
      mount_s.push_back(served->start_seconds());
      const std::string before = served->Metrics();
      Pass cold = RunChrooted(mnt, app.argv, dir.Sub("app.err"));
      const std::string after = served->Metrics();
      Pass warm = RunChrooted(mnt, app.argv, dir.Sub("app.err"));
      if (!cold.ok || !warm.ok) {
        std::printf("the program failed in the mount: %s%s\n", cold.error.c_str(),
                    warm.error.c_str());
        return false;
      }
      ours_cold.push_back(cold.seconds);
      ours_warm.push_back(warm.seconds);
      if (rep == 0) {
        auto delta = [&](const char* name) {
          return MetricSum(after, name) - MetricSum(before, name);
        };
        fetched = delta("rfs_storage_backend_bytes_total");
        requests = delta("rfs_storage_backend_requests_total");
        chunks = delta("rfs_storage_chunks_fetched_total");
        fuse_read = delta("rafs_fuse_read_bytes_total");
        backend_s = delta("rfs_storage_backend_request_seconds_sum");
        fuse_reads = delta("rafs_fuse_read_seconds_count");
        fuse_read_s = delta("rafs_fuse_read_seconds_sum");
        std::printf("mount: %.1f MiB fetched before the program started (bootstrap is local)\n",
                    Mib(std::max(0.0, MetricSum(before, "rfs_storage_backend_bytes_total"))));
      }
    }  // unmounted
    if (!DropCaches()) return false;
    Pass cold = RunChrooted(src, app.argv, dir.Sub("app.err"));
    Pass warm = RunChrooted(src, app.argv, dir.Sub("app.err"));
    if (!cold.ok || !warm.ok) {
      std::printf("the program failed in the source chroot: %s%s\n", cold.error.c_str(),
                  warm.error.c_str());
      return false;
    }
    src_cold.push_back(cold.seconds);
    src_warm.push_back(warm.seconds);
  }
  uint64_t opened = 0, opened_bytes = 0;
  const bool have_opened = OpenedFiles(src, app, dir.Sub("strace.log"), &opened, &opened_bytes);

  auto least = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  std::printf("\n  %-44s %11s %11s %11s   cold runs (%d)\n", "wall time, seconds", "cold median",
              "cold best", "warm median", reps);
  std::printf("  %-44s %11.3f %11.3f %11.3f   %s\n", "ours: rafs mount from the registry",
              Median(ours_cold), least(ours_cold), Median(ours_warm),
              Join(ours_cold, "%.3f").c_str());
  std::printf("  %-44s %11.3f %11.3f %11.3f   %s\n", "source directory", Median(src_cold),
              least(src_cold), Median(src_warm), Join(src_cold, "%.3f").c_str());
  std::printf("  %-44s %11.2f %11.2f %11.2f\n", "ratio ours / source (time; lower is better)",
              Median(ours_cold) / Median(src_cold), least(ours_cold) / least(src_cold),
              Median(ours_warm) / Median(src_warm));
  std::printf("  %-44s %11.3f\n", "rafs mount start (spawn to mounted), median", Median(mount_s));
  std::printf("\n  image: %.2f MiB = bootstrap %.2f MiB + blob %.2f MiB (zstd), %.1f MiB of file "
              "data in %llu files\n",
              Mib(static_cast<double>(image_bytes)), Mib(static_cast<double>(built.bootstrap_size)),
              Mib(static_cast<double>(built.blob_size)), Mib(static_cast<double>(built.file_bytes)),
              static_cast<unsigned long long>(built.files));
  std::printf("  fetched from the registry during the cold run: %.2f MiB in %.0f requests (%.0f "
              "chunks)\n",
              Mib(fetched), requests, chunks);
  std::printf("  time in registry requests: %.3f s in all, %.1f ms each on average\n", backend_s,
              requests > 0 ? 1000 * backend_s / requests : 0.0);
  std::printf("  read through FUSE (rafs_fuse_read_bytes_total, with kernel readahead): %.2f MiB "
              "in %.0f read requests taking %.3f s in all\n",
              Mib(fuse_read), fuse_reads, fuse_read_s);
  if (have_opened) {
    std::printf("  files the program opened (strace in the source chroot): %llu, %.2f MiB\n",
                static_cast<unsigned long long>(opened), Mib(static_cast<double>(opened_bytes)));
  } else {
    std::printf("  files the program opened: n/a (strace unavailable or failed)\n");
  }
  std::printf("  fetched / read through FUSE: %.2f (compressed bytes over uncompressed)\n",
              fuse_read > 0 ? fetched / fuse_read : 0.0);
  if (have_opened && opened_bytes > 0) {
    std::printf("  fetched / size of files opened: %.2f\n", fetched / opened_bytes);
  }
  std::printf("  fetched / image size: %.3f\n", fetched / image_bytes);
  return true;
}

std::string DefaultRafs() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "rafs";
  self[n] = '\0';
  // <build>/test/bench/mount_bench -> <build>/cmd/rafs
  return (std::filesystem::path(self).parent_path().parent_path().parent_path() / "cmd" / "rafs")
      .string();
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--rafs PATH] [--data-mib N] [--file-mib N] [--entries N] [--reps N] "
               "[--threads N] [--parts 1234] [--fuse-read-ahead-kb N] [--read-amplify SIZE]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string rafs = DefaultRafs(), parts = "1234";
  uint64_t data_mib = 1024, file_mib = 4;
  int entries = 100000, reps = 3, threads = 0;
  long fuse_read_ahead_kb = 0;
  std::string read_amplify;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return Usage(argv[0]);
    const char* v = argv[++i];
    if (k == "--rafs") {
      rafs = v;
    } else if (k == "--data-mib") {
      data_mib = std::strtoull(v, nullptr, 10);
    } else if (k == "--file-mib") {
      file_mib = std::strtoull(v, nullptr, 10);
    } else if (k == "--entries") {
      entries = std::atoi(v);
    } else if (k == "--reps") {
      reps = std::atoi(v);
    } else if (k == "--threads") {
      threads = std::atoi(v);
    } else if (k == "--fuse-read-ahead-kb") {
      fuse_read_ahead_kb = std::atol(v);
    } else if (k == "--read-amplify") {
      read_amplify = v;
    } else if (k == "--parts") {
      parts = v;
    } else {
      return Usage(argv[0]);
    }
  }
  if (data_mib == 0 || file_mib == 0 || entries < 10 || reps < 1) return Usage(argv[0]);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  InstallSignalHandlers();

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  struct utsname u {};
  ::uname(&u);
  std::printf("command: %s\nmachine: %u cores, kernel %s, load average %s, CPU idle %.0f%% over "
              "the 3 s before the run\nrafs: %s\n",
              command.c_str(), std::thread::hardware_concurrency(), u.release,
              LoadAverage().c_str(), 100 * IdleShare(3), rafs.c_str());
  Machine m = Probe(rafs, threads, fuse_read_ahead_kb);
  m.read_amplify = read_amplify;
  if (!m.no_fuse.empty()) std::printf("our FUSE mount cannot run: %s\n", m.no_fuse.c_str());
  if (!m.no_erofs.empty()) std::printf("kernel EROFS cannot run: %s\n", m.no_erofs.c_str());
  if (!m.no_registry.empty()) std::printf("registry cannot run: %s\n", m.no_registry.c_str());

  bool ok = true;
  CpuSample c0 = SampleCpu();
  if (ok && parts.find('1') != std::string::npos) {
    ok = PartSequentialRead(m, data_mib, file_mib, reps);
    CpuSample c1 = SampleCpu();
    PrintCpu("part 1", c0, c1);
    c0 = c1;
  }
  if (ok && (parts.find('2') != std::string::npos || parts.find('3') != std::string::npos)) {
    ok = PartMetadataWalk(m, entries, reps);
    CpuSample c1 = SampleCpu();
    PrintCpu("parts 2 and 3", c0, c1);
    c0 = c1;
  }
  if (ok && parts.find('4') != std::string::npos) {
    ok = PartColdStart(m, reps);
    PrintCpu("part 4", c0, SampleCpu());
  }
  std::printf("\nload average at the end: %s\n", LoadAverage().c_str());
  return ok ? 0 : 1;
}
