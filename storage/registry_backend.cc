#include "storage/registry_backend.h"

#include <openssl/evp.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/digest.h"
#include "base/logging.h"
#include "storage/http_text.h"

namespace rfs::storage {

using base::MutexLock;
using base::Result;
using base::Status;

namespace {

std::string Base64Encode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Splits an absolute URL into origin and path; a relative one keeps `base`.
Result<RegistryBackend::Target> ParseUrl(const std::string& url, const std::string& base_origin) {
  RegistryBackend::Target t;
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    if (url.empty() || url[0] != '/') return base::InvalidArgumentError("unusable url");
    t.origin = base_origin;
    t.path = url;
    return t;
  }
  const std::string scheme = AsciiLower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    return base::InvalidArgumentError("unsupported url scheme '", scheme, "'");
  }
  auto path_start = url.find('/', scheme_end + 3);
  t.origin = url.substr(0, path_start);
  t.path = path_start == std::string::npos ? "/" : url.substr(path_start);
  if (t.origin.size() <= scheme_end + 3) return base::InvalidArgumentError("url without host");
  return t;
}

// Parses `Bearer realm="x",service="y"` into the scheme and parameters.
std::pair<std::string, std::map<std::string, std::string>> ParseChallenge(const std::string& h) {
  std::map<std::string, std::string> params;
  size_t sp = h.find(' ');
  std::string scheme = AsciiLower(h.substr(0, sp));
  size_t i = sp == std::string::npos ? h.size() : sp + 1;
  while (i < h.size()) {
    while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
    size_t eq = h.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = AsciiLower(h.substr(i, eq - i));
    i = eq + 1;
    std::string value;
    if (i < h.size() && h[i] == '"') {
      ++i;
      while (i < h.size() && h[i] != '"') {
        if (h[i] == '\\' && i + 1 < h.size()) ++i;
        value.push_back(h[i++]);
      }
      ++i;
    } else {
      while (i < h.size() && h[i] != ',') value.push_back(h[i++]);
    }
    params[key] = value;
  }
  return {scheme, params};
}

// httplib's error names ("Connection", "SSLConnection") as words.
std::string_view Describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "cannot connect";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return "connection failed or timed out reading the response";
    case httplib::Error::Write: return "connection failed sending the request";
    case httplib::Error::SSLConnection: return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts: return "cannot load the CA certificates";
    case httplib::Error::SSLServerVerification: return "TLS certificate verification failed";
    case httplib::Error::Compression: return "response decompression failed";
    default: return "request failed";
  }
}

std::chrono::milliseconds Cap(std::chrono::milliseconds want, const base::Deadline& d) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d.Remaining());
  return std::max(std::chrono::milliseconds(1), std::min(want, left));
}

// Honours Retry-After (seconds, capped at 30) of a 429 or 503 answer when
// the deadline leaves room for it; the retry loop adds its backoff.
void SleepRetryAfter(const RegistryBackend::Response& r, const base::Deadline& deadline) {
  if (r.status != 429 && r.status != 503) return;
  auto ra = r.headers.find("retry-after");
  if (ra == r.headers.end()) return;
  auto wait = std::chrono::seconds(std::clamp<long>(std::atol(ra->second.c_str()), 0, 30));
  if (wait > std::chrono::seconds(0) && deadline.Remaining() > wait) {
    std::this_thread::sleep_for(wait);
  }
}

std::string Sha256Digest(base::ByteSpan data) {
  return "sha256:" + base::DigestHex(base::Sha256(data));
}

}  // namespace

Status HttpStatusToStatus(int code, const std::string& what) {
  if (code >= 200 && code < 300) return Status::Ok();
  switch (code) {
    case 401: return base::UnauthenticatedError(what, ": registry refused the credentials (401)");
    case 403: return base::PermissionDeniedError(what, ": access denied (403)");
    case 404: return base::NotFoundError(what, ": not found (404)");
    case 416: return base::OutOfRangeError(what, ": range not satisfiable (416)");
    case 408:
    case 429: return base::UnavailableError(what, ": registry busy (", code, ")");
    default: break;
  }
  if (code >= 500) return base::UnavailableError(what, ": registry error (", code, ")");
  return base::FailedPreconditionError(what, ": unexpected http status ", code);
}

