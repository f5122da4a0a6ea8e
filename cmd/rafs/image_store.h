// Where `rafs convert` reads and writes images: a repository in a registry
// (registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]) or an OCI image
// layout directory (oci:DIR[:TAG]), behind one small interface.
//
// Reads are verified: manifests and blobs against their digests and the
// sizes their descriptors state (kDataLoss naming the object otherwise).
// Writes of blobs skip what the store already has; manifests named by
// digest only (entries of an index) are written before the one tagged.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "cmd/rafs/remote_image.h"
#include "storage/registry_image.h"
#include "storage/registry_push.h"

namespace rfs::cmd {

struct StoredDocument {
  std::string media_type;
  std::string digest;
  std::vector<uint8_t> bytes;
};

class ImageStore {
 public:
  virtual ~ImageStore() = default;
  // The reference as given, for messages.
  virtual const std::string& name() const = 0;

  // The manifest or index the reference names.
  virtual base::Result<StoredDocument> GetRoot() = 0;
  // A manifest named by a descriptor (digest and size checked).
  virtual base::Result<StoredDocument> GetManifest(const storage::Descriptor& d) = 0;
  // A small blob (a config), verified, at most `max_bytes`.
  virtual base::Result<std::vector<uint8_t>> ReadBlob(const storage::Descriptor& d,
                                                      uint64_t max_bytes) = 0;
  // Streams blob `d` to `consume` in order, verifying size and digest; the
  // verdict (kDataLoss naming the digests) comes after the last piece, so
  // nothing consumed may be trusted before this returns Ok.
  virtual base::Status StreamBlob(const storage::Descriptor& d,
                                  const std::function<base::Status(base::ByteSpan)>& consume,
                                  const storage::TransferProgress& progress) = 0;

  // The size of blob `digest` when the store has it.
  virtual base::Result<std::optional<uint64_t>> StatBlob(const std::string& digest) = 0;
  virtual base::Result<storage::BlobPush> PutBlob(const storage::Descriptor& d,
                                                  const storage::BlobContent& content,
                                                  const storage::TransferProgress& progress) = 0;
  // Stores manifest/index `d` (bytes hashing to d.digest); `tag` also points
  // the reference's tag at it.
  virtual base::Status PutManifest(const storage::Descriptor& d,
                                   const std::vector<uint8_t>& bytes, bool tag) = 0;

  // For a destination: blobs may be mounted from `source` when both are
  // repositories of one registry.
  virtual void MountFrom(const ImageStore& source) { (void)source; }
};

// Opens SRC (`for_write` false) or DST. DST must name a tag (registry:
// :TAG; oci: DIR:TAG or "latest"). Bad references are kInvalidArgument.
base::Result<std::unique_ptr<ImageStore>> OpenImageStore(const std::string& ref,
                                                         const RegistryAccess& access,
                                                         bool for_write);

}  // namespace rfs::cmd
