// RegistryBackend against a real docker-registry on loopback (anonymous and
// htpasswd basic auth) and against a scripted registry for the bearer token
// flow, redirects to blob storage and faults.
#include "storage/registry_backend.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "base/digest.h"
#include "base/logging.h"
#include "test/support/local_registry.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;

std::vector<uint8_t> RandomBlob(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<uint8_t> Slice(const std::vector<uint8_t>& v, size_t off, size_t n) {
  return std::vector<uint8_t>(v.begin() + off, v.begin() + off + n);
}

TEST(RegistryBackendTest, RangedReadsFromDockerRegistry) {
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  testing::TempDir dir;
  auto reg = testing::LocalRegistry::Start(dir.path());
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto blob = RandomBlob(3 << 20, 1);
  auto id = (*reg)->PushBlob("library/test", blob);
  ASSERT_TRUE(id.ok()) << id.status();

  RegistryOptions o;
  o.host = (*reg)->host();
  o.repository = "library/test";
  o.plain_http = true;
  auto backend = *RegistryBackend::Create(o);
  auto reader = backend->Open(*id);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*(*reader)->Size(), blob.size());
  for (auto [off, len] : std::vector<std::pair<size_t, size_t>>{
           {0, 1}, {0, 4096}, {12345, 100000}, {blob.size() - 10, 10}, {0, blob.size()}}) {
    std::vector<uint8_t> out(len);
    ASSERT_TRUE((*reader)->ReadAt(off, out).ok()) << off << "+" << len;
    EXPECT_EQ(out, Slice(blob, off, len)) << off << "+" << len;
  }
  std::vector<uint8_t> past(10);
  EXPECT_FALSE((*reader)->ReadAt(blob.size() - 5, past).ok());
  auto missing = backend->Open(std::string(64, 'a'));
  ASSERT_TRUE(missing.ok());
  std::vector<uint8_t> one(1);
  EXPECT_EQ((*missing)->ReadAt(0, one).code(), StatusCode::kNotFound);
  EXPECT_EQ(backend->Open("../../etc/passwd").status().code(), StatusCode::kInvalidArgument);
}

// TCP sockets (any state, TIME_WAIT included) whose remote end is
// 127.0.0.1:`port`: the client side of every connection made to it.
int ConnectionsTo(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  char want[16];
  std::snprintf(want, sizeof(want), "0100007F:%04X", port);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, local, remote;
    f >> slot >> local >> remote;
    if (remote == want) ++n;
  }
  return n;
}

TEST(RegistryBackendTest, SequentialReadsReuseOneConnection) {
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  testing::TempDir dir;
  auto reg = testing::LocalRegistry::Start(dir.path());
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto blob = RandomBlob(1 << 20, 2);
  auto id = (*reg)->PushBlob("library/ka", blob);
  ASSERT_TRUE(id.ok()) << id.status();
  const int port = std::stoi((*reg)->host().substr((*reg)->host().rfind(':') + 1));

  RegistryOptions o;
  o.host = (*reg)->host();
  o.repository = "library/ka";
  o.plain_http = true;
  auto backend = *RegistryBackend::Create(o);
  auto reader = backend->Open(*id);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int before = ConnectionsTo(port);
  for (size_t i = 0; i < 20; ++i) {
    std::vector<uint8_t> out(4096);
    ASSERT_TRUE((*reader)->ReadAt(i * 50000, out).ok());
    EXPECT_EQ(out, Slice(blob, i * 50000, 4096));
  }
  // A missing blob (404, a small error body) does not cost the connection.
  auto missing = backend->Open(std::string(64, 'b'));
  ASSERT_TRUE(missing.ok());
  std::vector<uint8_t> one(1);
  EXPECT_EQ((*missing)->ReadAt(0, one).code(), StatusCode::kNotFound);
  ASSERT_TRUE((*reader)->ReadAt(0, one).ok());
  EXPECT_LE(ConnectionsTo(port) - before, 1) << "each read opened its own connection";
}

