// The rafs-snapshotter configuration: one YAML file mapped to plain Options
// structs of the modules (Snapshotter::Options, grpc::ServerOptions) plus
// what only the daemon itself uses (log level, metrics address).
//
// Every key is optional; kDefaultConfigYaml lists them all with their
// defaults and is what --print-default-config prints. Validation names the
// key and the bad value; unknown keys are errors (a typo must not silently
// fall back to a default).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/logging.h"
#include "base/metrics.h"
#include "base/status.h"
#include "cmd/common/metrics_http.h"
#include "snapshotter/grpc/server.h"
#include "snapshotter/rafs_manager.h"
#include "snapshotter/snapshotter.h"

namespace rfs::cmd {

extern const char* const kDefaultConfigYaml;

// Lazy RAFS images (the `rafs:` and `registry:` sections).
struct RafsConfig {
  bool enable = true;
  bool keep_mounts = true;  // across restarts, through the fd keeper
  std::string cache_dir;  // "" : <root>/cache
  uint64_t cache_max_bytes = 0;
  int fuse_threads = 8;
  int read_timeout_seconds = 60;
  uint64_t read_amplify_bytes = 0;
  std::string prefetch = "table";
  int prefetch_threads = 2;
  uint64_t prefetch_bandwidth = 0;  // bytes per second, 0: unlimited
  std::vector<std::string> plain_http_hosts;
  std::vector<std::string> insecure_hosts;
  std::string ca_file;
  std::string hosts_dir;  // registry.config_path
  std::string docker_config;
  int request_timeout_seconds = 30;
};

struct Config {
  snapshotter::Snapshotter::Options snapshotter;
  RafsConfig rafs;
  snapshotter::grpc::ServerOptions server;
  base::LogLevel log_level = base::LogLevel::kInfo;
  base::LogFormat log_format = base::LogFormat::kText;
  // containerd's socket, asked which image a RAFS layer belongs to when its
  // labels do not say (snapshotter/grpc/image_resolver.h); empty: never.
  std::string containerd_address;
  // host:port of the Prometheus/health endpoint; empty: off.
  std::string metrics_address;
  std::chrono::milliseconds shutdown_grace{10000};
};

// The defaults (kDefaultConfigYaml parsed).
Config DefaultConfig();

// Parses YAML text over the defaults. `source` names the text in errors.
base::Result<Config> ParseConfig(const std::string& yaml, const std::string& source);
// Reads and parses a file.
base::Result<Config> LoadConfig(const std::string& path);

// The RAFS manager's options from the config (cache dir defaults to
// <root>/cache); images whose labels name none are looked up in containerd
// at containerd_address, unless it is empty.
snapshotter::RafsManagerOptions RafsManagerOptionsFrom(const Config& config,
                                                       base::MetricsRegistry* metrics);

// The metrics endpoint hooks of the daemon: snapshot counts by kind,
// process gauges named snapshotter_*, healthy while the store answers.
// With a RafsManager, GET /v1/status lists the RAFS images served: mount,
// bytes of the image, fetched and read, EIO count, and the cache's size.
MetricsHttpServer::Hooks SnapshotterMetricsHooks(snapshotter::Snapshotter* sn,
                                                 base::MetricsRegistry* metrics,
                                                 snapshotter::RafsManager* rafs = nullptr);
// The JSON of GET /v1/status.
std::string RafsStatusJson(snapshotter::RafsManager* rafs);

}  // namespace rfs::cmd
