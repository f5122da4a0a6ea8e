// OCI image layout directories (image-spec "image-layout"): `oci-layout`,
// `index.json` and content-addressed `blobs/sha256/<hex>`, read and
// written as an image store for `rafs convert` (oci:DIR[:TAG]).
//
// Tags are index.json entries annotated org.opencontainers.image.ref.name.
// Every blob read is verified against its digest (kDataLoss otherwise);
// blobs and index.json are written through a temporary file and a rename,
// so a failed write leaves no partial file under its final name.
//
// Also the JSON form of a Descriptor, shared with whoever writes manifests
// and indexes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "storage/registry_image.h"

namespace rfs::storage {

// A whole file's bytes; kNotFound when it does not exist, kResourceExhausted
// past `max_bytes`.
base::Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path, uint64_t max_bytes);
// A file's "sha256:<hex>" digest and size.
base::Result<std::pair<std::string, uint64_t>> Sha256File(const std::string& path);

inline constexpr std::string_view kOciRefNameAnnotation = "org.opencontainers.image.ref.name";

// {"mediaType", "digest", "size", "annotations"?, "artifactType"?,
// "platform"?}; keys come out sorted (stable bytes).
nlohmann::json DescriptorToJson(const Descriptor& d);

class OciLayout {
 public:
  // Opens DIR; with `create` a missing or empty directory becomes an empty
  // layout. A directory without `oci-layout` is kFailedPrecondition.
  static base::Result<OciLayout> Open(const std::string& dir, bool create);

  const std::string& dir() const { return dir_; }
  std::string BlobPath(const std::string& digest) const;

  // The index.json entry tagged `tag`; with an empty tag the only entry.
  // kNotFound naming the tags on offer.
  base::Result<Descriptor> Resolve(const std::string& tag) const;
  // Raw index.json.
  base::Result<std::vector<uint8_t>> ReadIndex() const;

  // Checks that blob `digest` is present with `size` bytes and the right
  // content (hashes the file). kNotFound when absent, kDataLoss when wrong.
  base::Status VerifyBlob(const std::string& digest, uint64_t size) const;
  // A verified blob of at most `max_bytes`.
  base::Result<std::vector<uint8_t>> ReadBlob(const std::string& digest, uint64_t size,
                                              uint64_t max_bytes) const;
  // Stores bytes / a copy of file `path` as blob `digest` (checked) unless
  // present; returns true when it was already there.
  base::Result<bool> WriteBlob(const std::string& digest, base::ByteSpan bytes);
  base::Result<bool> CopyBlobFile(const std::string& digest, const std::string& path);

  // Points `tag` at `manifest` in index.json (replacing an entry with that
  // tag; with an empty tag the entry is added untagged).
  base::Status Tag(const Descriptor& manifest, const std::string& tag);

 private:
  explicit OciLayout(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace rfs::storage
