#include "test/support/fault_proxy.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <sstream>

namespace rfs::testing {

namespace {

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Base64(const std::string& in) {
  static const char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out.push_back(kTable[(v >> k) & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {kTable[(v >> 18) & 63], kTable[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {kTable[(v >> 18) & 63], kTable[(v >> 12) & 63], kTable[(v >> 6) & 63], '='};
  }
  return out;
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
bool SendAll(int fd, const std::string& s) { return SendAll(fd, s.data(), s.size()); }

// Reads up to and including the blank line that ends a message head; extra
// bytes read past it go to *rest.
bool ReadHead(int fd, std::string* head, std::string* rest) {
  std::string in;
  char buf[4096];
  while (in.find("\r\n\r\n") == std::string::npos) {
    if (in.size() > (64u << 10)) return false;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in.append(buf, static_cast<size_t>(n));
  }
  const size_t end = in.find("\r\n\r\n") + 4;
  *head = in.substr(0, end);
  *rest = in.substr(end);
  return true;
}

// Header lines of a head (after its first line), names lower-cased, order kept.
std::vector<std::pair<std::string, std::string>> ParseHeaders(const std::string& head,
                                                              std::string* first_line) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream is(head);
  std::string line;
  std::getline(is, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  *first_line = line;
  while (std::getline(is, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    out.emplace_back(Lower(line.substr(0, colon)), v);
  }
  return out;
}

std::string Get(const std::vector<std::pair<std::string, std::string>>& h, const std::string& k) {
  for (const auto& [name, value] : h) {
    if (name == k) return value;
  }
  return "";
}

bool HopByHop(const std::string& name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "te" || name == "upgrade" || name == "transfer-encoding" || name == "host" ||
         name == "content-length";
}

std::string KindName(Fault::Kind k) {
  switch (k) {
    case Fault::Kind::kNone: return "";
    case Fault::Kind::kStatus: return "status";
    case Fault::Kind::kCutBody: return "cut_body";
    case Fault::Kind::kShortBody: return "short_body";
    case Fault::Kind::kLongBody: return "long_body";
    case Fault::Kind::kWrongContentRange: return "wrong_content_range";
    case Fault::Kind::kFlipByte: return "flip_byte";
    case Fault::Kind::kDelayHeaders: return "delay_headers";
    case Fault::Kind::kSlowBody: return "slow_body";
    case Fault::Kind::kUnauthorized: return "unauthorized";
    case Fault::Kind::kRedirect: return "redirect";
  }
  return "?";
}

std::string Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 307: return "Temporary Redirect";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

std::string SimpleResponse(int status, const std::vector<std::pair<std::string, std::string>>& h,
                           const std::string& body) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n";
  for (const auto& [k, v] : h) out += k + ": " + v + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  return out + body;
}

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

base::Result<std::unique_ptr<FaultProxy>> FaultProxy::Start(Options options) {
  const size_t colon = options.upstream.rfind(':');
  if (colon == std::string::npos || options.upstream.substr(0, colon) != "127.0.0.1") {
    return base::InvalidArgumentError("fault proxy upstream must be 127.0.0.1:PORT");
  }
  std::unique_ptr<FaultProxy> p(new FaultProxy(std::move(options)));
  p->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::listen(p->listen_fd_, 128) != 0) {
    return base::ErrnoToStatus(errno, "fault proxy listen");
  }
  p->port_ = ntohs(a.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

FaultProxy::~FaultProxy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
}

void FaultProxy::AddRule(FaultRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back(Active{std::move(rule), 0, 0});
}

void FaultProxy::ClearRules() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

void FaultProxy::ExpireTokens() {
  std::lock_guard<std::mutex> lock(mu_);
  valid_tokens_.clear();
}

std::vector<FaultProxy::Seen> FaultProxy::Requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

int FaultProxy::Count(const std::string& part) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(std::count_if(log_.begin(), log_.end(), [&](const Seen& s) {
    return s.path.rfind("/token", 0) != 0 && s.path.find(part) != std::string::npos;
  }));
}

bool FaultProxy::Wait(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !stop_cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void FaultProxy::AcceptLoop() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stop_) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FaultProxy::Serve(int client) {
  int upstream = -1;
  auto track = [&](int fd, bool add) {
    std::lock_guard<std::mutex> lock(mu_);
    if (add) {
      open_fds_.push_back(fd);
    } else {
      open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
    }
  };
  struct Closer {
    std::function<void()> f;
    ~Closer() { f(); }
  } closer{[&] {
    if (upstream >= 0) {
      track(upstream, false);
      ::close(upstream);
    }
    track(client, false);
    ::close(client);
  }};

  std::string head, rest;
  if (!ReadHead(client, &head, &rest)) return;
  std::string request_line;
  auto headers = ParseHeaders(head, &request_line);
  std::istringstream rl(request_line);
  Seen seen;
  std::string version;
  rl >> seen.method >> seen.path >> version;
  for (const auto& [k, v] : headers) seen.headers[k] = v;
  // A request body (pushes normally go straight to the registry).
  const uint64_t body_len = std::strtoull(Get(headers, "content-length").c_str(), nullptr, 10);
  while (rest.size() < body_len) {
    char buf[65536];
    ssize_t n = ::recv(client, buf, sizeof(buf), 0);
    if (n <= 0) return;
    rest.append(buf, static_cast<size_t>(n));
  }
  const std::string path = seen.path.substr(0, seen.path.find('?'));

  // Token front.
  const std::string challenge_repo = [&] {
    if (path.rfind("/v2/", 0) != 0) return std::string();
    for (const char* part : {"/blobs/", "/manifests/", "/tags/"}) {
      const size_t at = path.find(part);
      if (at != std::string::npos) return path.substr(4, at - 4);
    }
    return std::string();
  }();
  const std::string challenge = "Bearer realm=\"" + origin() +
                                "/token\",service=\"fault-proxy\",scope=\"repository:" +
                                challenge_repo + ":pull\"";
  if (options_.bearer_tokens && path == "/token") {
    token_requests_++;
    {
      std::lock_guard<std::mutex> lock(mu_);
      log_.push_back(seen);
    }
    if (!options_.token_user.empty() &&
        Get(headers, "authorization") !=
            "Basic " + Base64(options_.token_user + ":" + options_.token_password)) {
      SendAll(client, SimpleResponse(401, {}, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}"));
      return;
    }
    std::string token;
    {
      std::lock_guard<std::mutex> lock(mu_);
      token = "tok-" + std::to_string(++next_token_);
      valid_tokens_.push_back(token);
    }
    SendAll(client, SimpleResponse(200, {{"Content-Type", "application/json"}},
                                   "{\"token\":\"" + token + "\",\"expires_in\":300}"));
    return;
  }

  // The plan.
  Fault fault;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool chosen = false;
    for (Active& a : rules_) {
      if (!a.rule.method.empty() && a.rule.method != seen.method) continue;
      if (!a.rule.path_contains.empty() && seen.path.find(a.rule.path_contains) == std::string::npos) {
        continue;
      }
      ++a.seen;
      if (!chosen && a.seen > a.rule.skip && (a.rule.times < 0 || a.applied < a.rule.times)) {
        ++a.applied;
        fault = a.rule.fault;
        chosen = true;
      }
    }
    seen.fault = KindName(fault.kind);
    log_.push_back(seen);
  }
  if (fault.kind != Fault::Kind::kNone) faults_applied_++;

  if (options_.bearer_tokens && path.rfind("/v2/", 0) == 0) {
    const std::string auth = Get(headers, "authorization");
    bool ok = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& t : valid_tokens_) ok = ok || auth == "Bearer " + t;
    }
    if (!ok) {
      SendAll(client, SimpleResponse(401, {{"WWW-Authenticate", challenge}},
                                     "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}"));
      return;
    }
  }

  switch (fault.kind) {
    case Fault::Kind::kStatus: {
      std::vector<std::pair<std::string, std::string>> h;
      if (!fault.retry_after.empty()) h.emplace_back("Retry-After", fault.retry_after);
      SendAll(client, SimpleResponse(fault.status, h, "{\"errors\":[{\"code\":\"INJECTED\"}]}"));
      return;
    }
    case Fault::Kind::kUnauthorized: {
      std::vector<std::pair<std::string, std::string>> h;
      if (options_.bearer_tokens) h.emplace_back("WWW-Authenticate", challenge);
      SendAll(client, SimpleResponse(401, h, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}"));
      return;
    }
    case Fault::Kind::kRedirect:
      SendAll(client, SimpleResponse(307, {{"Location", fault.location}}, ""));
      return;
    case Fault::Kind::kSlowBody: break;
    default:
      if (fault.delay.count() > 0 && !Wait(fault.delay)) return;
      break;
  }

  // Forward.
  const int up_port = std::atoi(options_.upstream.substr(options_.upstream.rfind(':') + 1).c_str());
  upstream = ConnectLoopback(up_port);
  if (upstream < 0) {
    SendAll(client, SimpleResponse(502, {}, ""));
    return;
  }
  track(upstream, true);
  std::string out = seen.method + " " + seen.path + " HTTP/1.1\r\nHost: " + options_.upstream +
                    "\r\n";
  for (const auto& [k, v] : headers) {
    if (HopByHop(k)) continue;
    if (k == "authorization" && options_.bearer_tokens) continue;  // ours, not upstream's
    out += k + ": " + v + "\r\n";
  }
  if (body_len > 0) out += "Content-Length: " + std::to_string(body_len) + "\r\n";
  out += "Connection: close\r\n\r\n" + rest.substr(0, body_len);
  if (!SendAll(upstream, out)) return;

  std::string uphead, uprest;
  if (!ReadHead(upstream, &uphead, &uprest)) return;
  std::string status_line;
  auto uph = ParseHeaders(uphead, &status_line);
  int status = 0;
  {
    std::istringstream sl(status_line);
    std::string v;
    sl >> v >> status;
  }
  const bool no_body = seen.method == "HEAD" || status == 204 || status == 304 ||
                       (status >= 100 && status < 200);
  // The body: streamed by Content-Length, or (chunked, unframed) read whole.
  bool known_length = false;
  uint64_t length = 0;
  std::string whole;
  bool buffered = false;
  if (!no_body) {
    if (Lower(Get(uph, "transfer-encoding")).find("chunked") != std::string::npos) {
      std::string raw = uprest;
      char buf[65536];
      for (;;) {
        ssize_t n = ::recv(upstream, buf, sizeof(buf), 0);
        if (n <= 0) break;
        raw.append(buf, static_cast<size_t>(n));
      }
      size_t pos = 0;
      for (;;) {
        const size_t eol = raw.find("\r\n", pos);
        if (eol == std::string::npos) break;
        const uint64_t n = std::strtoull(raw.substr(pos, eol - pos).c_str(), nullptr, 16);
        if (n == 0 || eol + 2 + n > raw.size()) break;
        whole.append(raw, eol + 2, n);
        pos = eol + 2 + n + 2;
      }
      buffered = true;
      known_length = true;
      length = whole.size();
    } else if (!Get(uph, "content-length").empty()) {
      known_length = true;
      length = std::strtoull(Get(uph, "content-length").c_str(), nullptr, 10);
    } else {
      std::string raw = uprest;
      char buf[65536];
      for (;;) {
        ssize_t n = ::recv(upstream, buf, sizeof(buf), 0);
        if (n <= 0) break;
        raw.append(buf, static_cast<size_t>(n));
      }
      whole = raw;
      buffered = true;
      known_length = true;
      length = whole.size();
    }
  }
  // What the client is told and sent.
  uint64_t send_len = length;  // body bytes to pass on
  uint64_t declared = length;  // Content-Length
  uint64_t extra = 0;          // appended bytes
  if (fault.kind == Fault::Kind::kShortBody) {
    send_len = length - std::min(length, fault.bytes);
    declared = send_len;
  } else if (fault.kind == Fault::Kind::kLongBody) {
    extra = fault.bytes;
    declared = length + extra;
  } else if (fault.kind == Fault::Kind::kCutBody) {
    send_len = std::min(length, fault.bytes);
  }
  std::string resp = status_line + "\r\n";
  for (auto [k, v] : uph) {
    if (HopByHop(k)) continue;
    if (k == "content-range" && fault.kind == Fault::Kind::kWrongContentRange) {
      unsigned long long a = 0, b = 0;
      char total[64] = {0};
      if (std::sscanf(v.c_str(), "bytes %llu-%llu/%63s", &a, &b, total) == 3) {
        v = "bytes " + std::to_string(a + 1) + "-" + std::to_string(b) + "/" + total;
      }
    }
    resp += k + ": " + v + "\r\n";
  }
  if (!no_body && known_length) resp += "Content-Length: " + std::to_string(declared) + "\r\n";
  // A HEAD answer states the size of the body a GET would get.
  if (seen.method == "HEAD" && !Get(uph, "content-length").empty()) {
    resp += "Content-Length: " + Get(uph, "content-length") + "\r\n";
  }
  resp += "Connection: close\r\n\r\n";
  if (!SendAll(client, resp) || no_body) return;

  // Stream the body.
  uint64_t sent = 0;  // body offset passed on
  std::string pending = buffered ? whole : uprest;
  size_t pending_pos = 0;
  const size_t piece = fault.kind == Fault::Kind::kSlowBody ? 4096 : 65536;
  while (sent < send_len) {
    if (pending_pos >= pending.size()) {
      if (buffered) break;
      pending.resize(65536);
      ssize_t n = ::recv(upstream, pending.data(), pending.size(), 0);
      if (n <= 0) break;
      pending.resize(static_cast<size_t>(n));
      pending_pos = 0;
    }
    size_t n = std::min<uint64_t>({pending.size() - pending_pos, send_len - sent, piece});
    std::string chunk = pending.substr(pending_pos, n);
    pending_pos += n;
    if (fault.kind == Fault::Kind::kFlipByte && fault.bytes >= sent && fault.bytes < sent + n) {
      chunk[fault.bytes - sent] = static_cast<char>(chunk[fault.bytes - sent] ^ 0x01);
    }
    if (fault.kind == Fault::Kind::kSlowBody && !Wait(fault.delay)) return;
    if (!SendAll(client, chunk)) return;
    sent += n;
  }
  if (extra > 0) SendAll(client, std::string(extra, 'X'));
  // kCutBody: returning closes the connection short of Content-Length.
}

}  // namespace rfs::testing
