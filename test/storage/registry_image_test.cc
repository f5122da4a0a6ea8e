// Nydus images in a registry: manifest and index parsing, platform and
// nydus-variant selection, bootstrap/blob layer identification (pure), then
// FetchRemoteImage against a real docker-registry (tags, digests,
// multi-platform indexes, plain images) and against a tiny server that
// lies (digests, sizes, limits).
#include "storage/registry_image.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/digest.h"
#include "test/support/local_registry.h"
#include "test/support/oci_image.h"
#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;
using nlohmann::json;

std::vector<uint8_t> Bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::vector<uint8_t> Bytes(const json& j) { return Bytes(j.dump()); }

std::string Sha(const std::vector<uint8_t>& b) {
  return "sha256:" + base::DigestHex(base::Sha256(b));
}

json Desc(const std::string& mt, const std::string& digest, uint64_t size) {
  return {{"mediaType", mt}, {"digest", digest}, {"size", size}};
}

const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');
const std::string kD3 = "sha256:" + std::string(64, '3');
const std::string kD4 = "sha256:" + std::string(64, '4');

json IndexEntry(const std::string& digest, const std::string& os, const std::string& arch,
                const std::string& variant = "", bool artifact = false, bool feature = false) {
  json d = Desc("application/vnd.oci.image.manifest.v1+json", digest, 100);
  d["platform"] = {{"os", os}, {"architecture", arch}};
  if (!variant.empty()) d["platform"]["variant"] = variant;
  if (feature) d["platform"]["os.features"] = {"nydus.remoteimage.v1"};
  if (artifact) d["artifactType"] = "application/vnd.nydus.image.manifest.v1+json";
  return d;
}

Platform P(const std::string& s) { return *ParsePlatform(s); }

TEST(RegistryImageTest, PlatformParsing) {
  EXPECT_EQ(P("linux/amd64").ToString(), "linux/amd64");
  EXPECT_EQ(P("linux/x86_64").architecture, "amd64");
  EXPECT_EQ(P("Linux/aarch64/v8").ToString(), "linux/arm64/v8");
  for (const char* bad : {"", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64"}) {
    auto r = ParsePlatform(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("want OS/ARCH[/VARIANT]"), std::string::npos);
  }
  EXPECT_EQ(HostPlatform().os, "linux");
#if defined(__x86_64__)
  EXPECT_EQ(HostPlatform().architecture, "amd64");
#endif
}

TEST(RegistryImageTest, SelectsThePlatformPreferringNydus) {
  // A merged index: the OCI manifest first, the nydus one marked by
  // artifactType (amd64) or os.features (arm64).
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {IndexEntry(kD1, "linux", "amd64"), IndexEntry(kD2, "linux", "amd64", "", true),
                  IndexEntry(kD3, "linux", "arm64", "v8"),
                  IndexEntry(kD4, "linux", "arm64", "v8", false, true)}}};
  auto doc = ParseManifestDocument(Bytes(index), "");
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_TRUE(doc->is_index);
  ASSERT_EQ(doc->manifests.size(), 4u);
  EXPECT_FALSE(doc->manifests[0].IsNydusManifest());
  EXPECT_TRUE(doc->manifests[1].IsNydusManifest());
  EXPECT_TRUE(doc->manifests[3].IsNydusManifest());
  EXPECT_EQ(SelectManifest(doc->manifests, P("linux/amd64"))->digest, kD2);
  EXPECT_EQ(SelectManifest(doc->manifests, P("linux/arm64"))->digest, kD4);
  EXPECT_EQ(SelectManifest(doc->manifests, P("linux/arm64/v8"))->digest, kD4);
  EXPECT_EQ(SelectManifest(doc->manifests, P("linux/aarch64"))->digest, kD4);
  auto none = SelectManifest(doc->manifests, P("linux/arm64/v7"));
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  none = SelectManifest(doc->manifests, P("windows/amd64"));
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("index has no manifest for windows/amd64 (it has "
                                         "linux/amd64, linux/amd64 (nydus), linux/arm64/v8, "
                                         "linux/arm64/v8 (nydus))"),
            std::string::npos)
      << none.status();
  // Without a nydus entry the first match is taken (and later checked).
  std::vector<Descriptor> plain = {doc->manifests[0], doc->manifests[2]};
  EXPECT_EQ(SelectManifest(plain, P("linux/amd64"))->digest, kD1);
  // A Docker manifest list parses the same way.
  json list = index;
  list["mediaType"] = "application/vnd.docker.distribution.manifest.list.v2+json";
  EXPECT_TRUE(ParseManifestDocument(Bytes(list), "")->is_index);
  // So does an index without mediaType, by its content type or its shape.
  json bare = index;
  bare.erase("mediaType");
  EXPECT_TRUE(ParseManifestDocument(Bytes(bare), "application/vnd.oci.image.index.v1+json")
                  ->is_index);
  EXPECT_TRUE(ParseManifestDocument(Bytes(bare), "")->is_index);
}

