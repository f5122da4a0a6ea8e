// Tree walking and path resolution over Metadata, safe on hostile images:
// every directory is entered at most once (a directory reached twice, as a
// cycle or a hard-linked directory, is kDataLoss), "." and ".." entries are
// skipped, and depth is bounded.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "rafs/meta/metadata.h"

namespace rfs::rafs::meta {

inline constexpr int kMaxWalkDepth = 4096;

struct WalkEntry {
  std::string path;  // "/" for the root, "/a/b" below it
  std::string name;  // last component ("" for the root)
  uint64_t ino = 0;
  uint64_t parent = 0;
  int depth = 0;
  Attr attr;
};

struct WalkCallbacks {
  // Called for every entry in pre-order (a directory before its children).
  // Return a non-OK status to stop the walk with it.
  std::function<base::Status(const WalkEntry&)> visit;
  // Called after a directory's children (post-order); optional.
  std::function<base::Status(const WalkEntry&)> leave_dir;
};

// Walks the tree below `start_path` (which must exist), in directory order.
base::Status WalkTree(const Metadata& meta, std::string_view start_path, const WalkCallbacks& cb);

// Resolves an absolute or relative (to the root) path without following
// symlinks. kNotFound when a component is missing.
base::Result<uint64_t> ResolvePath(const Metadata& meta, std::string_view path);

// The path of inode `ino` ("/" for the root; the first name met in tree
// order for a hard-linked file), found by walking the tree: meant for error
// messages and rare lookups. kNotFound when the tree does not hold it.
base::Result<std::string> PathOf(const Metadata& meta, uint64_t ino);

}  // namespace rfs::rafs::meta
