#include "rafs/meta/walk.h"

#include <sys/stat.h>

#include <unordered_set>
#include <vector>

namespace rfs::rafs::meta {

using base::Result;
using base::Status;

Result<uint64_t> ResolvePath(const Metadata& meta, std::string_view path) {
  uint64_t ino = kRootIno;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view comp = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (comp.empty() || comp == ".") continue;
    auto next = meta.Lookup(ino, comp);
    if (!next.ok()) {
      if (next.status().code() == base::StatusCode::kNotFound) {
        return base::NotFoundError("no such file or directory: ", path);
      }
      if (next.status().code() == base::StatusCode::kInvalidArgument) {
        return base::NotFoundError("not a directory: ", path.substr(0, pos - 1));
      }
      return next.status();
    }
    ino = *next;
  }
  return ino;
}

namespace {

class Walker {
 public:
  Walker(const Metadata& meta, const WalkCallbacks& cb) : meta_(meta), cb_(cb) {}

  Status Walk(WalkEntry entry) {
    RETURN_IF_ERROR(cb_.visit(entry));
    if (!S_ISDIR(entry.attr.mode)) return Status::Ok();
    if (!entered_.insert(entry.ino).second) {
      return base::DataLossError("directory ", entry.path, " (inode ", entry.ino,
                                 ") reached twice: the tree has a cycle or a linked directory");
    }
    if (entry.depth >= kMaxWalkDepth) {
      return base::DataLossError("directory ", entry.path, " nested deeper than ",
                                 kMaxWalkDepth);
    }
    // Collect first: the callbacks may take long and must not run inside
    // the directory iteration.
    std::vector<DirEntry> children;
    RETURN_IF_ERROR(meta_.ReadDir(entry.ino, 0, [&](const DirEntry& d, uint64_t) {
      if (d.name != "." && d.name != "..") children.push_back(d);
      return true;
    }));
    for (DirEntry& d : children) {
      WalkEntry child;
      child.path = entry.path == "/" ? "/" + d.name : entry.path + "/" + d.name;
      child.name = std::move(d.name);
      child.ino = d.ino;
      child.parent = entry.ino;
      child.depth = entry.depth + 1;
      auto attr = meta_.GetAttr(d.ino);
      if (!attr.ok()) return attr.status().WithContext(child.path);
      child.attr = *attr;
      RETURN_IF_ERROR(Walk(std::move(child)));
    }
    if (cb_.leave_dir) RETURN_IF_ERROR(cb_.leave_dir(entry));
    return Status::Ok();
  }

 private:
  const Metadata& meta_;
  const WalkCallbacks& cb_;
  std::unordered_set<uint64_t> entered_;
};

}  // namespace

Status WalkTree(const Metadata& meta, std::string_view start_path, const WalkCallbacks& cb) {
  ASSIGN_OR_RETURN(uint64_t ino, ResolvePath(meta, start_path));
  WalkEntry root;
  std::string p(start_path);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (p.empty() || p[0] != '/') p = "/" + p;
  root.path = p;
  root.name = p == "/" ? "" : p.substr(p.find_last_of('/') + 1);
  root.ino = ino;
  ASSIGN_OR_RETURN(root.attr, meta.GetAttr(ino));
  Walker w(meta, cb);
  return w.Walk(std::move(root));
}

base::Result<std::string> PathOf(const Metadata& meta, uint64_t ino) {
  if (ino == kRootIno) return std::string("/");
  std::string found;
  WalkCallbacks cb;
  cb.visit = [&](const WalkEntry& e) -> base::Status {
    if (e.ino != ino) return base::Status::Ok();
    found = e.path;
    return base::CancelledError("found");  // stops the walk
  };
  base::Status s = WalkTree(meta, "/", cb);
  if (!found.empty()) return found;
  if (!s.ok() && s.code() != base::StatusCode::kCancelled) return s;
  return base::NotFoundError("inode ", ino, " is not in the tree");
}

}  // namespace rfs::rafs::meta