TEST(RegistryBackendTest, BasicAuthAndNoCredentialLeaks) {
  if (!testing::LocalRegistry::Available() || !testing::HaveCommand("htpasswd")) {
    GTEST_SKIP() << "docker-registry or htpasswd (apache2-utils) is not installed";
  }
  testing::TempDir dir;
  const std::string secret = "s3cr3t-Passw0rd";
  auto reg = testing::LocalRegistry::Start(dir.path(), "alice", secret);
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto blob = RandomBlob(100000, 2);
  auto id = (*reg)->PushBlob("private/app", blob);
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<std::string> log;
  base::SetLogSink([&](base::LogLevel, std::string_view l) { log.emplace_back(l); });
  auto prev = base::MinLogLevel();
  base::SetMinLogLevel(base::LogLevel::kDebug);

  RegistryOptions o;
  o.host = (*reg)->host();
  o.repository = "private/app";
  o.plain_http = true;
  {
    auto anon = *RegistryBackend::Create(o);
    std::vector<uint8_t> out(100);
    base::Status s = (*anon->Open(*id))->ReadAt(0, out);
    EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
  }
  auto creds = std::make_shared<StaticCredentials>();
  creds->Set(o.host, Credential{"alice", "wrong-password", ""});
  o.credentials = creds;
  {
    auto bad = *RegistryBackend::Create(o);
    std::vector<uint8_t> out(100);
    base::Status s = (*bad->Open(*id))->ReadAt(0, out);
    EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
    EXPECT_EQ(s.message().find("wrong-password"), std::string::npos) << s;
  }
  creds->Set(o.host, Credential{"alice", secret, ""});
  auto good = *RegistryBackend::Create(o);
  std::vector<uint8_t> out(5000);
  ASSERT_TRUE((*good->Open(*id))->ReadAt(1000, out).ok());
  EXPECT_EQ(out, Slice(blob, 1000, 5000));
  base::SetMinLogLevel(prev);
  base::SetLogSink(nullptr);
  for (const auto& l : log) EXPECT_EQ(l.find(secret), std::string::npos) << l;
}

// A scripted registry on a raw socket (an HTTP library server would apply
// Range itself): bearer challenge, token endpoint, redirect to storage, and
// injectable faults.
class FakeRegistry {
 public:
  struct Req {
    std::string method, path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string Header(const std::string& k) const {
      auto it = headers.find(k);
      return it == headers.end() ? "" : it->second;
    }
  };
  struct Resp {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    size_t declared_length = std::string::npos;  // Content-Length if not body.size()
  };

