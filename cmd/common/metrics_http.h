// MetricsHttpServer: the small HTTP endpoint of our daemons (cpp-httplib).
//
//   GET /v1/metrics, /metrics   Prometheus text of the registry, after the
//                               owner's refresh hook and the process gauges
//                               <prefix>_memory_usage_kilobytes,
//                               <prefix>_fd_counts, <prefix>_run_time_seconds
//   GET /healthz                200 "ok" when the health hook says OK,
//                               503 with the reason otherwise
//
// Lives in cmd/ because it is part of composing a daemon, and only cmd/ may
// use every third-party library (check-deps), so neither base/ nor the
// modules gain an HTTP dependency.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "base/metrics.h"
#include "base/status.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace rfs::cmd {

// "host:port" (IPv6 hosts in brackets) -> host, port 1..65535.
base::Status ParseHostPort(const std::string& address, std::string* host, int* port);

class MetricsHttpServer {
 public:
  struct Hooks {
    std::string process_prefix = "rafs";       // names of the process gauges
    std::function<void()> refresh;             // before each render; optional
    std::function<base::Status()> health;      // optional: always healthy
    // More GET paths answered with JSON ("/v1/status" -> its text).
    std::map<std::string, std::function<std::string()>> json_routes;
  };
  // Binds `address` (host:port) and serves on a thread of its own.
  static base::Result<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                base::MetricsRegistry* metrics,
                                                                Hooks hooks);
  ~MetricsHttpServer();  // stops and joins

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::string Render();

  base::MetricsRegistry* metrics_ = nullptr;
  Hooks hooks_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace rfs::cmd
