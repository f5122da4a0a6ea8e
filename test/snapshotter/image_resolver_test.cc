// ContainerdImageResolver against a fake containerd: the images, content and
// namespaces services of our protos on a unix socket in a temp dir, holding
// nydus images (manifests, indexes, configs) per namespace.
#include "snapshotter/grpc/image_resolver.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/mutex.h"
#include "snapshotter/remote_fs.h"
#include "test/support/test_util.h"

// After the project headers (abseil's thread-safety macros, see the service).
#include <grpcpp/grpcpp.h>

#include "api/services/content/v1/content.grpc.pb.h"
#include "api/services/images/v1/images.grpc.pb.h"
#include "api/services/namespaces/v1/namespace.grpc.pb.h"

namespace rfs::snapshotter::grpc {
namespace {

using base::StatusCode;
using nlohmann::json;
namespace content_v1 = ::containerd::services::content::v1;
namespace images_v1 = ::containerd::services::images::v1;
namespace namespaces_v1 = ::containerd::services::namespaces::v1;

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";

std::string Sha256(const std::string& data) {
  return "sha256:" + base::DigestHex(base::Sha256(base::AsBytes(data)));
}

// What the fake holds.
struct FakeImage {
  std::string name, media_type, digest;
  int64_t size = 0;
};
struct FakeNamespace {
  std::map<std::string, FakeImage> images;     // by name: containerd lists them sorted
  std::map<std::string, std::string> content;  // digest -> bytes
};

class FakeContainerd final : public images_v1::Images::Service,
                             public content_v1::Content::Service,
                             public namespaces_v1::Namespaces::Service {
 public:
  explicit FakeContainerd(const std::string& socket) {
    ::grpc::ServerBuilder b;
    b.AddListeningPort("unix:" + socket, ::grpc::InsecureServerCredentials());
    b.RegisterService(static_cast<images_v1::Images::Service*>(this));
    b.RegisterService(static_cast<content_v1::Content::Service*>(this));
    b.RegisterService(static_cast<namespaces_v1::Namespaces::Service*>(this));
    server_ = b.BuildAndStart();
  }
  ~FakeContainerd() override { server_->Shutdown(); }
  bool running() const { return server_ != nullptr; }

  void AddContent(const std::string& ns, const std::string& data) {
    AddContentAs(ns, Sha256(data), data);
  }
  void AddContentAs(const std::string& ns, const std::string& digest, const std::string& data) {
    base::MutexLock l(&mu_);
    namespaces_[ns].content[digest] = data;
  }
  void AddImage(const std::string& ns, const std::string& name, const std::string& media_type,
                const std::string& digest, int64_t size) {
    base::MutexLock l(&mu_);
    namespaces_[ns].images[name] = FakeImage{name, media_type, digest, size};
  }
  void RemoveImage(const std::string& ns, const std::string& name) {
    base::MutexLock l(&mu_);
    namespaces_[ns].images.erase(name);
  }
  int content_reads() {
    base::MutexLock l(&mu_);
    return content_reads_;
  }
  int image_lists() {
    base::MutexLock l(&mu_);
    return image_lists_;
  }

  ::grpc::Status List(::grpc::ServerContext*, const namespaces_v1::ListNamespacesRequest*,
                      namespaces_v1::ListNamespacesResponse* resp) override {
    base::MutexLock l(&mu_);
    for (const auto& [name, ns] : namespaces_) resp->add_namespaces()->set_name(name);
    return ::grpc::Status::OK;
  }

  ::grpc::Status List(::grpc::ServerContext* ctx, const images_v1::ListImagesRequest* req,
                      images_v1::ListImagesResponse* resp) override {
    std::string ns;
    if (auto s = Namespace(ctx, &ns); !s.ok()) return s;
    // The one filter form the resolver sends: name=="<name>".
    std::string want;
    for (const std::string& f : req->filters()) {
      if (f.rfind("name==\"", 0) != 0 || f.back() != '"') {
        return ::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT, "unexpected filter " + f);
      }
      want = f.substr(7, f.size() - 8);
    }
    base::MutexLock l(&mu_);
    ++image_lists_;
    for (const auto& [name, image] : namespaces_[ns].images) {
      if (!want.empty() && name != want) continue;
      images_v1::Image* out = resp->add_images();
      out->set_name(name);
      out->mutable_target()->set_media_type(image.media_type);
      out->mutable_target()->set_digest(image.digest);
      out->mutable_target()->set_size(image.size);
    }
    return ::grpc::Status::OK;
  }

