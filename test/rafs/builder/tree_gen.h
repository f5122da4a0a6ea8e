// Source trees for builder tests: a hand-made tree with every entry kind
// and a seeded random tree generator. Entries that need root (devices,
// foreign owners, trusted.* xattrs) are created only when running as root.
#pragma once

#include <cstdint>
#include <string>

#include <memory>
#include <vector>

#include "rafs/fs/image.h"

namespace rfs::testing {

// Writes a tree with regular/empty/multi-chunk/sparse files, duplicate
// chunks, hard links, long and short symlinks, 255-byte names, a deep path,
// fifos, sockets, setuid/setgid/sticky bits, nanosecond mtimes, xattrs
// (empty and large values) and, as root, devices with large major/minor,
// uid/gid above 65535 and trusted.*/security.capability xattrs. The root
// directory's mtime is set to 0 (the builder writes 0 for the root).
void MakeRichTree(const std::string& dir);

// A random tree of about `entries` entries from `seed`: nested directories,
// files of random sizes (some repeated content), symlinks, hard links, fifos,
// xattrs, random modes and mtimes.
void MakeRandomTree(const std::string& dir, uint64_t seed, int entries);

// Sets mtime of `path` (no symlink follow) to sec.nsec.
void SetMtime(const std::string& path, int64_t sec, long nsec);

// Opens a built image (bootstrap + blob directory) for reading; records a
// test failure and returns null when it does not open.
std::unique_ptr<rafs::fs::Image> OpenBuilt(const std::string& boot, const std::string& blob_dir);

// One line per item, for readable failure output.
std::string JoinLines(const std::vector<std::string>& v);

}  // namespace rfs::testing
