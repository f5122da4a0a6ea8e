#include "test/support/oci_image.h"

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "storage/codec.h"

namespace rfs::testing {

namespace {

void PutOctal(uint8_t* h, size_t off, size_t len, uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*llo", static_cast<int>(len - 1),
                static_cast<unsigned long long>(v));
  std::memcpy(h + off, buf, len - 1);
  h[off + len - 1] = 0;
}

std::string Sha256Digest(const std::vector<uint8_t>& data) {
  return "sha256:" + base::DigestHex(base::Sha256(data));
}

std::vector<uint8_t> Bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

}  // namespace

void SetTarChecksum(uint8_t* h) {
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += h[i];
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%06o", sum);
  std::memcpy(h + 148, buf, 6);
  h[154] = 0;
  h[155] = ' ';
}

size_t TarWriter::AddRawHeader(const std::string& name, char type, uint64_t size_field) {
  const size_t at = bytes_.size();
  bytes_.resize(at + 512, 0);
  uint8_t* h = bytes_.data() + at;
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  PutOctal(h, 100, 8, type == '5' ? 0755 : 0644);
  PutOctal(h, 108, 8, 0);
  PutOctal(h, 116, 8, 0);
  PutOctal(h, 124, 12, size_field);
  PutOctal(h, 136, 12, 1700000000);
  h[156] = static_cast<uint8_t>(type);
  std::memcpy(h + 257, "ustar\0" "00", 8);
  SetTarChecksum(h);
  return at;
}

void TarWriter::AddBytes(std::string_view data) {
  bytes_.insert(bytes_.end(), data.begin(), data.end());
  bytes_.resize(base::AlignUp(bytes_.size(), 512), 0);
}

size_t TarWriter::Add(const std::string& name, std::string_view data, char type,
                      LongName long_name) {
  std::string short_name = name;
  std::string prefix;
  if (name.size() > 100) {
    switch (long_name) {
      case LongName::kPax: {
        std::string rec = " path=" + name + "\n";
        // The length counts its own digits.
        size_t len = rec.size() + 1;
        while (std::to_string(len).size() + rec.size() != len) ++len;
        rec = std::to_string(len) + rec;
        AddRawHeader("PaxHeaders/x", 'x', rec.size());
        AddBytes(rec);
        break;
      }
      case LongName::kGnu: {
        AddRawHeader("././@LongLink", 'L', name.size() + 1);
        AddBytes(std::string_view(name.c_str(), name.size() + 1));
        break;
      }
      case LongName::kUstarPrefix: {
        const size_t slash = name.rfind('/', 155);
        prefix = name.substr(0, slash);
        short_name = name.substr(slash + 1);
        break;
      }
    }
    if (long_name != LongName::kUstarPrefix) short_name = name.substr(0, 100);
  }
  const size_t at = AddRawHeader(short_name, type, data.size());
  if (!prefix.empty()) {
    std::memcpy(bytes_.data() + at + 345, prefix.data(), prefix.size());
    SetTarChecksum(bytes_.data() + at);
  }
  AddBytes(data);
  return at;
}

std::vector<uint8_t> TarWriter::Finish() const {
  std::vector<uint8_t> out = bytes_;
  out.resize(out.size() + 1024, 0);
  return out;
}

std::vector<uint8_t> BootstrapLayerTar(const std::vector<uint8_t>& bootstrap,
                                       const std::map<std::string, std::vector<uint8_t>>&
                                           blob_meta) {
  TarWriter t;
  t.Add("image/", "", '5');
  t.Add("image/image.boot",
        std::string_view(reinterpret_cast<const char*>(bootstrap.data()), bootstrap.size()));
  for (const auto& [id, meta] : blob_meta) {
    t.Add("image/" + id + ".blob.meta",
          std::string_view(reinterpret_cast<const char*>(meta.data()), meta.size()));
  }
  return t.Finish();
}

std::vector<uint8_t> Gzip(const std::vector<uint8_t>& data) {
  auto z = storage::Compress(storage::Compressor::kGzip, data);
  return z.ok() ? *z : std::vector<uint8_t>{};
}

