#include "storage/blob_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <thread>

#include "base/metrics.h"

namespace rfs::storage {

using base::Result;
using base::Status;

std::string_view IoSourceName(IoSource s) {
  return s == IoSource::kPrefetch ? "prefetch" : "on_demand";
}

Status RetryTransient(const RetryPolicy& policy, const base::Deadline& deadline,
                      const std::function<std::string()>& what,
                      const std::function<Status()>& attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static base::Counter* const retries = base::MetricsRegistry::Global().GetCounter(
      "rfs_storage_retries_total", "Backend requests retried after a transient failure");
  // Requests that failed for good, by status code (unavailable, data_loss...).
  auto failed = [](const Status& s) {
    base::MetricsRegistry::Global()
        .GetCounter("rfs_storage_request_failures_total",
                    "Backend requests that failed after their retries, by code",
                    {{"code", std::string(base::StatusCodeName(s.code()))}})
        ->Increment();
    return s;
  };
  auto backoff = policy.initial_backoff;
  for (int n = 1;; ++n) {
    if (deadline.Expired()) return failed(base::DeadlineExceededError(what(), ": deadline passed"));
    Status s = attempt();
    if (s.ok()) return s;
    if (s.code() != base::StatusCode::kUnavailable || n >= policy.max_attempts) return failed(s);
    retries->Increment();
    // Full jitter: sleep a random time up to the current backoff, never past
    // the deadline.
    auto wait = std::chrono::milliseconds(
        std::uniform_int_distribution<int64_t>(backoff.count() / 2, backoff.count())(rng));
    if (deadline.Remaining() <= wait) {
      return failed(base::DeadlineExceededError(what(), ": deadline passed while retrying (",
                                                s.message(), ")"));
    }
    std::this_thread::sleep_for(wait);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

Status BlobReader::ReadAt(uint64_t offset, base::MutableByteSpan dst, const IoContext& ctx) {
  return RetryTransient(
      retry_, ctx.deadline,
      [&] { return base::StrCat("blob ", blob_id(), ": reading [", offset, ", +", dst.size(), ")"); },
      [&] { return TryReadAt(offset, dst, ctx); });
}

bool IsSafeBlobId(const std::string& blob_id) {
  if (blob_id.empty() || blob_id.size() > 255 || blob_id == "." || blob_id == "..") return false;
  for (char c : blob_id) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

Result<std::unique_ptr<LocalFileReader>> LocalFileReader::Open(const std::string& path,
                                                               std::string blob_id) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return base::ErrnoToStatus(errno, "open blob " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return base::InvalidArgumentError("blob ", path, " is not a regular file");
  }
  return std::unique_ptr<LocalFileReader>(
      new LocalFileReader(base::UniqueFd(fd), path, std::move(blob_id)));
}

Result<uint64_t> LocalFileReader::Size() {
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) return base::ErrnoToStatus(errno, "stat blob " + path_);
  return static_cast<uint64_t>(st.st_size);
}

Status LocalFileReader::TryReadAt(uint64_t offset, base::MutableByteSpan dst, const IoContext&) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd_.get(), dst.data() + done, dst.size() - done,
                        static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return base::ErrnoToStatus(errno, "read blob " + path_);
    }
    if (n == 0) {
      return base::OutOfRangeError("blob ", blob_id_, ": range [", offset, ", +", dst.size(),
                                   ") passes its end at ", offset + done);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<std::unique_ptr<BlobReader>> LocalFsBackend::Open(const std::string& blob_id) {
  if (auto it = files_.find(blob_id); it != files_.end()) {
    ASSIGN_OR_RETURN(auto reader, LocalFileReader::Open(it->second, blob_id));
    return std::unique_ptr<BlobReader>(std::move(reader));
  }
  if (dir_.empty()) return base::NotFoundError("blob ", blob_id, " not found (no blob directory)");
  if (!IsSafeBlobId(blob_id)) {
    return base::InvalidArgumentError("blob id '", blob_id, "' is not a valid file name");
  }
  ASSIGN_OR_RETURN(auto reader, LocalFileReader::Open(dir_ + "/" + blob_id, blob_id));
  return std::unique_ptr<BlobReader>(std::move(reader));
}

}  // namespace rfs::storage
