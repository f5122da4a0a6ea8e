#include "storage/cache_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <utility>

#include "base/logging.h"
#include "base/unique_fd.h"
#include "storage/blob_cache.h"
#include "storage/blob_reader.h"

namespace rfs::storage {

using base::MutexLock;
using base::Result;
using base::Status;
using std::chrono::system_clock;

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Temporary files of whole-file writes in the cache directory.
bool IsTempName(std::string_view name) {
  return EndsWith(name, ".tmp") || name.find(".tmp.") != std::string_view::npos;
}

system_clock::time_point MtimeOf(const struct stat& st) {
  return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

uint64_t AllocatedBytes(const struct stat& st) { return static_cast<uint64_t>(st.st_blocks) * 512; }

struct timespec ToTimespec(system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  return ts;
}

// Sets the mtime of `path` (not following symlinks); a missing file is fine.
void SetMtime(const std::string& path, system_clock::time_point t) {
  struct timespec times[2];
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_OMIT;
  times[1] = ToTimespec(t);
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
    RFS_LOG(kDebug) << "chunk cache: set last-used time of " << path << ": "
                    << base::ErrnoToStatus(errno, "utimensat");
  }
}

Status UnlinkIfPresent(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return base::ErrnoToStatus(errno, "remove " + path);
  }
  return Status::Ok();
}

}  // namespace

struct CacheManager::Scan {
  std::vector<CacheEntry> blobs;  // sorted by blob id
  struct File {
    std::string name;
    uint64_t bytes = 0;
    system_clock::time_point mtime;
  };
  std::vector<File> temps;
  // Newest mtime of each blob's files on disk (for the stray grace period).
  std::map<std::string, system_clock::time_point> file_mtime;
  uint64_t total_bytes = 0;  // blob files only
};

void CacheManager::Lease::Reset() {
  if (m_ != nullptr) m_->Release(id_);
  m_ = nullptr;
  id_.clear();
}

CacheManager::Lease& CacheManager::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Reset();
    m_ = std::exchange(o.m_, nullptr);
    id_ = std::move(o.id_);
  }
  return *this;
}

CacheManager::CacheManager(CacheManagerOptions options) : options_(std::move(options)) {
  base::MetricsRegistry& r = *options_.metrics;
  bytes_gauge_ = r.GetGauge("rfs_storage_cache_bytes",
                            "Allocated bytes of the chunk cache directory (last scan plus "
                            "bytes written since).");
  evictions_ = r.GetCounter("rfs_storage_cache_evictions_total",
                            "Blobs evicted from the chunk cache to stay under its size cap.");
  evicted_bytes_ = r.GetCounter("rfs_storage_cache_evicted_bytes_total",
                                "Allocated bytes freed by size-cap evictions.");
  gc_removed_ = r.GetCounter("rfs_storage_cache_gc_removed_total",
                             "Blobs and stray files removed by chunk cache garbage collection.");
  gc_bytes_ = r.GetCounter("rfs_storage_cache_gc_bytes_total",
                           "Allocated bytes freed by chunk cache garbage collection.");
  MutexLock lock(&enforce_mu_);
  last_check_ = std::chrono::steady_clock::now();
}

