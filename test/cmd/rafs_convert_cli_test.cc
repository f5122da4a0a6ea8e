// `rafs convert` against a real docker-registry on loopback: OCI images
// built here (several layers with whiteouts, opaque directories, hard
// links, symlinks, xattrs and an empty layer) are converted, and the result
// is checked the ways a consumer would: `rafs extract` of the converted
// image equals `umoci unpack` of the source, the documents follow the OCI
// rules and the nydus layout (FetchRemoteImage finds the bootstrap and
// blobs), a second conversion is byte-identical, cached layers are not
// converted again, a corrupt source blob fails cleanly with nothing
// tagged, indexes keep their platforms with the nydus markers, and oci:
// layout directories work as source and destination.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/digest.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "storage/layer_tar.h"
#include "storage/registry_backend.h"
#include "storage/registry_image.h"
#include "test/support/dir_compare.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image.h"
#include "test/support/test_util.h"

namespace rfs {
namespace {

using Json = nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

std::string Rafs() { return RFS_RAFS_BINARY; }

int Sh(const std::string& cmd, std::string* out) {
  out->clear();
  return RunCommand(cmd + " 2>&1", out);
}

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string Sha256(const std::vector<uint8_t>& b) {
  return "sha256:" + base::DigestHex(base::Sha256(b));
}

// A tar writer with what layers need: modes, owners, times, link names and
// pax records (xattrs).
class Tar {
 public:
  void Dir(const std::string& name, uint32_t mode = 0755) { Entry(name + "/", '5', mode, ""); }
  void File(const std::string& name, const std::string& data, uint32_t mode = 0644,
            const std::map<std::string, std::string>& xattrs = {}, uint32_t uid = 0) {
    if (!xattrs.empty()) {
      std::string records;
      for (const auto& [k, v] : xattrs) records += Record("SCHILY.xattr." + k, v);
      Entry("PaxHeaders/" + name, 'x', 0644, records);
    }
    Entry(name, '0', mode, data, "", uid);
  }
  void Symlink(const std::string& name, const std::string& target) {
    Entry(name, '2', 0777, "", target);
  }
  void HardLink(const std::string& name, const std::string& target) {
    Entry(name, '1', 0644, "", target);
  }
  std::vector<uint8_t> Finish() const {
    std::vector<uint8_t> out = bytes_;
    out.resize(out.size() + 1024, 0);
    return out;
  }

 private:
  static std::string Record(const std::string& key, const std::string& value) {
    const std::string body = " " + key + "=" + value + "\n";
    size_t len = body.size() + 1;
    while (std::to_string(len).size() + body.size() != len) ++len;
    return std::to_string(len) + body;
  }
  void Entry(const std::string& name, char type, uint32_t mode, const std::string& data,
             const std::string& link = "", uint32_t uid = 0) {
    uint8_t h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", mode);
    std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", uid);
    std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", uid);
    std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011zo", data.size());
    std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 1700000000u);
    h[156] = static_cast<uint8_t>(type);
    std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    testing::SetTarChecksum(h);
    bytes_.insert(bytes_.end(), h, h + 512);
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    bytes_.resize((bytes_.size() + 511) / 512 * 512, 0);
  }
  std::vector<uint8_t> bytes_;
};

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>((x >> 16) % 61 + 'A');  // compressible, not trivially
  }
  return s;
}

// The layers of the test image, bottom first. Like the layers image
// builders write, every member's parent directory has its own entry (a
// directory only implied by a member's path gets default attributes, where
// unpackers keep the lower layer's).
std::vector<std::vector<uint8_t>> TestLayers() {
  std::vector<std::vector<uint8_t>> layers;
  Tar l1;
  l1.Dir("etc");
  l1.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644, {{"user.origin", "layer1"}});
  l1.File("etc/hostname", "one\n");
  l1.Dir("usr");
  l1.Dir("usr/bin");
  l1.File("usr/bin/tool", Pattern(3 << 20, 1), 0755);
  l1.HardLink("usr/bin/tool-link", "usr/bin/tool");
  l1.Symlink("usr/bin/alias", "tool");
  l1.Dir("usr/lib");
  l1.File("usr/lib/libgone.so", Pattern(5000, 2));
  l1.File("usr/lib/libkept.so", Pattern(70000, 3));
  l1.Dir("var");
  l1.Dir("var/cache");
  l1.File("var/cache/old1", "old cache 1\n");
  l1.File("var/cache/old2", "old cache 2\n", 0600, {}, 1000);
  l1.Dir("opt");
  l1.Dir("opt/app");
  l1.File("opt/app/data", Pattern(200000, 4));
  layers.push_back(testing::Gzip(l1.Finish()));

  Tar l2;  // deletions: a whiteout, an opaque directory, a removed tree
  l2.Dir("usr");
  l2.Dir("usr/lib");
  l2.File("usr/lib/.wh.libgone.so", "");
  l2.Dir("var");
  l2.Dir("var/cache");
  l2.File("var/cache/.wh..wh..opq", "");
  l2.File("var/cache/new", "new cache\n");
  l2.File(".wh.opt", "");
  l2.Dir("etc");
  l2.File("etc/hostname", "two\n", 0600, {{"user.changed", "yes"}, {"trusted.note", "t"}});
  layers.push_back(testing::Gzip(l2.Finish()));

  Tar l3;  // empty layer: no members at all
  layers.push_back(testing::Gzip(l3.Finish()));

  Tar l4;  // only directories: no file data, no blob
  l4.Dir("srv");
  l4.Dir("srv/empty", 0700);
  layers.push_back(testing::Gzip(l4.Finish()));

  Tar l5;  // more links, replaced file, plain tar (uncompressed layer)
  l5.Dir("usr");
  l5.Dir("usr/bin");
  l5.File("usr/bin/tool2", Pattern(100000, 6), 0755);
  l5.HardLink("usr/bin/tool2-link", "usr/bin/tool2");
  l5.HardLink("usr/bin/tool2-link2", "usr/bin/tool2");
  l5.Dir("usr/lib");
  l5.Dir("etc");
  l5.File("usr/lib/libkept.so", Pattern(90000, 5));
  l5.Symlink("etc/motd", "/etc/hostname");
  l5.File("etc/empty", "");
  layers.push_back(l5.Finish());
  return layers;
}

