#include "snapshotter/fd_keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/logging.h"

namespace rfs::snapshotter {

using base::Result;
using base::Status;
using base::UniqueFd;

namespace {

constexpr size_t kMaxMessage = 4096;

Result<sockaddr_un> Address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) {
    return base::InvalidArgumentError("fd keeper socket path too long: ", path);
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

Status Send(int sock, const std::string& msg, int fd = -1) {
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    m.msg_control = ctrl;
    m.msg_controllen = sizeof(ctrl);
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &m, MSG_NOSIGNAL);
    if (n >= 0) return Status::Ok();
    if (errno != EINTR) return base::ErrnoToStatus(errno, "fd keeper: send");
  }
}

// One message; *fd gets a received descriptor (or -1).
Result<std::string> Receive(int sock, UniqueFd* fd) {
  char buf[kMaxMessage];
  iovec iov{buf, sizeof(buf)};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 4)] = {};
  m.msg_control = ctrl;
  m.msg_controllen = sizeof(ctrl);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return base::ErrnoToStatus(errno, "fd keeper: receive");
  *fd = UniqueFd();
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (!fd->valid()) {
        *fd = UniqueFd(got);
      } else {
        ::close(got);  // one descriptor per message
      }
    }
  }
  if (n == 0) return base::UnavailableError("fd keeper: connection closed");
  return std::string(buf, static_cast<size_t>(n));
}

Result<UniqueFd> ConnectTo(const std::string& path) {
  ASSIGN_OR_RETURN(sockaddr_un a, Address(path));
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) return base::ErrnoToStatus(errno, "fd keeper: socket");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return base::ErrnoToStatus(errno, "fd keeper: connect " + path);
  }
  return s;
}

}  // namespace

Result<std::unique_ptr<FdKeeperClient>> FdKeeperClient::Connect(
    const std::string& socket_path, const std::vector<std::string>& launcher) {
  Result<UniqueFd> s = ConnectTo(socket_path);
  if (!s.ok() && !launcher.empty()) {
    // Nobody listens: start a keeper in a session of its own.
    ::unlink(socket_path.c_str());
    std::vector<std::string> args = launcher;
    args.push_back("--fd-keeper");
    args.push_back(socket_path);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) return base::ErrnoToStatus(errno, "fd keeper: fork");
    if (pid == 0) {
      ::setsid();
      int null = ::open("/dev/null", O_RDWR);
      if (null >= 0) {
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::close(null);
      }
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Reap it when it ends: it is ours only until we exit.
    std::thread([pid] {
      int st;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }).detach();
    for (int i = 0; i < 100; ++i) {
      s = ConnectTo(socket_path);
      if (s.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (!s.ok()) return s.status();
  return std::unique_ptr<FdKeeperClient>(new FdKeeperClient(std::move(*s)));
}

Status FdKeeperClient::Expect(const char* what) {
  UniqueFd ignored;
  ASSIGN_OR_RETURN(std::string reply, Receive(sock_.get(), &ignored));
  if (reply != "OK") return base::InternalError("fd keeper: ", what, ": ", reply);
  return Status::Ok();
}

Status FdKeeperClient::Put(const std::string& name, int fd) {
  RETURN_IF_ERROR(Send(sock_.get(), "PUT " + name, fd));
  return Expect("put");
}

Status FdKeeperClient::Delete(const std::string& name) {
  RETURN_IF_ERROR(Send(sock_.get(), "DEL " + name));
  return Expect("delete");
}

Result<std::map<std::string, UniqueFd>> FdKeeperClient::List() {
  RETURN_IF_ERROR(Send(sock_.get(), "LIST"));
  std::map<std::string, UniqueFd> out;
  for (;;) {
    UniqueFd fd;
    ASSIGN_OR_RETURN(std::string msg, Receive(sock_.get(), &fd));
    if (msg == "END") return out;
    if (msg.rfind("FD ", 0) != 0 || !fd.valid()) {
      return base::InternalError("fd keeper: unexpected reply to LIST: ", msg);
    }
    out[msg.substr(3)] = std::move(fd);
  }
}

int RunFdKeeper(const std::string& socket_path) {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  Result<sockaddr_un> a = Address(socket_path);
  if (!a.ok()) return 2;
  UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return 1;
  const mode_t old = ::umask(0077);
  const int rc = ::bind(listener.get(), reinterpret_cast<sockaddr*>(&*a), sizeof(*a));
  ::umask(old);
  if (rc != 0 || ::listen(listener.get(), 8) != 0) return 1;
  std::map<std::string, UniqueFd> held;
  std::vector<UniqueFd> clients;
  auto idle_since = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<pollfd> pfds;
    pfds.push_back({listener.get(), POLLIN, 0});
    for (auto& c : clients) pfds.push_back({c.get(), POLLIN, 0});
    int n = ::poll(pfds.data(), pfds.size(), 1000);
    if (n < 0 && errno != EINTR) return 1;
    if (clients.empty() && held.empty() &&
        std::chrono::steady_clock::now() - idle_since > std::chrono::seconds(10)) {
      ::unlink(socket_path.c_str());
      return 0;  // nothing to keep, nobody to serve
    }
    if (n <= 0) continue;
    if (pfds[0].revents & POLLIN) {
      UniqueFd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c.valid()) clients.push_back(std::move(c));
    }
    for (size_t i = 1; i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) continue;
      int sock = pfds[i].fd;
      UniqueFd fd;
      Result<std::string> msg = Receive(sock, &fd);
      bool drop = !msg.ok();
      if (msg.ok()) {
        if (msg->rfind("PUT ", 0) == 0 && fd.valid()) {
          held[msg->substr(4)] = std::move(fd);
          drop = !Send(sock, "OK").ok();
        } else if (msg->rfind("DEL ", 0) == 0) {
          held.erase(msg->substr(4));
          drop = !Send(sock, "OK").ok();
        } else if (*msg == "LIST") {
          for (auto& [name, f] : held) {
            if (!Send(sock, "FD " + name, f.get()).ok()) drop = true;
          }
          drop = drop || !Send(sock, "END").ok();
        } else {
          drop = !Send(sock, "ERR unknown request").ok();
        }
      }
      if (drop) {
        for (auto it = clients.begin(); it != clients.end(); ++it) {
          if (it->get() == sock) {
            clients.erase(it);
            break;
          }
        }
        if (clients.empty()) idle_since = std::chrono::steady_clock::now();
        break;  // the poll set changed
      }
    }
  }
}

}  // namespace rfs::snapshotter
