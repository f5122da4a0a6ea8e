// Nydus (RAFS) images in a registry: from a reference to the bootstrap
// bytes and the list of data blobs (spec SNAPSHOTTER-BEHAVIOUR 5).
//
//   manifest (tag or digest) -- an OCI index / Docker manifest list? pick
//   the manifest for the platform, the nydus variant first -- layers: the
//   bootstrap layer (annotation containerd.io/snapshot/nydus-bootstrap, else
//   the last layer of a nydus manifest) and the data blob layers (media type
//   application/vnd.oci.image.layer.nydus.blob.v1 or annotation
//   containerd.io/snapshot/nydus-blob) -- the bootstrap layer blob (size
//   capped, sha256 verified), decompressed, `image/image.boot` taken out.
//
// Every document fetched by digest is verified against it. Results: a
// manifest that is not a nydus image is kFailedPrecondition saying so; no
// manifest for the platform is kNotFound listing what the index has;
// malformed documents and layers are kDataLoss; limits kResourceExhausted;
// registry outcomes as RegistryBackend maps them.
//
// Parsing and selection are pure functions so they are testable without a
// registry. Storage still knows nothing of inodes: the bootstrap comes back
// as bytes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "storage/registry_backend.h"

namespace rfs::storage {

inline constexpr std::string_view kNydusManifestArtifactType =
    "application/vnd.nydus.image.manifest.v1+json";
inline constexpr std::string_view kNydusOsFeature = "nydus.remoteimage.v1";
inline constexpr std::string_view kNydusBlobMediaType =
    "application/vnd.oci.image.layer.nydus.blob.v1";
inline constexpr std::string_view kNydusConfigMediaType =
    "application/vnd.nydus.image.config.v1+json";
inline constexpr std::string_view kNydusBootstrapAnnotation =
    "containerd.io/snapshot/nydus-bootstrap";
inline constexpr std::string_view kNydusBlobAnnotation = "containerd.io/snapshot/nydus-blob";

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", ...
  std::string variant;       // "v8", or empty
  std::vector<std::string> os_features;
  // "linux/amd64" or "linux/arm64/v8".
  std::string ToString() const;
};

// linux and the architecture this program was built for.
Platform HostPlatform();
// "OS/ARCH[/VARIANT]" (x86_64 and aarch64 are taken as amd64 and arm64);
// kInvalidArgument otherwise.
base::Result<Platform> ParsePlatform(std::string_view text);

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>" (other algorithms are kept, not fetched)
  uint64_t size = 0;
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;

  // The nydus entry of an index: artifactType or os.features say so.
  bool IsNydusManifest() const;
  // The annotation `key` is "true".
  bool Annotated(std::string_view key) const;
};

// A manifest or an index, as far as we use them.
struct ManifestDocument {
  bool is_index = false;
  std::string media_type;
  std::vector<Descriptor> manifests;  // index
  Descriptor config;                  // manifest
  std::vector<Descriptor> layers;     // manifest, bottom to top
};

// Parses an OCI / Docker schema 2 manifest or index. `content_type` (from
// the response) is used when the document names no mediaType. Docker
// schema 1 is kFailedPrecondition; malformed JSON or fields kDataLoss.
base::Result<ManifestDocument> ParseManifestDocument(base::ByteSpan json,
                                                     std::string_view content_type);

// The index entry for `want` (os and architecture equal; variants when both
// name one), the nydus variant first, else the first match. kNotFound naming
// the platforms on offer.
base::Result<Descriptor> SelectManifest(const std::vector<Descriptor>& manifests,
                                        const Platform& want);

struct NydusLayers {
  Descriptor bootstrap;
  std::vector<Descriptor> blobs;  // data blob layers, bottom to top
};

// The bootstrap and blob layers of a manifest. Without a bootstrap
// annotation the last layer is the bootstrap when the manifest is otherwise
// recognisably nydus (nydus blob layers or config, or `chosen_as_nydus` from
// an index); else kFailedPrecondition: not a nydus image.
base::Result<NydusLayers> FindNydusLayers(const ManifestDocument& manifest, bool chosen_as_nydus);

struct RemoteImageOptions {
  Platform platform = HostPlatform();
  uint64_t max_manifest_bytes = 4u << 20;
  uint64_t max_layer_bytes = 512u << 20;       // bootstrap layer as stored
  uint64_t max_bootstrap_bytes = 1024u << 20;  // bootstrap layer uncompressed
  bool keep_blob_meta = false;                 // keep image/<id>.blob.meta members
};

struct RemoteImage {
  std::string manifest_digest;  // of the image manifest (not the index)
  std::optional<Platform> platform;  // from the index entry, when there was one
  Descriptor bootstrap_layer;
  std::vector<Descriptor> blob_layers;
  std::string bootstrap_name;  // member it came from: "image/image.boot" or "image.boot"
  std::vector<uint8_t> bootstrap;
  std::map<std::string, std::vector<uint8_t>> blob_meta;  // blob id -> member bytes
};

// Fetches image `reference` (a tag or "sha256:<hex>") of the backend's
// repository down to its bootstrap (see the file comment).
base::Result<RemoteImage> FetchRemoteImage(const std::shared_ptr<RegistryBackend>& backend,
                                           const std::string& reference,
                                           const RemoteImageOptions& options,
                                           const IoContext& ctx);

}  // namespace rfs::storage
