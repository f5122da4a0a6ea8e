// ChunkDict: the chunks an existing RAFS v6 image already stores (its
// chunk table), for `rafs build --chunk-dict BOOTSTRAP`: a chunk found here
// by (digest, size) is referenced in the dictionary's blob instead of being
// stored again (spec 6.1, deduplication). Also how a layer reuses the
// chunks of the layers below it: pass their (merged) bootstrap.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "rafs/builder/tree.h"
#include "rafs/meta/metadata.h"

namespace rfs::rafs::builder {

// A blob table entry as a builder writes it, from a loaded bootstrap's
// entry (INLINED_FS_META cleared, effective id).
BlobEntry BlobEntryFromMeta(const meta::BlobEntry& b);

class ChunkDict {
 public:
  // Loads the bootstrap's chunk table. The dictionary must use the same
  // chunk size and digester as the build (kInvalidArgument otherwise).
  static base::Result<std::unique_ptr<ChunkDict>> Open(const std::string& bootstrap,
                                                       uint32_t chunk_size,
                                                       base::DigestAlgo digester);

  struct Found {
    ChunkInfo chunk;     // blob_index is the dictionary's
    uint32_t dict_blob;  // index into blobs()
  };
  std::optional<Found> Find(const base::Digest& digest, uint32_t size) const;
  const std::vector<BlobEntry>& blobs() const { return blobs_; }

 private:
  ChunkDict() = default;
  std::vector<BlobEntry> blobs_;
  std::map<base::Digest, ChunkInfo> chunks_;
};

}  // namespace rfs::rafs::builder
