// RegistryBackend: blobs from an OCI distribution registry over HTTP(S),
// read with ranged GETs of /v2/<repository>/blobs/sha256:<id>.
//
// One attempt (TryReadAt) does: the request with the cached authorization
// for the repository's pull scope; on 401 the challenge is answered (Bearer:
// a token from the realm, GET then POST form; Basic: the credentials) and the
// request is sent once more (a 401 on a cached token drops that token, unless
// another request has replaced it meanwhile, and fetches one new token:
// concurrent requests meeting an expired token share one token fetch); on a
// 3xx redirect the Location is fetched without registry authorization and
// remembered per blob (dropped when it later fails). A 206 must carry the requested Content-Range and exactly
// that many bytes. Outcome -> Status in one place: 401 kUnauthenticated,
// 403 kPermissionDenied, 404 kNotFound, 416 kOutOfRange, 429 / 5xx /
// connection errors kUnavailable (retried by BlobReader::ReadAt within the
// deadline, honouring Retry-After), a wrong body kDataLoss. The deadline
// bounds each request as a whole: connect and read timeouts are capped by
// it, and a body still arriving when it passes is cut (kDeadlineExceeded).
//
// Manifests (GetManifest) go through the same request path: the same
// authorization, redirects and outcome mapping, retried like blob reads.
//
// Mirrors (options.mirrors, e.g. from a certs.d hosts.toml, host_config.h):
// each attempt of a blob read (and of a manifest GET, for mirrors with the
// resolve capability) tries the mirrors in order, then the origin. A mirror
// that fails in any way (cannot connect, 5xx, 404, a 401 it cannot be
// authenticated to, a wrong range or body) is skipped for that request and
// counted as a fallback; one that failed at the connection level is left
// out for `mirror_retry_after`, so later reads do not wait for it again.
// Each host has its own authorization (its own bearer challenge and token;
// credentials looked up by its host name). Bytes from a mirror are checked
// as the origin's are; a read after bad bytes (IoContext::after_bad_bytes)
// goes to the origin only. Mirror requests carry ?ns=<origin host>, as
// containerd sends them.
//
// Connections are kept alive and reused: an idle connection per origin
// goes back to a small pool after a request whose answer was read to the
// end, so a lazy read costs one round trip instead of a TCP (and TLS)
// handshake plus one. Connections of failed or cut requests are closed.
//
// Credentials and tokens are never logged and never appear in errors.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "base/mutex.h"
#include "storage/blob_reader.h"
#include "storage/credentials.h"

namespace httplib {
class Client;
}

namespace rfs::storage {

// A registry mirror: a host serving the origin's repositories under `path`.
struct RegistryMirror {
  std::string origin;         // "https://mirror.example.com[:port]"
  std::string host;           // "mirror.example.com[:port]", for credentials
  std::string path = "/v2";   // API root
  bool pull = true;           // blobs are read here
  bool resolve = false;       // manifests are read here
  bool skip_verify = false;   // accept any TLS certificate
  std::vector<std::string> ca_files;  // CA bundles for this host (none: the system's)
};

struct RegistryOptions {
  std::string host;        // "registry.example.com" or "127.0.0.1:5000"
  std::string repository;  // "library/busybox"
  bool plain_http = false;
  bool skip_verify = false;  // accept any TLS certificate
  std::string ca_file;       // extra CA bundle
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};
  RetryPolicy retry;
  std::shared_ptr<CredentialProvider> credentials;  // may be null
  std::vector<RegistryMirror> mirrors;               // tried in order before the origin
  std::chrono::milliseconds mirror_retry_after{30000};  // after a connection failure
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

class RegistryBackend final : public BlobBackend,
                              public std::enable_shared_from_this<RegistryBackend> {
 public:
  static base::Result<std::shared_ptr<RegistryBackend>> Create(RegistryOptions options);
  ~RegistryBackend() override;
  base::Result<std::unique_ptr<BlobReader>> Open(const std::string& blob_id) override;

  const RegistryOptions& options() const { return options_; }

  // A manifest or index as the registry sent it.
  struct Manifest {
    std::string media_type;  // Content-Type (parameters dropped)
    std::string digest;      // "sha256:<hex>" of `bytes`
    std::vector<uint8_t> bytes;
  };
  // GET /v2/<repository>/manifests/<reference> (a tag or "sha256:<hex>"),
  // accepting OCI and Docker schema 2 manifests and indexes. Transient
  // failures are retried within the deadline. The bytes are checked against
  // the reference when it is a digest and against Docker-Content-Digest
  // when the registry sends a sha256 one (kDataLoss on a mismatch). Bodies
  // over `max_bytes` are kResourceExhausted; a missing manifest kNotFound.
  base::Result<Manifest> GetManifest(const std::string& reference, const IoContext& ctx,
                                     uint64_t max_bytes = 4u << 20);

  // Internals shared with readers.
  struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    uint64_t body_bytes = 0;
  };
  struct Target {
    std::string origin;  // scheme://host[:port]
    std::string path;    // path?query
  };
  // Receives a 2xx response body: `start` with the status and headers
  // before any bytes (once per response; return false not to read the body
  // at all), then `data` (return false to stop reading).
  struct BodySink {
    std::function<bool(const Response& head)> start;
    std::function<bool(const char*, size_t)> data;
  };
  // Where registry requests go: a mirror or the origin, each with its own
  // authorization.
  struct Endpoint {
    bool mirror = false;
    std::string origin;  // scheme://host[:port]
    std::string host;    // credentials are looked up by it
    std::string path;    // API root, "/v2"
    std::string query;   // "" or "?ns=<origin host>"
    bool pull = true, resolve = true;
    bool skip_verify = false;
    std::vector<std::string> ca_files;
    base::Counter* requests = nullptr;
    base::Mutex mu;
    std::string authorization GUARDED_BY(mu);
    std::chrono::steady_clock::time_point auth_expiry GUARDED_BY(mu);
    std::chrono::steady_clock::time_point down_until GUARDED_BY(mu);
    base::Mutex auth_mu;  // serialises token fetches (single flight)
  };
  // Runs `attempt` on the endpoints for blobs (`blob`) or manifests in
  // order: mirrors (not left out, none after bad bytes), then the origin.
  // A mirror's failure moves on to the next (a fallback); the first success
  // or the origin's result is returned. `attempt` sets `*connection` when
  // the host could not be reached. A passed deadline ends the walk.
  base::Status TryEndpoints(bool blob, const IoContext& ctx,
                            const std::function<base::Status(Endpoint&, bool* connection)>& attempt);
  Endpoint& origin_endpoint() { return *endpoints_.back(); }

