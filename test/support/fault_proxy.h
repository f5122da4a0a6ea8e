// FaultProxy: an HTTP proxy on 127.0.0.1 (free port) in front of a registry
// (normally a LocalRegistry), injecting faults by a scriptable plan.
//
// Clients talk to the proxy as if it were the registry. Each request is
// forwarded to the upstream with its headers (Range and Authorization
// included; hop-by-hop headers dropped) and the answer is streamed back,
// unless a rule of the plan matches: rules are tried in order; a rule
// matches by method, path substring and a count (let `skip` matching
// requests through, then act on the next `times`); the first matching rule
// with budget left applies its fault.
//
// Optionally the proxy is a bearer-token front for an upstream without auth:
// it answers /v2/ requests without a valid token with a 401 challenge naming
// its own /token endpoint, issues tokens there (basic credentials checked
// when configured), and strips Authorization before forwarding. ExpireTokens
// invalidates the tokens issued so far (an expired token: the client's next
// request gets 401).
//
// One request per connection (answers carry Connection: close). Delays wait
// on the proxy's stop signal, so destruction never waits for them. Test
// helper only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"

namespace rfs::testing {

struct Fault {
  enum class Kind {
    kNone,           // forward untouched
    kStatus,         // answer `status` (with Retry-After when set), no upstream request
    kCutBody,        // forward, close the connection after `bytes` body bytes
    kShortBody,      // forward, drop the last `bytes` body bytes (Content-Length adjusted)
    kLongBody,       // forward, append `bytes` extra bytes (Content-Length adjusted)
    kWrongContentRange,  // forward, Content-Range start moved by one
    kFlipByte,       // forward, body byte at offset `bytes` XOR 0x01
    kDelayHeaders,   // wait `delay`, then forward
    kSlowBody,       // forward, waiting `delay` before each 4 KiB of body
    kUnauthorized,   // answer 401 with the proxy's bearer challenge (token mode) or none
    kRedirect,       // answer 307 to `location`
  };
  Kind kind = Kind::kNone;
  int status = 503;
  std::string retry_after;
  uint64_t bytes = 0;
  // kDelayHeaders, and any other forwarding fault but kSlowBody: a wait
  // before forwarding; kSlowBody: the wait before each 4 KiB.
  std::chrono::milliseconds delay{0};
  std::string location;
};

struct FaultRule {
  std::string method;         // "" = any
  std::string path_contains;  // "" = any
  int skip = 0;               // matching requests let through first
  int times = 1;              // then this many get the fault; -1 = all
  Fault fault;
};

// A rule acting on blob GETs (`times` of them; -1: all).
inline FaultRule OnBlobGets(Fault::Kind kind, int times = 1) {
  FaultRule r;
  r.method = "GET";
  r.path_contains = "/blobs/";
  r.times = times;
  r.fault.kind = kind;
  return r;
}

class FaultProxy {
 public:
  struct Options {
    std::string upstream;  // "127.0.0.1:PORT"
    bool bearer_tokens = false;
    std::string token_user, token_password;  // required at /token when set
  };
  static base::Result<std::unique_ptr<FaultProxy>> Start(Options options);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string origin() const { return "http://" + host(); }

  void AddRule(FaultRule rule);
  void ClearRules();
  // Tokens issued so far stop being accepted.
  void ExpireTokens();

  struct Seen {
    std::string method, path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string fault;                            // applied fault, "" if none
  };
  std::vector<Seen> Requests() const;
  // Requests whose path contains `part` (all when empty), token requests aside.
  int Count(const std::string& part = "") const;
  int token_requests() const { return token_requests_.load(); }
  int faults_applied() const { return faults_applied_.load(); }

 private:
  explicit FaultProxy(Options o) : options_(std::move(o)) {}
  void AcceptLoop();
  void Serve(int fd);
  // Sleeps unless the proxy stops first; false when stopping.
  bool Wait(std::chrono::milliseconds d);

  Options options_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
  struct Active {
    FaultRule rule;
    int seen = 0;
    int applied = 0;
  };
  std::vector<Active> rules_;
  std::vector<Seen> log_;
  int next_token_ = 0;
  std::vector<std::string> valid_tokens_;
  std::atomic<int> token_requests_{0};
  std::atomic<int> faults_applied_{0};
};

}  // namespace rfs::testing
