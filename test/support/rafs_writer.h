// Test-only RAFS image writer: turns an in-memory tree into a v5 or v6
// bootstrap plus data blobs, written from ../shared/spec/RAFS-FORMAT.md
// independently of the reader in rafs/, so round trips cross-check both.
//
// Not production code: the builder (rafs/builder) is the real writer.
//
// Output (spec §9.1 with the default options): v6 with 4 KiB blocks, root at
// nid 128, extended inodes, inline xattrs, `.`/`..` in byte-sorted dirents,
// CHUNK_BASED files with 8-byte chunk indexes, the 80-byte chunk table, and
// per blob: chunk data, ci array, ci header [+ tar headers, digest array,
// inlined bootstrap, ToC per BlobLayout]. Identical chunks are stored once per
// image; a blob without chunks is never listed; a tree without file data
// gives the no-blob bootstrap of spec §3. v5 follows spec §7 (records in index
// order, blobs are plain chunk concatenations).
//
// Invalid input (relative or duplicate paths, xattr names outside the five
// EROFS prefixes, symlink targets outside 1..4096 bytes, bad options) gives
// kInvalidArgument.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "storage/codec.h"

namespace rfs::testing {

struct TreeEntry {
  // Absolute path, "/" for the root; parents must appear before children
  // (missing parent directories are created with mode 040755).
  std::string path;
  uint32_t mode = 0;  // full st_mode including type bits (S_IFREG | 0644 ...)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  std::string data;            // regular file contents (i_size = data.size())
  std::string symlink_target;  // symlinks
  uint64_t rdev = 0;           // char/block devices (glibc makedev value)
  std::vector<std::pair<std::string, std::string>> xattrs;  // full names
  // Regular files: path of an earlier entry to share the inode with; the
  // other fields of a hardlink entry are ignored.
  std::string hardlink_to;
};

enum class BlobLayout {
  kDefault,          // chunk data, ci array, ci header (features 0x40000001)
  kToc,              // + tar headers, digest array, ToC (0x70000021)
  kInlineMetaToc,    // + bootstrap inlined as ToC entry (0x70000023)
  kInlineMetaNoToc,  // tar headers, bootstrap raw before final image.boot header (0x50000003)
};

struct WriterOptions {
  int fs_version = 6;  // 5 or 6 (v5: only kDefault layout, no ci_v2/compact_inodes)
  storage::Compressor compressor = storage::Compressor::kZstd;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  uint32_t chunk_size = 1 << 20;
  // v6: 32-byte compact inodes where uid/gid/nlink/size fit (compact inodes
  // carry no mtime, so mtimes are dropped for them).
  bool compact_inodes = false;
  bool ci_v2 = false;  // v6: 24-byte ci entries (CHUNK_INFO_V2)
  BlobLayout layout = BlobLayout::kDefault;
  bool explicit_uid_gid = true;
  // Prefetch table entries (v6: nids, v5: inode numbers), in this order;
  // paths not in the tree are skipped. Files under them are written first.
  // v6 writes no prefetch table without blobs (spec §3.5).
  std::vector<std::string> prefetch_paths;
  // Number of data blobs to spread files over (round robin per file), 1..254.
  // Inline-meta layouts need 1.
  int blob_count = 1;
  // Store the CRC-32C of every chunk (chunk flag HAS_CRC32, spec 2.5) in the
  // chunk records and, with ci_v2, in the ci entries. Cleared per chunk when
  // the CRC happens to be 0.
  bool chunk_crc32 = true;
};

struct WrittenImage {
  // The bootstrap. For inline-meta layouts this standalone copy names the
  // blob by its real id; the copy inside the blob holds the 64 x 'x'
  // placeholder id instead (spec 6.6) and is otherwise identical.
  std::vector<uint8_t> bootstrap;
  // blob id -> blob file bytes. For inline-meta layouts the bootstrap is
  // also inside the (single) blob.
  std::map<std::string, std::vector<uint8_t>> blobs;
  // Blob ids in blob-table order (blob_index i -> blob_ids[i]).
  std::vector<std::string> blob_ids;
};

base::Result<WrittenImage> WriteImage(const std::vector<TreeEntry>& tree,
                                      const WriterOptions& options);

// Writes `image` to `dir`: `dir/bootstrap` and `dir/blobs/<id>`.
base::Status WriteImageToDir(const WrittenImage& image, const std::string& dir);

// A deterministic tree of about `entries` entries for benchmarks: nested
// directories of 10-200 entries each, a few levels deep, mostly small files
// (0-8 KiB, compressible, mutually distinct) and some symlinks. Parents come
// before children.
std::vector<TreeEntry> MakeWideTree(int entries, uint32_t seed);

// CRC-32C (Castagnoli), as stored in chunk records (spec 2.5).
uint32_t Crc32c(base::ByteSpan data);

}  // namespace rfs::testing
