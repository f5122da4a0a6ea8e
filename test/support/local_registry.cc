#include "test/support/local_registry.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <httplib.h>
#include <thread>

#include "base/bytes.h"
#include "base/digest.h"
#include "test/support/test_util.h"

namespace rfs::testing {

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool LocalRegistry::Available() { return HaveCommand("docker-registry"); }

base::Result<std::unique_ptr<LocalRegistry>> LocalRegistry::Start(const std::string& workdir,
                                                                  const std::string& user,
                                                                  const std::string& password) {
  std::unique_ptr<LocalRegistry> r(new LocalRegistry());
  r->port_ = FreeLoopbackPort();
  r->user_ = user;
  r->password_ = password;
  if (::mkdir(workdir.c_str(), 0755) != 0 && errno != EEXIST) {
    return base::ErrnoToStatus(errno, "mkdir " + workdir);
  }
  std::string config = workdir + "/registry.yml";
  std::ofstream c(config);
  if (!c) return base::InternalError("cannot write ", config);
  c << "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
    << "storage:\n  filesystem:\n    rootdirectory: " << workdir << "/data\n"
    << "http:\n  addr: 127.0.0.1:" << r->port_ << "\n";
  if (!user.empty()) {
    std::string htpasswd = workdir + "/htpasswd";
    if (RunCommand("htpasswd -Bbn '" + user + "' '" + password + "' > " + htpasswd) != 0) {
      return base::InternalError("htpasswd failed");
    }
    c << "auth:\n  htpasswd:\n    realm: test-realm\n    path: " << htpasswd << "\n";
  }
  c.close();
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execlp("docker-registry", "docker-registry", "serve", config.c_str(),
             static_cast<char*>(nullptr));
    _exit(127);
  }
  r->pid_ = pid;
  // Ready when /v2/ answers (401 with auth on).
  httplib::Client cli("127.0.0.1", r->port_);
  cli.set_connection_timeout(0, 200000);
  for (int i = 0; i < 100; ++i) {
    auto res = cli.Get("/v2/");
    if (res && (res->status == 200 || res->status == 401)) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return base::UnavailableError("docker-registry did not start on port ", r->port_);
}

LocalRegistry::~LocalRegistry() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int st;
    ::waitpid(pid_, &st, 0);
  }
}

base::Result<std::string> LocalRegistry::PushBlob(const std::string& repo,
                                                  const std::vector<uint8_t>& data) {
  const std::string id = base::DigestHex(base::Sha256(data));
  httplib::Client cli("127.0.0.1", port_);
  if (!user_.empty()) cli.set_basic_auth(user_.c_str(), password_.c_str());
  auto start = cli.Post(("/v2/" + repo + "/blobs/uploads/").c_str());
  if (!start || start->status != 202) return base::InternalError("upload start failed");
  std::string loc = start->get_header_value("Location");
  if (auto p = loc.find("://"); p != std::string::npos) loc = loc.substr(loc.find('/', p + 3));
  loc += (loc.find('?') == std::string::npos ? "?" : "&");
  loc += "digest=sha256:" + id;
  auto put = cli.Put(loc.c_str(), reinterpret_cast<const char*>(data.data()), data.size(),
                     "application/octet-stream");
  if (!put || put->status != 201) {
    return base::InternalError("upload failed: ", put ? put->status : -1);
  }
  return id;
}

base::Result<std::string> LocalRegistry::PushManifest(const std::string& repo,
                                                      const std::string& reference,
                                                      const std::string& media_type,
                                                      const std::vector<uint8_t>& data) {
  const std::string digest = "sha256:" + base::DigestHex(base::Sha256(data));
  httplib::Client cli("127.0.0.1", port_);
  if (!user_.empty()) cli.set_basic_auth(user_.c_str(), password_.c_str());
  const std::string path = "/v2/" + repo + "/manifests/" + (reference.empty() ? digest : reference);
  auto put = cli.Put(path.c_str(), reinterpret_cast<const char*>(data.data()), data.size(),
                     media_type.c_str());
  if (!put || put->status != 201) {
    return base::InternalError("manifest upload failed: ", put ? put->status : -1, " ",
                               put ? put->body : "");
  }
  return digest;
}

}  // namespace rfs::testing