  // One HTTP request; bodies of 2xx answers go to `sink`, others are
  // discarded. TLS settings are those of the endpoint with that origin.
  base::Result<Response> Request(const std::string& method, const Target& target,
                                 const std::map<std::string, std::string>& headers,
                                 const BodySink* sink, const IoContext& ctx);
  // The Authorization header for the endpoint, "" when none is cached.
  std::string CachedAuthorization(Endpoint& ep);
  // Answers a 401 challenge to a request sent with `failed` (the
  // Authorization it carried, "" for none); afterwards CachedAuthorization()
  // has the answer. Single flight: when another caller has cached a newer
  // authorization meanwhile, that one is kept and nothing is fetched.
  base::Status Authenticate(Endpoint& ep, const std::string& challenge, const IoContext& ctx,
                            const std::string& failed);
  // Forgets the cached authorization if it is still `failed` (a newer one,
  // cached by another caller meanwhile, stays).
  void DropAuthorization(Endpoint& ep, const std::string& failed);
  // A registry request to `ep` (`path` below its API root, e.g.
  // "/<repository>/blobs/sha256:<id>") with the authorization and redirect
  // handling of the file comment. A redirect target is cached under
  // `redirect_key` (per endpoint) when it is not empty. Non-2xx answers come
  // back as responses; the caller maps them.
  base::Result<Response> Send(Endpoint& ep, const std::string& method, const std::string& path,
                              const std::string& redirect_key,
                              const std::map<std::string, std::string>& headers,
                              const BodySink* sink, const IoContext& ctx);
  std::string BlobPath(const std::string& blob_id) const;

 private:
  explicit RegistryBackend(RegistryOptions options);
  std::optional<Target> CachedRedirect(const std::string& key);
  void SetRedirect(const std::string& key, std::optional<Target> t);

  // A connection to `origin` (an idle one when there is one), and giving
  // one back for reuse.
  base::Result<std::unique_ptr<httplib::Client>> TakeClient(const std::string& origin);
  void ReturnClient(const std::string& origin, std::unique_ptr<httplib::Client> client);

  RegistryOptions options_;
  struct IdleClient {
    std::string origin;
    std::unique_ptr<httplib::Client> client;
    std::chrono::steady_clock::time_point since;
  };
  base::Mutex pool_mu_;
  std::vector<IdleClient> idle_ GUARDED_BY(pool_mu_);  // most recently used last
  // Mirrors in order, the origin last. Fixed after construction.
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  base::Counter* fallbacks_ = nullptr;
  base::Mutex mu_;
  std::map<std::string, Target> redirects_ GUARDED_BY(mu_);
};

// Maps an HTTP status of a blob request to a Status (the one place).
base::Status HttpStatusToStatus(int http_status, const std::string& what);

}  // namespace rfs::storage
