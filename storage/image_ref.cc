#include "storage/image_ref.h"

#include <cctype>

namespace rfs::storage {

namespace {

constexpr char kSyntax[] = "want HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One repository path component: alphanumerics joined by '.', '_', "__" or
// runs of '-'.
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (IsLowerAlnum(c[i])) continue;
    if (c[i] == '.') {
      if (!IsLowerAlnum(c[i + 1])) return false;
    } else if (c[i] == '_') {
      if (c[i + 1] == '_') ++i;
      if (!IsLowerAlnum(c[i + 1])) return false;
    } else if (c[i] == '-') {
      while (c[i + 1] == '-') ++i;
      if (!IsLowerAlnum(c[i + 1])) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') return false;
  for (char c : t) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool ValidPort(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v >= 1 && v <= 65535;
}

base::Status CheckHost(std::string_view ref, std::string_view host) {
  std::string_view name = host, port;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) {
      return base::InvalidArgumentError("image reference '", ref, "': bad host '", host, "'");
    }
    for (char c : host.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return base::InvalidArgumentError("image reference '", ref, "': bad host '", host, "'");
      }
    }
    name = host.substr(0, close + 1);
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') {
        return base::InvalidArgumentError("image reference '", ref, "': bad host '", host, "'");
      }
      port = host.substr(close + 2);
      if (!ValidPort(port)) {
        return base::InvalidArgumentError("image reference '", ref, "': bad port in '", host, "'");
      }
    }
    return base::Status::Ok();
  }
  if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
    if (!ValidPort(port)) {
      return base::InvalidArgumentError("image reference '", ref, "': bad port in '", host, "'");
    }
  }
  bool ok = !name.empty() && name.front() != '-' && name.front() != '.' && name.back() != '-' &&
            name.back() != '.';
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.');
  }
  if (!ok) return base::InvalidArgumentError("image reference '", ref, "': bad host '", host, "'");
  if (name.find('.') == std::string_view::npos && port.empty() && name != "localhost") {
    return base::InvalidArgumentError("image reference '", ref, "': '", host,
                                      "' is not a registry host (", kSyntax, ")");
  }
  return base::Status::Ok();
}

bool IsDockerHub(std::string_view host) { return host == "docker.io" || host == "index.docker.io"; }

}  // namespace

std::string ImageReference::ApiHost() const {
  return IsDockerHub(host) ? "registry-1.docker.io" : host;
}

std::string ImageReference::ToString() const {
  std::string s = host + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

base::Result<ImageReference> ParseImageReference(std::string_view ref) {
  if (ref.empty()) return base::InvalidArgumentError("empty image reference (", kSyntax, ")");
  if (ref.size() > 1024) return base::InvalidArgumentError("image reference too long");
  for (char c : ref) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return base::InvalidArgumentError("image reference '", ref,
                                        "' contains white space or control characters");
    }
  }
  if (ref.find("://") != std::string_view::npos) {
    return base::InvalidArgumentError("image reference '", ref, "' must not have a scheme (",
                                      kSyntax, ")");
  }
  ImageReference r;
  std::string_view name = ref;
  if (const size_t at = ref.find('@'); at != std::string_view::npos) {
    name = ref.substr(0, at);
    std::string_view digest = ref.substr(at + 1);
    const size_t colon = digest.find(':');
    if (colon == std::string_view::npos) {
      return base::InvalidArgumentError("image reference '", ref, "': digest '", digest,
                                        "' has no algorithm (want sha256:<64 hex digits>)");
    }
    if (digest.substr(0, colon) != "sha256") {
      return base::InvalidArgumentError("image reference '", ref, "': unsupported digest algorithm '",
                                        digest.substr(0, colon), "' (only sha256)");
    }
    std::string_view hex = digest.substr(colon + 1);
    bool ok = hex.size() == 64;
    for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) {
      return base::InvalidArgumentError("image reference '", ref, "': digest '", digest,
                                        "' is not sha256:<64 lower-case hex digits>");
    }
    r.digest = std::string(digest);
  }
  const size_t slash = name.find('/');
  if (slash == std::string_view::npos) {
    return base::InvalidArgumentError("image reference '", ref, "' has no registry host (",
                                      kSyntax, ")");
  }
  RETURN_IF_ERROR(CheckHost(ref, name.substr(0, slash)));
  r.host = std::string(name.substr(0, slash));
  std::string_view path = name.substr(slash + 1);
  if (const size_t colon = path.rfind(':'); colon != std::string_view::npos) {
    std::string_view tag = path.substr(colon + 1);
    if (!ValidTag(tag)) {
      return base::InvalidArgumentError("image reference '", ref, "': bad tag '", tag,
                                        "' (up to 128 of A-Z a-z 0-9 _ . -, not starting with . "
                                        "or -)");
    }
    r.tag = std::string(tag);
    path = path.substr(0, colon);
  }
  if (path.empty()) {
    return base::InvalidArgumentError("image reference '", ref, "' has no repository (", kSyntax,
                                      ")");
  }
  for (size_t start = 0;;) {
    const size_t end = path.find('/', start);
    std::string_view c = path.substr(start, end == std::string_view::npos ? path.npos : end - start);
    if (!ValidComponent(c)) {
      return base::InvalidArgumentError(
          "image reference '", ref, "': bad repository '", path,
          "' (components of lower-case letters and digits, joined by . _ __ or -)");
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (r.host.size() + 1 + path.size() > 255) {
    return base::InvalidArgumentError("image reference '", ref, "': name longer than 255 bytes");
  }
  r.repository = std::string(path);
  if (IsDockerHub(r.host) && r.repository.find('/') == std::string::npos) {
    r.repository = "library/" + r.repository;
  }
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

}  // namespace rfs::storage