Result<std::shared_ptr<CacheManager>> CacheManager::Open(CacheManagerOptions options) {
  if (options.dir.empty()) return base::InvalidArgumentError("chunk cache: no directory given");
  struct stat st;
  if (::stat(options.dir.c_str(), &st) != 0) {
    return base::ErrnoToStatus(errno, "chunk cache directory " + options.dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    return base::InvalidArgumentError("chunk cache directory ", options.dir,
                                      " is not a directory");
  }
  if (options.metrics == nullptr) options.metrics = &base::MetricsRegistry::Global();
  return std::shared_ptr<CacheManager>(new CacheManager(std::move(options)));
}

CacheManager::Lease CacheManager::Acquire(const std::string& blob_id) {
  MutexLock lock(&mu_);
  Use& u = uses_[blob_id];
  ++u.refs;
  u.last_used = system_clock::now();
  return Lease(this, blob_id);
}

void CacheManager::Release(const std::string& blob_id) {
  system_clock::time_point when;
  {
    MutexLock lock(&mu_);
    auto it = uses_.find(blob_id);
    if (it == uses_.end()) return;
    Use& u = it->second;
    const bool unsaved = u.last_used > u.persisted;
    when = u.last_used;
    if (--u.refs <= 0) uses_.erase(it);
    if (!unsaved) return;
  }
  SetMtime(BlobCache::MapPath(options_.dir, blob_id), when);
}

void CacheManager::Touch(const std::string& blob_id) {
  const system_clock::time_point now = system_clock::now();
  {
    MutexLock lock(&mu_);
    Use& u = uses_[blob_id];
    u.last_used = now;
    if (now - u.persisted < options_.touch_interval) return;
    u.persisted = now;
  }
  SetMtime(BlobCache::MapPath(options_.dir, blob_id), now);
}

void CacheManager::NoteAdded(uint64_t bytes) {
  added_since_check_.fetch_add(bytes, std::memory_order_relaxed);
  bytes_gauge_->Add(static_cast<int64_t>(bytes));
}

bool CacheManager::HeldHere(const std::string& blob_id) const {
  MutexLock lock(&mu_);
  auto it = uses_.find(blob_id);
  return it != uses_.end() && it->second.refs > 0;
}

Result<CacheManager::Scan> CacheManager::ScanDir() const {
  DIR* d = ::opendir(options_.dir.c_str());
  if (d == nullptr) return base::ErrnoToStatus(errno, "list chunk cache " + options_.dir);
  std::map<std::string, CacheEntry> blobs;
  Scan scan;
  int err = 0;
  for (;;) {
    errno = 0;  // readdir reports errors only through errno
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      err = errno;
      break;
    }
    std::string_view name = de->d_name;
    std::string id;
    bool is_map = false;
    if (EndsWith(name, BlobCache::kMapSuffix)) {
      id = name.substr(0, name.size() - std::string_view(BlobCache::kMapSuffix).size());
      is_map = true;
    } else if (EndsWith(name, BlobCache::kDataSuffix)) {
      id = name.substr(0, name.size() - std::string_view(BlobCache::kDataSuffix).size());
    } else if (IsTempName(name)) {
      struct stat st;
      const std::string path = options_.dir + "/" + std::string(name);
      if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        scan.temps.push_back({std::string(name), AllocatedBytes(st), MtimeOf(st)});
      }
      continue;
    } else {
      continue;  // not ours
    }
    if (!IsSafeBlobId(id)) continue;
    struct stat st;
    const std::string path = options_.dir + "/" + std::string(name);
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    CacheEntry& e = blobs[id];
    e.blob_id = id;
    auto& newest = scan.file_mtime[id];
    newest = std::max(newest, MtimeOf(st));
    if (is_map) {
      e.has_map = true;
      e.map_bytes = AllocatedBytes(st);
      e.last_used = MtimeOf(st);
      base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (fd.valid()) {
        BlobCache::MapContents m = BlobCache::ReadMap(fd.get());
        e.map_valid = m.valid;
        e.chunk_count = m.chunk_count;
        e.ready_chunks = m.ready_count;
      }
    } else {
      e.has_data = true;
      e.data_bytes = AllocatedBytes(st);
      e.apparent_bytes = static_cast<uint64_t>(st.st_size);
      if (!e.has_map) e.last_used = MtimeOf(st);
    }
  }
  ::closedir(d);
  if (err != 0) return base::ErrnoToStatus(err, "list chunk cache " + options_.dir);
  {
    MutexLock lock(&mu_);
    for (auto& [id, e] : blobs) {
      auto it = uses_.find(id);
      if (it != uses_.end()) {
        e.last_used = std::max(e.last_used, it->second.last_used);
        e.in_use = it->second.refs > 0;
      }
    }
  }
  for (auto& [id, e] : blobs) {
    scan.total_bytes += e.bytes();
    scan.blobs.push_back(std::move(e));
  }
  return scan;
}