Result<std::shared_ptr<RegistryBackend>> RegistryBackend::Create(RegistryOptions options) {
  if (options.host.empty() || options.repository.empty()) {
    return base::InvalidArgumentError("registry backend needs a host and a repository");
  }
  if (options.host.find('/') != std::string::npos) {
    return base::InvalidArgumentError("registry host '", options.host, "' must not contain '/'");
  }
  for (const RegistryMirror& m : options.mirrors) {
    if (m.origin.rfind("http://", 0) != 0 && m.origin.rfind("https://", 0) != 0) {
      return base::InvalidArgumentError("mirror '", m.origin, "' must be http:// or https://");
    }
    if (m.host.empty() || m.host.find('/') != std::string::npos) {
      return base::InvalidArgumentError("mirror '", m.origin, "' has a bad host '", m.host, "'");
    }
  }
  return std::shared_ptr<RegistryBackend>(new RegistryBackend(std::move(options)));
}

RegistryBackend::RegistryBackend(RegistryOptions options) : options_(std::move(options)) {
  base::MetricsRegistry& reg = *options_.metrics;
  const char* kHelp = "Registry requests (blobs, manifests) by the role of the host asked.";
  base::Counter* mirror_requests =
      reg.GetCounter("rfs_registry_requests_total", kHelp, {{"role", "mirror"}});
  for (const RegistryMirror& m : options_.mirrors) {
    auto ep = std::make_unique<Endpoint>();
    ep->mirror = true;
    ep->origin = m.origin;
    ep->host = m.host;
    ep->path = m.path;
    ep->query = "?ns=" + UrlEncode(options_.host);
    ep->pull = m.pull;
    ep->resolve = m.resolve;
    ep->skip_verify = m.skip_verify;
    ep->ca_files = m.ca_files;
    ep->requests = mirror_requests;
    endpoints_.push_back(std::move(ep));
  }
  auto origin = std::make_unique<Endpoint>();
  origin->origin = (options_.plain_http ? "http://" : "https://") + options_.host;
  origin->host = options_.host;
  origin->path = "/v2";
  origin->skip_verify = options_.skip_verify;
  if (!options_.ca_file.empty()) origin->ca_files = {options_.ca_file};
  origin->requests = reg.GetCounter("rfs_registry_requests_total", kHelp, {{"role", "origin"}});
  endpoints_.push_back(std::move(origin));
  fallbacks_ = reg.GetCounter("rfs_registry_mirror_fallbacks_total",
                              "Registry requests a mirror failed, passed on to the next host.");
}

std::string RegistryBackend::BlobPath(const std::string& blob_id) const {
  return "/" + options_.repository + "/blobs/sha256:" + blob_id;
}

Status RegistryBackend::TryEndpoints(
    bool blob, const IoContext& ctx,
    const std::function<Status(Endpoint&, bool* connection)>& attempt) {
  Status last;
  for (const auto& ep : endpoints_) {
    if (ep->mirror) {
      if (ctx.after_bad_bytes || !(blob ? ep->pull : ep->resolve)) continue;
      MutexLock lock(&ep->mu);
      if (std::chrono::steady_clock::now() < ep->down_until) continue;
    }
    bool connection = false;
    last = attempt(*ep, &connection);
    if (last.ok() || !ep->mirror) return last;
    if (ctx.deadline.Expired() || last.code() == base::StatusCode::kDeadlineExceeded) {
      return last;
    }
    fallbacks_->Increment();
    if (connection) {
      MutexLock lock(&ep->mu);
      ep->down_until = std::chrono::steady_clock::now() + options_.mirror_retry_after;
    }
    RFS_LOG(kDebug) << "mirror " << ep->origin << " failed, trying the next host: " << last;
  }
  return last;
}

namespace {

// Idle connections kept per backend, and how long one may sit unused (a
// server closes idle connections on its own schedule; a connection found
// closed is reopened, this just avoids holding many descriptors).
constexpr size_t kMaxIdleClients = 16;
constexpr auto kIdleClientLifetime = std::chrono::seconds(30);

}  // namespace

RegistryBackend::~RegistryBackend() = default;

