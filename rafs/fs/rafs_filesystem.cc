#include "rafs/fs/rafs_filesystem.h"

#include <sys/stat.h>

namespace rfs::rafs::fs {

using base::Result;

RafsFilesystem::RafsFilesystem(std::shared_ptr<const meta::Metadata> meta, FsOptions options)
    : meta_(std::move(meta)), options_(options) {}

meta::Attr RafsFilesystem::ApplyConventions(meta::Attr a) const {
  const meta::SuperInfo& sb = meta_->super();
  if (!sb.explicit_uid_gid && !sb.plain_erofs) {
    a.uid = options_.default_uid;
    a.gid = options_.default_gid;
  }
  if (a.mtime == 0 && a.mtime_nsec == 0) a.mtime = options_.mount_time;
  if (a.ino == meta::kRootIno) a.mode = (a.mode & S_IFMT) | 0755;
  return a;
}

Result<Stat> RafsFilesystem::GetAttr(uint64_t ino) const {
  ASSIGN_OR_RETURN(meta::Attr a, meta_->GetAttr(ino));
  return Stat{ApplyConventions(a), 4096};
}

Result<Stat> RafsFilesystem::Lookup(uint64_t parent, std::string_view name) const {
  ASSIGN_OR_RETURN(uint64_t ino, meta_->Lookup(parent, name));
  return GetAttr(ino);
}

base::Status RafsFilesystem::ReadDir(uint64_t ino, uint64_t cookie, const meta::DirFn& fn) const {
  return meta_->ReadDir(ino, cookie, fn);
}

Result<std::string> RafsFilesystem::ReadLink(uint64_t ino) const { return meta_->ReadLink(ino); }

Result<std::string> RafsFilesystem::GetXattr(uint64_t ino, std::string_view name) const {
  ASSIGN_OR_RETURN(meta::Xattrs xs, meta_->GetXattrs(ino));
  for (auto& [k, v] : xs) {
    if (k == name) return std::move(v);
  }
  return base::NotFoundError("no xattr '", name, "' on inode ", ino);
}

Result<std::vector<std::string>> RafsFilesystem::ListXattr(uint64_t ino) const {
  ASSIGN_OR_RETURN(meta::Xattrs xs, meta_->GetXattrs(ino));
  std::vector<std::string> names;
  names.reserve(xs.size());
  for (auto& [k, v] : xs) names.push_back(std::move(k));
  return names;
}

Result<storage::ChunkIoVec> RafsFilesystem::Read(uint64_t ino, uint64_t offset,
                                                 uint64_t length) const {
  return meta_->Read(ino, offset, length);
}

}  // namespace rfs::rafs::fs
