#include "storage/credentials.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/logging.h"

namespace rfs::storage {

using base::Result;

std::string NormalizeRegistryHost(const std::string& host_or_url) {
  std::string h = host_or_url;
  if (auto p = h.find("://"); p != std::string::npos) h = h.substr(p + 3);
  if (auto p = h.find('/'); p != std::string::npos) h = h.substr(0, p);
  if (h == "docker.io" || h == "registry-1.docker.io" || h == "index.docker.io") {
    return "index.docker.io";
  }
  return h;
}

void StaticCredentials::Set(const std::string& host, Credential c) {
  base::MutexLock lock(&mu_);
  by_host_[NormalizeRegistryHost(host)] = std::move(c);
}

Result<std::optional<Credential>> StaticCredentials::Get(const std::string& host) {
  base::MutexLock lock(&mu_);
  auto it = by_host_.find(NormalizeRegistryHost(host));
  if (it == by_host_.end()) return std::optional<Credential>();
  return std::optional<Credential>(it->second);
}

namespace {

Result<std::string> Base64Decode(const std::string& in) {
  std::string out(in.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0 || in.size() % 4 != 0) return base::InvalidArgumentError("bad base64 in auth");
  size_t pad = 0;
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

Result<std::unique_ptr<DockerConfigCredentials>> DockerConfigCredentials::Load(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::make_unique<DockerConfigCredentials>();
  std::stringstream ss;
  ss << in.rdbuf();
  auto r = Parse(ss.str());
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

Result<std::unique_ptr<DockerConfigCredentials>> DockerConfigCredentials::Parse(
    const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return base::InvalidArgumentError("docker config: not a json object");
  }
  auto out = std::make_unique<DockerConfigCredentials>();
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return out;
  for (auto it = auths->begin(); it != auths->end(); ++it) {
    if (!it->is_object()) continue;
    const nlohmann::json& e = *it;
    Credential c;
    auto str = [&](const char* k) {
      auto f = e.find(k);
      return f != e.end() && f->is_string() ? f->get<std::string>() : std::string();
    };
    if (std::string a = str("auth"); !a.empty()) {
      auto dec = Base64Decode(a);
      if (!dec.ok()) continue;  // incomplete entries are ignored
      auto colon = dec->find(':');
      if (colon == std::string::npos) continue;
      c.username = dec->substr(0, colon);
      c.password = dec->substr(colon + 1);
    }
    if (c.username.empty()) {
      c.username = str("username");
      c.password = str("password");
    }
    c.identity_token = str("identitytoken");
    if (c.username.empty() && c.identity_token.empty()) continue;
    out->by_host_[NormalizeRegistryHost(it.key())] = std::move(c);
  }
  return out;
}

Result<std::optional<Credential>> DockerConfigCredentials::Get(const std::string& host) {
  auto it = by_host_.find(NormalizeRegistryHost(host));
  if (it == by_host_.end()) return std::optional<Credential>();
  return std::optional<Credential>(it->second);
}

Result<std::optional<Credential>> DockerConfigFile::Get(const std::string& host) {
  base::MutexLock l(&mu_);
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    current_.reset();  // removed: no credentials
    loaded_ = false;
    return std::optional<Credential>();
  }
  const int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (!loaded_ || st.st_ino != ino_ || static_cast<uint64_t>(st.st_size) != size_ ||
      mtime != mtime_ns_) {
    Result<std::unique_ptr<DockerConfigCredentials>> fresh = DockerConfigCredentials::Load(path_);
    if (fresh.ok()) {
      current_ = std::move(*fresh);
      loaded_ = true;
      ino_ = st.st_ino;
      size_ = static_cast<uint64_t>(st.st_size);
      mtime_ns_ = mtime;
    } else if (current_ == nullptr) {
      return fresh.status();
    } else {
      RFS_LOG(kWarning) << "keeping the last good credentials: " << fresh.status();
    }
  }
  if (current_ == nullptr) return std::optional<Credential>();
  return current_->Get(host);
}

}  // namespace rfs::storage
