// Image references: HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], the name
// of an image in a registry.
//
// The host is required (no implicit Docker Hub): the first component must
// look like one (contain '.' or ':', or be "localhost"). The repository is
// one or more lower-case components separated by '/' (each alphanumerics
// joined by '.', '_', '__' or runs of '-'); the tag is up to 128 of
// [A-Za-z0-9_.-], not starting with '.' or '-'; the digest must be sha256
// with 64 lower-case hex digits. Without tag and digest the tag is "latest".
// With both, the digest decides and the tag is kept for messages.
//
// docker.io and index.docker.io are served by registry-1.docker.io (see
// ApiHost) and one-component repositories there are under "library/".
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace rfs::storage {

struct ImageReference {
  std::string host;        // as written: "127.0.0.1:5000", "docker.io"
  std::string repository;  // "team/app"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:<64 hex>" or empty

  // What to ask the manifests endpoint for: the digest, else the tag.
  const std::string& Reference() const { return digest.empty() ? tag : digest; }
  // The host to send requests to (registry-1.docker.io for Docker Hub).
  std::string ApiHost() const;
  // HOST/REPOSITORY[:TAG][@DIGEST], parseable again.
  std::string ToString() const;
};

// Parses `ref`; kInvalidArgument naming the problem for anything else.
base::Result<ImageReference> ParseImageReference(std::string_view ref);

}  // namespace rfs::storage