  // Streams the range in small messages, as a real store may split it.
  ::grpc::Status Read(::grpc::ServerContext* ctx, const content_v1::ReadContentRequest* req,
                      ::grpc::ServerWriter<content_v1::ReadContentResponse>* writer) override {
    std::string ns;
    if (auto s = Namespace(ctx, &ns); !s.ok()) return s;
    std::string data;
    {
      base::MutexLock l(&mu_);
      ++content_reads_;
      auto it = namespaces_[ns].content.find(req->digest());
      if (it == namespaces_[ns].content.end()) {
        return ::grpc::Status(::grpc::StatusCode::NOT_FOUND,
                              "content digest " + req->digest() + ": not found");
      }
      data = it->second;
    }
    size_t off = static_cast<size_t>(std::max<int64_t>(req->offset(), 0));
    size_t end = req->size() > 0 ? std::min(data.size(), off + static_cast<size_t>(req->size()))
                                 : data.size();
    for (; off < end; off += 1000) {
      content_v1::ReadContentResponse r;
      r.set_offset(static_cast<int64_t>(off));
      r.set_data(data.substr(off, std::min<size_t>(1000, end - off)));
      if (!writer->Write(r)) break;
    }
    return ::grpc::Status::OK;
  }

 private:
  // containerd refuses namespaced calls without the header.
  ::grpc::Status Namespace(::grpc::ServerContext* ctx, std::string* ns) {
    auto it = ctx->client_metadata().find("containerd-namespace");
    if (it == ctx->client_metadata().end()) {
      return ::grpc::Status(::grpc::StatusCode::FAILED_PRECONDITION,
                            "namespace is required: failed precondition");
    }
    *ns = std::string(it->second.data(), it->second.size());
    return ::grpc::Status::OK;
  }

  std::unique_ptr<::grpc::Server> server_;
  base::Mutex mu_;
  std::map<std::string, FakeNamespace> namespaces_ GUARDED_BY(mu_);
  int content_reads_ GUARDED_BY(mu_) = 0;
  int image_lists_ GUARDED_BY(mu_) = 0;
};

// A nydus image as a converter writes it (spec 5.1): data blob layers, then
// the bootstrap layer, a config whose diff ids match, an OCI manifest.
struct NydusImage {
  std::string manifest, manifest_digest, config;
  std::string bootstrap_layer_digest, bootstrap_chain_id;
  std::vector<std::string> chain_ids;
};

NydusImage MakeNydusImage(const std::string& seed, int blobs = 2, bool annotate = true) {
  NydusImage img;
  json layers = json::array();
  std::vector<std::string> diff_ids;
  for (int i = 0; i < blobs; ++i) {
    const std::string d = Sha256(seed + "-blob-" + std::to_string(i));
    layers.push_back({{"mediaType", "application/vnd.oci.image.layer.nydus.blob.v1"},
                      {"digest", d},
                      {"size", 1000 + i},
                      {"annotations", {{"containerd.io/snapshot/nydus-blob", "true"}}}});
    diff_ids.push_back(d);  // blobs are stored uncompressed
  }
  img.bootstrap_layer_digest = Sha256(seed + "-bootstrap.tar.gz");
  json boot = {{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
               {"digest", img.bootstrap_layer_digest},
               {"size", 512}};
  if (annotate) {
    boot["annotations"] = {{"containerd.io/snapshot/nydus-bootstrap", "true"},
                           {"containerd.io/snapshot/nydus-fs-version", "6"}};
  }
  layers.push_back(boot);
  diff_ids.push_back(Sha256(seed + "-bootstrap.tar"));
  img.config = json{{"architecture", "amd64"},
                    {"os", "linux"},
                    {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
                   .dump();
  img.manifest = json{
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", Sha256(img.config)},
        {"size", img.config.size()}}},
      {"layers",
       layers}}.dump();
  img.manifest_digest = Sha256(img.manifest);
  auto chain = ChainIds(diff_ids);
  EXPECT_TRUE(chain.ok()) << chain.status();
  img.chain_ids = *chain;
  img.bootstrap_chain_id = chain->back();
  return img;
}

// A plain OCI image of one layer.
NydusImage MakePlainImage(const std::string& seed) {
  NydusImage img;
  const std::string layer = Sha256(seed + "-layer.tar.gz");
  const std::string diff = Sha256(seed + "-layer.tar");
  img.config = json{{"rootfs", {{"type", "layers"}, {"diff_ids", {diff}}}}}.dump();
  img.manifest = json{{"schemaVersion", 2},
                      {"mediaType", kOciManifest},
                      {"config",
                       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                        {"digest", Sha256(img.config)},
                        {"size", img.config.size()}}},
                      {"layers",
                       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                         {"digest", layer},
                         {"size", 100}}}}}
                     .dump();
  img.manifest_digest = Sha256(img.manifest);
  img.chain_ids = {diff};
  return img;
}

