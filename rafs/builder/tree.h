// In-memory filesystem tree and chunk vocabulary of the RAFS builder.
//
// Sources (a directory, a layer tarball, a bootstrap being merged) produce a
// tree of Nodes; the blob writer attaches chunks to regular files; the v6
// bootstrap writer lays the tree out (spec RAFS-FORMAT sections 3 to 5, 8).
// Children are kept sorted by raw name bytes.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/digest.h"

namespace rfs::rafs::builder {

// One stored chunk (one row of the v6 chunk table, spec 7.8).
struct ChunkInfo {
  base::Digest digest{};
  uint32_t blob_index = 0;
  uint32_t flags = 0;  // format::kChunk*
  uint32_t compressed_size = 0;
  uint32_t uncompressed_size = 0;
  uint64_t compressed_offset = 0;
  uint64_t uncompressed_offset = 0;
  uint64_t file_offset = 0;  // of the last file referencing it (informational)
  uint32_t index = 0;        // ci index in its blob
  uint32_t crc32 = 0;
};

// One blob table entry (spec 3.4) plus what the device slot needs.
struct BlobEntry {
  std::string blob_id;
  uint32_t chunk_size = 0;
  uint32_t chunk_count = 0;
  uint32_t compression_algo = 0;
  uint32_t digest_algo = 0;
  uint32_t features = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint32_t blob_toc_size = 0;
  uint32_t ci_compressor = 0;
  uint64_t ci_offset = 0;
  uint64_t ci_compressed_size = 0;
  uint64_t ci_uncompressed_size = 0;
  base::Digest blob_toc_digest{};
  base::Digest blob_meta_digest{};
  uint64_t blob_meta_size = 0;
  uint64_t cipher_iv = 0;
  uint32_t cipher_algo = 0;
};

struct Xattr {
  std::string name;  // full name, e.g. "user.mime"
  std::string value;
};

struct Node {
  std::string name;  // "/" for the root
  Node* parent = nullptr;
  uint32_t mode = 0;  // st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // regular files: data size; symlinks: target length
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  std::vector<Xattr> xattrs;  // sorted by name
  std::string symlink;
  std::vector<std::unique_ptr<Node>> children;  // directories; sorted by name

  // Hard links (regular files): later names point at the first name, which
  // owns the data and the inode.
  Node* link_to = nullptr;
  uint64_t link_key = 0;    // source identity (dev/ino or archive index); 0 = none
  uint32_t link_count = 1;  // names in the image (set on the first name)

  // Data source for directory builds.
  std::string source_path;

  // Chunks of a regular file (first name only): indexes into the build's
  // chunk list, one per chunk_size piece of the file.
  std::vector<uint32_t> chunks;

  // Filled by the bootstrap writer.
  uint64_t seq = 0;  // i_ino (sequence number, spec 4.8)
  uint64_t nid = 0;
  uint64_t offset = 0;  // inode file offset

  bool is_dir() const { return S_ISDIR(mode); }
  bool is_reg() const { return S_ISREG(mode); }
  bool is_symlink() const { return S_ISLNK(mode); }
  // The node owning the inode (itself unless it is a later hard-link name).
  const Node* inode() const { return link_to != nullptr ? link_to : this; }
  Node* inode() { return link_to != nullptr ? link_to : this; }

  // Finds a direct child by name (binary search); null when absent.
  Node* FindChild(const std::string& child) const;
  // Inserts keeping the order; replaces nothing (caller checks FindChild).
  Node* AddChild(std::unique_ptr<Node> child);
  // Removes a child by name; returns it (null when absent).
  std::unique_ptr<Node> RemoveChild(const std::string& child);
  // "/a/b" style path of this node.
  std::string Path() const;
};

// Visits every node in sequence-number order (spec 4.8): the root, then for
// each directory all its children in name order before recursing into its
// subdirectories in name order.
void VisitInSequenceOrder(Node* root, const std::function<void(Node*)>& fn);

// Sorts children by name and resolves hard-link groups: the first name in
// sequence order becomes the owner, later names get link_to, and the owner's
// link_count counts all names. Call after the tree is complete.
void FinalizeTree(Node* root);

}  // namespace rfs::rafs::builder
