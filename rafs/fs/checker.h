// Image checker (`rafs check`): walks the whole tree, validates every inode,
// directory, symlink and xattr area, verifies v5 inode digests, cross-checks
// the v6 chunk table against each blob's ci array and digest array, and
// reads and verifies every chunk once. The first failure is returned as an
// error naming the file, blob, chunk and blob offset.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "rafs/fs/image.h"

namespace rfs::rafs::fs {

struct CheckReport {
  uint64_t directories = 0;
  uint64_t files = 0;
  uint64_t symlinks = 0;
  uint64_t others = 0;
  uint64_t hardlinks = 0;      // extra names of hard-linked files
  uint64_t file_bytes = 0;     // sum of regular file sizes (hard links once)
  uint64_t chunks_verified = 0;
  uint64_t chunk_bytes = 0;    // uncompressed bytes of the verified chunks
  uint64_t inode_digests = 0;  // v5 inode digests verified
  uint64_t blobs_checked = 0;  // blobs whose ci array was cross-checked
};

struct CheckOptions {
  // Read and verify chunk data (needs the image's blobs).
  bool verify_data = true;
  // Progress callback per verified chunk (may be empty).
  std::function<void(uint64_t done, uint64_t total)> progress;
};

base::Result<CheckReport> CheckImage(const Image& image, const CheckOptions& options);

}  // namespace rfs::rafs::fs
