// Registry credentials: where they come from is a CredentialProvider; the
// storage stack only asks "what are the credentials for this host?".
//
// Credentials never appear in logs, error messages or metrics: nothing in
// storage formats a Credential into text.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/mutex.h"
#include "base/status.h"

namespace rfs::storage {

struct Credential {
  std::string username;
  std::string password;
  std::string identity_token;  // OAuth2 refresh token (docker `identitytoken`)
};

class CredentialProvider {
 public:
  virtual ~CredentialProvider() = default;
  // Credentials for `host` ("registry.example.com:5000"), nullopt when none.
  virtual base::Result<std::optional<Credential>> Get(const std::string& host) = 0;
};

// Fixed credentials per host (from configuration), also the in-memory
// per-image store the snapshotter fills from labels: thread-safe, updatable.
class StaticCredentials final : public CredentialProvider {
 public:
  void Set(const std::string& host, Credential c);
  base::Result<std::optional<Credential>> Get(const std::string& host) override;

 private:
  base::Mutex mu_;
  std::map<std::string, Credential> by_host_ GUARDED_BY(mu_);
};

// Docker's config.json: `auths` entries with base64 `auth` ("user:pass"),
// `username`/`password`, or `identitytoken`. Docker Hub's key
// "https://index.docker.io/v1/" serves docker.io, index.docker.io and
// registry-1.docker.io. Keys may carry a scheme and a path.
class DockerConfigCredentials final : public CredentialProvider {
 public:
  // Reads `path`; a missing file means no credentials.
  static base::Result<std::unique_ptr<DockerConfigCredentials>> Load(const std::string& path);
  // Parses config.json text.
  static base::Result<std::unique_ptr<DockerConfigCredentials>> Parse(const std::string& json);
  base::Result<std::optional<Credential>> Get(const std::string& host) override;

 private:
  std::map<std::string, Credential> by_host_;
};

// A docker config.json followed as it changes: each Get looks at the file
// (its inode, size and mtime) and reads it again when it changed, so a new
// `docker login` (or a rotated pull secret written there) is used by the
// next authentication, e.g. after a 401, of a mount that lives for days. A
// file that turns unreadable or invalid keeps the last good credentials; a
// removed file means none.
class DockerConfigFile final : public CredentialProvider {
 public:
  explicit DockerConfigFile(std::string path) : path_(std::move(path)) {}
  base::Result<std::optional<Credential>> Get(const std::string& host) override EXCLUDES(mu_);

 private:
  const std::string path_;
  base::Mutex mu_;
  bool loaded_ GUARDED_BY(mu_) = false;
  uint64_t ino_ GUARDED_BY(mu_) = 0, size_ GUARDED_BY(mu_) = 0;
  int64_t mtime_ns_ GUARDED_BY(mu_) = 0;
  std::unique_ptr<DockerConfigCredentials> current_ GUARDED_BY(mu_);
};

// Normalises a registry host for lookups: docker.io, index.docker.io and
// registry-1.docker.io become "index.docker.io"; scheme and path dropped.
std::string NormalizeRegistryHost(const std::string& host_or_url);

}  // namespace rfs::storage