json Manifest(const std::vector<json>& layers,
              const std::string& config_type = "application/vnd.oci.image.config.v1+json") {
  return {{"schemaVersion", 2},
          {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
          {"config", Desc(config_type, kD4, 10)},
          {"layers", layers}};
}

json Layer(const std::string& mt, const std::string& digest,
           std::map<std::string, std::string> annotations = {}) {
  json d = Desc(mt, digest, 1000);
  if (!annotations.empty()) d["annotations"] = annotations;
  return d;
}

const std::string kGz = "application/vnd.oci.image.layer.v1.tar+gzip";
const std::string kBlob = "application/vnd.oci.image.layer.nydus.blob.v1";

TEST(RegistryImageTest, FindsBootstrapAndBlobLayers) {
  auto layers = [](const json& m, bool chosen = false) {
    auto doc = ParseManifestDocument(Bytes(m), "");
    EXPECT_TRUE(doc.ok()) << doc.status();
    return FindNydusLayers(*doc, chosen);
  };
  // Annotated: blobs by media type or annotation, the bootstrap by annotation
  // even when it is not last.
  auto r = layers(Manifest({Layer(kBlob, kD1), Layer("application/octet-stream", kD2,
                                                     {{"containerd.io/snapshot/nydus-blob", "true"}}),
                            Layer(kGz, kD3, {{"containerd.io/snapshot/nydus-bootstrap", "true"}}),
                            Layer(kGz, kD4)}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bootstrap.digest, kD3);
  ASSERT_EQ(r->blobs.size(), 2u);
  EXPECT_EQ(r->blobs[0].digest, kD1);
  EXPECT_EQ(r->blobs[1].digest, kD2);
  // Unannotated bootstrap: the last layer of a recognisably nydus manifest.
  r = layers(Manifest({Layer(kBlob, kD1), Layer(kGz, kD2)}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bootstrap.digest, kD2);
  r = layers(Manifest({Layer(kGz, kD2)}, "application/vnd.nydus.image.config.v1+json"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bootstrap.digest, kD2);
  r = layers(Manifest({Layer(kGz, kD2)}), /*chosen=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  // A plain image: a clear error.
  r = layers(Manifest({Layer(kGz, kD1), Layer(kGz, kD2)}));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("not a nydus (RAFS) image"), std::string::npos)
      << r.status();
  r = layers(Manifest({}), true);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  r = layers(Manifest({Layer(kGz, kD1), Layer(kBlob, kD2)}));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("without a bootstrap layer"), std::string::npos);
  // An annotation that is not "true" does not count.
  r = layers(Manifest({Layer(kGz, kD1, {{"containerd.io/snapshot/nydus-bootstrap", "false"}})}));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST(RegistryImageTest, MalformedDocumentsAreClearErrors) {
  struct Case {
    std::string json, says;
    StatusCode code = StatusCode::kDataLoss;
  } cases[] = {
      {"{", "not valid JSON"},
      {"[1]", "not a JSON object"},
      {R"({"schemaVersion":1,"fsLayers":[]})", "schema 1", StatusCode::kFailedPrecondition},
      {R"({"mediaType":"application/vnd.oci.image.manifest.v1+json"})", "schemaVersion"},
      {R"({"schemaVersion":"2","layers":[]})", "schemaVersion"},
      {R"({"schemaVersion":2,"mediaType":"text/plain"})", "unsupported media type",
       StatusCode::kFailedPrecondition},
      {R"({"schemaVersion":2,"layers":[]})", "no \"config\""},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":1},"layers":{}})",
       "\"layers\" is missing or not an array"},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":-1},"layers":[]})",
       "non-negative integer"},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":1.5},"layers":[]})",
       "non-negative integer"},
      {R"({"schemaVersion":2,"config":{"digest":7,"size":1},"layers":[]})",
       "\"digest\" is not a string"},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[{"size":1}]})",
       "layers[0]: no \"digest\""},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[5]})", "not an object"},
      {R"({"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[{"digest":"y","size":1,"annotations":{"a":1}}]})",
       "annotation \"a\" is not a string"},
      {R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"y","size":1,"platform":{"os":"linux"}}]})",
       "no \"architecture\""},
      {R"({"schemaVersion":2,"manifests":[{"digest":"y","size":1,"platform":{"os":"linux","architecture":"amd64","os.features":"nydus"}}]})",
       "\"os.features\" is not an array"},
  };
  for (const Case& c : cases) {
    auto r = ParseManifestDocument(Bytes(c.json), "");
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_EQ(r.status().code(), c.code) << c.json << ": " << r.status();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.json << ": " << r.status();
  }
}

// A small RAFS image: bootstrap + one blob.
testing::WrittenImage SmallImage(uint32_t seed) {
  std::vector<testing::TreeEntry> tree(2);
  tree[0].path = "/";
  tree[0].mode = S_IFDIR | 0755;
  tree[1].path = "/hello";
  tree[1].mode = S_IFREG | 0644;
  tree[1].data = "hello from image " + std::to_string(seed) + "\n";
  tree[1].data.append(100000, static_cast<char>('a' + seed % 26));
  auto w = testing::WriteImage(tree, testing::WriterOptions{});
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

std::shared_ptr<RegistryBackend> Backend(const std::string& host, const std::string& repo) {
  RegistryOptions o;
  o.host = host;
  o.repository = repo;
  o.plain_http = true;
  o.retry.initial_backoff = std::chrono::milliseconds(5);
  return *RegistryBackend::Create(o);
}

TEST(RegistryImageTest, FetchFromDockerRegistry) {
  if (!testing::LocalRegistry::Available()) GTEST_SKIP() << "docker-registry is not installed";
  testing::TempDir dir;
  auto reg = testing::LocalRegistry::Start(dir.path());
  ASSERT_TRUE(reg.ok()) << reg.status();
  const auto amd = SmallImage(1), arm = SmallImage(2);
  testing::PushOptions po;
  po.tag = "v1";
  auto pushed = testing::PushNydusImage(**reg, "team/app", amd, po);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  auto backend = Backend((*reg)->host(), "team/app");
  IoContext ctx;
  ctx.deadline = base::Deadline::After(std::chrono::seconds(30));

  // By tag and by digest.
  for (const std::string& ref : {std::string("v1"), pushed->manifest_digest}) {
    auto img = FetchRemoteImage(backend, ref, RemoteImageOptions{}, ctx);
    ASSERT_TRUE(img.ok()) << ref << ": " << img.status();
    EXPECT_EQ(img->bootstrap, amd.bootstrap) << ref;
    EXPECT_EQ(img->bootstrap_name, "image/image.boot");
    EXPECT_EQ(img->manifest_digest, pushed->manifest_digest);
    EXPECT_EQ(img->bootstrap_layer.digest, pushed->bootstrap_layer_digest);
    ASSERT_EQ(img->blob_layers.size(), amd.blob_ids.size());
    EXPECT_EQ(img->blob_layers[0].digest, "sha256:" + amd.blob_ids[0]);
    EXPECT_FALSE(img->platform.has_value());
  }
  // A missing tag, a digest nobody pushed.
  auto missing = FetchRemoteImage(backend, "nope", RemoteImageOptions{}, ctx);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
  missing = FetchRemoteImage(backend, kD1, RemoteImageOptions{}, ctx);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();

  // A multi-platform index: OCI + nydus per platform; the nydus variant of
  // the asked platform is the one fetched.
  auto plain = testing::PushPlainImage(**reg, "team/app", "", {{"etc/hostname", "plain\n"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  po.tag = "";
  po.architecture = "arm64";
  auto pushed_arm = testing::PushNydusImage(**reg, "team/app", arm, po);
  ASSERT_TRUE(pushed_arm.ok()) << pushed_arm.status();
  std::vector<testing::IndexEntry> entries(4);
  entries[0].image = *plain;
  entries[1].image = *pushed;
  entries[1].nydus_artifact_type = true;
  entries[2].image = *plain;
  entries[2].architecture = "arm64";
  entries[2].variant = "v8";
  entries[3].image = *pushed_arm;
  entries[3].architecture = "arm64";
  entries[3].variant = "v8";
  entries[3].nydus_os_feature = true;
  auto index = testing::PushIndex(**reg, "team/app", "multi", entries);
  ASSERT_TRUE(index.ok()) << index.status();
  RemoteImageOptions opt;
  opt.platform = P("linux/amd64");
  auto img = FetchRemoteImage(backend, "multi", opt, ctx);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->bootstrap, amd.bootstrap);
  EXPECT_EQ(img->manifest_digest, pushed->manifest_digest);
  ASSERT_TRUE(img->platform.has_value());
  EXPECT_EQ(img->platform->ToString(), "linux/amd64");
  opt.platform = P("linux/arm64");
  img = FetchRemoteImage(backend, *index, opt, ctx);  // the index by digest
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->bootstrap, arm.bootstrap);
  EXPECT_EQ(img->manifest_digest, pushed_arm->manifest_digest);
  opt.platform = P("linux/s390x");
  img = FetchRemoteImage(backend, "multi", opt, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kNotFound);
  EXPECT_NE(img.status().message().find("no manifest for linux/s390x"), std::string::npos)
      << img.status();

  // A plain OCI image, directly and as the only entry of an index.
  img = FetchRemoteImage(backend, plain->manifest_digest, RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kFailedPrecondition) << img.status();
  EXPECT_NE(img.status().message().find("not a nydus (RAFS) image"), std::string::npos)
      << img.status();
  auto plain_index = testing::PushIndex(**reg, "team/app", "plainmulti", {entries[0]});
  ASSERT_TRUE(plain_index.ok());
  opt.platform = P("linux/amd64");
  img = FetchRemoteImage(backend, "plainmulti", opt, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kFailedPrecondition) << img.status();

  // A bootstrap layer that is a plain tar without image.boot: not RAFS.
  testing::TarWriter t;
  t.Add("etc/os-release", "x");
  po.bootstrap_layer = testing::Gzip(t.Finish());
  po.tag = "noboot";
  po.architecture = "amd64";
  ASSERT_TRUE(testing::PushNydusImage(**reg, "team/app", amd, po).ok());
  img = FetchRemoteImage(backend, "noboot", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kNotFound) << img.status();
  EXPECT_NE(img.status().message().find("no image/image.boot"), std::string::npos)
      << img.status();
  // Unannotated bootstrap, blobs not of the nydus media type but annotated.
  po.bootstrap_layer.clear();
  po.annotate_bootstrap = false;
  po.nydus_blob_media_type = false;
  po.tag = "unannotated";
  ASSERT_TRUE(testing::PushNydusImage(**reg, "team/app", amd, po).ok());
  img = FetchRemoteImage(backend, "unannotated", RemoteImageOptions{}, ctx);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->bootstrap, amd.bootstrap);
  // The bootstrap layer above a limit is refused before it is fetched.
  opt = RemoteImageOptions{};
  opt.max_layer_bytes = 100;
  img = FetchRemoteImage(backend, "v1", opt, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kResourceExhausted) << img.status();
  opt = RemoteImageOptions{};
  opt.max_bootstrap_bytes = 4096;
  img = FetchRemoteImage(backend, "v1", opt, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kResourceExhausted) << img.status();
  opt = RemoteImageOptions{};
  opt.max_manifest_bytes = 100;
  img = FetchRemoteImage(backend, "v1", opt, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kResourceExhausted) << img.status();
}

// A registry that serves whatever the test put in `docs` (path -> body,
// content type), counting requests; httplib applies Range itself.
class TinyRegistry {
 public:
  TinyRegistry() {
    server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      requests++;
      std::lock_guard<std::mutex> lock(mu_);
      auto it = docs_.find(req.path);
      if (it == docs_.end()) {
        res.status = 404;
        return;
      }
      for (const auto& [k, v] : it->second.headers) res.set_header(k, v);
      res.set_content(it->second.body, it->second.type);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~TinyRegistry() {
    server_.stop();
    thread_.join();
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  void Put(const std::string& path, const std::vector<uint8_t>& body, const std::string& type,
           std::map<std::string, std::string> headers = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    docs_[path] = Doc{std::string(body.begin(), body.end()), type, std::move(headers)};
  }
  std::atomic<int> requests{0};

 private:
  struct Doc {
    std::string body, type;
    std::map<std::string, std::string> headers;
  };
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, Doc> docs_;
};

TEST(RegistryImageTest, DocumentsThatLieAreRefused) {
  TinyRegistry r;
  auto backend = Backend(r.host(), "x/app");
  const std::string m = "/v2/x/app/manifests/";
  const std::string b = "/v2/x/app/blobs/";
  const std::string oci = "application/vnd.oci.image.manifest.v1+json";
  const auto image = SmallImage(3);
  const auto layer = testing::Gzip(testing::BootstrapLayerTar(image.bootstrap));
  json manifest = Manifest({Layer(kBlob, "sha256:" + image.blob_ids[0]),
                            Desc(kGz, Sha(layer), layer.size())});
  manifest["layers"][1]["annotations"] = {{"containerd.io/snapshot/nydus-bootstrap", "true"}};
  const auto mbytes = Bytes(manifest);
  r.Put(m + "good", mbytes, oci);
  r.Put(b + Sha(layer), layer, "application/octet-stream");
  IoContext ctx;
  ctx.deadline = base::Deadline::After(std::chrono::seconds(30));
  auto img = FetchRemoteImage(backend, "good", RemoteImageOptions{}, ctx);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->bootstrap, image.bootstrap);
  EXPECT_EQ(img->manifest_digest, Sha(mbytes));

  // Asked by digest, served something else.
  r.Put(m + kD1, mbytes, oci);
  img = FetchRemoteImage(backend, kD1, RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  EXPECT_NE(img.status().message().find("content digest is " + Sha(mbytes)), std::string::npos);
  // Docker-Content-Digest disagreeing with the body.
  r.Put(m + "dcd", mbytes, oci, {{"Docker-Content-Digest", kD2}});
  img = FetchRemoteImage(backend, "dcd", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  EXPECT_NE(img.status().message().find("Docker-Content-Digest"), std::string::npos);
  // An index whose entry size disagrees with the manifest it names.
  json idx = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.index.v1+json"},
              {"manifests", {IndexEntry(Sha(mbytes), "linux", HostPlatform().architecture)}}};
  idx["manifests"][0]["size"] = mbytes.size() + 1;
  r.Put(m + "idx", Bytes(idx), "application/vnd.oci.image.index.v1+json");
  r.Put(m + Sha(mbytes), mbytes, oci);
  img = FetchRemoteImage(backend, "idx", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  EXPECT_NE(img.status().message().find("the index says"), std::string::npos) << img.status();
  idx["manifests"][0]["size"] = mbytes.size();
  r.Put(m + "idx", Bytes(idx), "application/vnd.oci.image.index.v1+json");
  img = FetchRemoteImage(backend, "idx", RemoteImageOptions{}, ctx);
  ASSERT_TRUE(img.ok()) << img.status();
  // Indexes nested three deep (two are followed).
  const std::string index_type = "application/vnd.oci.image.index.v1+json";
  auto nest = [&](const std::vector<uint8_t>& inner) {
    json outer = idx;
    outer["manifests"][0]["mediaType"] = index_type;
    outer["manifests"][0]["digest"] = Sha(inner);
    outer["manifests"][0]["size"] = inner.size();
    r.Put(m + Sha(inner), inner, index_type);
    return Bytes(outer);
  };
  r.Put(m + "two", nest(Bytes(idx)), index_type);
  img = FetchRemoteImage(backend, "two", RemoteImageOptions{}, ctx);
  ASSERT_TRUE(img.ok()) << img.status();
  r.Put(m + "deep", nest(nest(Bytes(idx))), index_type);
  img = FetchRemoteImage(backend, "deep", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  EXPECT_NE(img.status().message().find("nested too deep"), std::string::npos) << img.status();
  // The bootstrap layer's bytes do not match its digest.
  auto flipped = layer;
  flipped[flipped.size() / 2] ^= 1;
  r.Put(b + Sha(layer), flipped, "application/octet-stream");
  img = FetchRemoteImage(backend, "good", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  EXPECT_NE(img.status().message().find("bootstrap layer " + Sha(layer) + ": content digest is"),
            std::string::npos)
      << img.status();
  // Shorter than the manifest says.
  r.Put(b + Sha(layer), std::vector<uint8_t>(layer.begin(), layer.end() - 10),
        "application/octet-stream");
  img = FetchRemoteImage(backend, "good", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss) << img.status();
  // A bootstrap layer digest we cannot fetch.
  json odd = manifest;
  odd["layers"][1]["digest"] = "sha512:" + std::string(128, 'a');
  r.Put(m + "odd", Bytes(odd), oci);
  img = FetchRemoteImage(backend, "odd", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kFailedPrecondition) << img.status();
  // Manifest larger than the limit: refused without reading it all.
  r.Put(m + "big", std::vector<uint8_t>(8u << 20, ' '), oci);
  img = FetchRemoteImage(backend, "big", RemoteImageOptions{}, ctx);
  EXPECT_EQ(img.status().code(), StatusCode::kResourceExhausted) << img.status();
  // Bad references never reach the registry.
  const int before = r.requests;
  for (const char* bad : {"a/b", "sha512:abc", "x?y"}) {
    EXPECT_EQ(FetchRemoteImage(backend, bad, RemoteImageOptions{}, ctx).status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(r.requests, before);
}

}  // namespace
}  // namespace rfs::storage
