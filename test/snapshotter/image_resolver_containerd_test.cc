// ContainerdImageResolver against a real containerd (root, containerd and
// ctr installed; skipped otherwise): a containerd of its own (config, state
// and socket in a temp dir), images imported with `ctr images import` into
// two namespaces and unpacked with the native snapshotter, so that the chain
// ids are containerd's own (the names of its snapshots), not ours.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "snapshotter/grpc/image_resolver.h"
#include "snapshotter/remote_fs.h"
#include "storage/registry_image.h"
#include "test/support/oci_image.h"
#include "test/support/test_util.h"

extern char** environ;

namespace rfs::snapshotter::grpc {
namespace {

using base::StatusCode;
using nlohmann::json;

std::string Sha256(const std::vector<uint8_t>& data) {
  return "sha256:" + base::DigestHex(base::Sha256(data));
}
std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// An OCI image layout archive of one image named `name`: uncompressed tar
// layers (one file each) annotated as `layer_annotations` says.
std::vector<uint8_t> OciArchive(
    const std::string& name,
    const std::vector<std::map<std::string, std::string>>& layer_annotations) {
  std::map<std::string, std::vector<uint8_t>> blobs;
  auto add = [&blobs](const std::vector<uint8_t>& b) {
    const std::string d = Sha256(b);
    blobs[d] = b;
    return d;
  };
  json layers = json::array();
  std::vector<std::string> diff_ids;
  for (size_t i = 0; i < layer_annotations.size(); ++i) {
    testing::TarWriter t;
    t.Add(name + "-file" + std::to_string(i), name + " layer " + std::to_string(i));
    const std::vector<uint8_t> tar = t.Finish();
    const std::string d = add(tar);
    json l = {{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
              {"digest", d},
              {"size", tar.size()}};
    if (!layer_annotations[i].empty()) l["annotations"] = layer_annotations[i];
    layers.push_back(l);
    diff_ids.push_back(d);
  }
  const std::string config = json{{"architecture", storage::HostPlatform().architecture},
                                  {"os", "linux"},
                                  {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
                                 .dump();
  const std::string config_digest = add(Bytes(config));
  const std::string manifest = json{
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", config_digest},
        {"size", config.size()}}},
      {"layers", layers}}.dump();
  const std::string manifest_digest = add(Bytes(manifest));
  const std::string index = json{{"schemaVersion", 2},
                                 {"manifests",
                                  {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                    {"digest", manifest_digest},
                                    {"size", manifest.size()},
                                    {"annotations", {{"io.containerd.image.name", name}}}}}}}
                                .dump();
  testing::TarWriter out;
  out.Add("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  out.Add("index.json", index);
  for (const auto& [digest, data] : blobs) {
    out.Add("blobs/sha256/" + digest.substr(7), std::string(data.begin(), data.end()));
  }
  return out.Finish();
}

class RealContainerd {
 public:
  explicit RealContainerd(const testing::TempDir& tmp) : tmp_(tmp) {}
  ~RealContainerd() { Stop(); }

  std::string socket() const { return tmp_.Sub("c.sock"); }
  std::string log() const { return ReadAll(tmp_.Sub("containerd.log")); }

  bool Start() {
    const std::string toml = "version = 2\nroot = \"" + tmp_.Sub("root") + "\"\nstate = \"" +
                             tmp_.Sub("state") +
                             "\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
                             "[grpc]\n  address = \"" +
                             socket() + "\"\n[ttrpc]\n  address = \"" + socket() +
                             ".ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
                             "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" +
                             tmp_.Sub("opt") + "\"\n";
    testing::WriteFileBytes(tmp_.Sub("containerd.toml"), Bytes(toml));
    std::string config = tmp_.Sub("containerd.toml");
    std::vector<std::string> args = {"containerd", "--config", config};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, tmp_.Sub("containerd.log").c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawnp(&pid_, "containerd", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    // Another process: poll (bounded) until it answers.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      struct stat st;
      if (::lstat(socket().c_str(), &st) == 0 && Ctr("", "version") == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::waitpid(pid_, nullptr, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }

  // ctr against this containerd; the exit code, output in *out.
  int Ctr(const std::string& ns, const std::string& args, std::string* out = nullptr) {
    std::string cmd = "ctr --address '" + socket() + "'";
    if (!ns.empty()) cmd += " -n '" + ns + "'";
    return testing::RunCommand(cmd + " " + args + " 2>&1", out);
  }

 private:
  const testing::TempDir& tmp_;
  pid_t pid_ = -1;
};

std::string RealSkipReason() {
  if (!testing::IsRoot()) return "needs root (containerd)";
  if (!testing::HaveCommand("containerd") || !testing::HaveCommand("ctr")) {
    return "containerd or ctr is not installed";
  }
  return "";
}

// The snapshot at the top of the chain in `ns`: the one no other names as
// its parent.
std::string TopSnapshot(RealContainerd& c, const std::string& ns) {
  std::string out;
  if (c.Ctr(ns, "snapshots --snapshotter native ls", &out) != 0) return "";
  std::istringstream lines(out);
  std::string line;
  std::vector<std::string> keys;
  std::set<std::string> parents;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string key, parent;
    fields >> key >> parent;
    if (key.empty()) continue;
    keys.push_back(key);
    if (parent.rfind("sha256:", 0) == 0) parents.insert(parent);
  }
  for (const std::string& k : keys) {
    if (parents.count(k) == 0) return k;
  }
  return "";
}

TEST(ImageResolverContainerdTest, ResolvesAnImageImportedIntoContainerd) {
  const std::string why = RealSkipReason();
  if (!why.empty()) GTEST_SKIP() << why;
  testing::TempDir tmp;
  RealContainerd containerd(tmp);
  ASSERT_TRUE(containerd.Start()) << containerd.log();

  const std::map<std::string, std::string> blob = {{"containerd.io/snapshot/nydus-blob", "true"}};
  const std::map<std::string, std::string> boot = {
      {"containerd.io/snapshot/nydus-bootstrap", "true"}};
  const std::string app = "registry.example.com/team/app:1";
  const std::string plain = "docker.io/library/plain:1";
  testing::WriteFileBytes(tmp.Sub("app.tar"), OciArchive(app, {blob, blob, boot}));
  testing::WriteFileBytes(tmp.Sub("plain.tar"), OciArchive(plain, {{}, {}}));
  std::string out;
  ASSERT_EQ(containerd.Ctr(
                "rfs-a", "images import --snapshotter native '" + tmp.Sub("plain.tar") + "'", &out),
            0)
      << out;
  ASSERT_EQ(containerd.Ctr("rfs-b",
                           "images import --snapshotter native '" + tmp.Sub("app.tar") + "'", &out),
            0)
      << out;
  // containerd computed the chain ids when it unpacked the layers.
  const std::string chain = TopSnapshot(containerd, "rfs-b");
  ASSERT_EQ(chain.size(), 71u) << "no top snapshot in rfs-b";
  const std::string plain_chain = TopSnapshot(containerd, "rfs-a");
  ASSERT_EQ(plain_chain.size(), 71u) << "no top snapshot in rfs-a";

  ContainerdImageResolver resolver(containerd.socket(), std::chrono::seconds(20));
  const Labels meta{{kTargetRefLabel, chain}, {kNydusBootstrapLabel, "true"}};
  auto name = resolver.ResolveByChainOrLayer("", meta, "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, app);
  // Again, from the cache (confirmed by one listing).
  name = resolver.ResolveByChainOrLayer("rfs-a", meta, "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, app);
  // The plain image's top layer is no nydus bootstrap.
  auto none = resolver.ResolveByChainOrLayer("", {{kTargetRefLabel, plain_chain}}, "");
  ASSERT_EQ(none.status().code(), StatusCode::kNotFound) << none.status();
  EXPECT_NE(none.status().message().find("rfs-a, rfs-b"), std::string::npos) << none.status();

  // Removed from containerd: no longer found.
  ASSERT_EQ(containerd.Ctr("rfs-b", "images rm --sync '" + app + "'", &out), 0) << out;
  auto gone = resolver.ResolveByChainOrLayer("", meta, "");
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound) << gone.status();

  // containerd stopped: unavailable.
  containerd.Stop();
  auto down = resolver.ResolveByChainOrLayer("", meta, "");
  EXPECT_EQ(down.status().code(), StatusCode::kUnavailable) << down.status();
}

}  // namespace
}  // namespace rfs::snapshotter::grpc