namespace {

nlohmann::json Descriptor(const std::string& media_type, const std::vector<uint8_t>& data) {
  return {{"mediaType", media_type}, {"digest", Sha256Digest(data)}, {"size", data.size()}};
}

base::Result<PushedImage> PushManifestOf(LocalRegistry& registry, const std::string& repo,
                                         const std::string& tag, const nlohmann::json& config,
                                         const std::vector<nlohmann::json>& layers,
                                         const std::vector<std::vector<uint8_t>>& layer_bytes) {
  for (const auto& bytes : layer_bytes) {
    ASSIGN_OR_RETURN(std::string id, registry.PushBlob(repo, bytes));
    (void)id;
  }
  const std::vector<uint8_t> config_bytes = Bytes(config.dump());
  ASSIGN_OR_RETURN(std::string config_id, registry.PushBlob(repo, config_bytes));
  (void)config_id;
  nlohmann::json m = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config", Descriptor("application/vnd.oci.image.config.v1+json", config_bytes)},
      {"layers", layers}};
  PushedImage p;
  p.manifest = Bytes(m.dump());
  p.manifest_size = p.manifest.size();
  ASSIGN_OR_RETURN(p.manifest_digest,
                   registry.PushManifest(repo, tag, "application/vnd.oci.image.manifest.v1+json",
                                         p.manifest));
  return p;
}

}  // namespace

base::Result<PushedImage> PushNydusImage(LocalRegistry& registry, const std::string& repo,
                                         const WrittenImage& image, const PushOptions& options) {
  std::vector<nlohmann::json> layers;
  std::vector<std::vector<uint8_t>> bytes;
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const std::string& id : image.blob_ids) {
    const auto& blob = image.blobs.at(id);
    nlohmann::json d = Descriptor(options.nydus_blob_media_type
                                      ? "application/vnd.oci.image.layer.nydus.blob.v1"
                                      : "application/vnd.oci.image.layer.v1.tar",
                                  blob);
    d["annotations"] = {{"containerd.io/snapshot/nydus-blob", "true"}};
    layers.push_back(d);
    bytes.push_back(blob);
    diff_ids.push_back(Sha256Digest(blob));
  }
  const std::vector<uint8_t> tar = BootstrapLayerTar(image.bootstrap);
  std::vector<uint8_t> boot_layer =
      options.bootstrap_layer.empty() ? Gzip(tar) : options.bootstrap_layer;
  nlohmann::json boot = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", boot_layer);
  if (options.annotate_bootstrap) {
    boot["annotations"] = {{"containerd.io/snapshot/nydus-bootstrap", "true"},
                           {"containerd.io/snapshot/nydus-fs-version", "6"}};
  }
  layers.push_back(boot);
  bytes.push_back(boot_layer);
  diff_ids.push_back(Sha256Digest(tar));
  nlohmann::json config = {{"architecture", options.architecture},
                           {"os", "linux"},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  ASSIGN_OR_RETURN(PushedImage p, PushManifestOf(registry, repo, options.tag, config, layers, bytes));
  p.bootstrap_layer_digest = Sha256Digest(boot_layer);
  return p;
}

base::Result<PushedImage> PushPlainImage(LocalRegistry& registry, const std::string& repo,
                                         const std::string& tag,
                                         const std::map<std::string, std::string>& files) {
  TarWriter t;
  for (const auto& [name, data] : files) t.Add(name, data);
  const std::vector<uint8_t> tar = t.Finish();
  const std::vector<uint8_t> layer = Gzip(tar);
  nlohmann::json config = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {Sha256Digest(tar)}}}}};
  return PushManifestOf(registry, repo, tag, config,
                        {Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)}, {layer});
}

base::Result<std::string> PushIndex(LocalRegistry& registry, const std::string& repo,
                                    const std::string& tag,
                                    const std::vector<IndexEntry>& entries) {
  nlohmann::json manifests = nlohmann::json::array();
  for (const IndexEntry& e : entries) {
    nlohmann::json d = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                        {"digest", e.image.manifest_digest},
                        {"size", e.image.manifest_size}};
    nlohmann::json platform = {{"os", e.os}, {"architecture", e.architecture}};
    if (!e.variant.empty()) platform["variant"] = e.variant;
    if (e.nydus_os_feature) platform["os.features"] = {"nydus.remoteimage.v1"};
    d["platform"] = platform;
    if (e.nydus_artifact_type) d["artifactType"] = "application/vnd.nydus.image.manifest.v1+json";
    manifests.push_back(d);
  }
  nlohmann::json index = {{"schemaVersion", 2},
                          {"mediaType", "application/vnd.oci.image.index.v1+json"},
                          {"manifests", manifests}};
  return registry.PushManifest(repo, tag, "application/vnd.oci.image.index.v1+json",
                               Bytes(index.dump()));
}

}  // namespace rfs::testing
