// BlobBackend / BlobReader: where blob bytes come from (a local directory,
// a registry).
//
// BlobReader::ReadAt is the one entry point: it reads exactly dst.size()
// bytes or fails, retrying transient failures (kUnavailable) with jittered
// exponential backoff within the IoContext's deadline. Implementations make
// one attempt in TryReadAt. Results: kOutOfRange when the range passes the
// end of the blob, kNotFound when the blob is missing, kUnavailable for
// transient faults (retried), kDeadlineExceeded when the deadline passes,
// kDataLoss when the source returns wrong bytes. Readers are safe to use from
// several threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/bytes.h"
#include "base/deadline.h"
#include "base/status.h"
#include "base/unique_fd.h"

namespace rfs::storage {

// Why a read happens: on-demand reads (a process is waiting) go first;
// prefetch yields to them.
enum class IoSource : uint8_t { kOnDemand, kPrefetch };
std::string_view IoSourceName(IoSource s);  // "on_demand", "prefetch"

struct IoContext {
  base::Deadline deadline = base::Deadline::Infinite();
  IoSource source = IoSource::kOnDemand;
  // The bytes last read for this range failed verification: a backend with
  // several sources reads from its authoritative one (a registry skips its
  // mirrors).
  bool after_bad_bytes = false;
  // Called as a read's bytes arrive: dst[0, filled) holds what this attempt
  // received so far. A retry starts again from 0 (and may bring other
  // bytes: callers verify what they use). Readers need not call it at all.
  const std::function<void(uint64_t filled)>* on_progress = nullptr;
};

struct RetryPolicy {
  int max_attempts = 4;  // including the first
  std::chrono::milliseconds initial_backoff{50};
  std::chrono::milliseconds max_backoff{2000};
};

// Runs `attempt` until it succeeds or fails with a code other than
// kUnavailable, at most policy.max_attempts times, sleeping a jittered
// exponential backoff in between. Never sleeps past the deadline: when it
// passes first the result is kDeadlineExceeded naming `what` and the last
// failure. BlobReader::ReadAt and registry manifest requests use it.
base::Status RetryTransient(const RetryPolicy& policy, const base::Deadline& deadline,
                            const std::function<std::string()>& what,
                            const std::function<base::Status()>& attempt);

class BlobReader {
 public:
  virtual ~BlobReader() = default;
  virtual const std::string& blob_id() const = 0;
  virtual base::Result<uint64_t> Size() = 0;

  // Reads exactly dst.size() bytes at `offset` (see the file comment).
  base::Status ReadAt(uint64_t offset, base::MutableByteSpan dst, const IoContext& ctx);
  base::Status ReadAt(uint64_t offset, base::MutableByteSpan dst) {
    return ReadAt(offset, dst, IoContext{});
  }

  void set_retry_policy(const RetryPolicy& p) { retry_ = p; }

 private:
  // One attempt. May return a shorter read only as an error.
  virtual base::Status TryReadAt(uint64_t offset, base::MutableByteSpan dst,
                                 const IoContext& ctx) = 0;

  RetryPolicy retry_;
};

class BlobBackend {
 public:
  virtual ~BlobBackend() = default;
  // Opens blob `blob_id`; kNotFound when it does not exist.
  virtual base::Result<std::unique_ptr<BlobReader>> Open(const std::string& blob_id) = 0;
};

// True for names that can be used as a file name in a blob directory: no
// '/', not "." or "..", 1..255 bytes. Blob ids come from untrusted images.
bool IsSafeBlobId(const std::string& blob_id);

// A local file as a blob.
class LocalFileReader final : public BlobReader {
 public:
  static base::Result<std::unique_ptr<LocalFileReader>> Open(const std::string& path,
                                                            std::string blob_id);
  const std::string& blob_id() const override { return blob_id_; }
  base::Result<uint64_t> Size() override;

 private:
  base::Status TryReadAt(uint64_t offset, base::MutableByteSpan dst,
                         const IoContext& ctx) override;
  LocalFileReader(base::UniqueFd fd, std::string path, std::string blob_id)
      : fd_(std::move(fd)), path_(std::move(path)), blob_id_(std::move(blob_id)) {}
  base::UniqueFd fd_;
  std::string path_;
  std::string blob_id_;
};

// Blobs stored as files named by blob id in one directory, plus optional
// blobs given by explicit path (id -> file), which take precedence.
class LocalFsBackend final : public BlobBackend {
 public:
  explicit LocalFsBackend(std::string dir, std::map<std::string, std::string> files = {})
      : dir_(std::move(dir)), files_(std::move(files)) {}
  base::Result<std::unique_ptr<BlobReader>> Open(const std::string& blob_id) override;

 private:
  std::string dir_;
  std::map<std::string, std::string> files_;
};

}  // namespace rfs::storage
