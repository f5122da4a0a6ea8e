// File-tree helpers of the snapshotter: disk usage like du, and removal of a
// snapshot directory that never follows a symlink and never leaves the
// filesystem it starts on (a snapshot's upper dir holds whatever a container
// wrote, so it is untrusted).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

// Allocated bytes (st_blocks * 512) and inode count of the tree at `path`,
// the root included, each hard-linked inode counted once; symlinks are not
// followed. NotFound if `path` does not exist.
base::Result<Usage> DiskUsage(const std::string& path);

// Removes `path` and everything below it. Works on file descriptors
// (openat/unlinkat with O_NOFOLLOW), so a symlink or a rename inside the tree
// cannot redirect it outside. A directory on another filesystem (a mount
// point) below `path` is not entered: FailedPrecondition, and that subtree is
// kept. A missing `path` is OK.
base::Status RemoveTree(const std::string& path);

// Detaches (umount2 MNT_DETACH) every mount of filesystem type `type` at or
// below `path`, deepest first, as /proc/self/mountinfo lists them: the RAFS
// mounts a dead process left in a snapshot directory before it is deleted.
// Mounts of other types are left alone (RemoveTree does not enter them).
base::Status DetachMountsUnder(const std::string& path, const std::string& type);

// Names in directory `path`, without "." and "..".
base::Result<std::vector<std::string>> ListDirectory(const std::string& path);

}  // namespace rfs::snapshotter
