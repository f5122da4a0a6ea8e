// The mount table of this process (/proc/self/mountinfo), parsed: mount
// points with octal escapes undone (\040 -> ' '), filesystem types and
// device numbers. Used to find our own FUSE mounts.
#pragma once

#include <string>
#include <vector>

namespace rfs::base {

struct MountEntry {
  std::string mountpoint;
  std::string fstype;  // "fuse.rafs", "overlay", ...
  unsigned major = 0, minor = 0;
};

// In table order (a later entry mounted over an earlier one at the same
// point); empty when the table cannot be read.
std::vector<MountEntry> ReadMountTable();

}  // namespace rfs::base