Labels MetaLabels(const NydusImage& img) {
  return {{kTargetRefLabel, img.bootstrap_chain_id},
          {kNydusBootstrapLabel, "true"},
          {"containerd.io/snapshot/nydus-fs-version", "6"}};
}

class ImageResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = tmp_.Sub("containerd.sock");
    fake_ = std::make_unique<FakeContainerd>(socket_);
    ASSERT_TRUE(fake_->running());
    resolver_ = std::make_unique<ContainerdImageResolver>(socket_, std::chrono::seconds(10));
  }

  // Stores the image's manifest and config in `ns` and names it.
  void Add(const std::string& ns, const std::string& name, const NydusImage& img) {
    fake_->AddContent(ns, img.manifest);
    fake_->AddContent(ns, img.config);
    fake_->AddImage(ns, name, kOciManifest, img.manifest_digest,
                    static_cast<int64_t>(img.manifest.size()));
  }

  testing::TempDir tmp_;
  std::string socket_;
  std::unique_ptr<FakeContainerd> fake_;
  std::unique_ptr<ContainerdImageResolver> resolver_;
};

TEST(ChainIdsTest, ContainerdIdentity) {
  // Expected values computed independently (Python hashlib) from containerd's
  // definition: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  const std::string c = "sha256:" + std::string(64, 'c');
  auto chain = ChainIds({a, b, c});
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain,
            (std::vector<std::string>{
                a, "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c",
                "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588"}));
  EXPECT_TRUE(ChainIds({})->empty());
  EXPECT_EQ(ChainIds({a, "nonsense"}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ImageResolverTest, FindsTheImageAmongSeveralAcrossNamespaces) {
  const NydusImage app = MakeNydusImage("app");
  const NydusImage other = MakeNydusImage("other", 3);
  const NydusImage plain = MakePlainImage("plain");
  Add("default", "docker.io/library/busybox:latest", plain);
  Add("default", "registry.example.com/team/other:2", other);
  Add("k8s.io", "registry.example.com/team/aaa-plain:1", plain);
  Add("k8s.io", "registry.example.com/team/app:1", app);
  fake_->AddImage("k8s.io", "not a reference", kOciManifest, app.manifest_digest,
                  static_cast<int64_t>(app.manifest.size()));

  auto name = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/team/app:1");
  name = resolver_->ResolveByChainOrLayer("", MetaLabels(other), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/team/other:2");

  // A data layer's chain id is not the bootstrap's: no match.
  Labels blob{{kTargetRefLabel, app.chain_ids[0]}};
  EXPECT_EQ(resolver_->ResolveByChainOrLayer("", blob, "").status().code(), StatusCode::kNotFound);
  // The bootstrap layer digest alone is enough.
  name = resolver_->ResolveByChainOrLayer("", {}, app.bootstrap_layer_digest);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/team/app:1");
  name = resolver_->ResolveByChainOrLayer(
      "", {{kCriLayerDigestLabel, other.bootstrap_layer_digest}}, "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/team/other:2");
}

TEST_F(ImageResolverTest, PreferredNamespaceIsSearchedFirst) {
  const NydusImage app = MakeNydusImage("app");
  Add("default", "registry.example.com/default/app:1", app);
  Add("k8s.io", "registry.example.com/k8s/app:1", app);
  auto name = resolver_->ResolveByChainOrLayer("k8s.io", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/k8s/app:1");
  ContainerdImageResolver fresh(socket_, std::chrono::seconds(10));
  name = fresh.ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/default/app:1");
}

TEST_F(ImageResolverTest, LabelResolverSearchesEverywhere) {
  const NydusImage app = MakeNydusImage("app");
  Add("rfs", "127.0.0.1:5000/app:v1", app);
  // The function keeps its resolver alive.
  auto resolve = ContainerdImageResolver::LabelResolver(
      std::make_shared<ContainerdImageResolver>(socket_, std::chrono::seconds(10)));
  auto name = resolve(MetaLabels(app));
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "127.0.0.1:5000/app:v1");
}

TEST_F(ImageResolverTest, IndexChildrenAreSearchedAndMissingPlatformsSkipped) {
  const NydusImage oci = MakePlainImage("oci");
  const NydusImage nydus = MakeNydusImage("nydus");
  const std::string garbage = "not a manifest";
  // A merged index: the OCI manifest, an arm64 entry whose manifest was never
  // pulled, a nydus entry whose manifest is garbage (looked at first, and
  // skipped), and the nydus manifest (by artifactType).
  json index = {{"schemaVersion", 2},
                {"mediaType", kOciIndex},
                {"manifests",
                 {{{"mediaType", kOciManifest},
                   {"digest", Sha256(garbage)},
                   {"size", garbage.size()},
                   {"artifactType", "application/vnd.nydus.image.manifest.v1+json"},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
                  {{"mediaType", kOciManifest},
                   {"digest", oci.manifest_digest},
                   {"size", oci.manifest.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
                  {{"mediaType", kOciManifest},
                   {"digest", Sha256("never pulled")},
                   {"size", 1234},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                  {{"mediaType", kOciManifest},
                   {"digest", nydus.manifest_digest},
                   {"size", nydus.manifest.size()},
                   {"artifactType", "application/vnd.nydus.image.manifest.v1+json"},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  const std::string text = index.dump();
  for (const NydusImage* m : {&oci, &nydus}) {
    fake_->AddContent("default", m->manifest);
    fake_->AddContent("default", m->config);
  }
  fake_->AddContent("default", garbage);
  fake_->AddContent("default", text);
  fake_->AddImage("default", "ghcr.io/org/app:merged", kOciIndex, Sha256(text),
                  static_cast<int64_t>(text.size()));
  auto name = resolver_->ResolveByChainOrLayer("", MetaLabels(nydus), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "ghcr.io/org/app:merged");
  // Nothing else matches: the garbage entry is the reason given.
  auto none = resolver_->ResolveByChainOrLayer("", {{kTargetRefLabel, Sha256("other")}}, "");
  ASSERT_EQ(none.status().code(), StatusCode::kNotFound) << none.status();
  EXPECT_NE(none.status().message().find("ghcr.io/org/app:merged: index " + Sha256(text) +
                                         ": manifest: not valid JSON"),
            std::string::npos)
      << none.status();
}

TEST_F(ImageResolverTest, UnannotatedBootstrapOfANydusIndexEntryMatches) {
  // Older converters: no bootstrap annotation; the index entry says nydus
  // (os.features), so the last layer is the bootstrap.
  NydusImage nydus = MakeNydusImage("old", 0, /*annotate=*/false);
  json index = {{"schemaVersion", 2},
                {"mediaType", kOciIndex},
                {"manifests",
                 {{{"mediaType", kOciManifest},
                   {"digest", nydus.manifest_digest},
                   {"size", nydus.manifest.size()},
                   {"platform",
                    {{"os", "linux"},
                     {"architecture", "amd64"},
                     {"os.features", {"nydus.remoteimage.v1"}}}}}}}};
  const std::string text = index.dump();
  fake_->AddContent("default", nydus.manifest);
  fake_->AddContent("default", nydus.config);
  fake_->AddContent("default", text);
  fake_->AddImage("default", "ghcr.io/org/old:1", kOciIndex, Sha256(text),
                  static_cast<int64_t>(text.size()));
  auto name = resolver_->ResolveByChainOrLayer("", MetaLabels(nydus), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "ghcr.io/org/old:1");
}

TEST_F(ImageResolverTest, ResultsAreCachedAndRecheckedAfterRemoval) {
  const NydusImage app = MakeNydusImage("app");
  Add("default", "registry.example.com/team/app:1", app);
  ASSERT_TRUE(resolver_->ResolveByChainOrLayer("", MetaLabels(app), "").ok());
  const int reads = fake_->content_reads();
  EXPECT_EQ(reads, 2);  // manifest and config
  // Again: one Images.List confirms the cached answer; nothing is read.
  const int lists = fake_->image_lists();
  auto name = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(fake_->content_reads(), reads);
  EXPECT_EQ(fake_->image_lists(), lists + 1);

  // The image is removed and the same content named otherwise: found again,
  // from the manifest summary cache (no reads).
  fake_->RemoveImage("default", "registry.example.com/team/app:1");
  fake_->AddImage("default", "registry.example.com/team/app:renamed", kOciManifest,
                  app.manifest_digest, static_cast<int64_t>(app.manifest.size()));
  name = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "registry.example.com/team/app:renamed");
  EXPECT_EQ(fake_->content_reads(), reads);

  // Gone entirely: not found.
  fake_->RemoveImage("default", "registry.example.com/team/app:renamed");
  EXPECT_EQ(resolver_->ResolveByChainOrLayer("", MetaLabels(app), "").status().code(),
            StatusCode::kNotFound);
}

TEST_F(ImageResolverTest, NoMatchIsNotFoundWithGuidance) {
  Add("default", "docker.io/library/busybox:latest", MakePlainImage("plain"));
  const NydusImage app = MakeNydusImage("app");
  auto r = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_EQ(r.status().code(), StatusCode::kNotFound) << r.status();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find(app.bootstrap_chain_id), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 image(s) in namespace(s) default"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pull the image into containerd again"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nerdctl --snapshotter nydus pull"), std::string::npos) << msg;
  EXPECT_NE(msg.find(kCriImageRefLabel), std::string::npos) << msg;
  // Nothing to match on at all.
  EXPECT_EQ(
      resolver_->ResolveByChainOrLayer("", {{kNydusBootstrapLabel, "true"}}, "").status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(resolver_->ResolveByChainOrLayer("", {{kTargetRefLabel, "chain"}}, "").status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ImageResolverTest, BadDocumentsSkipTheImageAndAreReported) {
  const NydusImage app = MakeNydusImage("app");
  // Names sort before the good image, so each is looked at first.
  const std::string garbage = "{\"schemaVersion\": 2, \"layers\": [";
  fake_->AddContent("default", garbage);
  fake_->AddImage("default", "a.example.com/garbage:1", kOciManifest, Sha256(garbage),
                  static_cast<int64_t>(garbage.size()));
  fake_->AddImage("default", "b.example.com/huge:1", kOciManifest, Sha256("huge"), 1ll << 40);
  const std::string liar = MakeNydusImage("liar").manifest;
  fake_->AddContent("default", liar);
  fake_->AddImage("default", "c.example.com/liar:1", kOciManifest, Sha256(liar),
                  static_cast<int64_t>(liar.size()) - 10);  // store has more than declared
  fake_->AddImage("default", "d.example.com/missing:1", kOciManifest, Sha256("missing"), 10);
  // A nydus manifest whose config has fewer diff ids than layers.
  NydusImage bad_config = MakeNydusImage("badcfg");
  bad_config.config = json{{"rootfs", {{"diff_ids", {Sha256("x")}}}}}.dump();
  json m = json::parse(bad_config.manifest);
  m["config"]["digest"] = Sha256(bad_config.config);
  m["config"]["size"] = bad_config.config.size();
  bad_config.manifest = m.dump();
  bad_config.manifest_digest = Sha256(bad_config.manifest);
  Add("default", "e.example.com/badcfg:1", bad_config);

  // Only bad images: not found, saying why each was skipped.
  auto r = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_EQ(r.status().code(), StatusCode::kNotFound) << r.status();
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("a.example.com/garbage:1: manifest: not valid JSON"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("b.example.com/huge:1: blob " + Sha256("huge") +
                     ": 1099511627776 bytes, "
                     "over the limit"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("c.example.com/liar:1: blob " + Sha256(liar) + ": longer than"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("and 2 more"), std::string::npos) << msg;

  // With the good image among them it is found.
  Add("default", "f.example.com/app:1", app);
  auto name = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "f.example.com/app:1");
}

TEST_F(ImageResolverTest, ContentThatDoesNotMatchItsDigestIsRejected) {
  const NydusImage app = MakeNydusImage("app");
  fake_->AddContent("default", app.config);
  // Other bytes of the same length under the manifest's digest.
  std::string tampered = app.manifest;
  tampered[tampered.size() - 2] = tampered[tampered.size() - 2] == 'x' ? 'y' : 'x';
  fake_->AddContentAs("default", app.manifest_digest, tampered);
  fake_->AddImage("default", "registry.example.com/team/app:1", kOciManifest, app.manifest_digest,
                  static_cast<int64_t>(app.manifest.size()));
  auto r = resolver_->ResolveByChainOrLayer("", MetaLabels(app), "");
  ASSERT_EQ(r.status().code(), StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("content does not match its digest"), std::string::npos)
      << r.status();
}

TEST(ImageResolverUnreachableTest, NoContainerdIsUnavailableQuickly) {
  testing::TempDir tmp;
  ContainerdImageResolver resolver(tmp.Sub("no-such.sock"), std::chrono::seconds(20));
  const auto start = std::chrono::steady_clock::now();
  auto r =
      resolver.ResolveByChainOrLayer("", {{kTargetRefLabel, "sha256:" + std::string(64, 'a')}}, "");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
  EXPECT_NE(r.status().message().find(tmp.Sub("no-such.sock")), std::string::npos) << r.status();
  EXPECT_LT(took, std::chrono::seconds(5));
}

}  // namespace
}  // namespace rfs::snapshotter::grpc
