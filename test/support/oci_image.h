// Test helpers for images in a registry: a small tar writer (ustar headers,
// long names as pax records, GNU 'L' records or a ustar prefix), nydus
// bootstrap layers, and pushing a nydus image (blobs, bootstrap layer,
// config, manifest, optionally an index) to a LocalRegistry.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "test/support/local_registry.h"
#include "test/support/rafs_writer.h"

namespace rfs::testing {

class TarWriter {
 public:
  enum class LongName { kPax, kGnu, kUstarPrefix };
  // Appends a member; names over 100 bytes are written the `long_name` way.
  // Returns the offset of the member's (last) header.
  size_t Add(const std::string& name, std::string_view data, char type = '0',
             LongName long_name = LongName::kPax);
  // A raw header block with only name, type and size set (checksummed).
  size_t AddRawHeader(const std::string& name, char type, uint64_t size_field);
  void AddBytes(std::string_view data);  // raw bytes, padded to 512
  // The archive with its two zero end blocks.
  std::vector<uint8_t> Finish() const;
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Recomputes the checksum of the 512-byte header at `h`.
void SetTarChecksum(uint8_t* h);

// The bootstrap layer tar of spec 5.3: directory image/, image/image.boot
// and image/<id>.blob.meta for each `blob_meta` entry.
std::vector<uint8_t> BootstrapLayerTar(const std::vector<uint8_t>& bootstrap,
                                       const std::map<std::string, std::vector<uint8_t>>&
                                           blob_meta = {});
std::vector<uint8_t> Gzip(const std::vector<uint8_t>& data);

struct PushOptions {
  std::string tag = "latest";  // "" to push by digest only
  bool annotate_bootstrap = true;
  bool nydus_blob_media_type = true;
  std::string architecture = "amd64";
  std::vector<uint8_t> bootstrap_layer;  // default: gzip of BootstrapLayerTar
};

struct PushedImage {
  std::string manifest_digest;
  uint64_t manifest_size = 0;
  std::string bootstrap_layer_digest;
  std::vector<uint8_t> manifest;
};

// Pushes `image`'s blobs, a bootstrap layer, a config and an OCI manifest.
base::Result<PushedImage> PushNydusImage(LocalRegistry& registry, const std::string& repo,
                                         const WrittenImage& image, const PushOptions& options);

// Pushes a plain (non-nydus) OCI image of one gzip layer holding `files`.
base::Result<PushedImage> PushPlainImage(LocalRegistry& registry, const std::string& repo,
                                         const std::string& tag,
                                         const std::map<std::string, std::string>& files);

struct IndexEntry {
  PushedImage image;
  std::string os = "linux", architecture = "amd64", variant;
  bool nydus_artifact_type = false;
  bool nydus_os_feature = false;
};

// Pushes an OCI index of `entries` under `tag`; returns its digest.
base::Result<std::string> PushIndex(LocalRegistry& registry, const std::string& repo,
                                    const std::string& tag, const std::vector<IndexEntry>& entries);

}  // namespace rfs::testing
