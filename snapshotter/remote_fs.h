// Remote (lazily fetched) RAFS layers in the snapshotter.
//
// A RAFS image arrives as data-blob layers (label kNydusBlobLabel), which are
// never downloaded, and one bootstrap layer on top (kNydusBootstrapLabel),
// which containerd unpacks normally and which holds the merged bootstrap
// `image/image.boot`. That bootstrap snapshot is the image's "meta" snapshot:
// one RAFS instance per meta snapshot id serves every container of the image,
// and containers get an overlay whose lower layer is that instance's mount.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

inline constexpr const char* kTargetRefLabel = "containerd.io/snapshot.ref";
inline constexpr const char* kNydusBlobLabel = "containerd.io/snapshot/nydus-blob";
inline constexpr const char* kNydusBootstrapLabel = "containerd.io/snapshot/nydus-bootstrap";
inline constexpr const char* kCriImageRefLabel = "containerd.io/snapshot/cri.image-ref";
inline constexpr const char* kCriLayerDigestLabel = "containerd.io/snapshot/cri.layer-digest";
inline constexpr const char* kStargzRefLabel = "containerd.io/snapshot/remote/stargz.reference";
inline constexpr const char* kPullUsernameLabel = "containerd.io/snapshot/pullusername";
inline constexpr const char* kPullSecretLabel = "containerd.io/snapshot/pullsecret";
// Set by us on a meta snapshot: how its image is served ("lazy", or
// "failed: <reason>").
inline constexpr const char* kRafsStatusLabel = "containerd.io/snapshot/rafs-status";

// Serves RAFS instances for the snapshotter; thread-safe.
class RemoteFs {
 public:
  virtual ~RemoteFs() = default;
  // Starts (or reuses) the instance of meta snapshot `id` whose unpacked
  // layer is `layer_dir` (snapshots/<id>/fs) and whose labels are `labels`;
  // returns the directory to use as the overlay's lower layer.
  virtual base::Result<std::string> Mount(int64_t id, const std::string& layer_dir,
                                          const Labels& labels) = 0;
  // Stops the instance of `id` if there is one.
  virtual base::Status Unmount(int64_t id) = 0;
  // Ids with a running instance.
  virtual std::vector<int64_t> Instances() = 0;
  // At start-up: takes over the mounts a previous process left serving
  // (see fd_keeper.h); `labels_of` gives a live meta snapshot's labels
  // (kNotFound when the id is not live any more).
  virtual base::Status Recover(
      const std::function<base::Result<Labels>(int64_t id)>& labels_of) {
    return base::Status::Ok();
  }
};

}  // namespace rfs::snapshotter
