// Compares two directory trees on disk (for example a FUSE mount with its
// source directory or with a kernel EROFS mount of the same image): paths,
// types, modes, owners, sizes, nlink, rdev, mtimes, symlink targets, xattrs,
// contents and hard-link grouping. Returns the differences (empty = equal).
#pragma once

#include <string>
#include <vector>

namespace rfs::testing {

struct DirCompareOptions {
  bool owners = true;
  bool mtime = true;
  bool dir_nlink = true;
  bool dir_size = false;   // directory sizes differ between filesystems
  bool blocks = false;     // st_blocks
  bool inode_numbers = false;  // same st_ino (except the roots)
  bool contents = true;
  std::vector<std::string> ignore_xattrs = {"security.selinux"};
};

std::vector<std::string> CompareDirectories(const std::string& a, const std::string& b,
                                            const DirCompareOptions& options = {});

}  // namespace rfs::testing
