// RafsMount: one RAFS image served read-only over FUSE, in this process.
//
// The facade the snapshotter and `rafs mount` use; libfuse stays behind it
// (rafs/fuse/). A mount serves the kernel from a bounded pool of worker
// threads until Stop() (unmount) or Detach() (stop serving, keep the mount,
// hand the /dev/fuse descriptor to whoever serves it next).
//
// The server is stateless towards the kernel: inode numbers are the image's,
// file handles carry nothing, so a new process that re-adopts the /dev/fuse
// descriptor of a live mount (MountOptions::adopt_fd) serves it seamlessly;
// files the old process had open stay valid.
//
// Reads go through the image's BlobDevice: cached chunks are replied from the
// cache file descriptor (spliced, not copied through user space); a chunk
// that cannot be fetched or verified before `read_timeout` gives EIO, counted
// by reason in `rafs_fuse_eio_total` and logged once per file with its path
// and blob range.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "rafs/fs/image.h"
#include "rafs/fs/prefetch.h"
#include "storage/prefetcher.h"

namespace rfs::rafs {

struct MountOptions {
  std::string mountpoint;
  // Worker threads serving the kernel (bounded; on-demand fetches block one).
  int threads = 8;
  // Kernel cache lifetimes: the image is immutable, so these are long.
  std::chrono::seconds entry_timeout{86400};
  std::chrono::seconds attr_timeout{86400};
  // Largest read the kernel sends (also its readahead window).
  uint32_t max_read = 1u << 20;
  // Deadline of one read request; past it the reader gets EIO.
  std::chrono::milliseconds read_timeout{std::chrono::seconds(60)};
  // Let every user (container processes) use the mount; the kernel checks
  // permissions against the image's modes.
  bool allow_other = true;
  // Name shown as the mount source in /proc/self/mountinfo.
  std::string source = "rafs";
  // Serve an existing mount through this /dev/fuse descriptor (taken over;
  // the mount is not created). `mountpoint` must still name where it is.
  int adopt_fd = -1;
  // Background prefetch once mounted: the image's prefetch table by default
  // (nothing when the image has none), plus `prefetch_paths`.
  fs::PrefetchPolicy prefetch = fs::PrefetchPolicy::kTable;
  std::vector<std::string> prefetch_paths;
  storage::PrefetchOptions prefetch_options;
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

// What a mount serves, for callers that only see this header: the bootstrap
// file and how to reach its blobs.
struct ImageSource {
  std::string bootstrap_path;
  std::shared_ptr<storage::BlobBackend> backend;
  storage::DeviceOptions device;
  fs::FsOptions fs;
};

class RafsMount {
 public:
  // Mounts `image` at options.mountpoint (or adopts options.adopt_fd) and
  // starts serving. The image must have a device (a blob backend).
  // Errors: kNotFound (mountpoint missing), kFailedPrecondition (not a
  // directory, already a mount point, FUSE unavailable), kPermissionDenied.
  static base::Result<std::unique_ptr<RafsMount>> Start(const MountOptions& options,
                                                        std::shared_ptr<fs::Image> image);
  // Opens the bootstrap (kDataLoss naming the problem when it is corrupt)
  // and mounts it as above.
  static base::Result<std::unique_ptr<RafsMount>> Start(const MountOptions& options,
                                                        const ImageSource& source);
  ~RafsMount();  // Stop() if still serving
  RafsMount(const RafsMount&) = delete;
  RafsMount& operator=(const RafsMount&) = delete;

  // Unmounts (lazily and aborting the connection if files are still open,
  // so it never hangs) and stops the workers. Idempotent.
  base::Status Stop();

  // Stops serving without unmounting and returns the /dev/fuse descriptor
  // for a successor (see MountOptions::adopt_fd). Requests that arrive
  // meanwhile wait in the kernel.
  base::Result<base::UniqueFd> Detach();

  // Null when nothing is prefetched.
  storage::Prefetcher* prefetcher() const;

  struct Stats {
    uint64_t read_bytes = 0;     // returned to readers
    uint64_t eio = 0;            // reads answered with EIO
    uint64_t fetched_bytes = 0;  // fetched from the blob backend
  };
  Stats stats() const;

  // A duplicate of the /dev/fuse descriptor, to keep somewhere safe so that
  // the mount survives this process dying (the successor adopts it).
  base::Result<base::UniqueFd> DupFuseFd() const;

  // Blocks until the mount ends from outside (umount, connection abort) or
  // Stop()/Detach() is called.
  void Wait();
  bool serving() const;

  const std::string& mountpoint() const;
  const fs::Image& image() const;

  struct Impl;

 private:
  explicit RafsMount(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when `path` is the root of a mount (its device differs from its
// parent's, or /proc/self/mountinfo lists it).
base::Result<bool> IsMountPoint(const std::string& path);

}  // namespace rfs::rafs
