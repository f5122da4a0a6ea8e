#include "rafs/fuse/errors.h"

#include <cerrno>

namespace rfs::rafs::fuse {

using base::StatusCode;

std::string EioReason(const base::Status& s) {
  switch (s.code()) {
    case StatusCode::kDeadlineExceeded: return "timeout";
    case StatusCode::kDataLoss: return "corrupt";
    case StatusCode::kUnavailable: return "backend";
    case StatusCode::kNotFound: return "blob_missing";
    case StatusCode::kUnauthenticated:
    case StatusCode::kPermissionDenied: return "auth";
    default: return "other";
  }
}

const char* FuseOpName(FuseOp op) {
  switch (op) {
    case FuseOp::kLookup: return "lookup";
    case FuseOp::kGetattr: return "getattr";
    case FuseOp::kReadlink: return "readlink";
    case FuseOp::kOpen: return "open";
    case FuseOp::kOpendir: return "opendir";
    case FuseOp::kRead: return "read";
    case FuseOp::kReaddir: return "readdir";
    case FuseOp::kRelease: return "release";
    case FuseOp::kStatfs: return "statfs";
    case FuseOp::kXattr: return "xattr";
    case FuseOp::kAccess: return "access";
    case FuseOp::kCount: break;
  }
  return "other";
}

FuseMetrics::FuseMetrics(base::MetricsRegistry* r) : registry(r) {
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i] = r->GetCounter("rafs_fuse_requests_total",
                                "Requests received from the kernel, by operation",
                                {{"op", FuseOpName(static_cast<FuseOp>(i))}});
  }
  read_bytes = r->GetCounter("rafs_fuse_read_bytes_total", "Bytes returned to FUSE readers");
  read_seconds = r->GetHistogram("rafs_fuse_read_seconds", "Latency of FUSE read requests",
                                 base::ExponentialBuckets(0.00005, 4, 10));
  metadata_errors = r->GetCounter("rafs_fuse_metadata_errors_total",
                                  "Metadata operations failed with EIO (corrupt image)");
}

base::Counter* FuseMetrics::Eio(const base::Status& s) const {
  return registry->GetCounter("rafs_fuse_eio_total", "Reads answered with EIO, by reason",
                              {{"reason", EioReason(s)}});
}

int MetaErrno(const base::Status& s, const FuseMetrics& metrics) {
  switch (s.code()) {
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kInvalidArgument: return ENOTDIR;
    case StatusCode::kOutOfRange: return EINVAL;
    default:
      if (metrics.metadata_errors != nullptr) metrics.metadata_errors->Increment();
      return EIO;
  }
}

}  // namespace rfs::rafs::fuse
