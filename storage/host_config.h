// Registry host configuration in containerd's certs.d layout: mirrors to
// try before the origin registry, read from
//
//   <dir>/<host[:port]>/hosts.toml    (else <dir>/_default/hosts.toml)
//
//   server = "https://registry.example.com"      # the origin (optional)
//   [host."https://mirror.example.com"]          # mirrors, in file order
//     capabilities = ["pull", "resolve"]          # default: all
//     skip_verify = false
//     ca = "/etc/certs/mirror-ca.pem"             # or a list; relative to the file's dir
//     override_path = false                       # true: the URL path is the API root
//
// The file is parsed by a small TOML reader for the subset these files use:
// [tables] with bare or quoted dotted keys, key = value with basic and
// literal strings, booleans, integers and arrays of those, and comments.
// Anything else (multi-line strings, inline tables, arrays of tables, dates)
// is an error. Errors are kInvalidArgument naming the file and line. Keys
// containerd knows but we do not use (header, client, dial_timeout...) are
// accepted and ignored, so a containerd hosts.toml works unchanged.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace rfs::storage {

struct RegistryOptions;

struct HostEntry {
  std::string scheme;  // "https" (default) or "http"
  std::string host;    // "mirror.example.com[:port]"
  std::string path;    // API root: "/v2" unless override_path ("/v2" appended to a given path)
  bool pull = true;    // blobs may be read here
  bool resolve = true; // manifests (tags) may be resolved here
  bool push = true;
  bool skip_verify = false;
  std::vector<std::string> ca_files;  // absolute paths
  int line = 0;                        // of its table header
};

struct HostConfig {
  std::string file;           // where it came from ("" = none found)
  std::string server_scheme;  // from `server`; "" when absent
  std::string server_host;
  bool server_skip_verify = false;
  std::vector<std::string> server_ca_files;
  std::vector<HostEntry> hosts;  // mirrors in file order
};

// Parses the text of a hosts.toml; `file` names it in errors and anchors
// relative `ca` paths (its directory).
base::Result<HostConfig> ParseHostsToml(std::string_view text, const std::string& file);

// The configuration for registry `host` ("docker.io", "127.0.0.1:5000") in
// certs.d directory `dir`: the first of <dir>/<host>, <dir>/<host with
// ":port" spelled "_port_">, the other Docker Hub names for Docker Hub, and
// <dir>/_default that has a hosts.toml. None: an empty HostConfig (no
// mirrors). A `server` in _default is ignored (it names no registry).
base::Result<HostConfig> LoadHostConfig(const std::string& dir, const std::string& host);

// Fills options->mirrors from `config` (hosts that can pull or resolve; the
// origin itself, when listed, is left out) and applies its
// server (scheme, host) and TLS settings to the origin.
void ApplyHostConfig(const HostConfig& config, RegistryOptions* options);

// LoadHostConfig + ApplyHostConfig for `registry` (the name the image uses);
// an empty `dir` changes nothing.
base::Status ConfigureMirrors(const std::string& dir, const std::string& registry,
                              RegistryOptions* options);

}  // namespace rfs::storage