Result<std::vector<CacheEntry>> CacheManager::List() const {
  ASSIGN_OR_RETURN(Scan scan, ScanDir());
  for (CacheEntry& e : scan.blobs) {
    if (e.in_use || !e.has_map) continue;
    // Held by another process? Probe with a lock we drop at once.
    auto lock = BlobCache::LockMapFile(BlobCache::MapPath(options_.dir, e.blob_id),
                                       BlobCache::MapLock::kExclusive, /*create=*/false,
                                       /*writable=*/false);
    if (!lock.ok() && lock.status().code() == base::StatusCode::kUnavailable) e.in_use = true;
  }
  bytes_gauge_->Set(static_cast<int64_t>(scan.total_bytes));
  return std::move(scan.blobs);
}

Result<uint64_t> CacheManager::TotalBytes() const {
  ASSIGN_OR_RETURN(Scan scan, ScanDir());
  return scan.total_bytes;
}

Result<bool> CacheManager::RemoveBlob(const std::string& blob_id, bool dry_run) const {
  const std::string map = BlobCache::MapPath(options_.dir, blob_id);
  // Without a map nobody can be using the data file (users lock the map
  // before they open it). Locking creates the map if missing, so that a
  // user starting now waits for us and then starts afresh.
  auto lock = BlobCache::LockMapFile(map, BlobCache::MapLock::kExclusive, /*create=*/!dry_run,
                                     /*writable=*/false);
  if (!lock.ok()) {
    if (lock.status().code() == base::StatusCode::kUnavailable) return false;
    if (dry_run && lock.status().code() == base::StatusCode::kNotFound) return true;
    return lock.status();
  }
  if (dry_run) return true;
  // The map goes first: a crash after it leaves a data file that no map
  // vouches for.
  RETURN_IF_ERROR(UnlinkIfPresent(map));
  RETURN_IF_ERROR(UnlinkIfPresent(BlobCache::DataPath(options_.dir, blob_id)));
  return true;
}

Result<CacheRemoval> CacheManager::EnforceCap(bool dry_run) {
  return EnforceCap(options_.max_bytes, dry_run);
}

Result<CacheRemoval> CacheManager::EnforceCap(uint64_t max_bytes, bool dry_run) {
  if (max_bytes == 0) {
    ASSIGN_OR_RETURN(uint64_t total, TotalBytes());
    CacheRemoval out;
    out.bytes_after = total;
    return out;
  }
  GcOptions o;
  o.max_bytes = max_bytes;
  o.dry_run = dry_run;
  MutexLock serial(&enforce_mu_);
  return Collect(o, /*garbage=*/false);
}

void CacheManager::EvictLru(std::vector<const CacheEntry*> blobs, uint64_t max_bytes,
                            bool dry_run, uint64_t* total, CacheRemoval* out) {
  if (*total <= max_bytes) return;
  std::stable_sort(blobs.begin(), blobs.end(), [](const CacheEntry* a, const CacheEntry* b) {
    return a->last_used < b->last_used;
  });
  for (const CacheEntry* e : blobs) {
    if (*total <= max_bytes) break;
    if (HeldHere(e->blob_id)) {
      out->skipped_in_use.push_back(e->blob_id);
      continue;
    }
    Result<bool> removed = RemoveBlob(e->blob_id, dry_run);
    if (!removed.ok()) {
      RFS_LOG(kWarning) << "chunk cache: evict blob " << e->blob_id << ": " << removed.status();
      continue;
    }
    if (!*removed) {
      out->skipped_in_use.push_back(e->blob_id);
      continue;
    }
    out->removed.push_back({e->blob_id, e->bytes(), "lru"});
    out->bytes_freed += e->bytes();
    *total -= e->bytes();
    if (!dry_run) {
      evictions_->Increment();
      evicted_bytes_->Increment(e->bytes());
      RFS_LOG(kInfo) << "chunk cache: evicted blob " << e->blob_id << " (" << e->bytes()
                     << " bytes) to stay under " << max_bytes << " bytes";
    }
  }
  if (*total > max_bytes && !dry_run) {
    RFS_LOG(kWarning) << "chunk cache " << options_.dir << ": " << *total
                      << " bytes in use exceed the cap of " << max_bytes << " bytes";
  }
}

