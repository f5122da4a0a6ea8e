// rafs-snapshotter: the containerd remote snapshotter daemon (proxy plugin
// "nydus"). Composition root: flags and YAML config -> Options, the
// snapshotter core, the gRPC server on a unix socket, the metrics endpoint,
// and signal handling (SIGTERM/SIGINT: graceful stop).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "base/logging.h"
#include "base/metrics.h"
#include "base/status.h"
#include "cmd/rafs-snapshotter/config.h"
#include "cmd/common/metrics_http.h"
#include "snapshotter/grpc/server.h"
#include "snapshotter/fd_keeper.h"
#include "snapshotter/rafs_manager.h"
#include "snapshotter/snapshotter.h"

namespace rfs::cmd {
namespace {

constexpr const char* kVersion = "0.1.0";

constexpr const char* kUsage =
    R"(usage: rafs-snapshotter [--address SOCKET] [--root DIR] [--config FILE]
                        [--log-level debug|info|warn|error]
       rafs-snapshotter --check-config --config FILE
       rafs-snapshotter --version | --print-default-config | --help
       rafs-snapshotter --fd-keeper SOCKET   (started by the daemon itself)

Serves containerd's snapshots API on a unix socket. Flags override the
config file; --print-default-config shows every key with its default;
--check-config loads and validates the config, then exits (0: valid).
)";

struct Flags {
  std::optional<std::string> address, root, config, log_level, fd_keeper;
  bool version = false, print_default_config = false, help = false, check_config = false;
};

// 0 to continue, else the exit code (2: bad usage).
int ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto value = [&](std::optional<std::string>* out) -> bool {
      if (inline_value) {
        *out = *inline_value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (arg == "--address") {
      if (!value(&f->address)) return (std::cerr << "--address needs a value\n", 2);
    } else if (arg == "--root") {
      if (!value(&f->root)) return (std::cerr << "--root needs a value\n", 2);
    } else if (arg == "--config") {
      // A harness may substitute an empty config path ("--config {config}"):
      // no value means no file, the defaults.
      if (!value(&f->config)) f->config = "";
    } else if (arg == "--log-level") {
      if (!value(&f->log_level)) return (std::cerr << "--log-level needs a value\n", 2);
    } else if (arg == "--fd-keeper") {
      if (!value(&f->fd_keeper)) return (std::cerr << "--fd-keeper needs a value\n", 2);
    } else if (arg == "--version") {
      f->version = true;
    } else if (arg == "--check-config") {
      f->check_config = true;
    } else if (arg == "--print-default-config") {
      f->print_default_config = true;
    } else if (arg == "--help" || arg == "-h") {
      f->help = true;
    } else {
      std::cerr << "rafs-snapshotter: unknown argument \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  return 0;
}

int Run(int argc, char** argv) {
  Flags flags;
  if (int rc = ParseFlags(argc, argv, &flags); rc != 0) return rc;
  if (flags.help) {
    std::cout << kUsage;
    return 0;
  }
  if (flags.fd_keeper) return snapshotter::RunFdKeeper(*flags.fd_keeper);
  if (flags.version) {
    std::cout << "rafs-snapshotter " << kVersion << "\n";
    return 0;
  }
  if (flags.print_default_config) {
    std::cout << kDefaultConfigYaml;
    return 0;
  }

  Config config = DefaultConfig();
  if (flags.config && !flags.config->empty()) {
    base::Result<Config> loaded = LoadConfig(*flags.config);
    if (!loaded.ok()) {
      std::cerr << "rafs-snapshotter: " << loaded.status().message() << "\n";
      return 1;
    }
    config = std::move(*loaded);
  }
  if (flags.check_config) {
    std::cout << "config " << (flags.config && !flags.config->empty() ? *flags.config : "<defaults>")
              << ": ok\n";
    return 0;
  }
  if (flags.root) config.snapshotter.root = *flags.root;
  if (flags.address) config.server.socket_path = *flags.address;
  if (flags.log_level && !base::ParseLogLevel(*flags.log_level, &config.log_level)) {
    std::cerr << "rafs-snapshotter: --log-level \"" << *flags.log_level
              << "\" is not debug, info, warn or error\n";
    return 2;
  }
  base::SetMinLogLevel(config.log_level);
  base::SetLogFormat(config.log_format);

  // Signals are taken synchronously by this thread (sigwait); every thread
  // started from here on inherits the blocked mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  base::MetricsRegistry& metrics = base::MetricsRegistry::Global();
  std::shared_ptr<snapshotter::RafsManager> rafs;
  if (config.rafs.enable) {
    base::Result<std::shared_ptr<snapshotter::RafsManager>> m =
        snapshotter::RafsManager::Create(RafsManagerOptionsFrom(config, &metrics));
    if (!m.ok()) {
      RFS_LOG(kError) << "cannot serve RAFS images: " << m.status();
      return 1;
    }
    rafs = *m;
    config.snapshotter.remote = rafs;
  }
  base::Result<std::unique_ptr<snapshotter::Snapshotter>> sn =
      snapshotter::Snapshotter::Open(config.snapshotter);
  if (!sn.ok()) {
    RFS_LOG(kError) << "cannot open root: " << sn.status();
    return 1;
  }
  base::Result<std::unique_ptr<snapshotter::grpc::Server>> server =
      snapshotter::grpc::Server::Start(config.server, sn->get(), &metrics);
  if (!server.ok()) {
    RFS_LOG(kError) << "cannot serve: " << server.status();
    return 1;
  }
  std::unique_ptr<MetricsHttpServer> http;
  if (!config.metrics_address.empty()) {
    auto h = MetricsHttpServer::Start(config.metrics_address, &metrics,
                                     SnapshotterMetricsHooks(sn->get(), &metrics, rafs.get()));
    if (h.ok()) {
      http = std::move(*h);
    } else {
      // containerd has no fallback snapshotter: a busy metrics port must not
      // stop containers from starting.
      RFS_LOG(kError) << h.status() << " (serving the snapshots API without it)";
    }
  }
  RFS_LOG(kInfo) << "rafs-snapshotter " << kVersion << " serving " << config.server.socket_path
                 << ", root " << (*sn)->root()
                 << (http ? ", metrics on " + config.metrics_address : std::string());

  int sig = 0;
  while (true) {
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      RFS_LOG(kInfo) << "SIGHUP ignored (restart to apply a new config)";
      continue;
    }
    break;
  }
  RFS_LOG(kInfo) << "signal " << sig << " (" << strsignal(sig) << "): stopping, in-flight RPCs get "
                 << config.shutdown_grace.count() << " ms";
  http.reset();
  (*server)->Shutdown(config.shutdown_grace);
  server->reset();
  sn->reset();
  // The RAFS mounts end with the process: unmount them cleanly.
  rafs.reset();
  RFS_LOG(kInfo) << "stopped";
  return 0;
}

}  // namespace
}  // namespace rfs::cmd

int main(int argc, char** argv) { return rfs::cmd::Run(argc, argv); }
