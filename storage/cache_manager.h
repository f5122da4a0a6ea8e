// CacheManager: maintenance of one chunk cache directory (the files
// BlobCache writes, see blob_cache.h): listing, a size cap with
// least-recently-used eviction, and garbage collection.
//
// Last use of a blob is the mtime of its chunk map. Users report use with
// Touch(), which stores the time in memory and sets the mtime at most once
// per `touch_interval` (a utimensat, never a sync), and Release() writes
// the last in-memory time. Reads never wait for any of this.
//
// A blob is in use while this process holds it (Acquire, counted) or while
// any process has it open in a BlobCache (which holds a shared flock on the
// map). Eviction and garbage collection never delete a blob in use: they
// skip blobs acquired here, and take an exclusive non-blocking flock on the
// map before deleting, skipping the blob when another process holds it. The
// map is deleted before the data file, so a crash in between leaves only a
// data file without a map, which is never trusted (a new map starts empty
// and truncates it) and which Gc removes.
//
// Thread-safe. Directory scans and deletions run on the caller's thread;
// call EnforceCap/MaybeEnforceCap from a background thread, never from the
// read path.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/metrics.h"
#include "base/mutex.h"
#include "base/status.h"

namespace rfs::storage {

struct CacheManagerOptions {
  // The cache directory; must exist.
  std::string dir;
  // Size cap of the directory in allocated bytes (data files are sparse);
  // 0 = unlimited.
  uint64_t max_bytes = 0;
  // MaybeEnforceCap scans the directory once this many bytes were added
  // since the last scan, or `check_interval` after the last scan when
  // anything was added at all.
  uint64_t check_bytes = 64u << 20;
  std::chrono::milliseconds check_interval{10000};
  // A blob's last-used time reaches its map file at most this often.
  std::chrono::milliseconds touch_interval{60000};
  // Gc leaves stray files (temp files, a data file without map or the
  // reverse, a corrupt map) alone until they are this old: they may belong
  // to a blob being created right now.
  std::chrono::seconds stray_grace{3600};
  base::MetricsRegistry* metrics = &base::MetricsRegistry::Global();
};

// One blob in the cache directory.
struct CacheEntry {
  std::string blob_id;
  bool has_data = false;
  bool has_map = false;
  bool map_valid = false;      // the map has a good header; else counts are 0
  uint64_t data_bytes = 0;     // allocated bytes of the data file (st_blocks * 512)
  uint64_t map_bytes = 0;      // allocated bytes of the map file
  uint64_t apparent_bytes = 0; // data file size (its highest cached offset)
  uint32_t chunk_count = 0;
  uint32_t ready_chunks = 0;
  // Last use: map mtime (data mtime without a map), or later use recorded
  // in this process.
  std::chrono::system_clock::time_point last_used;
  bool in_use = false;  // acquired in this process or locked by another
  uint64_t bytes() const { return data_bytes + map_bytes; }
};

// What EnforceCap or Gc removed (or, in a dry run, would remove).
struct CacheRemoval {
  struct Item {
    std::string name;    // blob id, or file name for temp files
    uint64_t bytes = 0;  // allocated bytes freed
    std::string reason;  // "lru", "unreferenced", "stray", "corrupt", "temp"
  };
  std::vector<Item> removed;
  uint64_t bytes_freed = 0;
  // Blobs that would have gone but were in use.
  std::vector<std::string> skipped_in_use;
  // Allocated bytes of the directory afterwards.
  uint64_t bytes_after = 0;
};

class CacheManager {
 public:
  static base::Result<std::shared_ptr<CacheManager>> Open(CacheManagerOptions options);
  CacheManager(const CacheManager&) = delete;
  CacheManager& operator=(const CacheManager&) = delete;

  // Holds a blob in use (counted per process); releasing it records its
  // last use. Move-only.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : m_(o.m_), id_(std::move(o.id_)) { o.m_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept;
    ~Lease() { Reset(); }
    void Reset();
    const std::string& blob_id() const { return id_; }

