// A real Debian `docker-registry` started by a test on 127.0.0.1 (free
// port, temp storage, optional htpasswd basic auth), stopped on destruction.
// Blobs are uploaded through the distribution API.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace rfs::testing {

class LocalRegistry {
 public:
  // Starts the registry; `htpasswd_user`/`password` enable basic auth.
  static base::Result<std::unique_ptr<LocalRegistry>> Start(const std::string& workdir,
                                                            const std::string& user = "",
                                                            const std::string& password = "");
  ~LocalRegistry();
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // Uploads a blob to `repo`; returns its sha256 hex id.
  base::Result<std::string> PushBlob(const std::string& repo, const std::vector<uint8_t>& data);
  // Puts a manifest or index (`media_type`) under `reference` (a tag, or
  // "" for its digest only); returns its digest "sha256:<hex>".
  base::Result<std::string> PushManifest(const std::string& repo, const std::string& reference,
                                         const std::string& media_type,
                                         const std::vector<uint8_t>& data);

  static bool Available();

 private:
  LocalRegistry() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string user_, password_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

}  // namespace rfs::testing
