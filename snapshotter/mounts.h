// The mounts of a snapshot, shaped like containerd's overlayfs snapshotter:
//
//   no parent            one bind mount of <id>/fs, "rw,rbind" (view: "ro,rbind")
//   view with 1 parent   one bind mount of the parent's fs, "ro,rbind"
//   otherwise            one overlay mount (source "overlay"): [index=off]
//                        [userxattr] [volatile] (active: workdir=<id>/work,
//                        upperdir=<id>/fs) lowerdir=<parent fs dirs, nearest
//                        first, ':'-joined>
//
// Long lowerdir chains: the kernel limits mount data to one page; containerd's
// mount code (mount.All) then rewrites lowerdir relative to the common parent
// dir "snapshots/", which is why every layer dir is the short
// "<root>/snapshots/<id>/fs". overlayfs itself stacks at most
// kMaxOverlayLowers layers, so Prepare/View refuse deeper chains up front.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

inline constexpr size_t kMaxOverlayLowers = 500;  // OVL_MAX_STACK

// The label with which a client asks for a volatile overlay (no syncs).
inline constexpr const char* kVolatileLabel = "containerd.io/snapshot/overlay.volatile";

struct OverlayOptions {
  bool index_off = false;     // "index=off"
  bool userxattr = false;     // "userxattr" (rootless/user namespaces)
  bool volatile_all = false;  // "volatile" on every active overlay, not only on request
};

// `snapshots_dir` is "<root>/snapshots"; ids are nearest parent first.
std::vector<Mount> BuildMounts(const std::string& snapshots_dir, Kind kind, int64_t id,
                               const std::vector<int64_t>& parent_ids, const Labels& labels,
                               const OverlayOptions& options);

// Mounts of a snapshot of a RAFS image (remote-fs.h): one overlay whose
// lowest layer is the image's RAFS mount `rafs_dir`, under the layers
// `upper_parent_ids` that sit above the image's meta snapshot (nearest
// first; usually none). Active: workdir/upperdir of its own. View: its own
// (empty) fs dir as the last lower layer, since overlayfs needs two lowers
// without an upper dir.
std::vector<Mount> BuildRemoteMounts(const std::string& snapshots_dir, Kind kind, int64_t id,
                                     const std::vector<int64_t>& upper_parent_ids,
                                     const std::string& rafs_dir, const Labels& labels,
                                     const OverlayOptions& options);

}  // namespace rfs::snapshotter
