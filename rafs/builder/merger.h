// `rafs merge`: combines per-layer RAFS v6 bootstraps, lowest layer first,
// into the one bootstrap a RAFS mount reads (spec RAFS-FORMAT 8.3 and 12).
//
// Whiteouts of an upper layer act on the layers below it and never appear
// in the output: OCI `.wh.NAME` removes NAME, `.wh..wh..opq` removes every
// lower entry of its directory, an overlayfs 0/0 character device removes
// its name, and a directory with `trusted.overlay.opaque=y` hides the lower
// directory's entries (the xattr is dropped). Other upper entries replace
// lower ones of the same name; directories merge, taking the upper
// attributes. The bottom layer's whiteouts, having nothing to act on, are
// dropped too. Chunks keep pointing into the layers' blobs; the blob table
// lists the blobs still referenced, in the order the merged tree first
// references them (sequence order, spec 12).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace rfs::rafs::builder {

struct MergeResult {
  uint64_t bootstrap_size = 0;
  uint64_t entries = 0;
  uint64_t blobs = 0;
  std::vector<std::string> blob_ids;  // blob table order
};

// Reads the layer bootstraps (v6, all with the same chunk size and
// digester) and writes the merged bootstrap to `output`. `prefetch_paths`
// (image paths, in priority order; those missing from the merged tree are
// skipped) become its prefetch table: a mount fetches their data first.
base::Result<MergeResult> MergeLayers(const std::vector<std::string>& layers,
                                      const std::string& output,
                                      const std::vector<std::string>& prefetch_paths = {});

}  // namespace rfs::rafs::builder
