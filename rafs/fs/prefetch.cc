#include "rafs/fs/prefetch.h"

#include <sys/stat.h>

#include <set>
#include <utility>

#include "rafs/meta/walk.h"

namespace rfs::rafs::fs {

using base::Result;
using base::Status;

Result<PrefetchPolicy> ParsePrefetchPolicy(const std::string& s) {
  if (s == "none") return PrefetchPolicy::kNone;
  if (s == "table") return PrefetchPolicy::kTable;
  if (s == "all") return PrefetchPolicy::kAll;
  return base::InvalidArgumentError("prefetch policy must be none, table or all, got '", s, "'");
}

namespace {

class Collector {
 public:
  explicit Collector(const meta::Metadata& m) : m_(m) {}

  Status File(uint64_t ino, uint64_t size) {
    if (!files_.insert(ino).second || size == 0) return Status::Ok();
    ASSIGN_OR_RETURN(storage::ChunkIoVec plan, m_.Read(ino, 0, size));
    for (const storage::IoSegment& s : plan.segments) {
      if (s.kind != storage::IoSegment::Kind::kChunk) continue;
      if (chunks_.emplace(s.chunk.blob_index, s.chunk.index).second) out_.push_back(s.chunk);
    }
    return Status::Ok();
  }

  // A file, or everything below a directory.
  Status Inode(uint64_t ino, const std::string& path) {
    ASSIGN_OR_RETURN(meta::Attr a, m_.GetAttr(ino));
    if (S_ISREG(a.mode)) return File(ino, a.size);
    if (!S_ISDIR(a.mode)) return Status::Ok();
    meta::WalkCallbacks cb;
    cb.visit = [this](const meta::WalkEntry& e) -> Status {
      return S_ISREG(e.attr.mode) ? File(e.ino, e.attr.size) : Status::Ok();
    };
    return meta::WalkTree(m_, path, cb);
  }

  std::vector<storage::ChunkInfo> Take() { return std::move(out_); }

 private:
  const meta::Metadata& m_;
  std::set<uint64_t> files_;
  std::set<std::pair<uint32_t, uint32_t>> chunks_;
  std::vector<storage::ChunkInfo> out_;
};

}  // namespace

Result<std::vector<storage::ChunkInfo>> PrefetchChunks(const meta::Metadata& m,
                                                       PrefetchPolicy policy,
                                                       const std::vector<std::string>& paths) {
  Collector c(m);
  if (policy == PrefetchPolicy::kNone && paths.empty()) return c.Take();
  for (const std::string& p : paths) {
    Result<uint64_t> ino = meta::ResolvePath(m, p);
    if (!ino.ok()) {
      if (ino.status().code() == base::StatusCode::kNotFound) continue;
      return ino.status();
    }
    RETURN_IF_ERROR(c.Inode(*ino, p.empty() || p[0] != '/' ? "/" + p : p));
  }
  if (policy == PrefetchPolicy::kNone) return c.Take();
  ASSIGN_OR_RETURN(std::vector<uint64_t> table, m.PrefetchInodes());
  for (uint64_t ino : table) {
    ASSIGN_OR_RETURN(meta::Attr a, m.GetAttr(ino));
    if (S_ISDIR(a.mode)) {
      Result<std::string> path = meta::PathOf(m, ino);
      if (!path.ok()) {
        if (path.status().code() == base::StatusCode::kNotFound) continue;
        return path.status();
      }
      RETURN_IF_ERROR(c.Inode(ino, *path));
    } else {
      RETURN_IF_ERROR(c.Inode(ino, ""));
    }
  }
  if (policy == PrefetchPolicy::kAll) RETURN_IF_ERROR(c.Inode(meta::kRootIno, "/"));
  return c.Take();
}

}  // namespace rfs::rafs::fs