Status CacheManager::MaybeEnforceCap(bool force) {
  if (options_.max_bytes == 0) return Status::Ok();
  const uint64_t added = added_since_check_.load(std::memory_order_relaxed);
  if (added == 0) return Status::Ok();
  MutexLock serial(&enforce_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!force && added < options_.check_bytes && now - last_check_ < options_.check_interval) {
    return Status::Ok();
  }
  added_since_check_.fetch_sub(added, std::memory_order_relaxed);
  last_check_ = now;
  ASSIGN_OR_RETURN(Scan scan, ScanDir());
  uint64_t total = scan.total_bytes;
  std::vector<const CacheEntry*> blobs;
  for (const CacheEntry& e : scan.blobs) blobs.push_back(&e);
  CacheRemoval ignored;
  EvictLru(std::move(blobs), options_.max_bytes, /*dry_run=*/false, &total, &ignored);
  bytes_gauge_->Set(static_cast<int64_t>(total));
  return Status::Ok();
}

Result<CacheRemoval> CacheManager::Gc(const std::set<std::string>& referenced_blob_ids) {
  GcOptions o;
  o.referenced = referenced_blob_ids;
  return Gc(o);
}

Result<CacheRemoval> CacheManager::Gc(const GcOptions& options) {
  MutexLock serial(&enforce_mu_);
  return Collect(options, /*garbage=*/true);
}

Result<CacheRemoval> CacheManager::Collect(const GcOptions& options, bool garbage) {
  ASSIGN_OR_RETURN(Scan scan, ScanDir());
  CacheRemoval out;
  const auto now = system_clock::now();
  auto old_enough = [&](system_clock::time_point mtime) {
    return now - mtime >= options_.stray_grace;
  };
  uint64_t total = scan.total_bytes;
  std::set<std::string> gone;
  for (const CacheEntry& e : scan.blobs) {
    if (!garbage) break;
    std::string reason;
    const bool old = old_enough(scan.file_mtime[e.blob_id]);
    if (!e.has_data || !e.has_map) {
      if (old) reason = "stray";
    } else if (!e.map_valid) {
      if (old) reason = "corrupt";
    }
    if (reason.empty() && options.referenced.has_value() &&
        options.referenced->count(e.blob_id) == 0) {
      reason = "unreferenced";
    }
    if (reason.empty()) continue;
    if (e.in_use) {
      out.skipped_in_use.push_back(e.blob_id);
      continue;
    }
    Result<bool> removed = RemoveBlob(e.blob_id, options.dry_run);
    if (!removed.ok()) return removed.status().WithContext("chunk cache gc");
    if (!*removed) {
      out.skipped_in_use.push_back(e.blob_id);
      continue;
    }
    out.removed.push_back({e.blob_id, e.bytes(), reason});
    out.bytes_freed += e.bytes();
    total -= e.bytes();
    gone.insert(e.blob_id);
  }
  if (options.max_bytes.has_value()) {
    std::vector<const CacheEntry*> left;
    for (const CacheEntry& e : scan.blobs) {
      if (gone.count(e.blob_id) == 0) left.push_back(&e);
    }
    EvictLru(std::move(left), *options.max_bytes, options.dry_run, &total, &out);
  }
  for (const Scan::File& f : scan.temps) {
    if (!garbage || !old_enough(f.mtime)) continue;
    if (!options.dry_run) {
      Status s = UnlinkIfPresent(options_.dir + "/" + f.name);
      if (!s.ok()) return s.WithContext("chunk cache gc");
    }
    out.removed.push_back({f.name, f.bytes, "temp"});
    out.bytes_freed += f.bytes;
  }
  out.bytes_after = total;
  if (!options.dry_run) {
    bytes_gauge_->Set(static_cast<int64_t>(total));
    for (const CacheRemoval::Item& item : out.removed) {
      if (item.reason == "lru") continue;  // counted as evictions
      gc_removed_->Increment();
      gc_bytes_->Increment(item.bytes);
      RFS_LOG(kInfo) << "chunk cache gc: removed " << item.name << " (" << item.reason << ", "
                     << item.bytes << " bytes)";
    }
  }
  return out;
}

}  // namespace rfs::storage