struct SourceImage {
  std::string manifest_digest;
  std::vector<uint8_t> manifest;
  std::vector<std::string> layer_digests;
};

// Pushes an OCI image of `layers` to `repo:tag` and writes the same image
// to the OCI layout `oci_dir` (tag `tag`) when given.
SourceImage PushSource(testing::LocalRegistry& reg, const std::string& repo,
                       const std::string& tag, const std::vector<std::vector<uint8_t>>& layers,
                       const std::string& oci_dir = "", const std::string& arch = "amd64",
                       bool docker = false) {
  SourceImage img;
  Json diff_ids = Json::array(), history = Json::array(), jl = Json::array();
  std::vector<std::pair<std::string, std::vector<uint8_t>>> blobs;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto id = reg.PushBlob(repo, layers[i]);
    EXPECT_TRUE(id.ok()) << id.status();
    const bool gz = layers[i].size() > 2 && layers[i][0] == 0x1f && layers[i][1] == 0x8b;
    auto plain = storage::DecompressLayer(layers[i], 1u << 30);
    EXPECT_TRUE(plain.ok());
    diff_ids.push_back(Sha256(*plain));
    history.push_back({{"created_by", "layer " + std::to_string(i)}});
    if (i == 0) history.push_back({{"created_by", "ENV X=1"}, {"empty_layer", true}});
    const std::string digest = Sha256(layers[i]);
    img.layer_digests.push_back(digest);
    const char* layer_type = docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                             : gz     ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                      : "application/vnd.oci.image.layer.v1.tar";
    jl.push_back({{"mediaType", layer_type},
                  {"digest", digest},
                  {"size", layers[i].size()}});
    blobs.emplace_back(digest, layers[i]);
  }
  Json config = {{"architecture", arch},
                 {"os", "linux"},
                 {"config", {{"Env", {"PATH=/usr/bin"}}, {"Cmd", {"/usr/bin/tool"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
                 {"history", history}};
  const std::vector<uint8_t> cfg = Bytes(config.dump());
  EXPECT_TRUE(reg.PushBlob(repo, cfg).ok());
  blobs.emplace_back(Sha256(cfg), cfg);
  const std::string manifest_type = docker
                                        ? "application/vnd.docker.distribution.manifest.v2+json"
                                        : "application/vnd.oci.image.manifest.v1+json";
  Json m = {{"schemaVersion", 2},
            {"mediaType", manifest_type},
            {"config",
             {{"mediaType", docker ? "application/vnd.docker.container.image.v1+json"
                                   : "application/vnd.oci.image.config.v1+json"},
              {"digest", Sha256(cfg)},
              {"size", cfg.size()}}},
            {"layers", jl}};
  img.manifest = Bytes(m.dump());
  auto d = reg.PushManifest(repo, tag, manifest_type, img.manifest);
  EXPECT_TRUE(d.ok()) << d.status();
  img.manifest_digest = *d;
  if (!oci_dir.empty()) {
    ::mkdir(oci_dir.c_str(), 0755);
    ::mkdir((oci_dir + "/blobs").c_str(), 0755);
    ::mkdir((oci_dir + "/blobs/sha256").c_str(), 0755);
    blobs.emplace_back(img.manifest_digest, img.manifest);
    for (const auto& [digest, bytes] : blobs) {
      testing::WriteFileBytes(oci_dir + "/blobs/sha256/" + digest.substr(7), bytes);
    }
    testing::WriteFileBytes(oci_dir + "/oci-layout", Bytes(R"({"imageLayoutVersion":"1.0.0"})"));
    Json index = {{"schemaVersion", 2},
                  {"manifests",
                   {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"digest", img.manifest_digest},
                     {"size", img.manifest.size()},
                     {"annotations", {{"org.opencontainers.image.ref.name", tag}}}}}}};
    testing::WriteFileBytes(oci_dir + "/index.json", Bytes(index.dump()));
  }
  return img;
}

class RafsConvertCliTest : public ::testing::Test {
 public:
  void SetUp() override {
    if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
    auto reg = testing::LocalRegistry::Start(regdir_.path());
    ASSERT_TRUE(reg.ok()) << reg.status();
    reg_ = std::move(*reg);
    cache_ = work_.Sub("cache");
  }
  std::string Ref(const std::string& repo_and_tag) const {
    return "registry://" + reg_->host() + "/" + repo_and_tag;
  }
  // rafs convert SRC DST with the test's cache; returns the exit code.
  int Convert(const std::string& src, const std::string& dst, std::string* out,
              const std::string& extra = "") {
    return Sh(Rafs() + " convert " + src + " " + dst + " --plain-http --cache-dir " + cache_ +
                   " " + extra,
               out);
  }
  std::shared_ptr<storage::RegistryBackend> Backend(const std::string& repo) {
    storage::RegistryOptions o;
    o.host = reg_->host();
    o.repository = repo;
    o.plain_http = true;
    auto b = storage::RegistryBackend::Create(o);
    EXPECT_TRUE(b.ok());
    return *b;
  }
  std::vector<uint8_t> GetBlob(const std::string& repo, const std::string& digest) {
    httplib::Client cli("127.0.0.1", reg_->port());
    auto r = cli.Get("/v2/" + repo + "/blobs/" + digest);
    if (!r || r->status != 200) return {};
    return Bytes(r->body);
  }
  int ManifestStatus(const std::string& repo, const std::string& ref) {
    httplib::Client cli("127.0.0.1", reg_->port());
    auto r = cli.Head("/v2/" + repo + "/manifests/" + ref,
                      {{"Accept",
                        "application/vnd.oci.image.manifest.v1+json, "
                        "application/vnd.oci.image.index.v1+json"}});
    return r ? r->status : -1;
  }

  TempDir regdir_, work_;
  std::string cache_;
  std::unique_ptr<testing::LocalRegistry> reg_;
};

// Checks a pushed manifest against the OCI rules and the nydus layout;
// returns it parsed.
Json CheckManifest(RafsConvertCliTest* t, const std::string& repo,
                   const std::vector<uint8_t>& bytes, size_t want_blobs) {
  Json m = Json::parse(bytes);
  EXPECT_EQ(m["schemaVersion"], 2);
  EXPECT_EQ(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(m["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
  const std::vector<uint8_t> cfg = t->GetBlob(repo, m["config"]["digest"]);
  EXPECT_EQ(Sha256(cfg), m["config"]["digest"]);
  EXPECT_EQ(cfg.size(), m["config"]["size"]);
  Json config = Json::parse(cfg);
  const Json& layers = m["layers"];
  EXPECT_EQ(layers.size(), want_blobs + 1);
  EXPECT_EQ(config["rootfs"]["type"], "layers");
  EXPECT_EQ(config["rootfs"]["diff_ids"].size(), layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const Json& l = layers[i];
    const std::vector<uint8_t> blob = t->GetBlob(repo, l["digest"]);
    EXPECT_EQ(Sha256(blob), l["digest"]) << i;
    EXPECT_EQ(blob.size(), l["size"]) << i;
    if (i + 1 < layers.size()) {
      EXPECT_EQ(l["mediaType"], "application/vnd.oci.image.layer.nydus.blob.v1");
      EXPECT_EQ(l["annotations"]["containerd.io/snapshot/nydus-blob"], "true");
      EXPECT_EQ(config["rootfs"]["diff_ids"][i], l["digest"]);
    } else {
      EXPECT_EQ(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
      EXPECT_EQ(l["annotations"]["containerd.io/snapshot/nydus-bootstrap"], "true");
      EXPECT_EQ(l["annotations"]["containerd.io/snapshot/nydus-fs-version"], "6");
      Json ids = Json::parse(l["annotations"]["containerd.io/snapshot/nydus-reference-blob-ids"]
                                 .get<std::string>());
      EXPECT_EQ(ids.size(), want_blobs);
      auto tar = storage::DecompressLayer(blob, 1u << 30);
      EXPECT_TRUE(tar.ok());
      if (tar.ok()) {
        EXPECT_EQ(config["rootfs"]["diff_ids"][i], Sha256(*tar));
        std::vector<std::string> names;
        EXPECT_TRUE(storage::ForEachTarEntry(*tar, [&](const storage::TarEntry& e) {
                      names.push_back(e.name + ":" + e.type);
                      return true;
                    }).ok());
        EXPECT_EQ(names, (std::vector<std::string>{"image:5", "image/image.boot:0"}));
      }
      // gzip header without a timestamp.
      EXPECT_EQ(blob[4] | blob[5] | blob[6] | blob[7], 0);
    }
  }
  // History: the source's entries (layers without data marked empty) and
  // the bootstrap's.
  const Json& h = config["history"];
  size_t non_empty = 0;
  for (const Json& e : h) non_empty += e.value("empty_layer", false) ? 0 : 1;
  EXPECT_EQ(non_empty, layers.size());
  EXPECT_EQ(config["config"]["Cmd"][0], "/usr/bin/tool");
  return m;
}

TEST_F(RafsConvertCliTest, RoundTripEqualsUmociUnpackAndFollowsTheLayout) {
  if (!testing::HaveCommand("umoci")) GTEST_SKIP() << "umoci is not installed";
  if (!testing::IsRoot()) GTEST_SKIP() << "needs root (owners, trusted.* xattrs)";
  const std::string oci = work_.Sub("oci");
  const SourceImage src = PushSource(*reg_, "app/src", "v1", TestLayers(), oci);
  std::string out;
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:v1-rafs"), &out), 0) << out;
  EXPECT_NE(out.find("layer 1/5: converted"), std::string::npos) << out;

  // The documents.
  auto backend = Backend("app/conv");
  auto m = backend->GetManifest("v1-rafs", storage::IoContext{});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NE(out.find(m->digest), std::string::npos) << out;
  // Layers 1, 2 and 5 carry file data; 3 (empty) and 4 (directories) do not.
  const Json manifest = CheckManifest(this, "app/conv", m->bytes, 3);
  const Json config = Json::parse(GetBlob("app/conv", manifest["config"]["digest"]));
  EXPECT_EQ(config["architecture"], "amd64");
  EXPECT_EQ(config["config"]["Env"][0], "PATH=/usr/bin");
  int marked_empty = 0;
  for (const Json& e : config["history"]) {
    if (e.value("empty_layer", false) && e["created_by"] != "ENV X=1") ++marked_empty;
  }
  EXPECT_EQ(marked_empty, 2);

  // What our snapshotter does with it.
  storage::RemoteImageOptions ro;
  auto remote = storage::FetchRemoteImage(backend, "v1-rafs", ro, storage::IoContext{});
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(remote->manifest_digest, m->digest);
  EXPECT_EQ(remote->bootstrap_name, "image/image.boot");
  EXPECT_EQ(remote->blob_layers.size(), 3u);
  EXPECT_EQ(remote->bootstrap_layer.digest, manifest["layers"][3]["digest"]);

  // rafs extract of the converted image == umoci unpack of the source.
  const std::string mine = work_.Sub("extracted");
  ASSERT_EQ(Sh(Rafs() + " extract " + Ref("app/conv:v1-rafs") + " " + mine + " --plain-http",
                &out),
            0)
      << out;
  const std::string bundle = work_.Sub("bundle");
  ASSERT_EQ(Sh("umoci unpack --image " + oci + ":v1 " + bundle, &out), 0) << out;
  const std::string theirs = bundle + "/rootfs";
  // Roots differ by nature (umoci makes its own); everything below is compared.
  const timespec times[2] = {{0, 0}, {0, 0}};
  ::utimensat(AT_FDCWD, mine.c_str(), times, AT_SYMLINK_NOFOLLOW);
  ::utimensat(AT_FDCWD, theirs.c_str(), times, AT_SYMLINK_NOFOLLOW);
  ::chmod(mine.c_str(), 0755);
  ::chmod(theirs.c_str(), 0755);
  const auto diffs = testing::CompareDirectories(theirs, mine);
  for (const auto& d : diffs) ADD_FAILURE() << d;
  struct stat st;
  EXPECT_NE(::lstat((mine + "/usr/lib/libgone.so").c_str(), &st), 0);
  EXPECT_NE(::lstat((mine + "/var/cache/old1").c_str(), &st), 0);
  EXPECT_NE(::lstat((mine + "/opt").c_str(), &st), 0);
  ASSERT_EQ(::lstat((mine + "/usr/bin/tool2-link2").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  ASSERT_EQ(::lstat((mine + "/usr/bin/tool-link").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);

  // And reads through the registry path.
  ASSERT_EQ(Sh(Rafs() + " check " + Ref("app/conv:v1-rafs") + " --plain-http", &out), 0) << out;
  ASSERT_EQ(Sh(Rafs() + " cat " + Ref("app/conv:v1-rafs") + " /etc/hostname --plain-http", &out),
            0);
  EXPECT_EQ(out, "two\n");
}

TEST_F(RafsConvertCliTest, SecondConversionIsByteIdenticalAndUsesTheCache) {
  PushSource(*reg_, "app/src", "v1", TestLayers());
  std::string out1, out2, out3;
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:a"), &out1), 0) << out1;
  struct stat before;
  std::string entry;
  {
    std::string ls;
    RunCommand("ls " + cache_ + " | head -1", &ls);
    entry = cache_ + "/" + ls.substr(0, ls.find('\n'));
    ASSERT_EQ(::stat((entry + "/entry.json").c_str(), &before), 0) << entry;
  }
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:b"), &out2), 0) << out2;
  for (int i = 1; i <= 5; ++i) {
    const std::string l = "layer " + std::to_string(i) + "/5: ";
    EXPECT_NE(out2.find(l + "sha256:"), std::string::npos) << out2;
    EXPECT_EQ(out2.find(l + "converted"), std::string::npos) << out2;
  }
  EXPECT_NE(out2.find("cached, not converted again"), std::string::npos) << out2;
  EXPECT_NE(out2.find("(0 layers converted, 5 from the cache)"), std::string::npos) << out2;
  EXPECT_NE(out1.find("(5 layers converted, 0 from the cache)"), std::string::npos) << out1;
  EXPECT_NE(out2.find("already in"), std::string::npos) << out2;
  struct stat after;
  ASSERT_EQ(::stat((entry + "/entry.json").c_str(), &after), 0);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  // Without the cache, into another repository: the same bytes again.
  ASSERT_EQ(Sh(Rafs() + " convert " + Ref("app/src:v1") + " " + Ref("other/conv:c") +
                    " --plain-http --no-cache -j 1",
                &out3),
            0)
      << out3;
  auto a = Backend("app/conv")->GetManifest("a", storage::IoContext{});
  auto b = Backend("app/conv")->GetManifest("b", storage::IoContext{});
  auto c = Backend("other/conv")->GetManifest("c", storage::IoContext{});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_EQ(a->bytes, c->bytes);

  // A cache entry whose blob was damaged is not trusted: converted again.
  std::string blobs;
  RunCommand("ls " + cache_ + "/*/ | grep -E '^[0-9a-f]{64}$' | head -1", &blobs);
  blobs = blobs.substr(0, blobs.find('\n'));
  std::string path;
  RunCommand("ls " + cache_ + "/*/" + blobs, &path);
  path = path.substr(0, path.find('\n'));
  ASSERT_FALSE(path.empty());
  std::vector<uint8_t> data = testing::ReadFileBytes(path);
  data[data.size() / 2] ^= 1;
  testing::WriteFileBytes(path, data);
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:d"), &out3), 0) << out3;
  EXPECT_NE(out3.find(": converted"), std::string::npos) << out3;
  auto d = Backend("app/conv")->GetManifest("d", storage::IoContext{});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->digest, a->digest);
}

TEST_F(RafsConvertCliTest, CorruptSourceBlobFailsWithNothingTagged) {
  const SourceImage src = PushSource(*reg_, "app/src", "v1", TestLayers());
  // Flip a byte of the second layer in the registry's storage: it serves
  // the bytes without checking them.
  const std::string hex = src.layer_digests[1].substr(7);
  const std::string data = regdir_.path() + "/data/docker/registry/v2/blobs/sha256/" +
                           hex.substr(0, 2) + "/" + hex + "/data";
  std::vector<uint8_t> bytes = testing::ReadFileBytes(data);
  ASSERT_FALSE(bytes.empty()) << data;
  bytes[bytes.size() / 2] ^= 0x40;
  testing::WriteFileBytes(data, bytes);
  std::string out;
  EXPECT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:v1-rafs"), &out, "-j 1"), 3) << out;
  EXPECT_NE(out.find("layer 2/5"), std::string::npos) << out;
  EXPECT_NE(out.find(src.layer_digests[1]), std::string::npos) << out;
  EXPECT_NE(out.find("content digest is"), std::string::npos) << out;
  EXPECT_EQ(ManifestStatus("app/conv", "v1-rafs"), 404);
  // Damage early in a gzip stream makes the builder give up at once; the
  // error still names the digest mismatch, not just the broken archive.
  const std::string hex0 = src.layer_digests[0].substr(7);
  const std::string data0 = regdir_.path() + "/data/docker/registry/v2/blobs/sha256/" +
                            hex0.substr(0, 2) + "/" + hex0 + "/data";
  bytes = testing::ReadFileBytes(data0);
  ASSERT_GT(bytes.size(), 4096u);
  bytes[300] ^= 0xff;
  testing::WriteFileBytes(data0, bytes);
  EXPECT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:v1-rafs"), &out, "-j 1 --no-cache"), 3)
      << out;
  EXPECT_NE(out.find("layer 1/5 " + src.layer_digests[0]), std::string::npos) << out;
  EXPECT_NE(out.find("content digest is"), std::string::npos) << out;
  EXPECT_EQ(ManifestStatus("app/conv", "v1-rafs"), 404);
}

TEST_F(RafsConvertCliTest, IndexKeepsPlatformsWithNydusMarkers) {
  auto layers = TestLayers();
  const SourceImage amd = PushSource(*reg_, "app/multi", "amd64-only", layers, "", "amd64");
  layers.pop_back();
  const SourceImage arm = PushSource(*reg_, "app/multi", "arm64-only", layers, "", "arm64");
  Json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", amd.manifest_digest},
                   {"size", amd.manifest.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
                  {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", arm.manifest_digest},
                   {"size", arm.manifest.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}}}}}};
  ASSERT_TRUE(reg_->PushManifest("app/multi", "v1", "application/vnd.oci.image.index.v1+json",
                                 Bytes(index.dump()))
                  .ok());
  std::string out;
  ASSERT_EQ(Convert(Ref("app/multi:v1"), Ref("app/multi:v1-rafs"), &out, "--all-platforms"), 0)
      << out;
  auto backend = Backend("app/multi");
  auto got = backend->GetManifest("v1-rafs", storage::IoContext{});
  ASSERT_TRUE(got.ok()) << got.status();
  Json j = Json::parse(got->bytes);
  EXPECT_EQ(j["mediaType"], "application/vnd.oci.image.index.v1+json");
  ASSERT_EQ(j["manifests"].size(), 2u);
  for (const Json& e : j["manifests"]) {
    EXPECT_EQ(e["artifactType"], "application/vnd.nydus.image.manifest.v1+json");
    EXPECT_EQ(e["platform"]["os.features"][0], "nydus.remoteimage.v1");
    auto child = backend->GetManifest(e["digest"], storage::IoContext{});
    ASSERT_TRUE(child.ok());
    EXPECT_EQ(child->bytes.size(), e["size"]);
  }
  EXPECT_EQ(j["manifests"][1]["platform"]["variant"], "v8");
  // Layers shared by both platforms were converted once.
  size_t converted = 0;
  for (size_t p = out.find(": converted"); p != std::string::npos;
       p = out.find(": converted", p + 1)) {
    ++converted;
  }
  EXPECT_EQ(converted, 5u) << out;
  for (const char* arch : {"amd64", "arm64"}) {
    storage::RemoteImageOptions ro;
    ro.platform = *storage::ParsePlatform(std::string("linux/") + arch);
    auto remote = storage::FetchRemoteImage(backend, "v1-rafs", ro, storage::IoContext{});
    ASSERT_TRUE(remote.ok()) << remote.status();
    ASSERT_TRUE(remote->platform.has_value());
    EXPECT_EQ(remote->platform->architecture, arch);
    EXPECT_EQ(remote->blob_layers.size(), std::string(arch) == "amd64" ? 3u : 2u);
  }
  // Only the asked-for platform.
  ASSERT_EQ(Convert(Ref("app/multi:v1"), Ref("app/multi:arm"), &out, "--platform linux/arm64"), 0)
      << out;
  got = backend->GetManifest("arm", storage::IoContext{});
  ASSERT_TRUE(got.ok());
  j = Json::parse(got->bytes);
  ASSERT_EQ(j["manifests"].size(), 1u);
  EXPECT_EQ(j["manifests"][0]["platform"]["architecture"], "arm64");
  EXPECT_NE(Convert(Ref("app/multi:v1"), Ref("app/multi:x"), &out, "--platform linux/s390x"), 0);
  EXPECT_NE(out.find("no manifest for linux/s390x"), std::string::npos) << out;
}

TEST_F(RafsConvertCliTest, DockerSchema2SourceGivesTheSameOciImage) {
  // Docker media types (gzip layers all; the plain-tar layer is dropped
  // since Docker has no type for it) convert like their OCI twin.
  auto layers = TestLayers();
  layers.pop_back();
  PushSource(*reg_, "app/docker", "v1", layers, "", "amd64", /*docker=*/true);
  PushSource(*reg_, "app/oci", "v1", layers);
  std::string out;
  ASSERT_EQ(Convert(Ref("app/docker:v1"), Ref("app/conv:from-docker"), &out), 0) << out;
  ASSERT_EQ(Convert(Ref("app/oci:v1"), Ref("app/conv:from-oci"), &out), 0) << out;
  auto a = Backend("app/conv")->GetManifest("from-docker", storage::IoContext{});
  auto b = Backend("app/conv")->GetManifest("from-oci", storage::IoContext{});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(a->digest, b->digest);
  CheckManifest(this, "app/conv", a->bytes, 2);
}

TEST_F(RafsConvertCliTest, OciLayoutSourceAndDestination) {
  const std::string oci = work_.Sub("oci");
  PushSource(*reg_, "app/src", "v1", TestLayers(), oci);
  std::string out;
  // oci: -> registry: the same image as from the registry.
  ASSERT_EQ(Convert("oci:" + oci + ":v1", Ref("app/conv:from-oci"), &out), 0) << out;
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:from-reg"), &out), 0) << out;
  auto a = Backend("app/conv")->GetManifest("from-oci", storage::IoContext{});
  auto b = Backend("app/conv")->GetManifest("from-reg", storage::IoContext{});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->digest, b->digest);
  // registry: -> oci: a layout holding the converted image, tagged.
  const std::string dst = work_.Sub("out");
  ASSERT_EQ(Convert(Ref("app/src:v1"), "oci:" + dst + ":rafs", &out), 0) << out;
  Json index = Json::parse(testing::ReadFileBytes(dst + "/index.json"));
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["digest"], a->digest);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "rafs");
  Json m = Json::parse(testing::ReadFileBytes(dst + "/blobs/sha256/" + a->digest.substr(7)));
  for (const Json& l : m["layers"]) {
    const auto blob = testing::ReadFileBytes(dst + "/blobs/sha256/" +
                                             l["digest"].get<std::string>().substr(7));
    EXPECT_EQ(Sha256(blob), l["digest"]);
  }
  EXPECT_TRUE(testing::ReadFileBytes(dst + "/oci-layout").size() > 0);
}

TEST_F(RafsConvertCliTest, ChunkDictionaryBlobsMustBeInTheDestination) {
  // A dictionary holding layer 1's big file: its chunks are not stored again.
  const std::string dict_src = work_.Sub("dict-src");
  ASSERT_EQ(::mkdir(dict_src.c_str(), 0755), 0);
  const std::string tool = Pattern(3 << 20, 1);
  testing::WriteFileBytes(dict_src + "/tool", Bytes(tool));
  const std::string dict = work_.Sub("dict.boot"), dict_blobs = work_.Sub("dict-blobs");
  ASSERT_EQ(::mkdir(dict_blobs.c_str(), 0755), 0);
  std::string out;
  ASSERT_EQ(Sh(Rafs() + " build " + dict_src + " --bootstrap " + dict + " --blob-dir " +
                   dict_blobs + " --json",
               &out),
            0)
      << out;
  const std::string dict_blob_id = Json::parse(out)["blob_id"];
  PushSource(*reg_, "app/src", "v1", TestLayers());
  // Without the dictionary's blob in the destination: refused, nothing tagged.
  EXPECT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:dict"), &out, "--chunk-dict " + dict), 1)
      << out;
  EXPECT_NE(out.find("chunk dictionary blob " + dict_blob_id), std::string::npos) << out;
  EXPECT_EQ(ManifestStatus("app/conv", "dict"), 404);
  // With it: a blob layer for it, and the image reads the same.
  ASSERT_TRUE(reg_->PushBlob("app/conv", testing::ReadFileBytes(dict_blobs + "/" + dict_blob_id))
                  .ok());
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:dict"), &out, "--chunk-dict " + dict), 0)
      << out;
  auto m = Backend("app/conv")->GetManifest("dict", storage::IoContext{});
  ASSERT_TRUE(m.ok());
  const Json manifest = CheckManifest(this, "app/conv", m->bytes, 4);
  bool found = false;
  for (const Json& l : manifest["layers"]) found = found || l["digest"] == "sha256:" + dict_blob_id;
  EXPECT_TRUE(found) << manifest.dump();
  ASSERT_EQ(Sh(Rafs() + " cat " + Ref("app/conv:dict") + " /usr/bin/tool --plain-http", &out), 0);
  EXPECT_TRUE(out == tool) << out.size();
}

TEST(RafsConvertAuthTest, PushesWithDockerConfigCredentialsAndNeverPrintsThem) {
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  if (!testing::HaveCommand("htpasswd")) GTEST_SKIP() << "htpasswd is not installed";
  TempDir regdir, work;
  auto reg = testing::LocalRegistry::Start(regdir.path(), "pusher", "s3cret-Pw");
  ASSERT_TRUE(reg.ok()) << reg.status();
  PushSource(**reg, "app/src", "v1", TestLayers());
  const std::string ref = "registry://" + (*reg)->host() + "/app/";
  auto config = [&](const std::string& user_pass) {
    const std::string path = work.Sub("config-" + std::to_string(user_pass.size()) + ".json");
    std::string b64;
    RunCommand("printf %s '" + user_pass + "' | base64 -w0", &b64);
    testing::WriteFileBytes(
        path, Bytes(R"({"auths":{")" + (*reg)->host() + R"(":{"auth":")" + b64 + R"("}}})"));
    return path;
  };
  std::string out;
  ASSERT_EQ(Sh(Rafs() + " convert " + ref + "src:v1 " + ref + "conv:v1 --plain-http --no-cache " +
                   "--docker-config " + config("pusher:s3cret-Pw"),
               &out),
            0)
      << out;
  EXPECT_EQ(out.find("s3cret"), std::string::npos);
  EXPECT_NE(Sh(Rafs() + " convert " + ref + "src:v1 " + ref + "conv:v2 --plain-http --no-cache " +
                   "--docker-config " + config("pusher:wrong-Pw"),
               &out),
            0);
  EXPECT_NE(out.find("401"), std::string::npos) << out;
  EXPECT_EQ(out.find("wrong-Pw"), std::string::npos) << out;
  EXPECT_EQ(out.find("s3cret"), std::string::npos) << out;
}

TEST_F(RafsConvertCliTest, ProgressOnATerminalPlainLinesOtherwiseNothingWhenQuiet) {
  if (!testing::HaveCommand("script")) GTEST_SKIP() << "script(1) is not installed";
  PushSource(*reg_, "app/src", "v1", TestLayers());
  std::string out;
  // Under script(1) stderr is a terminal: a redrawn status line per transfer.
  ASSERT_EQ(Sh("script -q -e -c '" + Rafs() + " convert " + Ref("app/src:v1") + " " +
                   Ref("app/conv:tty") + " --plain-http --no-cache -j 1' /dev/null",
               &out),
            0)
      << out;
  EXPECT_NE(out.find("\r\033[Klayer 1/5 pull+build "), std::string::npos) << out;
  EXPECT_NE(out.find("/s"), std::string::npos) << out;
  EXPECT_NE(out.find(" push "), std::string::npos) << out;
  // Not a terminal: finished steps only, one plain line each.
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:plain"), &out, "--no-cache"), 0) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find("\033["), std::string::npos) << out;
  EXPECT_NE(out.find("layer 5/5: converted"), std::string::npos) << out;
  // Quiet: only the digest on stdout.
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/conv:quiet"), &out, "--no-cache -q"), 0) << out;
  EXPECT_EQ(out.size(), 72u) << out;
  EXPECT_EQ(out.rfind("sha256:", 0), 0u) << out;
}

TEST_F(RafsConvertCliTest, PrefetchListBecomesTheImagesPrefetchTable) {
  PushSource(*reg_, "app/pf", "v1", TestLayers());
  const std::string list = work_.Sub("prefetch.txt");
  {
    std::ofstream f(list);
    f << "# what the app opens first\n/etc/hostname\n/not/there\n/usr/bin\n";
  }
  std::string out;
  ASSERT_EQ(Convert(Ref("app/pf:v1"), Ref("app/pf:v1-rafs"), &out, "--prefetch-files " + list), 0)
      << out;
  auto backend = Backend("app/pf");
  auto remote = storage::FetchRemoteImage(backend, "v1-rafs", {}, storage::IoContext{});
  ASSERT_TRUE(remote.ok()) << remote.status();
  auto meta = rafs::meta::OpenMetadata(remote->bootstrap);
  ASSERT_TRUE(meta.ok()) << meta.status();
  auto pf = (*meta)->PrefetchInodes();
  ASSERT_TRUE(pf.ok()) << pf.status();
  auto hostname = rafs::meta::ResolvePath(**meta, "/etc/hostname");
  auto bin = rafs::meta::ResolvePath(**meta, "/usr/bin");
  ASSERT_TRUE(hostname.ok() && bin.ok());
  EXPECT_EQ(*pf, (std::vector<uint64_t>{*hostname, *bin}));
  // A list with a relative path is refused before anything is pushed.
  {
    std::ofstream f(list);
    f << "etc/hostname\n";
  }
  EXPECT_NE(Convert(Ref("app/pf:v1"), Ref("app/pf:v2-rafs"), &out, "--prefetch-files " + list), 0);
  EXPECT_NE(out.find("not absolute"), std::string::npos) << out;
  EXPECT_FALSE(backend->GetManifest("v2-rafs", storage::IoContext{}).ok());
}

TEST_F(RafsConvertCliTest, ClearErrors) {
  std::string out;
  EXPECT_EQ(Convert("nonsense", Ref("a/b:c"), &out), 1);
  EXPECT_NE(out.find("want registry://"), std::string::npos) << out;
  EXPECT_EQ(Convert(Ref("app/none:v1"), Ref("app/conv:x"), &out), 1);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
  EXPECT_EQ(Convert(Ref("a/b:c"), Ref("a/b@sha256:" + std::string(64, 'a')), &out), 1);
  EXPECT_NE(out.find("a destination names a tag"), std::string::npos) << out;
  EXPECT_EQ(Convert(Ref("a/b:c"), Ref("a/b:d"), &out, "--compressor gzip"), 2);
  EXPECT_NE(out.find("bad --compressor"), std::string::npos) << out;
  EXPECT_EQ(Convert(Ref("a/b:c"), Ref("a/b:d"), &out, "--chunk-size 1000"), 2);
  // A converted image is not converted again.
  PushSource(*reg_, "app/src", "v1", TestLayers());
  ASSERT_EQ(Convert(Ref("app/src:v1"), Ref("app/src:rafs"), &out), 0) << out;
  EXPECT_EQ(Convert(Ref("app/src:rafs"), Ref("app/src:rafs2"), &out), 1);
  EXPECT_NE(out.find("already a nydus (RAFS) image"), std::string::npos) << out;
}

}  // namespace
}  // namespace rfs
