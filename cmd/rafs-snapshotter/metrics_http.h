// MetricsHttpServer: the daemon's small HTTP endpoint (cpp-httplib).
//
//   GET /v1/metrics, /metrics   Prometheus text of the registry, after
//                               refreshing snapshot counts by kind and a few
//                               process gauges
//   GET /healthz                200 "ok" when the metadata store answers,
//                               503 with the reason otherwise
//
// Lives in cmd/ because it is part of composing the daemon: it reads the
// snapshotter and the registry, and only cmd/ may use every third-party
// library (check-deps), so neither base/ nor snapshotter/ gains an HTTP
// dependency.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "base/metrics.h"
#include "base/status.h"
#include "snapshotter/snapshotter.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace rfs::cmd {

class MetricsHttpServer {
 public:
  // Binds `address` (host:port) and serves on a thread of its own.
  static base::Result<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, snapshotter::Snapshotter* snapshotter,
      base::MetricsRegistry* metrics);
  ~MetricsHttpServer();  // stops and joins

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::string Render();

  snapshotter::Snapshotter* snapshotter_ = nullptr;
  base::MetricsRegistry* metrics_ = nullptr;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace rfs::cmd
