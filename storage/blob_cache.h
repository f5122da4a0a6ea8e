// BlobCache: the local cache of one blob's uncompressed chunk data.
//
// Files in the cache directory, shared by every image that references the
// blob: `<id>.blob.data`, a sparse file addressed by uncompressed offset, and
// `<id>.blob.data.chunk_map`, the persistent chunk-ready bitmap (a header
// naming the blob and its chunk count, then one bit per chunk index).
//
// Crash safety: a chunk's bit reaches the bitmap file only after the data
// file has been synced (Flush: fdatasync data, then write and sync the
// bitmap), so a crash at any moment never leaves a chunk marked ready whose
// data is not on disk; it can only forget chunks fetched since the last
// flush, which are fetched again.
//
// Sharing with cache maintenance (CacheManager, `rafs cache gc`): an open
// BlobCache holds flock(LOCK_SH) on its chunk map for as long as it lives.
// Whoever deletes a blob's files takes LOCK_EX | LOCK_NB on the map first,
// skips the blob when that fails, and deletes the map before the data file.
// Opening locks the map before it opens the data file and retries if the
// map it locked was unlinked meanwhile, so a blob being deleted is either
// left alone or recreated empty, never used half-deleted.
//
// Fetch protocol, safe for many threads: Claim a chunk; exactly one caller
// gets kClaimed and must end with MarkReady or Abort; others get kBusy and
// Wait for that outcome; kReady means the data is in the cache file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/deadline.h"
#include "base/mutex.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "storage/chunk.h"

namespace rfs::storage {

class BlobCache {
 public:
  struct Pending {
    bool done = false;  // guarded by the cache's mutex
    base::Status status;
    base::CondVar cv;
  };

  // Opens or creates the cache files of `blob` in `dir`. A bitmap that does
  // not match the blob (other chunk count, bad header) is reset.
  static base::Result<std::unique_ptr<BlobCache>> Open(const std::string& dir,
                                                       const BlobInfo& blob);
  ~BlobCache();
  BlobCache(const BlobCache&) = delete;
  BlobCache& operator=(const BlobCache&) = delete;

  enum class ClaimResult { kReady, kClaimed, kBusy };
  struct Claimed {
    ClaimResult result;
    std::shared_ptr<Pending> pending;  // kBusy: the fetch to Wait for
  };
  // `index` must be < chunk_count().
  Claimed Claim(uint32_t index) EXCLUDES(mu_);
  // Waits for a fetch someone else claimed: its outcome (OK once the chunk is
  // ready, else the fetcher's error), or kDeadlineExceeded.
  base::Status Wait(const std::shared_ptr<Pending>& pending, uint32_t index,
                    base::Deadline deadline) EXCLUDES(mu_);
  // Writes the verified uncompressed bytes of a claimed chunk and marks it
  // ready; wakes waiters.
  base::Status MarkReady(uint32_t index, uint64_t uncompressed_offset, base::ByteSpan data)
      EXCLUDES(mu_);
  // Ends a claim without data; waiters get `why`.
  void Abort(uint32_t index, const base::Status& why) EXCLUDES(mu_);
  // Forgets a ready chunk whose cached bytes turned out wrong, so that the
  // next Claim fetches it again. The durable map drops it at the next Flush.
  void Invalidate(uint32_t index) EXCLUDES(mu_);

  bool IsReady(uint32_t index) const EXCLUDES(mu_);
  uint32_t ready_count() const EXCLUDES(mu_);
  uint32_t chunk_count() const { return chunk_count_; }
  // Reads cached bytes (the caller knows they are ready).
  base::Status ReadCached(uint64_t offset, base::MutableByteSpan dst) const;
  int data_fd() const { return data_fd_.get(); }
  // Makes every ready mark durable (see the file comment). Does not block
  // readers while it syncs; callers flush periodically and at shutdown.
  base::Status Flush() EXCLUDES(mu_, flush_mu_);
  // Chunks marked ready since the last flush.
  int unflushed() const EXCLUDES(mu_);

  static std::string DataPath(const std::string& dir, const std::string& blob_id);
  static std::string MapPath(const std::string& dir, const std::string& blob_id);
  // File name suffixes of the two files (after the blob id).
  static constexpr char kDataSuffix[] = ".blob.data";
  static constexpr char kMapSuffix[] = ".blob.data.chunk_map";

  // What a chunk map file says, for tools that inspect a cache without
  // opening it. `valid` is false for a file too short or with a bad magic;
  // then the counts are 0.
  struct MapContents {
    bool valid = false;
    uint32_t chunk_count = 0;
    uint32_t ready_count = 0;
    std::vector<uint8_t> bits;  // bit i of byte i/8: chunk i is ready
    bool IsReady(uint32_t index) const {
      return index < chunk_count && (bits[index / 8] & (1u << (index % 8)));
    }
  };
  // Reads an open map file. Never fails: unreadable or corrupt is !valid.
  static MapContents ReadMap(int map_fd);

  // Opens the map file at `path` and locks it (see the file comment).
  // kShared waits for the lock; kExclusive does not wait and returns
  // kUnavailable while anyone else holds it. Either way the fd returned is
  // the file at `path` when the lock was granted. With `create` a missing
  // file is created (empty), otherwise it is kNotFound. `writable` opens
  // read-write (else read-only, which suffices for locking).
  enum class MapLock { kShared, kExclusive };
  static base::Result<base::UniqueFd> LockMapFile(const std::string& path, MapLock mode,
                                                  bool create, bool writable);

 private:
  BlobCache(std::string dir, std::string blob_id, uint32_t chunk_count, base::UniqueFd data,
            base::UniqueFd map);
  base::Status LoadOrResetMap();

  const std::string dir_;
  const std::string blob_id_;
  const uint32_t chunk_count_;
  base::UniqueFd data_fd_;
  base::UniqueFd map_fd_;

  base::Mutex flush_mu_;  // one flush at a time; taken before mu_
  mutable base::Mutex mu_;
  std::vector<uint8_t> ready_ GUARDED_BY(mu_);      // in-memory bitmap
  std::vector<uint8_t> durable_ GUARDED_BY(mu_);    // what the map file holds
  uint32_t ready_count_ GUARDED_BY(mu_) = 0;
  int unflushed_ GUARDED_BY(mu_) = 0;
  std::map<uint32_t, std::shared_ptr<Pending>> inflight_ GUARDED_BY(mu_);
};

}  // namespace rfs::storage
