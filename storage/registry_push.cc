#include "storage/registry_push.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <httplib.h>

#include "base/digest.h"
#include "base/logging.h"
#include "base/unique_fd.h"
#include "storage/http_text.h"

namespace rfs::storage {

using base::Result;
using base::Status;

namespace {

bool IsSha256Digest(const std::string& d) {
  return d.size() == 71 && d.rfind("sha256:", 0) == 0 &&
         std::all_of(d.begin() + 7, d.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::chrono::milliseconds Cap(std::chrono::milliseconds want, const base::Deadline& d) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d.Remaining());
  return std::max(std::chrono::milliseconds(1), std::min(want, left));
}

}  // namespace

std::string RegistryPusher::What(const std::string& thing) const {
  return thing + " at " + backend_->options().host + "/" + backend_->options().repository;
}

Result<RegistryPusher::Reply> RegistryPusher::Call(
    const std::string& method, const std::string& path_or_url,
    const std::map<std::string, std::string>& headers, const BlobContent* body,
    uint64_t body_size, const TransferProgress& progress, const IoContext& ctx) {
  RegistryBackend::Endpoint& ep = backend_->origin_endpoint();
  const RegistryOptions& opt = backend_->options();
  std::string origin = ep.origin;
  std::string path = path_or_url;
  if (path_or_url.rfind("http://", 0) == 0 || path_or_url.rfind("https://", 0) == 0) {
    const size_t start = path_or_url.find("://") + 3;
    const size_t slash = path_or_url.find('/', start);
    origin = path_or_url.substr(0, slash);
    path = slash == std::string::npos ? "/" : path_or_url.substr(slash);
    if (origin != ep.origin) {
      // Upload sessions stay on the registry: a Location elsewhere would get
      // the registry's authorization, which must not leak.
      return base::FailedPreconditionError(What("upload"), ": registry sent an upload location "
                                           "on another host");
    }
  } else if (path_or_url.empty() || path_or_url[0] != '/') {
    return base::DataLossError(What("upload"), ": unusable location '", path_or_url, "'");
  }
  for (int attempt = 0;; ++attempt) {
    if (ctx.deadline.Expired()) return base::DeadlineExceededError(What(method), ": deadline passed");
    httplib::Client cli(origin);
    cli.set_follow_location(false);
    auto ct = Cap(opt.connect_timeout, ctx.deadline);
    auto rt = Cap(opt.request_timeout, ctx.deadline);
    cli.set_connection_timeout(ct.count() / 1000, (ct.count() % 1000) * 1000);
    cli.set_read_timeout(rt.count() / 1000, (rt.count() % 1000) * 1000);
    cli.set_write_timeout(rt.count() / 1000, (rt.count() % 1000) * 1000);
    if (origin.rfind("https://", 0) == 0) {
      cli.enable_server_certificate_verification(!opt.skip_verify);
      if (!opt.ca_file.empty()) cli.set_ca_cert_path(opt.ca_file.c_str());
    }
    httplib::Headers h;
    for (const auto& [k, v] : headers) h.emplace(k, v);
    const std::string auth = backend_->CachedAuthorization(ep);
    if (!auth.empty()) h.emplace("Authorization", auth);
    ep.requests->Increment();

    httplib::Result r{nullptr, httplib::Error::Unknown};
    if (method == "HEAD") {
      r = cli.Head(path, h);
    } else if (method == "POST") {
      r = cli.Post(path, h, "", "application/octet-stream");
    } else if (method == "PUT" && body == nullptr) {
      r = cli.Put(path, h, "", "application/octet-stream");
    } else if (method == "PUT") {
      const std::string type =
          headers.count("Content-Type") ? headers.at("Content-Type") : "application/octet-stream";
      h.erase("Content-Type");
      base::UniqueFd fd;
      if (!body->path.empty()) {
        fd = base::UniqueFd(::open(body->path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) {
          return base::NotFoundError("cannot open ", body->path, ": ", std::strerror(errno));
        }
      }
      std::vector<char> buf(body->path.empty() ? 0 : (1u << 20));
      bool read_failed = false;
      httplib::ContentProvider provide = [&](size_t offset, size_t length,
                                             httplib::DataSink& sink) -> bool {
        if (body->path.empty()) {
          const size_t n = std::min(length, body->bytes.size() - offset);
          if (!sink.write(reinterpret_cast<const char*>(body->bytes.data()) + offset, n)) {
            return false;
          }
        } else {
          const size_t want = std::min(length, buf.size());
          ssize_t n = ::pread(fd.get(), buf.data(), want, static_cast<off_t>(offset));
          if (n <= 0) {
            read_failed = true;
            return false;
          }
          if (!sink.write(buf.data(), static_cast<size_t>(n))) return false;
          offset += static_cast<size_t>(n);
        }
        if (progress) progress(std::min<uint64_t>(offset + length, body_size));
        return true;
      };
      r = cli.Put(path, h, static_cast<size_t>(body_size), provide, type);
      if (read_failed) {
        return base::DataLossError("reading ", body->path, ": file shorter than ", body_size,
                                   " bytes");
      }
    } else {
      return base::InternalError("unsupported method ", method);
    }
    if (!r) {
      return base::UnavailableError(What(method + " " + path.substr(0, path.find('?'))),
                                    ": request failed (", httplib::to_string(r.error()), ")");
    }
    Reply reply;
    reply.status = r->status;
    for (const auto& [k, v] : r->headers) reply.headers[AsciiLower(k)] = v;
    if (reply.status == 401 && attempt < 2) {
      auto challenge = reply.headers.find("www-authenticate");
      if (!auth.empty()) backend_->DropAuthorization(ep, auth);
      if (challenge == reply.headers.end()) {
        return base::UnauthenticatedError(What(method), ": 401 without a challenge");
      }
      RETURN_IF_ERROR(backend_->Authenticate(ep, challenge->second, ctx, auth));
      continue;
    }
    return reply;
  }
}

Result<std::optional<uint64_t>> RegistryPusher::StatBlob(const std::string& digest,
                                                         const IoContext& ctx) {
  if (!IsSha256Digest(digest)) {
    return base::InvalidArgumentError("blob digest '", digest, "' is not sha256:<hex>");
  }
  std::optional<uint64_t> size;
  const std::string what = What("blob " + digest);
  Status s = RetryTransient(
      backend_->options().retry, ctx.deadline, [&] { return what; }, [&]() -> Status {
        ASSIGN_OR_RETURN(Reply r, Call("HEAD",
                                       "/v2/" + backend_->options().repository + "/blobs/" + digest,
                                       {}, nullptr, 0, nullptr, ctx));
        if (r.status == 404) {
          size.reset();
          return Status::Ok();
        }
        RETURN_IF_ERROR(HttpStatusToStatus(r.status, what));
        auto cl = r.headers.find("content-length");
        size = cl == r.headers.end() ? 0 : std::strtoull(cl->second.c_str(), nullptr, 10);
        return Status::Ok();
      });
  RETURN_IF_ERROR(s);
  return size;
}

Result<BlobPush> RegistryPusher::TryPushBlob(const std::string& digest, uint64_t size,
                                             const BlobContent& content,
                                             const std::string& mount_from,
                                             const TransferProgress& progress,
                                             const IoContext& ctx) {
  const std::string repo = backend_->options().repository;
  const std::string what = What("blob " + digest);
  std::string post = "/v2/" + repo + "/blobs/uploads/";
  const bool mount = !mount_from.empty() && mount_from != repo;
  if (mount) post += "?mount=" + UrlEncode(digest) + "&from=" + UrlEncode(mount_from);
  ASSIGN_OR_RETURN(Reply opened, Call("POST", post, {}, nullptr, 0, nullptr, ctx));
  if (mount && opened.status == 201) return BlobPush::kMounted;
  if (opened.status != 202) {
    Status s = HttpStatusToStatus(opened.status, what + ": starting the upload");
    return s.ok() ? base::FailedPreconditionError(what, ": starting the upload: http status ",
                                                  opened.status)
                  : s;
  }
  auto loc = opened.headers.find("location");
  if (loc == opened.headers.end() || loc->second.empty()) {
    return base::DataLossError(what, ": upload session without a location");
  }
  std::string put = loc->second;
  put += (put.find('?') == std::string::npos ? "?" : "&");
  put += "digest=" + UrlEncode(digest);
  ASSIGN_OR_RETURN(Reply done,
                   Call("PUT", put, {{"Content-Type", "application/octet-stream"}}, &content,
                        size, progress, ctx));
  if (done.status != 201 && done.status != 204) {
    if (done.status == 400) {
      return base::DataLossError(what, ": the registry rejected the upload (400; digest or size "
                                 "mismatch?)");
    }
    Status s = HttpStatusToStatus(done.status, what + ": upload");
    return s.ok() ? base::FailedPreconditionError(what, ": upload: http status ", done.status) : s;
  }
  auto dcd = done.headers.find("docker-content-digest");
  if (dcd != done.headers.end() && AsciiLower(dcd->second) != digest) {
    return base::DataLossError(what, ": registry stored it as ", dcd->second);
  }
  return BlobPush::kUploaded;
}

Result<BlobPush> RegistryPusher::PushBlob(const std::string& digest, uint64_t size,
                                          const BlobContent& content,
                                          const std::string& mount_from,
                                          const TransferProgress& progress,
                                          const IoContext& ctx) {
  ASSIGN_OR_RETURN(std::optional<uint64_t> have, StatBlob(digest, ctx));
  if (have && (*have == size || *have == 0)) {
    if (progress) progress(size);
    return BlobPush::kExisted;
  }
  BlobPush outcome = BlobPush::kUploaded;
  const std::string what = What("blob " + digest);
  Status s = RetryTransient(
      backend_->options().retry, ctx.deadline, [&] { return what; }, [&]() -> Status {
        ASSIGN_OR_RETURN(outcome, TryPushBlob(digest, size, content, mount_from, progress, ctx));
        return Status::Ok();
      });
  RETURN_IF_ERROR(s);
  if (progress) progress(size);
  return outcome;
}

Status RegistryPusher::PushManifest(const std::string& reference, const std::string& media_type,
                                    base::ByteSpan bytes, const IoContext& ctx) {
  if (reference.empty() || reference.find('/') != std::string::npos ||
      reference.find('?') != std::string::npos) {
    return base::InvalidArgumentError("bad manifest reference '", reference, "'");
  }
  const std::string what = What("manifest " + reference);
  const BlobContent content{"", bytes};
  return RetryTransient(
      backend_->options().retry, ctx.deadline, [&] { return what; }, [&]() -> Status {
        ASSIGN_OR_RETURN(Reply r, Call("PUT",
                                       "/v2/" + backend_->options().repository + "/manifests/" +
                                           reference,
                                       {{"Content-Type", media_type}}, &content, bytes.size(),
                                       nullptr, ctx));
        if (r.status == 201 || r.status == 200 || r.status == 204) return Status::Ok();
        if (r.status == 400) {
          return base::FailedPreconditionError(
              what, ": the registry rejected the manifest (400: invalid, or it names a blob the "
                    "repository lacks)");
        }
        Status s = HttpStatusToStatus(r.status, what);
        return s.ok() ? base::FailedPreconditionError(what, ": http status ", r.status) : s;
      });
}

Status StreamBlob(RegistryBackend& backend, const std::string& digest, uint64_t size,
                  const std::function<Status(base::ByteSpan)>& consume,
                  const TransferProgress& progress, const IoContext& ctx) {
  if (!IsSha256Digest(digest)) {
    return base::InvalidArgumentError("blob digest '", digest, "' is not sha256:<hex>");
  }
  const std::string what = "blob " + digest + " at " + backend.options().host + "/" +
                           backend.options().repository;
  ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, backend.Open(digest.substr(7)));
  auto hasher = base::Hasher::Create(base::DigestAlgo::kSha256);
  constexpr uint64_t kRange = 8u << 20;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kRange, size)));
  for (uint64_t off = 0; off < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kRange, size - off));
    base::MutableByteSpan dst(buf.data(), n);
    Status s = reader->ReadAt(off, dst, ctx);
    if (s.code() == base::StatusCode::kOutOfRange) {
      return base::DataLossError(what, ": shorter than the ", size, " bytes the manifest says");
    }
    RETURN_IF_ERROR(s);
    hasher->Update(base::ByteSpan(buf.data(), n));
    RETURN_IF_ERROR(consume(base::ByteSpan(buf.data(), n)));
    off += n;
    if (progress) progress(off);
  }
  const std::string got = "sha256:" + base::DigestHex(hasher->Finish());
  if (got != digest) {
    return base::DataLossError(what, ": content digest is ", got, " (corrupt or tampered)");
  }
  return Status::Ok();
}

}  // namespace rfs::storage
