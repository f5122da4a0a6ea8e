// Writes a RAFS v6 bootstrap (EROFS metadata + Nydus tables) for a builder
// tree, in the layout of spec RAFS-FORMAT sections 3 to 5 and 8: all inodes
// extended, inline xattrs, root at nid 128, inodes placed in the order of
// section 4.8 (each directory, its non-directory children, then its
// subdirectories), FLAT_INLINE tails where they fit, 8-byte chunk indexes,
// the chunk table sorted by (digest, blob index + 1), and the no-blob
// layout of section 3 when there are no blobs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "rafs/builder/tree.h"
#include "storage/codec.h"

namespace rfs::rafs::builder {

struct V6Options {
  uint32_t chunk_size = 1u << 20;
  storage::Compressor compressor = storage::Compressor::kZstd;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  // Image paths ("/usr/bin") for the prefetch table, in priority order;
  // paths not in the tree are skipped. Written only when there are blobs.
  std::vector<std::string> prefetch_paths;
  // Set HAS_XATTR even without xattrs (what upstream merge does).
  bool force_has_xattr = false;
};

// `chunks` holds every chunk the tree's files reference (their file_offset
// fields are updated); `blobs` is the blob table in index order.
base::Result<std::vector<uint8_t>> WriteV6Bootstrap(Node* root, std::vector<ChunkInfo>* chunks,
                                                    const std::vector<BlobEntry>& blobs,
                                                    const V6Options& options);

}  // namespace rfs::rafs::builder
