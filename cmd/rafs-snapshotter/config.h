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

#include "base/logging.h"
#include "base/metrics.h"
#include "base/status.h"
#include "cmd/common/metrics_http.h"
#include "snapshotter/grpc/server.h"
#include "snapshotter/snapshotter.h"

namespace rfs::cmd {

extern const char* const kDefaultConfigYaml;

struct Config {
  snapshotter::Snapshotter::Options snapshotter;
  snapshotter::grpc::ServerOptions server;
  base::LogLevel log_level = base::LogLevel::kInfo;
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

// The metrics endpoint hooks of the daemon: snapshot counts by kind,
// process gauges named snapshotter_*, healthy while the store answers.
MetricsHttpServer::Hooks SnapshotterMetricsHooks(snapshotter::Snapshotter* sn,
                                                 base::MetricsRegistry* metrics);

}  // namespace rfs::cmd
