#include "cmd/rafs/mount_cmd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "base/logging.h"
#include "base/metrics.h"
#include "cmd/common/metrics_http.h"
#include "cmd/rafs/cache_cmd.h"
#include "cmd/rafs/exit.h"
#include "rafs/mount.h"

namespace rfs::cmd {
namespace {

// Tells the waiting parent how starting went: "ok" or the error text.
void Report(int fd, const std::string& message) {
  if (fd < 0) return;
  (void)!::write(fd, message.data(), message.size());
  ::close(fd);
}

int Serve(const MountArgs& args, const ImageOpener& open_image, int report_fd) {
  auto image = open_image();
  if (!image.ok()) {
    Report(report_fd, image.status().ToString());
    return Fail("mount", image.status());
  }
  rafs::MountOptions o;
  o.mountpoint = args.mountpoint;
  o.threads = args.threads;
  o.read_timeout = std::chrono::seconds(args.read_timeout_seconds);
  o.allow_other = args.allow_other;
  o.source = "rafs:" + args.image;
  auto policy = rafs::fs::ParsePrefetchPolicy(args.prefetch);
  if (!policy.ok()) {
    Report(report_fd, policy.status().ToString());
    return Fail("mount", policy.status());
  }
  o.prefetch = *policy;
  o.prefetch_paths = args.prefetch_paths;
  o.prefetch_options.threads = args.prefetch_threads;
  if (!args.prefetch_bandwidth.empty()) {
    auto bw = ParseByteSize(args.prefetch_bandwidth);
    if (!bw.ok()) {
      Report(report_fd, bw.status().ToString());
      return Fail("mount", bw.status().WithContext("--prefetch-bandwidth"));
    }
    o.prefetch_options.bandwidth_bytes_per_second = *bw;
  }
  auto mount = rafs::RafsMount::Start(o, std::shared_ptr<rafs::fs::Image>(std::move(*image)));
  if (!mount.ok()) {
    Report(report_fd, mount.status().ToString());
    return Fail("mount", mount.status());
  }
  std::unique_ptr<MetricsHttpServer> http;
  if (!args.metrics_address.empty()) {
    MetricsHttpServer::Hooks hooks;
    hooks.process_prefix = "rafs";
    rafs::RafsMount* m = mount->get();
    hooks.health = [m]() {
      return m->serving() ? base::Status::Ok() : base::UnavailableError("the mount ended");
    };
    auto h = MetricsHttpServer::Start(args.metrics_address, &base::MetricsRegistry::Global(),
                                      std::move(hooks));
    if (!h.ok()) {
      Report(report_fd, h.status().ToString());
      (void)(*mount)->Stop();
      return Fail("mount", h.status());
    }
    http = std::move(*h);
  }
  if (report_fd >= 0) {
    // In the background from here on: logs go to --log-file (or nowhere),
    // so that nothing holds the starting terminal or pipe open.
    const char* target = args.log_file.empty() ? "/dev/null" : args.log_file.c_str();
    int log = ::open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log < 0) {
      base::Status s = base::ErrnoToStatus(errno, "open log file " + std::string(target));
      Report(report_fd, s.ToString());
      (void)(*mount)->Stop();
      return Fail("mount", s);
    }
    ::dup2(log, STDERR_FILENO);
    ::close(log);
  }
  Report(report_fd, "ok");

  // SIGINT/SIGTERM/SIGHUP were blocked before any thread started; wait for
  // them, or for the mount to end from outside (umount).
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  struct timespec tick = {0, 200 * 1000 * 1000};
  while ((*mount)->serving()) {
    int sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig == SIGHUP) continue;
    if (sig == SIGINT || sig == SIGTERM) {
      RFS_LOG(kInfo) << "signal " << sig << ": unmounting " << args.mountpoint;
      break;
    }
  }
  http.reset();
  base::Status s = (*mount)->Stop();
  if (!s.ok()) return Fail("mount", s);
  return kExitOk;
}

}  // namespace

void AddMountOptions(CLI::App* sub, MountArgs* args) {
  sub->add_option("MOUNTPOINT", args->mountpoint, "an existing empty directory")->required();
  sub->add_flag("--foreground,-f", args->foreground,
                "stay in the foreground (default: return once mounted, serve in the background)");
  sub->add_option("--threads", args->threads, "FUSE worker threads (1..256)")
      ->check(CLI::Range(1, 256));
  sub->add_option("--read-timeout", args->read_timeout_seconds,
                  "seconds a read may wait for chunks before it fails with EIO")
      ->check(CLI::Range(1, 86400));
  sub->add_option("--metrics-address", args->metrics_address,
                  "serve Prometheus metrics and /healthz on host:port");
  sub->add_option("--prefetch", args->prefetch,
                  "background prefetch: none, table (the image's prefetch list; default) or all "
                  "(the list, then every file)")
      ->check(CLI::IsMember({"none", "table", "all"}));
  sub->add_option("--prefetch-path", args->prefetch_paths,
                  "also prefetch this file or directory (repeatable)");
  sub->add_option("--prefetch-threads", args->prefetch_threads, "prefetch workers (1..16)")
      ->check(CLI::Range(1, 16));
  sub->add_option("--prefetch-bandwidth", args->prefetch_bandwidth,
                  "cap prefetch at this many bytes per second (50M, 1G; default: no cap)");
  sub->add_option("--log-file", args->log_file,
                  "in the background, append logs to this file (default: discard them)");
  sub->add_flag("!--no-allow-other", args->allow_other,
                "only the mounting user may access the files (default: everyone, with the "
                "image's permissions)");
}

int RunMount(const MountArgs& args, const ImageOpener& open_image) {
  // Signals are handled by sigtimedwait in the serving thread; block them
  // before any thread exists so that every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  if (args.foreground) return Serve(args, open_image, -1);

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return Fail("mount", base::ErrnoToStatus(errno, "pipe"));
  }
  pid_t pid = ::fork();
  if (pid < 0) return Fail("mount", base::ErrnoToStatus(errno, "fork"));
  if (pid == 0) {
    ::close(p[0]);
    ::setsid();
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      ::dup2(devnull, STDIN_FILENO);
      ::dup2(devnull, STDOUT_FILENO);
      ::close(devnull);
    }
    ::_exit(Serve(args, open_image, p[1]));
  }
  ::close(p[1]);
  std::string message;
  char buf[512];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) message.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  if (message == "ok") {
    std::cout << "mounted " << args.image << " at " << args.mountpoint << " (pid " << pid
              << "); unmount with: umount " << args.mountpoint << "\n";
    return kExitOk;
  }
  // The child printed its error to stderr; pass on its exit code.
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (message.empty()) std::cerr << "rafs mount: the serving process exited during start-up\n";
  return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : kExitError;
}

}  // namespace rfs::cmd