Result<std::unique_ptr<httplib::Client>> RegistryBackend::TakeClient(const std::string& origin) {
  {
    MutexLock lock(&pool_mu_);
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(idle_, [&](const IdleClient& c) { return now - c.since > kIdleClientLifetime; });
    for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
      if (it->origin == origin) {
        std::unique_ptr<httplib::Client> c = std::move(it->client);
        idle_.erase(std::next(it).base());
        return c;
      }
    }
  }
  auto cli = std::make_unique<httplib::Client>(origin);
  cli->set_follow_location(false);
  cli->set_keep_alive(true);
  if (origin.rfind("https://", 0) == 0) {
    // A host's own TLS settings; redirect targets (object storage) get the
    // origin's.
    const Endpoint* tls = endpoints_.back().get();
    for (const auto& ep : endpoints_) {
      if (ep->origin == origin) {
        tls = ep.get();
        break;
      }
    }
    cli->enable_server_certificate_verification(!tls->skip_verify);
    if (tls->ca_files.size() == 1) {
      cli->set_ca_cert_path(tls->ca_files.front().c_str());
    } else if (tls->ca_files.size() > 1) {
      X509_STORE* store = X509_STORE_new();
      for (const auto& f : tls->ca_files) {
        if (X509_STORE_load_locations(store, f.c_str(), nullptr) != 1) {
          X509_STORE_free(store);
          return base::UnavailableError(origin, ": cannot load the CA certificates ", f);
        }
      }
      cli->set_ca_cert_store(store);  // the client owns it
    }
  }
  return cli;
}

void RegistryBackend::ReturnClient(const std::string& origin,
                                   std::unique_ptr<httplib::Client> client) {
  MutexLock lock(&pool_mu_);
  if (idle_.size() >= kMaxIdleClients) idle_.erase(idle_.begin());  // the least recently used
  idle_.push_back({origin, std::move(client), std::chrono::steady_clock::now()});
}

Result<RegistryBackend::Response> RegistryBackend::Request(
    const std::string& method, const Target& target,
    const std::map<std::string, std::string>& headers, const BodySink* sink,
    const IoContext& ctx) {
  if (ctx.deadline.Expired()) return base::DeadlineExceededError("deadline passed");
  ASSIGN_OR_RETURN(std::unique_ptr<httplib::Client> client, TakeClient(target.origin));
  httplib::Client& cli = *client;
  auto ct = Cap(options_.connect_timeout, ctx.deadline);
  auto rt = Cap(options_.request_timeout, ctx.deadline);
  cli.set_connection_timeout(ct.count() / 1000, (ct.count() % 1000) * 1000);
  cli.set_read_timeout(rt.count() / 1000, (rt.count() % 1000) * 1000);
  cli.set_write_timeout(rt.count() / 1000, (rt.count() % 1000) * 1000);
  httplib::Headers h;
  for (const auto& [k, v] : headers) h.emplace(k, v);
  Response resp;
  bool deliver = false;
  bool deadline_hit = false;
  auto on_response = [&](const httplib::Response& r) {
    resp.status = r.status;
    for (const auto& [k, v] : r.headers) resp.headers[AsciiLower(k)] = v;
    deliver = sink != nullptr && r.status >= 200 && r.status < 300;
    if (deliver && sink->start && !sink->start(resp)) return false;
    return true;
  };
  auto on_body = [&](const char* data, size_t n) {
    // Read timeouts bound each read, not a body that trickles in.
    if (ctx.deadline.Expired()) {
      deadline_hit = true;
      return false;
    }
    resp.body_bytes += n;
    if (deliver) return sink->data(data, n);
    return resp.body_bytes <= (64u << 10);  // error bodies are small; stop a flood
  };
  httplib::Result r{nullptr, httplib::Error::Unknown};
  if (method == "GET") {
    r = cli.Get(target.path, h, on_response, on_body);
  } else if (method == "HEAD") {
    r = cli.Head(target.path, h);
    if (r) on_response(*r);
  } else {
    return base::InternalError("unsupported method ", method);
  }
  if (deadline_hit) {
    return base::DeadlineExceededError(target.origin, ": deadline passed while receiving ",
                                       target.path.substr(0, target.path.find('?')));
  }
  if (!r) {
    // Canceled means the sink stopped reading: the caller decides.
    if (r.error() == httplib::Error::Canceled && resp.status != 0) return resp;
    if (ctx.deadline.Expired()) {
      return base::DeadlineExceededError(target.origin, ": deadline passed during the request");
    }
    return base::UnavailableError(target.origin, ": ", Describe(r.error()));
  }
  // Answered and read to the end (cut bodies and failures returned above
  // and closed their connection): the connection can serve the next request.
  ReturnClient(target.origin, std::move(client));
  return resp;
}

