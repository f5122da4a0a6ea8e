// Loads a directory tree from the local filesystem into builder Nodes:
// attributes, xattrs, symlink targets and hard-link identities. File data is
// not read here; regular files keep their path for the blob writer.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "rafs/builder/tree.h"

namespace rfs::rafs::builder {

// Walks `dir` without following symlinks and without crossing into other
// entries than what readdir lists. Errors name the path: names longer than
// 255 bytes, symlink targets longer than 4096 bytes, xattr names RAFS cannot
// store, unreadable entries.
base::Result<std::unique_ptr<Node>> LoadDirectory(const std::string& dir);

}  // namespace rfs::rafs::builder
