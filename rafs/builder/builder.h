// The RAFS v6 image builder (`rafs build`): a directory tree in, one data
// blob (named by its blob id) and a bootstrap out, in the default layout of
// spec RAFS-FORMAT section 9.1 unless options ask for the ToC or inlined
// metadata forms. Output is reproducible: the same input gives the same
// bytes (no wall-clock times; the root's mtime is 0 as upstream writes it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "storage/codec.h"

namespace rfs::rafs::builder {

struct BuildOptions {
  storage::Compressor compressor = storage::Compressor::kZstd;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  uint32_t chunk_size = 1u << 20;
  bool aligned = false;           // 4 KiB-aligned chunk data (EROFS extra device)
  bool blob_toc = false;          // tar headers, digest array, ToC
  bool blob_inline_meta = false;  // bootstrap inside the blob
  // Image paths to prefetch, in order: their data is written first in the
  // blob and their nids form the prefetch table.
  std::vector<std::string> prefetch_paths;
  // Bootstrap whose chunks are reused instead of stored again (same chunk
  // size and digester); empty for none.
  std::string chunk_dict;
  int threads = 0;  // 0 = hardware concurrency
  // Tarballs: refuse data expanding more than this many times its
  // compressed size (plus 64 MiB), a decompression bomb.
  uint64_t max_tar_expansion = 1000;
  uint64_t tar_expansion_slack_bytes = uint64_t{64} << 20;
};

struct BuildResult {
  std::string blob_id;  // empty for a metadata-only tree (no blob written)
  std::string blob_path;
  uint64_t blob_size = 0;
  uint64_t bootstrap_size = 0;
  uint64_t entries = 0;        // names in the tree
  uint64_t files = 0;          // regular-file inodes
  uint64_t file_bytes = 0;     // their data
  uint64_t chunks = 0;         // chunks of all files
  uint64_t chunks_stored = 0;  // distinct chunks in the blob
  uint64_t chunks_from_dict = 0;  // chunks found in the chunk dictionary
};

// Builds SOURCE, a directory or a layer tarball (plain, gzip or zstd),
// into `bootstrap_path` and a blob in `blob_dir`.
base::Result<BuildResult> BuildImage(const std::string& source, const std::string& bootstrap_path,
                                     const std::string& blob_dir, const BuildOptions& options);

// Builds a layer tarball (see tar_source.h for how unusual entries are
// treated; whiteouts stay in the bootstrap for a later merge). Data goes
// into the blob in archive order. Nanosecond mtimes from pax headers are
// kept (upstream's tar builder writes 0 nanoseconds).
base::Result<BuildResult> BuildFromTarball(const std::string& tarball,
                                           const std::string& bootstrap_path,
                                           const std::string& blob_dir,
                                           const BuildOptions& options);

// Builds `source_dir` into `bootstrap_path` and a blob in `blob_dir`.
// Whiteout entries (.wh.*, 0/0 character devices, opaque xattrs) are kept
// as ordinary entries, like tarball builds keep them, so that `rafs merge`
// can apply them; upstream directory builds drop them instead (spec 8.3).
base::Result<BuildResult> BuildFromDirectory(const std::string& source_dir,
                                             const std::string& bootstrap_path,
                                             const std::string& blob_dir,
                                             const BuildOptions& options);

// Writes `bytes` to `path` through a temporary file in the same directory
// and a rename, so a failed build leaves no partial bootstrap.
base::Status WriteFileAtomically(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace rfs::rafs::builder
