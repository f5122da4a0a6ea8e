// FdKeeper: keeps the /dev/fuse descriptors of our RAFS mounts alive in a
// small separate process, so that the mounts outlive a restart (SIGTERM,
// upgrade) or a crash (kill -9) of the daemon, and the next daemon adopts
// them: containers reading meanwhile see a pause, not an error.
//
// The keeper process is the daemon binary started with `--fd-keeper SOCKET`
// (RunFdKeeper). It listens on a unix SOCK_SEQPACKET socket and holds
// descriptors by name:
//   "PUT <name>" + one descriptor (SCM_RIGHTS)  -> "OK"
//   "DEL <name>"                                 -> "OK"
//   "LIST"                                       -> "FD <name>" + descriptor,
//                                                   ..., then "END"
// It runs in its own session and exits once it holds nothing and no client
// is connected. Only root may connect (the socket is 0600 in a 0700 dir).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace rfs::snapshotter {

class FdKeeperClient {
 public:
  // Connects to the keeper at `socket_path`, starting it first (argv:
  // `launcher` + {"--fd-keeper", socket_path}) when nobody listens.
  static base::Result<std::unique_ptr<FdKeeperClient>> Connect(
      const std::string& socket_path, const std::vector<std::string>& launcher);

  base::Status Put(const std::string& name, int fd);
  base::Status Delete(const std::string& name);
  // Every descriptor the keeper holds (duplicates, owned by the caller).
  base::Result<std::map<std::string, base::UniqueFd>> List();

 private:
  explicit FdKeeperClient(base::UniqueFd sock) : sock_(std::move(sock)) {}
  base::Status Expect(const char* what);
  base::UniqueFd sock_;
};

// The keeper's main loop; returns the process exit code.
int RunFdKeeper(const std::string& socket_path);

}  // namespace rfs::snapshotter