std::string RegistryBackend::CachedAuthorization(Endpoint& ep) {
  MutexLock lock(&ep.mu);
  if (!ep.authorization.empty() && std::chrono::steady_clock::now() >= ep.auth_expiry) {
    ep.authorization.clear();
  }
  return ep.authorization;
}

void RegistryBackend::DropAuthorization(Endpoint& ep, const std::string& failed) {
  MutexLock lock(&ep.mu);
  if (ep.authorization == failed) ep.authorization.clear();
}

std::optional<RegistryBackend::Target> RegistryBackend::CachedRedirect(const std::string& id) {
  MutexLock lock(&mu_);
  auto it = redirects_.find(id);
  if (it == redirects_.end()) return std::nullopt;
  return it->second;
}

void RegistryBackend::SetRedirect(const std::string& id, std::optional<Target> t) {
  MutexLock lock(&mu_);
  if (t) {
    redirects_[id] = *t;
  } else {
    redirects_.erase(id);
  }
}

Status RegistryBackend::Authenticate(Endpoint& ep, const std::string& challenge,
                                     const IoContext& ctx, const std::string& failed) {
  MutexLock single_flight(&ep.auth_mu);
  if (const std::string now = CachedAuthorization(ep); !now.empty() && now != failed) {
    return Status::Ok();  // answered by another caller while we waited
  }
  auto [scheme, params] = ParseChallenge(challenge);
  std::optional<Credential> cred;
  if (options_.credentials != nullptr) {
    ASSIGN_OR_RETURN(cred, options_.credentials->Get(ep.host));
  }
  const std::string what = (ep.mirror ? "mirror " : "registry ") + ep.host;
  if (scheme == "basic") {
    if (!cred || cred->username.empty()) {
      return base::UnauthenticatedError(what, ": requires credentials (basic auth), none found");
    }
    MutexLock lock(&ep.mu);
    ep.authorization = "Basic " + Base64Encode(cred->username + ":" + cred->password);
    ep.auth_expiry = std::chrono::steady_clock::time_point::max();
    return Status::Ok();
  }
  if (scheme != "bearer") {
    return base::UnauthenticatedError(what, ": unsupported auth scheme '", scheme, "'");
  }
  const std::string realm = params["realm"];
  if (realm.empty()) return base::UnauthenticatedError(what, ": bearer challenge without realm");
  ASSIGN_OR_RETURN(Target token_target, ParseUrl(realm, ep.origin));
  const std::string scope =
      params.count("scope") ? params["scope"] : "repository:" + options_.repository + ":pull";
  const std::string service = params["service"];

  // GET realm?service=..&scope=.. (with basic credentials when we have them).
  std::string body;
  BodySink sink;
  sink.start = [&](const Response&) {
    body.clear();
    return true;
  };
  sink.data = [&](const char* d, size_t n) {
    if (body.size() + n > (1 << 20)) return false;  // a token response is small
    body.append(d, n);
    return true;
  };
  std::map<std::string, std::string> headers;
  if (cred && !cred->username.empty()) {
    headers["Authorization"] = "Basic " + Base64Encode(cred->username + ":" + cred->password);
  }
  Target get = token_target;
  get.path += (get.path.find('?') == std::string::npos ? "?" : "&");
  get.path += "service=" + UrlEncode(service) + "&scope=" + UrlEncode(scope) +
              "&client_id=rafs-snapshotter";
  ASSIGN_OR_RETURN(Response r, Request("GET", get, headers, &sink, ctx));
  if (r.status != 200) {
    Status s = HttpStatusToStatus(r.status, "token endpoint of " + what);
    if (r.status == 401 || r.status == 403) {
      return base::UnauthenticatedError("token endpoint of ", what, " refused the credentials (",
                                        r.status, ")");
    }
    return s.ok() ? base::UnauthenticatedError("token endpoint of ", what, ": status ", r.status)
                  : s;
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  std::string token;
  int64_t expires_in = 60;
  if (!j.is_discarded() && j.is_object()) {
    for (const char* k : {"token", "access_token"}) {
      if (j.contains(k) && j[k].is_string() && !j[k].get<std::string>().empty()) {
        token = j[k].get<std::string>();
        break;
      }
    }
    if (j.contains("expires_in") && j["expires_in"].is_number_integer()) {
      expires_in = std::max<int64_t>(j["expires_in"].get<int64_t>(), 1);
    }
  }
  if (token.empty()) {
    return base::UnauthenticatedError("token endpoint of ", what, " returned no token");
  }
  MutexLock lock(&ep.mu);
  ep.authorization = "Bearer " + token;
  // Refresh a little early so a token does not expire in flight.
  ep.auth_expiry = std::chrono::steady_clock::now() +
                 std::chrono::seconds(expires_in > 30 ? expires_in - 20 : expires_in);
  return Status::Ok();
}

Result<RegistryBackend::Response> RegistryBackend::Send(
    Endpoint& ep, const std::string& method, const std::string& path,
    const std::string& blob_key, const std::map<std::string, std::string>& headers,
    const BodySink* sink, const IoContext& ctx) {
  ep.requests->Increment();
  // Redirects are cached per host: a mirror's storage is not the origin's.
  const std::string redirect_key = blob_key.empty() ? "" : ep.origin + " " + blob_key;
  if (!redirect_key.empty()) {
    if (auto redirect = CachedRedirect(redirect_key)) {
      auto r = Request(method, *redirect, headers, sink, ctx);
      if (r.ok() && r->status >= 200 && r->status < 300) return r;
      // Expired signature or storage trouble: back through the registry
      // (the sink restarts with the next response).
      SetRedirect(redirect_key, std::nullopt);
    }
  }
  const Target target{ep.origin, ep.path + path + ep.query};
  const std::string what = (ep.mirror ? "mirror " : "registry ") + ep.host;
  for (int attempt = 0;; ++attempt) {
    std::map<std::string, std::string> h = headers;
    const std::string auth = CachedAuthorization(ep);
    if (!auth.empty()) h["Authorization"] = auth;
    ASSIGN_OR_RETURN(Response r, Request(method, target, h, sink, ctx));
    if (r.status == 401 && attempt < 2) {
      auto challenge = r.headers.find("www-authenticate");
      if (!auth.empty()) {
        // Stale credentials (or a misleading challenge answering them):
        // drop them and ask again, with what another caller may have
        // fetched meanwhile, else without, to get the real challenge.
        DropAuthorization(ep, auth);
        if (attempt == 0) continue;
      }
      if (challenge == r.headers.end()) {
        return base::UnauthenticatedError(what, ": 401 without a challenge");
      }
      RETURN_IF_ERROR(Authenticate(ep, challenge->second, ctx, auth));
      continue;
    }
    if (r.status >= 300 && r.status < 400 && r.status != 304) {
      auto loc = r.headers.find("location");
      if (loc == r.headers.end()) return base::DataLossError(what, ": redirect without location");
      ASSIGN_OR_RETURN(Target t, ParseUrl(loc->second, target.origin));
      if (!redirect_key.empty()) SetRedirect(redirect_key, t);
      // Blob storage gets no registry authorization.
      auto rr = Request(method, t, headers, sink, ctx);
      if (!redirect_key.empty() && (!rr.ok() || rr->status < 200 || rr->status >= 300)) {
        SetRedirect(redirect_key, std::nullopt);
      }
      return rr;
    }
    return r;
  }
}

Result<RegistryBackend::Manifest> RegistryBackend::GetManifest(const std::string& reference,
                                                               const IoContext& ctx,
                                                               uint64_t max_bytes) {
  const std::string what = "manifest " + options_.host + "/" + options_.repository +
                           (reference.rfind("sha256:", 0) == 0 ? "@" : ":") + reference;
  if (reference.empty() || reference.find('/') != std::string::npos ||
      reference.find('?') != std::string::npos || reference.find('#') != std::string::npos) {
    return base::InvalidArgumentError("bad manifest reference '", reference, "'");
  }
  if (reference.find(':') != std::string::npos && reference.rfind("sha256:", 0) != 0) {
    // Only sha256 digests are understood; a tag never has a colon.
    return base::InvalidArgumentError(what, ": unsupported digest algorithm");
  }
  const std::map<std::string, std::string> headers = {
      {"Accept",
       "application/vnd.oci.image.index.v1+json, "
       "application/vnd.oci.image.manifest.v1+json, "
       "application/vnd.docker.distribution.manifest.list.v2+json, "
       "application/vnd.docker.distribution.manifest.v2+json"}};
  Manifest m;
  Status verdict;
  Status s = RetryTransient(
      options_.retry, ctx.deadline, [&] { return what; },
      [&]() -> Status {
        return TryEndpoints(false, ctx, [&](Endpoint& ep, bool* connection) -> Status {
        bool too_big = false;
        BodySink sink;
        sink.start = [&](const Response&) {
          m.bytes.clear();
          too_big = false;
          return true;
        };
        sink.data = [&](const char* d, size_t n) {
          if (m.bytes.size() + n > max_bytes) {
            too_big = true;
            return false;
          }
          m.bytes.insert(m.bytes.end(), d, d + n);
          return true;
        };
        Result<Response> sent =
            Send(ep, "GET", "/" + options_.repository + "/manifests/" + reference, "", headers,
                 &sink, ctx);
        if (!sent.ok()) {
          *connection = sent.status().code() == base::StatusCode::kUnavailable;
          return sent.status();
        }
        const Response& r = *sent;
        if (!ep.mirror) SleepRetryAfter(r, ctx.deadline);
        if (r.status != 200) {
          if (r.status >= 200 && r.status < 300) {
            return base::FailedPreconditionError(what, ": unexpected http status ", r.status);
          }
          return HttpStatusToStatus(r.status, what);
        }
        if (too_big) {
          return base::ResourceExhaustedError(what, ": larger than the limit of ", max_bytes,
                                              " bytes");
        }
        auto ct = r.headers.find("content-type");
        m.media_type = ct == r.headers.end() ? "" : ct->second.substr(0, ct->second.find(';'));
        while (!m.media_type.empty() && m.media_type.back() == ' ') m.media_type.pop_back();
        m.digest = Sha256Digest(m.bytes);
        auto dcd = r.headers.find("docker-content-digest");
        if (dcd != r.headers.end() && dcd->second.rfind("sha256:", 0) == 0 &&
            AsciiLower(dcd->second) != m.digest) {
          // The registry computed it over what it meant to send.
          return base::DataLossError(what, ": body does not match Docker-Content-Digest ",
                                     dcd->second, " (got ", m.digest, ")");
        }
        if (reference.rfind("sha256:", 0) == 0 && AsciiLower(reference) != m.digest) {
          return base::DataLossError(what, ": content digest is ", m.digest);
        }
        return Status::Ok();
        });
      });
  RETURN_IF_ERROR(s);
  return m;
}

namespace {

class RegistryBlobReader final : public BlobReader {
 public:
  RegistryBlobReader(std::shared_ptr<RegistryBackend> backend, std::string id)
      : backend_(std::move(backend)), id_(std::move(id)) {}
  const std::string& blob_id() const override { return id_; }

  Result<uint64_t> Size() override {
    {
      MutexLock lock(&mu_);
      if (size_ != 0) return size_;
    }
    uint64_t n = 0;
    Status found = backend_->TryEndpoints(
        true, IoContext{}, [&](RegistryBackend::Endpoint& ep, bool* connection) -> Status {
          Result<RegistryBackend::Response> r = Fetch(ep, "HEAD", {}, nullptr, IoContext{});
          if (!r.ok()) {
            *connection = r.status().code() == base::StatusCode::kUnavailable;
            return r.status();
          }
          RETURN_IF_ERROR(HttpStatusToStatus(r->status, What()));
          auto it = r->headers.find("content-length");
          if (it == r->headers.end()) return base::DataLossError(What(), ": no content-length");
          n = std::strtoull(it->second.c_str(), nullptr, 10);
          return Status::Ok();
        });
    RETURN_IF_ERROR(found);
    MutexLock lock(&mu_);
    size_ = n;
    return n;
  }

 private:
  std::string What() const { return "blob " + id_ + " at " + backend_->options().host; }

  Result<RegistryBackend::Response> Fetch(RegistryBackend::Endpoint& ep, const std::string& method,
                                          const std::map<std::string, std::string>& headers,
                                          const RegistryBackend::BodySink* sink,
                                          const IoContext& ctx) {
    return backend_->Send(ep, method, backend_->BlobPath(id_), id_, headers, sink, ctx);
  }

  base::Status TryReadAt(uint64_t offset, base::MutableByteSpan dst,
                         const IoContext& ctx) override {
    if (dst.empty()) return Status::Ok();
    return backend_->TryEndpoints(
        true, ctx, [&](RegistryBackend::Endpoint& ep, bool* connection) {
          return TryReadFrom(ep, offset, dst, ctx, connection);
        });
  }

  // One request to one host.
  base::Status TryReadFrom(RegistryBackend::Endpoint& ep, uint64_t offset,
                           base::MutableByteSpan dst, const IoContext& ctx, bool* connection) {
    const uint64_t last = offset + dst.size() - 1;
    size_t got = 0;
    bool overlong = false;
    uint64_t skip = 0;   // 200 answers carry the whole blob: bytes before offset
    bool whole = false;  // reading a 200 answer
    RegistryBackend::BodySink sink;
    const std::string want_range =
        "bytes " + std::to_string(offset) + "-" + std::to_string(last) + "/";
    sink.start = [&](const RegistryBackend::Response& head) {
      got = 0;
      overlong = false;
      whole = head.status == 200;
      skip = offset;
      // Bytes under a Content-Range for other bytes are not even read (the
      // answer is judged below); readers may use bytes as they arrive.
      auto cr = head.headers.find("content-range");
      return whole || (cr != head.headers.end() && cr->second.rfind(want_range, 0) == 0);
    };
    sink.data = [&](const char* d, size_t n) {
      if (whole) {
        // The server ignored the range: keep [offset, offset + size) of the
        // full body and stop reading once we have it.
        const size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, n));
        skip -= drop;
        const size_t take = std::min(n - drop, dst.size() - got);
        std::memcpy(dst.data() + got, d + drop, take);
        got += take;
        if (take > 0 && ctx.on_progress != nullptr) (*ctx.on_progress)(got);
        return got < dst.size();
      }
      if (n > dst.size() - got) {
        overlong = true;
        return false;
      }
      std::memcpy(dst.data() + got, d, n);
      got += n;
      if (ctx.on_progress != nullptr) (*ctx.on_progress)(got);
      return true;
    };
    std::map<std::string, std::string> headers = {
        {"Range", "bytes=" + std::to_string(offset) + "-" + std::to_string(last)}};
    Result<RegistryBackend::Response> sent = Fetch(ep, "GET", headers, &sink, ctx);
    if (!sent.ok()) {
      *connection = sent.status().code() == base::StatusCode::kUnavailable;
      return sent.status();
    }
    const RegistryBackend::Response& r = *sent;
    // A mirror's Retry-After is not worth waiting for: the next host is.
    if (!ep.mirror) SleepRetryAfter(r, ctx.deadline);
    if (r.status == 200) {
      if (got != dst.size()) {
        return base::OutOfRangeError(What(), ": range [", offset, ", +", dst.size(),
                                     ") passes the end of the blob");
      }
      return Status::Ok();
    }
    if (r.status != 206) return HttpStatusToStatus(r.status, What());
    auto cr = r.headers.find("content-range");
    const std::string& want = want_range;
    if (cr == r.headers.end() || cr->second.rfind(want, 0) != 0) {
      return base::DataLossError(What(), ": content-range '",
                                 cr == r.headers.end() ? "" : cr->second, "' does not match ",
                                 want);
    }
    // "bytes a-b/total": a range that passes the total the server itself
    // states is a lie about the blob, not a transient fault.
    const std::string total = cr->second.substr(want.size());
    if (!total.empty() && total != "*" &&
        std::all_of(total.begin(), total.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        last >= std::strtoull(total.c_str(), nullptr, 10)) {
      return base::DataLossError(What(), ": content-range '", cr->second,
                                 "' passes the blob's size");
    }
    if (overlong) return base::DataLossError(What(), ": response longer than the range");
    if (got != dst.size()) {
      // Cut mid-body: transient.
      return base::UnavailableError(What(), ": response ended after ", got, " of ", dst.size(),
                                    " bytes");
    }
    return Status::Ok();
  }

  std::shared_ptr<RegistryBackend> backend_;
  std::string id_;
  base::Mutex mu_;
  uint64_t size_ GUARDED_BY(mu_) = 0;
};

}  // namespace

Result<std::unique_ptr<BlobReader>> RegistryBackend::Open(const std::string& blob_id) {
  if (blob_id.size() != 64 ||
      !std::all_of(blob_id.begin(), blob_id.end(),
                   [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    return base::InvalidArgumentError("blob id '", blob_id, "' is not a sha256 hex digest");
  }
  auto reader = std::make_unique<RegistryBlobReader>(shared_from_this(), blob_id);
  reader->set_retry_policy(options_.retry);
  return std::unique_ptr<BlobReader>(std::move(reader));
}

}  // namespace rfs::storage
