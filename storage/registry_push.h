// Writing to an OCI distribution registry: blobs and manifests pushed to
// the repository of a RegistryBackend, with its authorization (a 401 is
// answered like a read's; the registry's challenge names the push scope
// `repository:REPO:pull,push`), TLS options and outcome -> Status mapping.
// Also a whole-blob download into a file, verified as it streams.
//
// Blob pushes: HEAD first (present with the right size: nothing sent);
// then, when `mount_from` names another repository of the same registry, a
// cross-repository mount (POST ?mount=DIGEST&from=REPO: 201 means done);
// otherwise a monolithic upload (POST to open an upload session, PUT of the
// whole body with ?digest=). Manifests are PUT with their media type as
// Content-Type. Transient failures (kUnavailable) are retried as reads are.
//
// Only the origin is written (mirrors are read-only). Credentials and
// tokens are never logged and never appear in errors.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "base/status.h"
#include "storage/registry_backend.h"

namespace rfs::storage {

// What a blob push did.
enum class BlobPush { kExisted, kMounted, kUploaded };

// Bytes to upload: a file (path non-empty) or a buffer that outlives the call.
struct BlobContent {
  std::string path;
  base::ByteSpan bytes;
};

// Called with the bytes sent or received so far.
using TransferProgress = std::function<void(uint64_t done)>;

class RegistryPusher {
 public:
  explicit RegistryPusher(std::shared_ptr<RegistryBackend> backend)
      : backend_(std::move(backend)) {}

  // HEAD /v2/<repo>/blobs/<digest>: the size when the registry has the
  // blob, nullopt when it answers 404.
  base::Result<std::optional<uint64_t>> StatBlob(const std::string& digest, const IoContext& ctx);

  // Makes sure the repository holds blob `digest` ("sha256:<hex>") of
  // `size` bytes (see the file comment). The registry's digest check is
  // trusted for the upload; a 201 naming another digest is kDataLoss.
  base::Result<BlobPush> PushBlob(const std::string& digest, uint64_t size,
                                  const BlobContent& content, const std::string& mount_from,
                                  const TransferProgress& progress, const IoContext& ctx);

  // PUT /v2/<repo>/manifests/<reference> (a tag or the digest).
  base::Status PushManifest(const std::string& reference, const std::string& media_type,
                            base::ByteSpan bytes, const IoContext& ctx);

  RegistryBackend& backend() { return *backend_; }

 private:
  struct Reply {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
  };
  // One request to the origin with authorization (401 answered, at most
  // twice); `path_or_url` is below the API root ("/<repo>/...") or an
  // absolute / root-relative URL from a Location header.
  base::Result<Reply> Call(const std::string& method, const std::string& path_or_url,
                           const std::map<std::string, std::string>& headers,
                           const BlobContent* body, uint64_t body_size,
                           const TransferProgress& progress, const IoContext& ctx);
  base::Result<BlobPush> TryPushBlob(const std::string& digest, uint64_t size,
                                     const BlobContent& content, const std::string& mount_from,
                                     const TransferProgress& progress, const IoContext& ctx);
  std::string What(const std::string& thing) const;

  std::shared_ptr<RegistryBackend> backend_;
};

// Reads blob `digest` of `size` bytes from the backend's repository in
// large ranges, handing each piece to `consume` in order and hashing as it
// goes. A shorter blob or another digest is kDataLoss naming both digests
// (bytes past `size` are never read: the digest covers exactly what is
// used); the verdict comes after the last piece, so a consumer must not
// trust what it got until this returns Ok. A `consume` error stops the
// transfer and is returned.
base::Status StreamBlob(RegistryBackend& backend, const std::string& digest, uint64_t size,
                        const std::function<base::Status(base::ByteSpan)>& consume,
                        const TransferProgress& progress, const IoContext& ctx);

}  // namespace rfs::storage
