#include "snapshotter/mounts.h"

#include "base/status.h"

namespace rfs::snapshotter {

namespace {

std::string FsDir(const std::string& snapshots_dir, int64_t id) {
  return base::StrCat(snapshots_dir, "/", id, "/fs");
}

}  // namespace

std::vector<Mount> BuildMounts(const std::string& snapshots_dir, Kind kind, int64_t id,
                               const std::vector<int64_t>& parent_ids, const Labels& labels,
                               const OverlayOptions& options) {
  if (parent_ids.empty()) {
    return {Mount{"bind", FsDir(snapshots_dir, id), {kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  if (kind != Kind::kActive && parent_ids.size() == 1) {
    return {Mount{"bind", FsDir(snapshots_dir, parent_ids[0]), {"ro", "rbind"}}};
  }
  std::vector<std::string> opts;
  if (options.index_off) opts.push_back("index=off");
  if (options.userxattr) opts.push_back("userxattr");
  if (kind == Kind::kActive) {
    if (options.volatile_all || labels.count(kVolatileLabel) != 0) opts.push_back("volatile");
    opts.push_back(base::StrCat("workdir=", snapshots_dir, "/", id, "/work"));
    opts.push_back(base::StrCat("upperdir=", FsDir(snapshots_dir, id)));
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < parent_ids.size(); ++i) {
    if (i > 0) lower += ':';
    lower += FsDir(snapshots_dir, parent_ids[i]);
  }
  opts.push_back(std::move(lower));
  return {Mount{"overlay", "overlay", std::move(opts)}};
}

std::vector<Mount> BuildRemoteMounts(const std::string& snapshots_dir, Kind kind, int64_t id,
                                     const std::vector<int64_t>& upper_parent_ids,
                                     const std::string& rafs_dir, const Labels& labels,
                                     const OverlayOptions& options) {
  std::vector<std::string> opts;
  if (options.index_off) opts.push_back("index=off");
  if (options.userxattr) opts.push_back("userxattr");
  std::string lower = "lowerdir=";
  if (kind == Kind::kActive) {
    if (options.volatile_all || labels.count(kVolatileLabel) != 0) opts.push_back("volatile");
    opts.push_back(base::StrCat("workdir=", snapshots_dir, "/", id, "/work"));
    opts.push_back(base::StrCat("upperdir=", FsDir(snapshots_dir, id)));
  }
  for (int64_t p : upper_parent_ids) lower += FsDir(snapshots_dir, p) + ":";
  lower += rafs_dir;
  if (kind != Kind::kActive) lower += ":" + FsDir(snapshots_dir, id);
  opts.push_back(std::move(lower));
  return {Mount{"overlay", "overlay", std::move(opts)}};
}

}  // namespace rfs::snapshotter
