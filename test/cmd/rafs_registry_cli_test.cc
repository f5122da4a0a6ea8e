// `rafs` with IMAGE = registry://HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]
// against a real docker-registry on loopback: the bootstrap comes from the
// image's bootstrap layer, blobs are read lazily from the same repository;
// tags, digests, multi-platform indexes, credentials and clear errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "storage/registry_image.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

namespace rfs {
namespace {

using testing::RunCommand;
using testing::TempDir;

std::string Rafs() { return RFS_RAFS_BINARY; }

int RunRafs(const std::string& args, std::string* out) {
  out->clear();
  return RunCommand(Rafs() + " " + args + " 2>&1", out);
}

// Two files over several 64 KiB chunks, contents depending on `seed`.
testing::WrittenImage MakeImage(uint32_t seed, std::string* big) {
  std::vector<testing::TreeEntry> tree(3);
  tree[0].path = "/";
  tree[0].mode = S_IFDIR | 0755;
  tree[1].path = "/big";
  tree[1].mode = S_IFREG | 0644;
  for (int i = 0; i < 300000; ++i) {
    tree[1].data.push_back(static_cast<char>((i * 31 + seed * 7) % 251));
  }
  tree[2].path = "/small";
  tree[2].mode = S_IFREG | 0644;
  tree[2].data = "image " + std::to_string(seed) + "\n";
  *big = tree[1].data;
  testing::WriterOptions o;
  o.chunk_size = 64 << 10;
  auto w = testing::WriteImage(tree, o);
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

class RafsRegistryCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
    auto reg = testing::LocalRegistry::Start(regdir_.path());
    ASSERT_TRUE(reg.ok()) << reg.status();
    reg_ = std::move(*reg);
  }
  std::string Ref(const std::string& repo_and_tag) const {
    return "registry://" + reg_->host() + "/" + repo_and_tag;
  }
  TempDir regdir_;
  std::unique_ptr<testing::LocalRegistry> reg_;
};

TEST_F(RafsRegistryCliTest, CatCheckLsInspectExtractByTagAndDigest) {
  std::string big;
  const auto image = MakeImage(1, &big);
  testing::PushOptions po;
  po.tag = "v1";
  auto pushed = testing::PushNydusImage(*reg_, "demo/app", image, po);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  TempDir work;
  const std::string cache = work.Sub("cache");
  ASSERT_EQ(::mkdir(cache.c_str(), 0700), 0);
  std::string out;
  for (const std::string& ref :
       {Ref("demo/app:v1"), Ref("demo/app@" + pushed->manifest_digest)}) {
    out.clear();
    ASSERT_EQ(RunCommand(Rafs() + " cat " + ref + " /big --plain-http | md5sum", &out), 0);
    EXPECT_EQ(out.substr(0, 32),
              testing::Md5Hex(std::vector<uint8_t>(big.begin(), big.end())))
        << ref;
    ASSERT_EQ(RunRafs("cat " + ref + " /small --plain-http", &out), 0) << out;
    EXPECT_EQ(out, "image 1\n");
    ASSERT_EQ(RunRafs("check " + ref + " --plain-http --cache-dir " + cache, &out), 0) << out;
    EXPECT_NE(out.find("verified"), std::string::npos) << out;
  }
  ASSERT_EQ(RunRafs("ls " + Ref("demo/app:v1") + " / --plain-http", &out), 0) << out;
  EXPECT_NE(out.find("/big"), std::string::npos) << out;
  EXPECT_NE(out.find("/small"), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(RunCommand(Rafs() + " inspect --json --plain-http " + Ref("demo/app:v1"), &out), 0);
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["blobs"][0]["id"], image.blob_ids[0]);
  const std::string dest = work.Sub("x");
  ASSERT_EQ(RunRafs("extract " + Ref("demo/app:v1") + " " + dest +
                        " --plain-http --no-owners --no-devices",
                    &out),
            0)
      << out;
  EXPECT_EQ(testing::ReadFileBytes(dest + "/big"), std::vector<uint8_t>(big.begin(), big.end()));
  // A --registry naming another repository is where blobs are read from.
  EXPECT_EQ(RunRafs("cat " + Ref("demo/app:v1") + " /big --plain-http --registry " +
                        reg_->host() + "/other/repo",
                    &out),
            1)
      << out;
  EXPECT_NE(out.find("not found (404)"), std::string::npos) << out;
}

TEST_F(RafsRegistryCliTest, MultiPlatformIndexPicksTheNydusManifestOfThePlatform) {
  std::string big_host, big_other;
  const auto host_image = MakeImage(2, &big_host);
  const auto other_image = MakeImage(3, &big_other);
  const std::string host_arch = storage::HostPlatform().architecture;
  const std::string other_arch = host_arch == "s390x" ? "ppc64le" : "s390x";
  testing::PushOptions po;
  po.tag = "";
  po.architecture = host_arch;
  auto a = testing::PushNydusImage(*reg_, "demo/multi", host_image, po);
  ASSERT_TRUE(a.ok()) << a.status();
  po.architecture = other_arch;
  auto b = testing::PushNydusImage(*reg_, "demo/multi", other_image, po);
  ASSERT_TRUE(b.ok()) << b.status();
  auto plain = testing::PushPlainImage(*reg_, "demo/multi", "", {{"small", "plain\n"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  std::vector<testing::IndexEntry> entries(4);
  entries[0].image = *plain;  // the OCI original first, as in a merged index
  entries[0].architecture = host_arch;
  entries[1].image = *a;
  entries[1].architecture = host_arch;
  entries[1].nydus_artifact_type = true;
  entries[2].image = *plain;
  entries[2].architecture = other_arch;
  entries[3].image = *b;
  entries[3].architecture = other_arch;
  entries[3].nydus_os_feature = true;
  ASSERT_TRUE(testing::PushIndex(*reg_, "demo/multi", "latest", entries).ok());
  std::string out;
  // No tag: latest; the host's platform by default.
  ASSERT_EQ(RunRafs("cat " + Ref("demo/multi") + " /small --plain-http", &out), 0) << out;
  EXPECT_EQ(out, "image 2\n");
  ASSERT_EQ(RunRafs("cat " + Ref("demo/multi") + " /small --plain-http --platform linux/" +
                        other_arch,
                    &out),
            0)
      << out;
  EXPECT_EQ(out, "image 3\n");
  ASSERT_EQ(RunRafs("check " + Ref("demo/multi") + " --plain-http --platform linux/" + other_arch,
                    &out),
            0)
      << out;
  EXPECT_EQ(RunRafs("cat " + Ref("demo/multi") + " /small --plain-http --platform linux/mips64",
                    &out),
            1);
  EXPECT_NE(out.find("index has no manifest for linux/mips64 (it has linux/" + host_arch),
            std::string::npos)
      << out;
  EXPECT_EQ(RunRafs("cat " + Ref("demo/multi") + " /small --plain-http --platform linux", &out),
            1);
  EXPECT_NE(out.find("--platform: platform 'linux': want OS/ARCH[/VARIANT]"), std::string::npos)
      << out;
}

TEST_F(RafsRegistryCliTest, ClearErrors) {
  auto plain = testing::PushPlainImage(*reg_, "demo/plain", "v1", {{"etc/hostname", "x\n"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  std::string out;
  struct Case {
    std::string args, says;
    int code = 1;
  } cases[] = {
      {"cat " + Ref("demo/plain:v1") + " /x --plain-http",
       "rafs cat: image " + reg_->host() + "/demo/plain:v1: manifest " + plain->manifest_digest +
           ": not a nydus (RAFS) image"},
      {"cat " + Ref("demo/plain:nope") + " /x --plain-http", "not found (404)"},
      {"check " + Ref("Demo/App") + " --plain-http", "bad repository 'Demo/App'"},
      {"ls registry://demo/app --plain-http", "'demo' is not a registry host"},
      {"inspect " + Ref("demo/app@sha256:1234") + " --plain-http",
       "is not sha256:<64 lower-case hex digits>"},
      // TLS to a plain HTTP registry: an error, quickly.
      {"cat " + Ref("demo/plain:v1") + " /x", "rafs cat: image "},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RunRafs(c.args, &out), c.code) << c.args << "\n" << out;
    EXPECT_NE(out.find(c.says), std::string::npos) << c.args << "\n" << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << c.args << "\n" << out;
  }
  // A bootstrap layer whose image.boot is not a bootstrap: corrupt (exit 3).
  std::string big;
  auto image = MakeImage(4, &big);
  image.bootstrap.assign(4096, 'x');
  testing::PushOptions po;
  po.tag = "junk";
  ASSERT_TRUE(testing::PushNydusImage(*reg_, "demo/junk", image, po).ok());
  EXPECT_EQ(RunRafs("ls " + Ref("demo/junk:junk") + " --plain-http", &out), 3) << out;
  EXPECT_NE(out.find("registry://" + reg_->host() + "/demo/junk:junk: bootstrap"),
            std::string::npos)
      << out;
}

// `rafs mount registry://...` (root and /dev/fuse only): the mount serves
// the image with blobs read lazily from the repository.
TEST_F(RafsRegistryCliTest, MountServesARegistryImage) {
  if (!testing::IsRoot()) GTEST_SKIP() << "needs root to mount FUSE";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/fuse is not available";
  std::string big;
  const auto image = MakeImage(6, &big);
  testing::PushOptions po;
  po.tag = "v1";
  ASSERT_TRUE(testing::PushNydusImage(*reg_, "demo/mnt", image, po).ok());
  TempDir t;
  const std::string mnt = t.Sub("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  std::string out;
  ASSERT_EQ(RunRafs("mount " + Ref("demo/mnt:v1") + " " + mnt + " --plain-http", &out), 0) << out;
  struct Unmount {
    std::string dir;
    ~Unmount() { RunCommand("umount -l " + dir + " 2>/dev/null"); }
  } unmount{mnt};
  EXPECT_EQ(testing::ReadFileBytes(mnt + "/big"), std::vector<uint8_t>(big.begin(), big.end()));
  out.clear();
  ASSERT_EQ(RunCommand("cat " + mnt + "/small", &out), 0);
  EXPECT_EQ(out, "image 6\n");
  EXPECT_EQ(RunCommand("umount " + mnt), 0);
}

TEST(RafsRegistryCliAuthTest, DockerConfigCredentialsAreUsedAndNeverPrinted) {
  if (!testing::LocalRegistry::Available() || !testing::HaveCommand("htpasswd")) {
    GTEST_SKIP() << "docker-registry or htpasswd (apache2-utils) is not installed";
  }
  TempDir regdir;
  const std::string secret = "Pa55-w0rd-xyz";
  auto reg = testing::LocalRegistry::Start(regdir.path(), "carol", secret);
  ASSERT_TRUE(reg.ok()) << reg.status();
  std::string big;
  const auto image = MakeImage(5, &big);
  testing::PushOptions po;
  po.tag = "v1";
  ASSERT_TRUE(testing::PushNydusImage(**reg, "private/app", image, po).ok());
  TempDir work;
  const std::string ref = "registry://" + (*reg)->host() + "/private/app:v1";
  auto config = [&](const std::string& password) {
    const std::string path = work.Sub("config-" + password + ".json");
    std::ofstream f(path);
    f << "{\"auths\":{\"" << (*reg)->host() << "\":{\"username\":\"carol\",\"password\":\""
      << password << "\"}}}";
    return path;
  };
  std::string out;
  EXPECT_EQ(RunRafs("cat " + ref + " /small --plain-http --docker-config " + config(secret), &out),
            0)
      << out;
  EXPECT_EQ(out, "image 5\n");
  EXPECT_EQ(RunRafs("cat " + ref + " /small --plain-http --docker-config " + config("wrong"),
                    &out),
            1);
  EXPECT_NE(out.find("401"), std::string::npos) << out;
  EXPECT_EQ(out.find("wrong"), std::string::npos) << out;
  EXPECT_EQ(RunRafs("cat " + ref + " /small --plain-http --docker-config " + work.Sub("none.json"),
                    &out),
            1);
  EXPECT_NE(out.find("requires credentials"), std::string::npos) << out;
  EXPECT_EQ(out.find(secret), std::string::npos) << out;
}

// --hosts-dir: manifests and blobs through a mirror (here the test's
// registry) while the registry named by the image is down.
TEST_F(RafsRegistryCliTest, HostsDirMirrorServesWhileTheRegistryIsDown) {
  std::string big;
  const auto image = MakeImage(5, &big);
  testing::PushOptions po;
  po.tag = "v1";
  ASSERT_TRUE(testing::PushNydusImage(*reg_, "demo/app", image, po).ok());
  const std::string origin = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  TempDir hosts;
  const std::string dir = hosts.Sub(origin);
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  auto write = [&](const std::string& text) { std::ofstream(dir + "/hosts.toml") << text; };
  write("server = \"http://" + origin + "\"\n[host.\"http://" + reg_->host() +
        "\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
  const std::string ref = "registry://" + origin + "/demo/app:v1";
  std::string out;
  ASSERT_EQ(RunCommand(Rafs() + " cat " + ref + " /big --plain-http --hosts-dir " + hosts.path() +
                           " | md5sum",
                       &out),
            0);
  EXPECT_EQ(out.substr(0, 32), testing::Md5Hex(std::vector<uint8_t>(big.begin(), big.end())));
  ASSERT_EQ(RunRafs("cat " + ref + " /small --hosts-dir " + hosts.path(), &out), 0) << out;
  EXPECT_EQ(out, "image 5\n");
  // Without the option, or with a mirror for blobs only, the manifest has
  // to come from the registry, which is down.
  EXPECT_EQ(RunRafs("cat " + ref + " /small --plain-http", &out), 1) << out;
  EXPECT_NE(out.find("cannot connect"), std::string::npos) << out;
  write("[host.\"http://" + reg_->host() + "\"]\n  capabilities = [\"pull\"]\n");
  EXPECT_EQ(RunRafs("cat " + ref + " /small --plain-http --hosts-dir " + hosts.path(), &out), 1)
      << out;
  EXPECT_NE(out.find("cannot connect"), std::string::npos) << out;
  // A broken hosts.toml: an error naming the file and line.
  write("[host.\"http://" + reg_->host() + "\"]\n  capabilities = [\"pull\"\n");
  EXPECT_NE(RunRafs("cat " + ref + " /small --plain-http --hosts-dir " + hosts.path(), &out), 0);
  EXPECT_NE(out.find(dir + "/hosts.toml:3: unterminated array"), std::string::npos) << out;
}

}  // namespace
}  // namespace rfs
