#include "storage/registry_image.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/logging.h"
#include "storage/layer_tar.h"

namespace rfs::storage {

using base::DataLossError;
using base::Result;
using base::Status;
using Json = nlohmann::json;

namespace {

constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";

// Typed field access that never throws: absent is fine unless required,
// the wrong type is kDataLoss naming the field.
Status GetString(const Json& o, const char* key, std::string_view where, bool required,
                 std::string* out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) {
    if (required) return DataLossError(where, ": no \"", key, "\"");
    return Status::Ok();
  }
  if (!it->is_string()) return DataLossError(where, ": \"", key, "\" is not a string");
  *out = it->get_ref<const std::string&>();
  return Status::Ok();
}

Status GetStrings(const Json& o, const char* key, std::string_view where,
                  std::vector<std::string>* out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return Status::Ok();
  if (!it->is_array()) return DataLossError(where, ": \"", key, "\" is not an array");
  for (const Json& v : *it) {
    if (!v.is_string()) return DataLossError(where, ": \"", key, "\" holds a non-string");
    out->push_back(v.get_ref<const std::string&>());
  }
  return Status::Ok();
}

Result<Platform> ParsePlatformJson(const Json& j, std::string_view where) {
  if (!j.is_object()) return DataLossError(where, ": platform is not an object");
  Platform p;
  RETURN_IF_ERROR(GetString(j, "os", where, true, &p.os));
  RETURN_IF_ERROR(GetString(j, "architecture", where, true, &p.architecture));
  RETURN_IF_ERROR(GetString(j, "variant", where, false, &p.variant));
  RETURN_IF_ERROR(GetStrings(j, "os.features", where, &p.os_features));
  return p;
}

Result<Descriptor> ParseDescriptor(const Json& j, const std::string& where) {
  if (!j.is_object()) return DataLossError(where, ": not an object");
  Descriptor d;
  RETURN_IF_ERROR(GetString(j, "mediaType", where, false, &d.media_type));
  RETURN_IF_ERROR(GetString(j, "digest", where, true, &d.digest));
  RETURN_IF_ERROR(GetString(j, "artifactType", where, false, &d.artifact_type));
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() ||
      (size->is_number_integer() && !size->is_number_unsigned() && size->get<int64_t>() < 0)) {
    return DataLossError(where, ": \"size\" is missing or not a non-negative integer");
  }
  d.size = size->get<uint64_t>();
  auto ann = j.find("annotations");
  if (ann != j.end() && !ann->is_null()) {
    if (!ann->is_object()) return DataLossError(where, ": \"annotations\" is not an object");
    for (auto it = ann->begin(); it != ann->end(); ++it) {
      if (!it.value().is_string()) {
        return DataLossError(where, ": annotation \"", it.key(), "\" is not a string");
      }
      d.annotations[it.key()] = it.value().get_ref<const std::string&>();
    }
  }
  auto platform = j.find("platform");
  if (platform != j.end() && !platform->is_null()) {
    ASSIGN_OR_RETURN(Platform p, ParsePlatformJson(*platform, where));
    d.platform = std::move(p);
  }
  return d;
}

Result<std::vector<Descriptor>> ParseDescriptors(const Json& o, const char* key,
                                                 const std::string& where) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_array()) {
    return DataLossError(where, ": \"", key, "\" is missing or not an array");
  }
  std::vector<Descriptor> out;
  for (size_t i = 0; i < it->size(); ++i) {
    ASSIGN_OR_RETURN(Descriptor d,
                     ParseDescriptor((*it)[i], base::StrCat(where, ": ", key, "[", i, "]")));
    out.push_back(std::move(d));
  }
  return out;
}

std::string Normalized(std::string arch) {
  for (auto& c : arch) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (arch == "x86_64" || arch == "x86-64") return "amd64";
  if (arch == "aarch64") return "arm64";
  return arch;
}

bool Matches(const Platform& have, const Platform& want) {
  return have.os == want.os && Normalized(have.architecture) == Normalized(want.architecture) &&
         (want.variant.empty() || have.variant.empty() || have.variant == want.variant);
}

// The hex part of a sha256 digest, or kFailedPrecondition.
Result<std::string> Sha256Hex(const std::string& digest, std::string_view what) {
  if (digest.size() != 7 + 64 || digest.rfind("sha256:", 0) != 0 ||
      !std::all_of(digest.begin() + 7, digest.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return base::FailedPreconditionError(what, ": digest '", digest,
                                         "' is not sha256:<64 lower-case hex digits>");
  }
  return digest.substr(7);
}

}  // namespace