  explicit FakeRegistry(std::vector<uint8_t> blob) : blob_(std::move(blob)) {
    id_ = base::DigestHex(base::Sha256(blob_));
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(listen_fd_, 64);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeRegistry() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  std::string Origin() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& id() const { return id_; }

  std::atomic<int> token_requests{0}, registry_requests{0}, storage_requests{0};
  std::atomic<int> valid_token{1};
  std::atomic<bool> redirect{false}, storage_expired{false};
  std::atomic<int> fail_503{0};           // next N blob answers: 503 + Retry-After: 1
  std::atomic<bool> wrong_range{false};   // Content-Range for another range
  std::atomic<bool> overlong{false};      // one byte more than asked
  std::atomic<bool> ignore_range{false};  // 200 with the whole blob
  std::atomic<bool> cut_body{false};      // close the connection mid-body

 private:
  void Loop() {
    while (!stop_) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string in;
      char buf[4096];
      while (in.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
      }
      Req req;
      std::istringstream is(in.substr(0, in.find("\r\n\r\n")));
      std::string line;
      std::getline(is, line);
      std::istringstream rl(line);
      rl >> req.method >> req.path;
      while (std::getline(is, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, colon), v = line.substr(colon + 1);
        for (auto& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        while (!v.empty() && v[0] == ' ') v.erase(0, 1);
        req.headers[k] = v;
      }
      Resp r = Handle(req);
      std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nConnection: close\r\n";
      for (auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
      size_t len = r.declared_length != std::string::npos ? r.declared_length : r.body.size();
      out += "Content-Length: " + std::to_string(len) + "\r\n\r\n";
      if (req.method != "HEAD") out += r.body;
      ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  Resp Handle(const Req& req) {
    Resp r;
    std::string path = req.path.substr(0, req.path.find('?'));
    if (path == "/token") {
      token_requests++;
      if (req.Header("authorization") != "Basic Ym9iOnRva2VuLXBhc3M=") {  // bob:token-pass
        r.status = 401;
        return r;
      }
      if (req.path.find("scope=repository%3Ateam%2Fapp%3Apull") == std::string::npos ||
          req.path.find("service=fake") == std::string::npos) {
        r.status = 400;
        return r;
      }
      r.body = "{\"token\":\"tok-" + std::to_string(token_requests.load()) +
               "\",\"expires_in\":300}";
      return r;
    }
    if (path == "/v2/team/app/blobs/sha256:" + id_) {
      registry_requests++;
      if (req.Header("authorization") != "Bearer tok-" + std::to_string(valid_token.load())) {
        r.status = 401;
        r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"" + Origin() +
                                                     "/token\",service=\"fake\",scope=\"repository:"
                                                     "team/app:pull\""});
        return r;
      }
      if (redirect) {
        r.status = 307;
        r.headers.push_back({"Location", Origin() + "/storage/" + id_ + "?sig=1"});
        return r;
      }
      return Serve(req);
    }
    if (path == "/storage/" + id_) {
      storage_requests++;
      if (!req.Header("authorization").empty()) {
        r.status = 400;  // registry credentials must not reach blob storage
        return r;
      }
      if (storage_expired) {
        r.status = 403;
        return r;
      }
      return Serve(req);
    }
    r.status = 404;
    return r;
  }

  Resp Serve(const Req& req) {
    Resp r;
    if (fail_503 > 0) {
      fail_503--;
      r.status = 503;
      r.headers.push_back({"Retry-After", "1"});
      return r;
    }
    if (ignore_range || req.method == "HEAD") {
      r.body.assign(blob_.begin(), blob_.end());
      return r;
    }
    size_t a = 0, b = 0;
    if (std::sscanf(req.Header("range").c_str(), "bytes=%zu-%zu", &a, &b) != 2 ||
        b >= blob_.size() || a > b) {
      r.status = 416;
      return r;
    }
    r.status = 206;
    r.body.assign(blob_.begin() + a, blob_.begin() + b + 1);
    if (overlong) r.body.push_back('!');
    if (cut_body) {
      r.declared_length = r.body.size();
      r.body.resize(r.body.size() / 2);
    }
    r.headers.push_back({"Content-Range", "bytes " + std::to_string(wrong_range ? a + 1 : a) +
                                              "-" + std::to_string(b) + "/" +
                                              std::to_string(blob_.size())});
    return r;
  }

  std::vector<uint8_t> blob_;
  std::string id_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

RegistryOptions FakeOptions(const FakeRegistry& f) {
  RegistryOptions o;
  o.host = f.host();
  o.repository = "team/app";
  o.plain_http = true;
  auto creds = std::make_shared<StaticCredentials>();
  creds->Set(f.host(), Credential{"bob", "token-pass", ""});
  o.credentials = creds;
  o.retry.initial_backoff = std::chrono::milliseconds(10);
  return o;
}

TEST(RegistryBackendTest, BearerTokenIsFetchedCachedAndRefreshedOn401) {
  auto blob = RandomBlob(200000, 3);
  FakeRegistry f(blob);
  auto backend = *RegistryBackend::Create(FakeOptions(f));
  auto reader = *backend->Open(f.id());
  std::vector<uint8_t> out(1000);
  { auto st = reader->ReadAt(500, out); ASSERT_TRUE(st.ok()) << st; }
  EXPECT_EQ(out, Slice(blob, 500, 1000));
  EXPECT_EQ(f.token_requests, 1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(reader->ReadAt(i * 1000, out).ok());
  EXPECT_EQ(f.token_requests, 1) << "the token is cached";
  // The server revokes the token: one 401, a new token, the read succeeds.
  f.valid_token = 2;
  ASSERT_TRUE(reader->ReadAt(7000, out).ok());
  EXPECT_EQ(out, Slice(blob, 7000, 1000));
  EXPECT_EQ(f.token_requests, 2);
  // Without credentials the token endpoint refuses: a clear error.
  RegistryOptions anon = FakeOptions(f);
  anon.credentials = nullptr;
  auto b2 = *RegistryBackend::Create(anon);
  base::Status s = (*b2->Open(f.id()))->ReadAt(0, out);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
}

TEST(RegistryBackendTest, RedirectIsFollowedWithoutCredentialsCachedAndDroppedWhenExpired) {
  auto blob = RandomBlob(50000, 4);
  FakeRegistry f(blob);
  f.redirect = true;
  auto backend = *RegistryBackend::Create(FakeOptions(f));
  auto reader = *backend->Open(f.id());
  std::vector<uint8_t> out(100);
  ASSERT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_EQ(out, Slice(blob, 0, 100));
  const int registry_after_first = f.registry_requests;
  ASSERT_TRUE(reader->ReadAt(100, out).ok());
  EXPECT_EQ(f.registry_requests, registry_after_first) << "redirect URL is cached";
  EXPECT_EQ(out, Slice(blob, 100, 100));
  // The storage URL expires: back through the registry, and it works.
  f.storage_expired = true;
  f.redirect = false;
  ASSERT_TRUE(reader->ReadAt(200, out).ok());
  EXPECT_EQ(out, Slice(blob, 200, 100));
  EXPECT_GT(f.registry_requests, registry_after_first);
}

TEST(RegistryBackendTest, FaultsGiveRetriesOrClearErrorsNeverWrongBytes) {
  auto blob = RandomBlob(50000, 5);
  FakeRegistry f(blob);
  auto backend = *RegistryBackend::Create(FakeOptions(f));
  auto reader = *backend->Open(f.id());
  std::vector<uint8_t> out(100);
  // 503 twice with Retry-After: recovered by the retry loop.
  f.fail_503 = 2;
  ASSERT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_EQ(out, Slice(blob, 0, 100));
  // A deadline shorter than the outage: a deadline error, on time.
  f.fail_503 = 1000;
  IoContext ctx;
  ctx.deadline = base::Deadline::After(std::chrono::milliseconds(1500));
  auto t0 = std::chrono::steady_clock::now();
  base::Status s = reader->ReadAt(0, out, ctx);
  EXPECT_TRUE(s.code() == StatusCode::kDeadlineExceeded || s.code() == StatusCode::kUnavailable)
      << s;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  f.fail_503 = 0;
  // Wrong Content-Range and over-long bodies are data loss.
  f.wrong_range = true;
  EXPECT_EQ(reader->ReadAt(0, out).code(), StatusCode::kDataLoss);
  f.wrong_range = false;
  f.overlong = true;
  EXPECT_EQ(reader->ReadAt(0, out).code(), StatusCode::kDataLoss);
  f.overlong = false;
  // A server that ignores Range still yields exactly the asked bytes.
  f.ignore_range = true;
  ASSERT_TRUE(reader->ReadAt(40000, out).ok());
  EXPECT_EQ(out, Slice(blob, 40000, 100));
  f.ignore_range = false;
  // A body cut short is retried (transient), then reported as unavailable.
  f.cut_body = true;
  EXPECT_EQ(reader->ReadAt(0, out).code(), StatusCode::kUnavailable);
  f.cut_body = false;
  ASSERT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_EQ(out, Slice(blob, 0, 100));
  // Nothing listening: unavailable after the retries.
  RegistryOptions dead = FakeOptions(f);
  dead.host = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  dead.retry.max_attempts = 2;
  auto b2 = *RegistryBackend::Create(dead);
  EXPECT_EQ((*b2->Open(f.id()))->ReadAt(0, out).code(), StatusCode::kUnavailable);
}

TEST(CredentialsTest, DockerConfigJson) {
  auto c = DockerConfigCredentials::Parse(R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndpdGg6Y29sb25z"},
      "registry.example.com:5000": {"username": "u2", "password": "p2"},
      "https://ghcr.io/v2/": {"identitytoken": "refresh-me"},
      "broken.example.com": {"auth": "!!!"}
    }})");
  ASSERT_TRUE(c.ok()) << c.status();
  auto hub = *(*c)->Get("docker.io");
  ASSERT_TRUE(hub.has_value());
  EXPECT_EQ(hub->username, "user");
  EXPECT_EQ(hub->password, "pass:with:colons");
  EXPECT_TRUE((*(*c)->Get("registry-1.docker.io")).has_value());
  auto two = *(*c)->Get("registry.example.com:5000");
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->password, "p2");
  EXPECT_EQ((*(*c)->Get("ghcr.io"))->identity_token, "refresh-me");
  EXPECT_FALSE((*(*c)->Get("broken.example.com")).has_value());
  EXPECT_FALSE((*(*c)->Get("other.example.com")).has_value());
  EXPECT_FALSE(DockerConfigCredentials::Parse("not json").ok());
}

// A config file followed as it changes: a new login is seen by the next Get,
// a broken rewrite keeps the last good credentials, removal means none.
TEST(CredentialsTest, DockerConfigFileFollowsChanges) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("config.json");
  auto write = [&](const std::string& text, long sec) {
    testing::WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, 0), 0);
  };
  DockerConfigFile f(path);
  EXPECT_FALSE((*f.Get("r.example")).has_value());  // no file yet
  write(R"({"auths": {"r.example": {"username": "old", "password": "p1"}}})", 1000);
  EXPECT_EQ((*f.Get("r.example"))->username, "old");
  write(R"({"auths": {"r.example": {"username": "new", "password": "p2"}}})", 2000);
  EXPECT_EQ((*f.Get("r.example"))->username, "new");
  write("{ broken", 3000);
  EXPECT_EQ((*f.Get("r.example"))->username, "new");
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_FALSE((*f.Get("r.example")).has_value());
}

}  // namespace
}  // namespace rfs::storage