   private:
    friend class CacheManager;
    Lease(CacheManager* m, std::string id) : m_(m), id_(std::move(id)) {}
    CacheManager* m_ = nullptr;
    std::string id_;
  };
  // The lease must not outlive the manager.
  Lease Acquire(const std::string& blob_id) EXCLUDES(mu_);
  // Records a use of an acquired (or any) blob; cheap, see the file comment.
  void Touch(const std::string& blob_id) EXCLUDES(mu_);
  // Counts bytes written to the cache since the last cap check. Lock-free.
  void NoteAdded(uint64_t bytes);

  // Every blob with a file in the directory, by blob id.
  base::Result<std::vector<CacheEntry>> List() const EXCLUDES(mu_);
  // Allocated bytes of all blob files.
  base::Result<uint64_t> TotalBytes() const EXCLUDES(mu_);

  // Evicts least recently used blobs not in use until the directory holds
  // at most `max_bytes` (the option when not given; 0 = unlimited: nothing
  // to do). When blobs in use alone exceed the cap it stops there:
  // bytes_after tells.
  base::Result<CacheRemoval> EnforceCap(bool dry_run = false) EXCLUDES(mu_, enforce_mu_);
  base::Result<CacheRemoval> EnforceCap(uint64_t max_bytes, bool dry_run) EXCLUDES(mu_, enforce_mu_);
  // EnforceCap when enough was added (see the options); `force` runs it
  // whenever anything was added since the last run.
  base::Status MaybeEnforceCap(bool force = false) EXCLUDES(mu_, enforce_mu_);

  struct GcOptions {
    // Blobs to keep. nullopt keeps every blob; only stray files go.
    std::optional<std::set<std::string>> referenced;
    // Then evicts least recently used blobs not in use down to this many
    // bytes (0: all of them); nullopt: no eviction.
    std::optional<uint64_t> max_bytes;
    bool dry_run = false;
  };
  // Removes blobs not referenced and not in use, and stray files older
  // than the grace period (see the options), then applies max_bytes. A dry
  // run reports the same without removing anything.
  base::Result<CacheRemoval> Gc(const std::set<std::string>& referenced_blob_ids)
      EXCLUDES(mu_, enforce_mu_);
  base::Result<CacheRemoval> Gc(const GcOptions& options) EXCLUDES(mu_, enforce_mu_);

  // Acquired in this process (Acquire count > 0).
  bool HeldHere(const std::string& blob_id) const EXCLUDES(mu_);
  const CacheManagerOptions& options() const { return options_; }
  const std::string& dir() const { return options_.dir; }

 private:
  explicit CacheManager(CacheManagerOptions options);
  void Release(const std::string& blob_id) EXCLUDES(mu_);

  struct Scan;
  base::Result<Scan> ScanDir() const EXCLUDES(mu_);
  // Deletes the files of one blob under the exclusive lock. Ok(false) when
  // the blob is in use.
  base::Result<bool> RemoveBlob(const std::string& blob_id, bool dry_run) const;
  // Gc (`garbage`) or, without it, only the max_bytes part.
  base::Result<CacheRemoval> Collect(const GcOptions& options, bool garbage)
      REQUIRES(enforce_mu_) EXCLUDES(mu_);
  // Evicts from `blobs` (of one scan), least recently used first, until
  // `*total` <= max_bytes.
  void EvictLru(std::vector<const CacheEntry*> blobs, uint64_t max_bytes, bool dry_run,
                uint64_t* total, CacheRemoval* out) REQUIRES(enforce_mu_) EXCLUDES(mu_);

  const CacheManagerOptions options_;
  struct Use {
    int refs = 0;
    std::chrono::system_clock::time_point last_used{};
    std::chrono::system_clock::time_point persisted{};  // last mtime we wrote
  };
  mutable base::Mutex mu_;
  std::map<std::string, Use> uses_ GUARDED_BY(mu_);
  // One cap run or gc at a time; taken before mu_.
  base::Mutex enforce_mu_;
  std::chrono::steady_clock::time_point last_check_ GUARDED_BY(enforce_mu_);
  std::atomic<uint64_t> added_since_check_{0};

  base::Gauge* bytes_gauge_;
  base::Counter* evictions_;
  base::Counter* evicted_bytes_;
  base::Counter* gc_removed_;
  base::Counter* gc_bytes_;
};

}  // namespace rfs::storage
