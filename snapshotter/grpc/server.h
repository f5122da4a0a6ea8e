// Server: serves SnapshotsService on a unix socket.
//
// Start refuses a socket path that a running process still serves (it
// connects first) and anything there that is not a socket; a stale socket
// left by a crash is replaced. The socket gets `socket_mode` (umask-proof)
// and, if set, group `socket_gid`; its directory is created 0700 if missing.
// Messages larger than `max_message_bytes` are refused with
// RESOURCE_EXHAUSTED before they reach the service.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "base/metrics.h"
#include "base/status.h"
#include "snapshotter/snapshotter.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace rfs::snapshotter::grpc {

class SnapshotsService;

struct ServerOptions {
  std::string socket_path;
  mode_t socket_mode = 0660;
  gid_t socket_gid = static_cast<gid_t>(-1);  // -1: keep the process's group
  int max_message_bytes = 16 << 20;           // containerd's default limit
};

class Server {
 public:
  // `snapshotter` and `metrics` must outlive the server.
  static base::Result<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                     Snapshotter* snapshotter,
                                                     base::MetricsRegistry* metrics);
  ~Server();  // Shutdown(0) if not done, removes the socket

  // Stops accepting RPCs, lets in-flight ones finish for up to `grace`, then
  // cancels the rest. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  const std::string& socket_path() const { return options_.socket_path; }

 private:
  Server(ServerOptions options, std::unique_ptr<SnapshotsService> service,
         std::unique_ptr<::grpc::Server> server);

  const ServerOptions options_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<::grpc::Server> server_;
  bool shut_down_ = false;
};

}  // namespace rfs::snapshotter::grpc
