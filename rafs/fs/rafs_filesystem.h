// RafsFilesystem: the filesystem operations a FUSE server (or a tool) needs,
// on top of a loaded bootstrap, in the project's own types. Pure: no I/O
// beyond the in-memory bootstrap; Read returns a chunk I/O plan that storage
// executes.
//
// Runtime conventions (what a mounted RAFS image shows, spec 9): when the
// image has no explicit uid/gid the caller's ids are reported; an mtime of 0
// is reported as the mount time; the root directory's permission bits are
// 0755. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rafs/meta/metadata.h"

namespace rfs::rafs::fs {

struct FsOptions {
  uint32_t default_uid = 0;  // reported when the image has no explicit uid/gid
  uint32_t default_gid = 0;
  uint64_t mount_time = 0;   // seconds, reported for an mtime of 0
};

struct Stat {
  meta::Attr attr;  // after the runtime conventions
  uint32_t blksize = 4096;
};

class RafsFilesystem {
 public:
  RafsFilesystem(std::shared_ptr<const meta::Metadata> meta, FsOptions options);

  const meta::Metadata& metadata() const { return *meta_; }

  // Errors: kNotFound (ENOENT), kInvalidArgument for ENOTDIR, kDataLoss for
  // a corrupt image.
  base::Result<Stat> Lookup(uint64_t parent, std::string_view name) const;
  base::Result<Stat> GetAttr(uint64_t ino) const;
  base::Status ReadDir(uint64_t ino, uint64_t cookie, const meta::DirFn& fn) const;
  base::Result<std::string> ReadLink(uint64_t ino) const;
  // kNotFound (ENODATA) when the attribute does not exist.
  base::Result<std::string> GetXattr(uint64_t ino, std::string_view name) const;
  base::Result<std::vector<std::string>> ListXattr(uint64_t ino) const;
  base::Result<storage::ChunkIoVec> Read(uint64_t ino, uint64_t offset, uint64_t length) const;

 private:
  meta::Attr ApplyConventions(meta::Attr a) const;

  std::shared_ptr<const meta::Metadata> meta_;
  FsOptions options_;
};

}  // namespace rfs::rafs::fs
