// Status -> errno for FUSE replies, and the counters of what went wrong.
#pragma once

#include <array>
#include <string>

#include "base/metrics.h"
#include "base/status.h"

namespace rfs::rafs::fuse {

// Why a read failed, as the `reason` label of rafs_fuse_eio_total:
// timeout, corrupt (digest mismatch, bad image data), backend (registry or
// blob store unavailable), blob_missing, auth, other.
std::string EioReason(const base::Status& s);

// Requests the kernel sends, as the `op` label of rafs_fuse_requests_total.
enum class FuseOp {
  kLookup,
  kGetattr,
  kReadlink,
  kOpen,
  kOpendir,
  kRead,
  kReaddir,
  kRelease,
  kStatfs,
  kXattr,
  kAccess,
  kCount
};
const char* FuseOpName(FuseOp op);

struct FuseMetrics {
  FuseMetrics() = default;
  explicit FuseMetrics(base::MetricsRegistry* registry);
  base::Counter* Eio(const base::Status& s) const;

  base::MetricsRegistry* registry = nullptr;
  base::Counter* read_bytes = nullptr;
  base::Histogram* read_seconds = nullptr;
  base::Counter* metadata_errors = nullptr;
  std::array<base::Counter*, static_cast<size_t>(FuseOp::kCount)> requests{};

  void Count(FuseOp op) const {
    if (base::Counter* c = requests[static_cast<size_t>(op)]; c != nullptr) c->Increment();
  }
};

// The errno for a failed metadata operation: ENOENT, ENOTDIR (the inode is
// not a directory), EIO for a corrupt image (counted).
int MetaErrno(const base::Status& s, const FuseMetrics& metrics);

}  // namespace rfs::rafs::fuse
