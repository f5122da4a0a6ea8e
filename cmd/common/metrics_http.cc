#include "cmd/common/metrics_http.h"

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

// After base/ (through the header above): see snapshots_service.h.
#include <httplib.h>

namespace rfs::cmd {

using base::Result;
using base::Status;

namespace {

const auto kStart = std::chrono::steady_clock::now();

int64_t RssKilobytes() {
  std::ifstream in("/proc/self/statm");
  long pages_total = 0, pages_rss = 0;
  if (!(in >> pages_total >> pages_rss)) return 0;
  return static_cast<int64_t>(pages_rss) * ::sysconf(_SC_PAGESIZE) / 1024;
}

int64_t OpenFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  int64_t n = 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n - 3;  // ".", ".." and the fd of this DIR
}

}  // namespace

Status ParseHostPort(const std::string& address, std::string* host, int* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return base::InvalidArgumentError("\"", address, "\" is not host:port");
  }
  std::string h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string p = address.substr(colon + 1);
  char* end = nullptr;
  long v = std::strtol(p.c_str(), &end, 10);
  if (*end != '\0' || v < 1 || v > 65535 || h.empty()) {
    return base::InvalidArgumentError("\"", address, "\" is not host:port with a port 1..65535");
  }
  *host = h;
  *port = static_cast<int>(v);
  return Status::Ok();
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, base::MetricsRegistry* metrics, Hooks hooks) {
  std::string host;
  int port = 0;
  RETURN_IF_ERROR(ParseHostPort(address, &host, &port));
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer());
  s->metrics_ = metrics;
  s->hooks_ = std::move(hooks);
  s->http_ = std::make_unique<httplib::Server>();
  MetricsHttpServer* self = s.get();
  auto metrics_handler = [self](const httplib::Request&, httplib::Response& res) {
    res.set_content(self->Render(), "text/plain; version=0.0.4");
  };
  s->http_->Get("/v1/metrics", metrics_handler);
  s->http_->Get("/metrics", metrics_handler);
  s->http_->Get("/healthz", [self](const httplib::Request&, httplib::Response& res) {
    Status health = self->hooks_.health ? self->hooks_.health() : Status::Ok();
    if (health.ok()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(health.ToString() + "\n", "text/plain");
    }
  });
  for (const auto& [path, render] : s->hooks_.json_routes) {
    auto fn = render;
    s->http_->Get(path, [fn](const httplib::Request&, httplib::Response& res) {
      res.set_content(fn(), "application/json");
    });
  }
  // httplib's default also sets SO_REUSEPORT, which would let a second
  // daemon share the port silently; plain SO_REUSEADDR only.
  s->http_->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (!s->http_->bind_to_port(host, port)) {
    return base::UnavailableError("metrics endpoint: cannot listen on ", address);
  }
  s->port_ = port;
  s->thread_ = std::thread([self] { self->http_->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs: wait for it so
  // that the destructor can always stop the thread (as newer httplib's
  // wait_until_ready does).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!s->http_->is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!s->http_->is_running()) {
    return base::InternalError("metrics endpoint on ", address, ": server did not start");
  }
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string MetricsHttpServer::Render() {
  if (hooks_.refresh) hooks_.refresh();
  const std::string& p = hooks_.process_prefix;
  metrics_->GetGauge(p + "_memory_usage_kilobytes", "Resident memory of the process.")
      ->Set(RssKilobytes());
  metrics_->GetGauge(p + "_fd_counts", "Open file descriptors of the process.")->Set(OpenFds());
  metrics_->GetGauge(p + "_run_time_seconds", "Seconds since the process started.")
      ->Set(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                             kStart)
                .count());
  return metrics_->RenderPrometheus();
}

}  // namespace rfs::cmd
