#include "storage/blob_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace rfs::storage {

using base::ErrnoToStatus;
using base::MutexLock;
using base::Result;
using base::Status;

namespace {

constexpr char kMapMagic[8] = {'R', 'F', 'S', 'C', 'M', 'A', 'P', '1'};
constexpr size_t kMapHeader = 16;  // magic, u32 chunk count, u32 reserved

Status PwriteAll(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write " + what);
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

std::string BlobCache::DataPath(const std::string& dir, const std::string& blob_id) {
  return dir + "/" + blob_id + ".blob.data";
}

std::string BlobCache::MapPath(const std::string& dir, const std::string& blob_id) {
  return dir + "/" + blob_id + ".blob.data.chunk_map";
}

BlobCache::BlobCache(std::string dir, std::string blob_id, uint32_t chunk_count,
                     base::UniqueFd data, base::UniqueFd map)
    : dir_(std::move(dir)),
      blob_id_(std::move(blob_id)),
      chunk_count_(chunk_count),
      data_fd_(std::move(data)),
      map_fd_(std::move(map)) {}

BlobCache::~BlobCache() { (void)Flush(); }

Result<base::UniqueFd> BlobCache::LockMapFile(const std::string& path, MapLock mode, bool create,
                                              bool writable) {
  const int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (create ? O_CREAT : 0);
  const int op = mode == MapLock::kShared ? LOCK_SH : (LOCK_EX | LOCK_NB);
  // Each retry means a deleter unlinked the file we had opened; deleters
  // hold the lock only for two unlinks, so this ends quickly.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    base::UniqueFd fd(::open(path.c_str(), flags, 0600));
    if (!fd.valid()) {
      if (errno == ENOENT && !create) return base::NotFoundError("chunk map ", path, " not found");
      return ErrnoToStatus(errno, "open chunk map " + path);
    }
    int r;
    do {
      r = ::flock(fd.get(), op);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
      if (errno == EWOULDBLOCK) {
        return base::UnavailableError("chunk map ", path, " is in use (locked by another user)");
      }
      return ErrnoToStatus(errno, "lock chunk map " + path);
    }
    struct stat held, now;
    if (::fstat(fd.get(), &held) != 0) return ErrnoToStatus(errno, "stat chunk map " + path);
    if (::stat(path.c_str(), &now) == 0 && now.st_dev == held.st_dev &&
        now.st_ino == held.st_ino) {
      return Result<base::UniqueFd>(std::move(fd));
    }
    if (!create) return base::NotFoundError("chunk map ", path, " was removed");
  }
  return base::AbortedError("chunk map ", path, " keeps being replaced while locking it");
}

BlobCache::MapContents BlobCache::ReadMap(int map_fd) {
  MapContents m;
  uint8_t header[kMapHeader];
  if (::pread(map_fd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) ||
      std::memcmp(header, kMapMagic, 8) != 0) {
    return m;
  }
  const uint32_t count = base::LoadLe32(header + 8);
  const uint64_t bytes = (uint64_t{count} + 7) / 8;
  struct stat st;
  // Sized from the file before allocating: the count is untrusted.
  if (count == 0 || ::fstat(map_fd, &st) != 0 ||
      static_cast<uint64_t>(st.st_size) < kMapHeader + bytes) {
    return m;
  }
  std::vector<uint8_t> bits(bytes);
  // A short bitmap is corrupt: BlobCache would reset it.
  if (::pread(map_fd, bits.data(), bits.size(), kMapHeader) != static_cast<ssize_t>(bits.size())) {
    return m;
  }
  if (count % 8 != 0) bits.back() &= static_cast<uint8_t>((1u << (count % 8)) - 1);
  m.valid = true;
  m.chunk_count = count;
  for (uint8_t b : bits) m.ready_count += static_cast<uint32_t>(__builtin_popcount(b));
  m.bits = std::move(bits);
  return m;
}

Result<std::unique_ptr<BlobCache>> BlobCache::Open(const std::string& dir, const BlobInfo& blob) {
  if (blob.chunk_count == 0) {
    return base::InvalidArgumentError("blob ", blob.blob_id, " has no chunk count to cache by");
  }
  // The map first, locked, then the data file (see the header comment).
  const std::string map_path = MapPath(dir, blob.blob_id);
  ASSIGN_OR_RETURN(base::UniqueFd map,
                   LockMapFile(map_path, MapLock::kShared, /*create=*/true, /*writable=*/true));
  const std::string data_path = DataPath(dir, blob.blob_id);
  int dfd = ::open(data_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (dfd < 0) return ErrnoToStatus(errno, "open cache file " + data_path);
  std::unique_ptr<BlobCache> c(new BlobCache(dir, blob.blob_id, blob.chunk_count,
                                             base::UniqueFd(dfd), std::move(map)));
  RETURN_IF_ERROR(c->LoadOrResetMap());
  return c;
}

Status BlobCache::LoadOrResetMap() {
  MutexLock lock(&mu_);
  const size_t bytes = (chunk_count_ + 7) / 8;
  ready_.assign(bytes, 0);
  std::vector<uint8_t> file(kMapHeader + bytes);
  ssize_t n = ::pread(map_fd_.get(), file.data(), file.size(), 0);
  bool valid = n == static_cast<ssize_t>(file.size()) &&
               std::memcmp(file.data(), kMapMagic, 8) == 0 &&
               base::LoadLe32(file.data() + 8) == chunk_count_;
  if (valid) {
    std::memcpy(ready_.data(), file.data() + kMapHeader, bytes);
    // Bits past chunk_count must be clear.
    if (chunk_count_ % 8 != 0) ready_.back() &= static_cast<uint8_t>((1u << (chunk_count_ % 8)) - 1);
    for (uint8_t b : ready_) ready_count_ += static_cast<uint32_t>(__builtin_popcount(b));
    durable_ = ready_;
    return Status::Ok();
  }
  // New or unusable: start empty. The data file's old contents are
  // meaningless without the map, so drop them too.
  if (::ftruncate(data_fd_.get(), 0) != 0) return ErrnoToStatus(errno, "truncate cache data");
  std::memset(file.data(), 0, file.size());
  std::memcpy(file.data(), kMapMagic, 8);
  base::StoreLe32(file.data() + 8, chunk_count_);
  RETURN_IF_ERROR(PwriteAll(map_fd_.get(), file.data(), file.size(), 0, "chunk map"));
  if (::ftruncate(map_fd_.get(), static_cast<off_t>(file.size())) != 0) {
    return ErrnoToStatus(errno, "truncate chunk map");
  }
  if (::fdatasync(map_fd_.get()) != 0) return ErrnoToStatus(errno, "sync chunk map");
  durable_ = ready_;
  ready_count_ = 0;
  return Status::Ok();
}

BlobCache::Claimed BlobCache::Claim(uint32_t index) {
  MutexLock lock(&mu_);
  if (ready_[index / 8] & (1u << (index % 8))) return {ClaimResult::kReady, nullptr};
  auto [it, inserted] = inflight_.try_emplace(index);
  if (!inserted) return {ClaimResult::kBusy, it->second};
  it->second = std::make_shared<Pending>();
  return {ClaimResult::kClaimed, nullptr};
}

Status BlobCache::Wait(const std::shared_ptr<Pending>& p, uint32_t index,
                       base::Deadline deadline) {
  MutexLock lock(&mu_);
  while (!p->done) {
    if (deadline.is_infinite()) {
      p->cv.Wait(&mu_);
    } else if (!p->cv.WaitUntil(&mu_, deadline.when()) && !p->done) {
      return base::DeadlineExceededError("blob ", blob_id_, " chunk ", index,
                                         ": deadline passed waiting for its fetch");
    }
  }
  return p->status;
}

Status BlobCache::MarkReady(uint32_t index, uint64_t uncompressed_offset, base::ByteSpan data) {
  Status s = PwriteAll(data_fd_.get(), data.data(), data.size(), uncompressed_offset,
                       "cache data of blob " + blob_id_);
  MutexLock lock(&mu_);
  auto it = inflight_.find(index);
  std::shared_ptr<Pending> p = it != inflight_.end() ? it->second : nullptr;
  if (it != inflight_.end()) inflight_.erase(it);
  if (s.ok()) {
    uint8_t& byte = ready_[index / 8];
    if (!(byte & (1u << (index % 8)))) {
      byte |= static_cast<uint8_t>(1u << (index % 8));
      ++ready_count_;
      ++unflushed_;
    }
  }
  if (p != nullptr) {
    p->done = true;
    p->status = s;
    p->cv.SignalAll();
  }
  return s;
}

void BlobCache::Abort(uint32_t index, const Status& why) {
  MutexLock lock(&mu_);
  auto it = inflight_.find(index);
  if (it == inflight_.end()) return;
  it->second->done = true;
  it->second->status = why;
  it->second->cv.SignalAll();
  inflight_.erase(it);
}

void BlobCache::Invalidate(uint32_t index) {
  MutexLock lock(&mu_);
  uint8_t& byte = ready_[index / 8];
  if (byte & (1u << (index % 8))) {
    byte &= static_cast<uint8_t>(~(1u << (index % 8)));
    --ready_count_;
  }
}

bool BlobCache::IsReady(uint32_t index) const {
  MutexLock lock(&mu_);
  return index < chunk_count_ && (ready_[index / 8] & (1u << (index % 8)));
}

uint32_t BlobCache::ready_count() const {
  MutexLock lock(&mu_);
  return ready_count_;
}

Status BlobCache::ReadCached(uint64_t offset, base::MutableByteSpan dst) const {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(data_fd_.get(), dst.data() + done, dst.size() - done,
                        static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "read cache data of blob " + blob_id_);
    }
    if (n == 0) return base::DataLossError("cache data of blob ", blob_id_, " is short");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

int BlobCache::unflushed() const {
  MutexLock lock(&mu_);
  return unflushed_;
}

Status BlobCache::Flush() {
  MutexLock flush(&flush_mu_);
  std::vector<uint8_t> snapshot;
  {
    MutexLock lock(&mu_);
    if (ready_ == durable_) return Status::Ok();
    snapshot = ready_;
    unflushed_ = 0;
  }
  // Data first: every bit in the snapshot was set after its data was
  // written, so syncing the data now makes all of them safe to persist.
  if (::fdatasync(data_fd_.get()) != 0) return ErrnoToStatus(errno, "sync cache data");
  RETURN_IF_ERROR(
      PwriteAll(map_fd_.get(), snapshot.data(), snapshot.size(), kMapHeader, "chunk map"));
  if (::fdatasync(map_fd_.get()) != 0) return ErrnoToStatus(errno, "sync chunk map");
  MutexLock lock(&mu_);
  durable_ = std::move(snapshot);
  return Status::Ok();
}

}  // namespace rfs::storage
