// RafsManager: the RemoteFs of the daemon. One in-process RAFS mount
// (rafs/mount.h) per image meta snapshot, at snapshots/<id>/mnt, reading
// blobs lazily from the image's registry (image reference from the labels)
// through a shared verified chunk cache.
//
// Without a cri.image-ref (or stargz reference) label the image is named by
// RafsManagerOptions::resolve_image_ref, when set.
//
// Credentials per instance, taken when it starts and kept for its lifetime
// (reads hours later still authenticate): the meta snapshot's
// pullusername/pullsecret labels first, else the docker config file, read
// again at each start so that a refreshed login is picked up.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "base/mutex.h"
#include "rafs/mount.h"
#include "snapshotter/fd_keeper.h"
#include "snapshotter/remote_fs.h"
#include "storage/blob_reader.h"
#include "storage/image_ref.h"

namespace rfs::snapshotter {

struct RafsManagerOptions {
  std::string snapshots_dir;  // <root>/snapshots
  std::string cache_dir;      // <root>/cache
  uint64_t cache_max_bytes = 0;
  // storage::DeviceOptions::amplify_bytes of every image.
  uint64_t read_amplify_bytes = 0;
  // Template for every mount (threads, timeouts, prefetch); mountpoint,
  // metrics and adopt_fd are filled in per instance.
  rafs::MountOptions mount;
  // Registry access.
  std::vector<std::string> plain_http_hosts;  // "127.0.0.1:5000"
  std::vector<std::string> insecure_hosts;    // TLS without verification
  std::string ca_file;
  // certs.d directory of registry mirrors (<host>/hosts.toml,
  // storage/host_config.h), read at every mount; "" = no mirrors.
  std::string hosts_dir;
  std::string docker_config;  // "" : $DOCKER_CONFIG or ~/.docker/config.json
  std::chrono::milliseconds request_timeout{30000};
  // Keep mounts across restarts (fd_keeper.h): the keeper's socket and how
  // to start it (the daemon's own argv[0]). Empty socket: every mount is
  // unmounted when the manager goes.
  std::string fd_keeper_socket;
  std::vector<std::string> fd_keeper_launcher;
  // Tests replace how blobs are reached; default: the image's registry.
  std::function<base::Result<std::shared_ptr<storage::BlobBackend>>(
      const storage::ImageReference& ref, const Labels& meta_labels)>
      backend_factory;
  // Names the image of a meta snapshot whose labels carry no image reference
  // (a plain `ctr image pull`): an image reference, e.g. asked of containerd
  // (snapshotter/grpc/image_resolver.h). Called while the instance starts.
  // Unset: such images cannot be served (kFailedPrecondition).
  std::function<base::Result<std::string>(const Labels& meta_labels)> resolve_image_ref;
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

class RafsManager final : public RemoteFs {
 public:
  static base::Result<std::shared_ptr<RafsManager>> Create(RafsManagerOptions options);
  ~RafsManager() override;  // stops every instance (the mounts go)

  base::Result<std::string> Mount(int64_t id, const std::string& layer_dir,
                                  const Labels& labels) override EXCLUDES(mu_);
  base::Status Unmount(int64_t id) override EXCLUDES(mu_);
  std::vector<int64_t> Instances() override EXCLUDES(mu_);
  base::Status Recover(const std::function<base::Result<Labels>(int64_t id)>& labels_of) override
      EXCLUDES(mu_);

  struct InstanceStatus {
    int64_t id = 0;
    std::string image;
    std::string mountpoint;
    bool serving = false;
    uint64_t image_bytes = 0;    // the image's blobs, as stored
    uint64_t fetched_bytes = 0;  // fetched from the registry so far
    uint64_t read_bytes = 0;     // read by containers
    uint64_t eio = 0;            // reads that failed
  };
  std::vector<InstanceStatus> InstanceStatuses() EXCLUDES(mu_);
  const std::string& cache_dir() const { return options_.cache_dir; }
  // Allocated bytes of the chunk cache.
  base::Result<uint64_t> CacheBytes() const;

  // The image reference a meta snapshot's labels name.
  static base::Result<storage::ImageReference> ImageRefOf(const Labels& labels);
  // snapshots/<id>/fs/image/image.boot, else the legacy <fs>/image.boot.
  static base::Result<std::string> FindBootstrap(const std::string& layer_dir);

 private:
  explicit RafsManager(RafsManagerOptions options);
  base::Result<std::shared_ptr<storage::BlobBackend>> RegistryBackendFor(
      const storage::ImageReference& ref, const Labels& labels);
  // Starts serving meta snapshot `id` (adopting `adopt_fd` when >= 0).
  base::Result<std::unique_ptr<rafs::RafsMount>> StartInstance(int64_t id,
                                                               const std::string& layer_dir,
                                                               const Labels& labels, int adopt_fd,
                                                               std::string* image)
      REQUIRES(mu_);
  // Gives the keeper a copy of the instance's /dev/fuse descriptor.
  void Keep(int64_t id, const rafs::RafsMount& mount) REQUIRES(mu_);

  struct Instance {
    std::unique_ptr<rafs::RafsMount> mount;
    std::string image;
  };
  const RafsManagerOptions options_;
  std::shared_ptr<storage::CacheManager> cache_;
  base::Mutex mu_;  // held while an instance starts: one start at a time
  std::map<int64_t, Instance> instances_ GUARDED_BY(mu_);
  std::unique_ptr<FdKeeperClient> keeper_ GUARDED_BY(mu_);
  base::Gauge* m_instances_;
  base::Counter* m_start_failures_;
};

}  // namespace rfs::snapshotter
