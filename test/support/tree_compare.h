// Compares what a RAFS image holds with a directory on disk or with the
// tree description given to the test writer: paths, types, modes, owners,
// sizes, mtimes, nlink, rdev, symlink targets, xattrs, contents and
// hard-link grouping. Returns the list of differences (empty when equal).
#pragma once

#include <string>
#include <vector>

#include "rafs/fs/image.h"
#include "test/support/rafs_writer.h"

namespace rfs::testing {

struct CompareOptions {
  bool mtime = true;        // compare mtimes (seconds and nanoseconds)
  bool owners = true;       // compare uid/gid
  bool dir_nlink = true;    // compare directory link counts
  bool contents = true;     // read and compare file contents
  // xattr names ignored on the directory side (e.g. security.selinux).
  std::vector<std::string> ignore_xattrs = {"security.selinux"};
};

std::vector<std::string> CompareImageWithDirectory(const rafs::fs::Image& image,
                                                   const std::string& dir,
                                                   const CompareOptions& options = {});

std::vector<std::string> CompareImageWithTree(const rafs::fs::Image& image,
                                              const std::vector<TreeEntry>& tree,
                                              const CompareOptions& options = {});

}  // namespace rfs::testing
