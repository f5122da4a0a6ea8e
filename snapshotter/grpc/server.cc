#include "snapshotter/grpc/server.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/logging.h"
#include "base/unique_fd.h"
#include "snapshotter/grpc/snapshots_service.h"

namespace rfs::snapshotter::grpc {

using base::ErrnoToStatus;
using base::Result;
using base::Status;

namespace {

// Ok if nothing is at `path` or a stale socket was removed.
Status ClaimSocketPath(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoToStatus(errno, "stat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return base::FailedPreconditionError("socket path ", path, " exists and is not a socket");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoToStatus(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    return base::FailedPreconditionError("socket ", path, " is served by another running process");
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return ErrnoToStatus(errno, "probe " + path);
  }
  RFS_LOG(kInfo) << "removing stale socket " << path;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoToStatus(errno, "unlink " + path);
  return Status::Ok();
}

Status EnsureParentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Status::Ok();
  std::string dir = path.substr(0, slash);
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) return Status::Ok();
  RETURN_IF_ERROR(EnsureParentDir(dir));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, "mkdir " + dir);
  }
  return Status::Ok();
}

}  // namespace

Server::Server(ServerOptions options, std::unique_ptr<SnapshotsService> service,
               std::unique_ptr<::grpc::Server> server)
    : options_(std::move(options)), service_(std::move(service)), server_(std::move(server)) {}

Server::~Server() {
  Shutdown(std::chrono::milliseconds(0));
  ::unlink(options_.socket_path.c_str());
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                              Snapshotter* snapshotter,
                                              base::MetricsRegistry* metrics) {
  const std::string& path = options.socket_path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return base::InvalidArgumentError("socket path \"", path, "\" must have 1 to ",
                                      sizeof(sockaddr_un{}.sun_path) - 1, " bytes");
  }
  RETURN_IF_ERROR(EnsureParentDir(path));
  RETURN_IF_ERROR(ClaimSocketPath(path));

  auto service = std::make_unique<SnapshotsService>(snapshotter, metrics);
  ::grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, ::grpc::InsecureServerCredentials());
  builder.RegisterService(service.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // The socket appears with exactly socket_mode (bind applies the umask to
  // 0777): never wider, and never narrower for a moment either, so a client
  // that sees the socket can use it. Only this thread creates files during
  // start-up.
  mode_t old_umask = ::umask(~options.socket_mode & 0777);
  std::unique_ptr<::grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (server == nullptr) {
    return base::UnavailableError("cannot serve gRPC on unix socket ", path);
  }
  std::unique_ptr<Server> s(new Server(options, std::move(service), std::move(server)));
  if (::chmod(path.c_str(), options.socket_mode) != 0) {
    return ErrnoToStatus(errno, "chmod " + path);
  }
  if (options.socket_gid != static_cast<gid_t>(-1) &&
      ::chown(path.c_str(), static_cast<uid_t>(-1), options.socket_gid) != 0) {
    return ErrnoToStatus(errno, "chown " + path);
  }
  return s;
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
}

}  // namespace rfs::snapshotter::grpc
