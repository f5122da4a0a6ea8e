// Status -> errno for FUSE replies, and the counters of what went wrong.
#pragma once

#include <string>

#include "base/metrics.h"
#include "base/status.h"

namespace rfs::rafs::fuse {

// Why a read failed, as the `reason` label of rafs_fuse_eio_total:
// timeout, corrupt (digest mismatch, bad image data), backend (registry or
// blob store unavailable), blob_missing, auth, other.
std::string EioReason(const base::Status& s);

struct FuseMetrics {
  FuseMetrics() = default;
  explicit FuseMetrics(base::MetricsRegistry* registry);
  base::Counter* Eio(const base::Status& s) const;

  base::MetricsRegistry* registry = nullptr;
  base::Counter* read_bytes = nullptr;
  base::Histogram* read_seconds = nullptr;
  base::Counter* metadata_errors = nullptr;
};

// The errno for a failed metadata operation: ENOENT, ENOTDIR (the inode is
// not a directory), EIO for a corrupt image (counted).
int MetaErrno(const base::Status& s, const FuseMetrics& metrics);

}  // namespace rfs::rafs::fuse