std::string Platform::ToString() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Platform HostPlatform() {
  Platform p;
  p.os = "linux";
#if defined(__x86_64__)
  p.architecture = "amd64";
#elif defined(__aarch64__)
  p.architecture = "arm64";
#elif defined(__arm__)
  p.architecture = "arm";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  p.architecture = "ppc64le";
#elif defined(__s390x__)
  p.architecture = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  p.architecture = "riscv64";
#elif defined(__i386__)
  p.architecture = "386";
#else
  p.architecture = "unknown";
#endif
  return p;
}

Result<Platform> ParsePlatform(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t slash = text.find('/', start);
    parts.emplace_back(text.substr(start, slash == std::string_view::npos ? text.npos
                                                                          : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  bool ok = parts.size() == 2 || parts.size() == 3;
  for (const auto& p : parts) {
    ok = ok && !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
  }
  if (!ok) {
    return base::InvalidArgumentError("platform '", text, "': want OS/ARCH[/VARIANT], e.g. ",
                                      HostPlatform().ToString());
  }
  Platform p;
  p.os = parts[0];
  for (auto& c : p.os) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  p.architecture = Normalized(parts[1]);
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

bool Descriptor::IsNydusManifest() const {
  if (artifact_type == kNydusManifestArtifactType) return true;
  if (!platform) return false;
  const auto& f = platform->os_features;
  return std::find(f.begin(), f.end(), kNydusOsFeature) != f.end();
}

bool Descriptor::Annotated(std::string_view key) const {
  auto it = annotations.find(std::string(key));
  return it != annotations.end() && it->second == "true";
}

Result<ManifestDocument> ParseManifestDocument(base::ByteSpan json,
                                               std::string_view content_type) {
  Json j = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return DataLossError("manifest: not valid JSON");
  if (!j.is_object()) return DataLossError("manifest: not a JSON object");
  ManifestDocument m;
  RETURN_IF_ERROR(GetString(j, "mediaType", "manifest", false, &m.media_type));
  if (m.media_type.empty()) m.media_type = std::string(content_type);
  auto schema = j.find("schemaVersion");
  if (schema != j.end() && schema->is_number_integer() && schema->get<int64_t>() == 1) {
    return base::FailedPreconditionError(
        "manifest: Docker schema 1 manifests are not supported (push the image again with a "
        "current client)");
  }
  if (schema == j.end() || !schema->is_number_integer() || schema->get<int64_t>() != 2) {
    return DataLossError("manifest: \"schemaVersion\" is missing or not 2");
  }
  const bool says_index = m.media_type == kOciIndex || m.media_type == kDockerList;
  const bool says_manifest = m.media_type == kOciManifest || m.media_type == kDockerManifest;
  if (says_index || (!says_manifest && j.contains("manifests") && !j.contains("layers"))) {
    m.is_index = true;
    ASSIGN_OR_RETURN(m.manifests, ParseDescriptors(j, "manifests", "index"));
    return m;
  }
  if (!says_manifest && !j.contains("layers")) {
    return base::FailedPreconditionError("manifest: unsupported media type '", m.media_type,
                                         "' (want an OCI or Docker schema 2 manifest or index)");
  }
  auto config = j.find("config");
  if (config == j.end()) return DataLossError("manifest: no \"config\"");
  ASSIGN_OR_RETURN(m.config, ParseDescriptor(*config, "manifest: config"));
  ASSIGN_OR_RETURN(m.layers, ParseDescriptors(j, "layers", "manifest"));
  return m;
}

Result<Descriptor> SelectManifest(const std::vector<Descriptor>& manifests, const Platform& want) {
  const Descriptor* first = nullptr;
  for (const Descriptor& d : manifests) {
    if (!d.platform || !Matches(*d.platform, want)) continue;
    if (d.IsNydusManifest()) return d;
    if (first == nullptr) first = &d;
  }
  if (first != nullptr) return *first;
  std::string offered;
  for (const Descriptor& d : manifests) {
    if (!offered.empty()) offered += ", ";
    offered += d.platform ? d.platform->ToString() : "(no platform)";
    if (d.IsNydusManifest()) offered += " (nydus)";
  }
  return base::NotFoundError("index has no manifest for ", want.ToString(), " (it has ",
                             offered.empty() ? "none" : offered, ")");
}

Result<NydusLayers> FindNydusLayers(const ManifestDocument& manifest, bool chosen_as_nydus) {
  if (manifest.is_index) return base::InternalError("FindNydusLayers given an index");
  NydusLayers out;
  const Descriptor* bootstrap = nullptr;
  for (const Descriptor& l : manifest.layers) {
    if (l.Annotated(kNydusBootstrapAnnotation)) bootstrap = &l;
  }
  for (const Descriptor& l : manifest.layers) {
    if (&l == bootstrap) continue;
    if (l.media_type == kNydusBlobMediaType || l.Annotated(kNydusBlobAnnotation)) {
      out.blobs.push_back(l);
    }
  }
  if (bootstrap == nullptr) {
    const bool nydus = chosen_as_nydus || !out.blobs.empty() ||
                       manifest.config.media_type == kNydusConfigMediaType;
    if (!nydus || manifest.layers.empty()) {
      return base::FailedPreconditionError(
          "not a nydus (RAFS) image: no layer is annotated ", kNydusBootstrapAnnotation,
          " and none is a nydus data blob (convert the image to nydus first)");
    }
    const Descriptor& last = manifest.layers.back();
    if (last.media_type == kNydusBlobMediaType || last.Annotated(kNydusBlobAnnotation)) {
      return base::FailedPreconditionError(
          "nydus image without a bootstrap layer: the last layer is a data blob");
    }
    bootstrap = &last;
  }
  out.bootstrap = *bootstrap;
  return out;
}

Result<RemoteImage> FetchRemoteImage(const std::shared_ptr<RegistryBackend>& backend,
                                     const std::string& reference,
                                     const RemoteImageOptions& options, const IoContext& ctx) {
  RemoteImage image;
  ASSIGN_OR_RETURN(RegistryBackend::Manifest raw,
                   backend->GetManifest(reference, ctx, options.max_manifest_bytes));
  ASSIGN_OR_RETURN(ManifestDocument doc, ParseManifestDocument(raw.bytes, raw.media_type));
  bool chosen_as_nydus = false;
  // An index may (rarely) point at another index: follow one more level.
  for (int depth = 0; doc.is_index; ++depth) {
    if (depth >= 2) return DataLossError("manifest ", raw.digest, ": indexes nested too deep");
    auto selected = SelectManifest(doc.manifests, options.platform);
    if (!selected.ok()) return selected.status().WithContext("image " + reference);
    const Descriptor pick = std::move(*selected);
    RETURN_IF_ERROR(Sha256Hex(pick.digest, "index entry").status());
    chosen_as_nydus = pick.IsNydusManifest();
    image.platform = pick.platform;
    ASSIGN_OR_RETURN(raw, backend->GetManifest(pick.digest, ctx, options.max_manifest_bytes));
    if (raw.bytes.size() != pick.size) {
      return DataLossError("manifest ", pick.digest, ": ", raw.bytes.size(),
                           " bytes, the index says ", pick.size);
    }
    ASSIGN_OR_RETURN(doc, ParseManifestDocument(raw.bytes, raw.media_type));
  }
  image.manifest_digest = raw.digest;
  auto layers = FindNydusLayers(doc, chosen_as_nydus);
  if (!layers.ok()) return layers.status().WithContext("manifest " + raw.digest);
  image.bootstrap_layer = std::move(layers->bootstrap);
  image.blob_layers = std::move(layers->blobs);

  const Descriptor& boot = image.bootstrap_layer;
  const std::string what = "bootstrap layer " + boot.digest;
  ASSIGN_OR_RETURN(std::string hex, Sha256Hex(boot.digest, what));
  if (boot.size == 0) return DataLossError(what, ": size 0");
  if (boot.size > options.max_layer_bytes) {
    return base::ResourceExhaustedError(what, ": ", boot.size, " bytes, over the limit of ",
                                        options.max_layer_bytes);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, backend->Open(hex));
  std::vector<uint8_t> stored(static_cast<size_t>(boot.size));
  Status read = reader->ReadAt(0, stored, ctx);
  if (read.code() == base::StatusCode::kOutOfRange) {
    return DataLossError(what, ": shorter than the ", boot.size, " bytes the manifest says");
  }
  RETURN_IF_ERROR(read);
  const std::string got = "sha256:" + base::DigestHex(base::Sha256(stored));
  if (got != boot.digest) return DataLossError(what, ": content digest is ", got);
  auto tar = DecompressLayer(stored, options.max_bootstrap_bytes);
  if (!tar.ok()) return tar.status().WithContext(what);
  stored = {};
  auto contents = ReadBootstrapLayer(*tar, options.keep_blob_meta);
  if (!contents.ok()) return contents.status().WithContext(what);
  image.bootstrap_name = std::move(contents->bootstrap_name);
  image.bootstrap = std::move(contents->bootstrap);
  image.blob_meta = std::move(contents->blob_meta);
  RFS_LOG(kDebug) << "image " << reference << ": manifest " << image.manifest_digest
                  << ", bootstrap " << image.bootstrap.size() << " bytes from " << boot.digest
                  << ", " << image.blob_layers.size() << " blob layers";
  return image;
}

}  // namespace rfs::storage
