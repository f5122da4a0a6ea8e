// RafsMount over the libfuse3 low-level API (see rafs/mount.h).
//
// We own the mount and the /dev/fuse descriptor ourselves (mount(2) with
// fd=N, libfuse's custom-io hook for the descriptor) and run our own worker
// loop around fuse_session_receive_buf / fuse_session_process_buf. That is
// what makes Detach (stop without unmounting) and adoption (serve a mount
// another process made) possible: libfuse's own loops and mount helpers do
// neither.
#define FUSE_USE_VERSION 314

#include "rafs/mount.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "base/logging.h"
#include "base/mountinfo.h"
#include "base/mutex.h"
#include "rafs/fuse/errors.h"
#include "rafs/meta/walk.h"

namespace rfs::rafs {

using base::Result;
using base::Status;

namespace {

// Signal used to interrupt workers blocked in read(2) on Detach. The handler
// does nothing; installed without SA_RESTART so the read fails with EINTR.
int InterruptSignal() { return SIGRTMIN + 7; }

void NoopHandler(int) {}

void InstallInterruptHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = NoopHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(InterruptSignal(), &sa, nullptr);
  });
}

// Unique id of the INIT we replay when adopting a live mount; its reply is
// swallowed by our writev hook, never written to the kernel.
constexpr uint64_t kReplayedInitUnique = 0x7ffffffffffff000ull;
// FUSE_NOTIFY_RESEND (protocol 7.40): the kernel re-queues requests a dead
// predecessor had read but not answered.
constexpr int kNotifyResend = 7;

// The mount at `path` (the topmost, last in the table).
struct MountInfo {
  bool found = false;
  unsigned major = 0, minor = 0;
  std::string fstype;
};

MountInfo FindMount(const std::string& path) {
  MountInfo info;
  for (const base::MountEntry& e : base::ReadMountTable()) {
    if (e.mountpoint != path) continue;
    info.found = true;
    info.fstype = e.fstype;
    info.major = e.major;
    info.minor = e.minor;
  }
  return info;
}

Result<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    int err = errno;
    if (err == ENOENT) return base::NotFoundError("mountpoint ", path, " does not exist");
    return base::ErrnoToStatus(err, "resolve mountpoint " + path);
  }
  return std::string(buf);
}

}  // namespace

Result<bool> IsMountPoint(const std::string& path) {
  ASSIGN_OR_RETURN(std::string real, RealPath(path));
  if (FindMount(real).found) return true;
  struct stat self {}, parent {};
  if (::stat(real.c_str(), &self) != 0) return base::ErrnoToStatus(errno, "stat " + real);
  if (::stat((real + "/..").c_str(), &parent) != 0) {
    return base::ErrnoToStatus(errno, "stat " + real + "/..");
  }
  return self.st_dev != parent.st_dev || (self.st_ino == parent.st_ino && real == "/");
}

// ---------------------------------------------------------------------------

struct RafsMount::Impl {
  MountOptions options;
  std::shared_ptr<fs::Image> image;
  std::string mountpoint;  // resolved
  fuse_session* se = nullptr;
  int fuse_fd = -1;  // owned by the session
  unsigned conn_minor = 0;
  bool mounted_by_us = false;
  std::vector<uint8_t> zeros;
  uint64_t statfs_blocks = 0;

  struct Worker {
    std::thread thread;
    std::atomic<bool> in_read{false};
    std::atomic<bool> exited{false};
  };
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<bool> stopping{false};

  base::Mutex mu;
  base::CondVar cv;
  int running GUARDED_BY(mu) = 0;
  bool ended GUARDED_BY(mu) = false;  // Stop/Detach done or the mount went away

  base::Mutex logged_mu;
  std::set<uint64_t> logged GUARDED_BY(logged_mu);  // inodes whose EIO was logged

  fuse::FuseMetrics metrics;
  // The kernel can open files and directories without asking us (it then
  // keeps their page and readdir caches, as we would answer): set at INIT
  // when it says it can, so OPEN/OPENDIR get ENOSYS once and are never sent
  // again, nor their RELEASEs. Two round trips less per open(2).
  std::atomic<bool> no_open{false};
  std::atomic<bool> no_opendir{false};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> eio_count{0};

  std::unique_ptr<storage::Prefetcher> prefetcher;
  std::thread prefetch_planner;
  void StartPrefetch();
  void StopPrefetch();

  const fs::RafsFilesystem& fs() const { return image->fs(); }

  void WorkerLoop(Worker* w);
  void StopWorkers(bool interrupt);
  void ReportEio(uint64_t ino, const storage::ChunkIoVec* plan, const Status& s);
  std::string PathOf(uint64_t ino) const;
};

namespace {

thread_local RafsMount::Impl::Worker* tls_worker = nullptr;

RafsMount::Impl* ImplOf(fuse_req_t req) {
  return static_cast<RafsMount::Impl*>(fuse_req_userdata(req));
}

// --- custom io: plain read/writev/splice on the descriptor, plus the hooks
// for Detach (interruptible reads) and adoption (swallowed INIT reply).

ssize_t IoRead(int fd, void* buf, size_t len, void* userdata) {
  auto* impl = static_cast<RafsMount::Impl*>(userdata);
  RafsMount::Impl::Worker* w = tls_worker;
  if (w != nullptr) w->in_read.store(true);
  if (impl->stopping.load()) {
    if (w != nullptr) w->in_read.store(false);
    errno = EINTR;
    return -1;
  }
  ssize_t n = ::read(fd, buf, len);
  int err = errno;
  if (w != nullptr) w->in_read.store(false);
  errno = err;
  return n;
}

ssize_t IoWritev(int fd, struct iovec* iov, int count, void* userdata) {
  if (count > 0 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    const auto* h = static_cast<const fuse_out_header*>(iov[0].iov_base);
    if (h->unique == kReplayedInitUnique) {
      ssize_t total = 0;
      for (int i = 0; i < count; ++i) total += static_cast<ssize_t>(iov[i].iov_len);
      return total;
    }
  }
  return ::writev(fd, iov, count);
}

ssize_t IoSpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                     unsigned int flags, void* userdata) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

const fuse_custom_io kCustomIo = {
    .writev = IoWritev,
    .read = IoRead,
    .splice_receive = nullptr,
    .splice_send = IoSpliceSend,
};

// --- helpers

struct stat ToStat(const fs::Stat& s) {
  struct stat st {};
  const meta::Attr& a = s.attr;
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = s.blksize;
  st.st_rdev = a.rdev;
  st.st_mtim.tv_sec = static_cast<time_t>(a.mtime);
  st.st_mtim.tv_nsec = a.mtime_nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  return st;
}

double Seconds(std::chrono::seconds s) { return static_cast<double>(s.count()); }

void FillEntry(const RafsMount::Impl& impl, const fs::Stat& s, fuse_entry_param* e) {
  *e = fuse_entry_param{};
  e->ino = s.attr.ino;
  e->generation = 0;
  e->attr = ToStat(s);
  e->attr_timeout = Seconds(impl.options.attr_timeout);
  e->entry_timeout = Seconds(impl.options.entry_timeout);
}

// --- operations

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* impl = static_cast<RafsMount::Impl*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_POSIX_ACL);
  impl->no_open.store((conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0);
  impl->no_opendir.store((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0);
  // The image never changes: no invalidation on mtime changes, and the kernel
  // reads directories with attributes every time (immutable, so it pays off).
  conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_SPLICE_READ |
                  FUSE_CAP_SPLICE_MOVE);
  conn->max_readahead = impl->options.max_read;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kLookup);
  Result<fs::Stat> st = impl->fs().Lookup(parent, name);
  fuse_entry_param e{};
  if (!st.ok()) {
    if (st.status().code() == base::StatusCode::kNotFound) {
      // Cache the negative entry: the image never changes.
      e.ino = 0;
      e.entry_timeout = Seconds(impl->options.entry_timeout);
      fuse_reply_entry(req, &e);
      return;
    }
    fuse_reply_err(req, fuse::MetaErrno(st.status(), impl->metrics));
    return;
  }
  FillEntry(*impl, *st, &e);
  fuse_reply_entry(req, &e);
}

void OpForget(fuse_req_t req, fuse_ino_t, uint64_t) {
  // Inode numbers come from the image: nothing to count or free.
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kGetattr);
  Result<fs::Stat> st = impl->fs().GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, fuse::MetaErrno(st.status(), impl->metrics));
    return;
  }
  struct stat s = ToStat(*st);
  fuse_reply_attr(req, &s, Seconds(impl->options.attr_timeout));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kReadlink);
  Result<std::string> target = impl->fs().ReadLink(ino);
  if (!target.ok()) {
    int err = target.status().code() == base::StatusCode::kInvalidArgument
                  ? EINVAL
                  : fuse::MetaErrno(target.status(), impl->metrics);
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_readlink(req, target->c_str());
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kOpendir);
  if (impl->no_opendir.load(std::memory_order_relaxed)) {
    // The VFS checks the type itself (O_DIRECTORY, and opening a directory
    // for writing on a read-only mount); the kernel caches the entries.
    fuse_reply_err(req, ENOSYS);
    return;
  }
  Result<fs::Stat> st = impl->fs().GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, fuse::MetaErrno(st.status(), impl->metrics));
    return;
  }
  if (!S_ISDIR(st->attr.mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->fh = 0;
  fi->keep_cache = 1;
  fi->cache_readdir = 1;
  fuse_reply_open(req, fi);
}

void DoReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kReaddir);
  std::vector<char> buf(size);
  size_t used = 0;
  Status inner = Status::Ok();
  Status s = impl->fs().ReadDir(
      ino, static_cast<uint64_t>(off), [&](const meta::DirEntry& d, uint64_t next) {
        size_t need;
        if (plus) {
          fuse_entry_param e{};
          if (d.name == "." || d.name == "..") {
            // The kernel does not link these; no lookup is counted.
            e.attr.st_ino = d.ino;
            e.attr.st_mode = d.type << 12;
          } else {
            Result<fs::Stat> st = impl->fs().GetAttr(d.ino);
            if (!st.ok()) {
              inner = st.status();
              return false;
            }
            FillEntry(*impl, *st, &e);
          }
          need = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e,
                                        static_cast<off_t>(next));
        } else {
          struct stat st {};
          st.st_ino = d.ino;
          st.st_mode = d.type << 12;
          need = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                   static_cast<off_t>(next));
        }
        if (need > size - used) return false;  // full: the kernel asks again from `next`
        used += need;
        return true;
      });
  if (s.ok()) s = inner;
  if (!s.ok() && used == 0) {
    fuse_reply_err(req, s.code() == base::StatusCode::kInvalidArgument
                            ? ENOTDIR
                            : fuse::MetaErrno(s, impl->metrics));
    return;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  DoReadDir(req, ino, size, off, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  ImplOf(req)->metrics.Count(fuse::FuseOp::kRelease);
  fuse_reply_err(req, 0);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kOpen);
  if (impl->no_open.load(std::memory_order_relaxed)) {
    // Writable opens never get here (the VFS refuses them on a read-only
    // mount); without OPEN the kernel keeps the page cache across opens,
    // which is what we would answer.
    fuse_reply_err(req, ENOSYS);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Result<fs::Stat> st = impl->fs().GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, fuse::MetaErrno(st.status(), impl->metrics));
    return;
  }
  if (S_ISDIR(st->attr.mode)) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fi->fh = 0;
  fi->keep_cache = 1;  // immutable: page cache stays valid across opens
  fi->noflush = 1;
  fuse_reply_open(req, fi);
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kRead);
  const auto start = std::chrono::steady_clock::now();
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Result<storage::ChunkIoVec> plan = impl->fs().Read(ino, static_cast<uint64_t>(off), size);
  if (!plan.ok()) {
    impl->ReportEio(ino, nullptr, plan.status());
    fuse_reply_err(req, plan.status().code() == base::StatusCode::kInvalidArgument ? EISDIR
                                                                                     : EIO);
    return;
  }
  storage::IoContext ctx;
  ctx.deadline = base::Deadline::After(impl->options.read_timeout);
  ctx.source = storage::IoSource::kOnDemand;
  std::vector<uint8_t> scratch;
  Result<std::vector<storage::DataSlice>> slices =
      impl->image->device()->ReadSlices(*plan, ctx, &scratch);
  if (!slices.ok()) {
    impl->ReportEio(ino, &*plan, slices.status());
    fuse_reply_err(req, EIO);
    return;
  }
  // One fuse_buf per slice (zero runs split to the size of our zero page).
  std::vector<fuse_buf> bufs;
  bufs.reserve(slices->size() + 1);
  for (const storage::DataSlice& d : *slices) {
    uint64_t left = d.length;
    while (left > 0) {
      fuse_buf b{};
      b.size = left;
      switch (d.kind) {
        case storage::DataSlice::Kind::kFd:
          b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
          b.fd = d.fd;
          b.pos = static_cast<off_t>(d.offset);
          break;
        case storage::DataSlice::Kind::kBytes:
          b.mem = const_cast<uint8_t*>(d.bytes);
          break;
        case storage::DataSlice::Kind::kZero:
          b.size = std::min<uint64_t>(left, impl->zeros.size());
          b.mem = impl->zeros.data();
          break;
      }
      left -= b.size;
      bufs.push_back(b);
    }
  }
  std::vector<char> holder(sizeof(fuse_bufvec) + bufs.size() * sizeof(fuse_buf));
  auto* bv = reinterpret_cast<fuse_bufvec*>(holder.data());
  bv->count = bufs.size();
  bv->idx = 0;
  bv->off = 0;
  if (bufs.empty()) {
    fuse_reply_buf(req, nullptr, 0);
  } else {
    std::memcpy(static_cast<void*>(bv->buf), bufs.data(), bufs.size() * sizeof(fuse_buf));
    int rc = fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
    if (rc != 0 && rc != -ENOENT) {
      RFS_LOG(kWarning) << "replying to a read of inode " << ino << ": " << std::strerror(-rc);
    }
  }
  impl->metrics.read_bytes->Increment(plan->total);
  impl->read_bytes.fetch_add(plan->total, std::memory_order_relaxed);
  impl->metrics.read_seconds->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  ImplOf(req)->metrics.Count(fuse::FuseOp::kRelease);
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kStatfs);
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_blocks = impl->statfs_blocks;
  st.f_bfree = 0;
  st.f_bavail = 0;
  st.f_files = impl->image->metadata().super().inode_count;
  st.f_ffree = 0;
  st.f_favail = 0;
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kXattr);
  Result<std::string> v = impl->fs().GetXattr(ino, name);
  if (!v.ok()) {
    fuse_reply_err(req, v.status().code() == base::StatusCode::kNotFound
                            ? ENODATA
                            : fuse::MetaErrno(v.status(), impl->metrics));
    return;
  }
  if (size == 0) {
    fuse_reply_xattr(req, v->size());
  } else if (size < v->size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, v->data(), v->size());
  }
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  RafsMount::Impl* impl = ImplOf(req);
  impl->metrics.Count(fuse::FuseOp::kXattr);
  Result<std::vector<std::string>> names = impl->fs().ListXattr(ino);
  if (!names.ok()) {
    fuse_reply_err(req, fuse::MetaErrno(names.status(), impl->metrics));
    return;
  }
  std::string list;
  for (const std::string& n : *names) {
    list += n;
    list.push_back('\0');
  }
  if (size == 0) {
    fuse_reply_xattr(req, list.size());
  } else if (size < list.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, list.data(), list.size());
  }
}

void OpAccess(fuse_req_t req, fuse_ino_t, int mask) {
  ImplOf(req)->metrics.Count(fuse::FuseOp::kAccess);
  // Permission bits are checked by the kernel (default_permissions); only
  // writing is refused here.
  fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

// Everything that would change the image.
void RoSetattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void RoMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void RoMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void RoUnlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void RoSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void RoRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int) {
  fuse_reply_err(req, EROFS);
}
void RoLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void RoWrite(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void RoWriteBuf(fuse_req_t req, fuse_ino_t, fuse_bufvec*, off_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void RoCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void RoSetxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  fuse_reply_err(req, EROFS);
}
void RoRemovexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void RoFallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void OkFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.readlink = OpReadlink;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.release = OpRelease;
  ops.statfs = OpStatfs;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.access = OpAccess;
  ops.setattr = RoSetattr;
  ops.mknod = RoMknod;
  ops.mkdir = RoMkdir;
  ops.unlink = RoUnlink;
  ops.rmdir = RoUnlink;
  ops.symlink = RoSymlink;
  ops.rename = RoRename;
  ops.link = RoLink;
  ops.write = RoWrite;
  ops.write_buf = RoWriteBuf;
  ops.create = RoCreate;
  ops.setxattr = RoSetxattr;
  ops.removexattr = RoRemovexattr;
  ops.fallocate = RoFallocate;
  ops.fsync = OkFsync;
  ops.fsyncdir = OkFsync;
  return ops;
}

const fuse_lowlevel_ops kOps = MakeOps();

}  // namespace

// ---------------------------------------------------------------------------

std::string RafsMount::Impl::PathOf(uint64_t ino) const {
  Result<std::string> p = meta::PathOf(image->metadata(), ino);
  return p.ok() ? *p : "inode " + std::to_string(ino);
}

void RafsMount::Impl::ReportEio(uint64_t ino, const storage::ChunkIoVec* plan, const Status& s) {
  metrics.Eio(s)->Increment();
  eio_count.fetch_add(1, std::memory_order_relaxed);
  {
    base::MutexLock l(&logged_mu);
    if (!logged.insert(ino).second) return;
  }
  std::string range;
  if (plan != nullptr) {
    const storage::IoSegment* first = nullptr;
    const storage::IoSegment* last = nullptr;
    for (const storage::IoSegment& seg : plan->segments) {
      if (seg.kind != storage::IoSegment::Kind::kChunk) continue;
      if (first == nullptr) first = &seg;
      last = &seg;
    }
    if (first != nullptr) {
      const auto& blobs = image->device()->blobs();
      const uint32_t bi = first->chunk.blob_index;
      std::ostringstream os;
      os << " blob " << (bi < blobs.size() ? blobs[bi].blob_id : std::to_string(bi))
         << " compressed range [" << first->chunk.compressed_offset << ", "
         << last->chunk.compressed_offset + last->chunk.compressed_size << ")";
      range = os.str();
    }
  }
  RFS_LOG(kError) << "EIO reading " << PathOf(ino) << " (" << fuse::EioReason(s) << ")" << range
                  << ": " << s.ToString() << " (further errors on this file are counted, not logged)";
}

void RafsMount::Impl::StartPrefetch() {
  if (options.prefetch == fs::PrefetchPolicy::kNone && options.prefetch_paths.empty()) return;
  storage::PrefetchOptions po = options.prefetch_options;
  po.metrics = options.metrics;
  prefetcher = std::make_unique<storage::Prefetcher>(image->device(), po);
  // Planning walks the metadata: off the mount path.
  prefetch_planner = std::thread([this] {
    auto chunks = fs::PrefetchChunks(image->metadata(), options.prefetch, options.prefetch_paths);
    if (!chunks.ok()) {
      RFS_LOG(kWarning) << "prefetch of " << mountpoint << " skipped: " << chunks.status();
      return;
    }
    RFS_LOG(kInfo) << "prefetching " << chunks->size() << " chunks for " << mountpoint;
    prefetcher->Add(*chunks);
  });
}

void RafsMount::Impl::StopPrefetch() {
  if (prefetch_planner.joinable()) prefetch_planner.join();
  if (prefetcher != nullptr) prefetcher->Stop();
}

void RafsMount::Impl::WorkerLoop(Worker* w) {
  tls_worker = w;
  fuse_buf buf{};
  bool ended_here = false;
  while (!stopping.load()) {
    int res = fuse_session_receive_buf(se, &buf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      // 0: the session ended (the mount went away); else a device error.
      if (res < 0 && !stopping.load()) {
        RFS_LOG(kError) << "reading /dev/fuse for " << mountpoint << ": " << std::strerror(-res);
      }
      ended_here = !stopping.load();
      break;
    }
    fuse_session_process_buf(se, &buf);
  }
  std::free(buf.mem);
  tls_worker = nullptr;
  w->exited.store(true);
  base::MutexLock l(&mu);
  if (ended_here) {
    fuse_session_exit(se);
    stopping.store(true);
  }
  if (--running == 0) cv.SignalAll();
}

void RafsMount::Impl::StopWorkers(bool interrupt) {
  stopping.store(true);
  if (interrupt) {
    // Workers blocked in read(2) get a signal; repeat until each is out (a
    // signal can land just before a worker enters read).
    for (;;) {
      bool all = true;
      for (auto& w : workers) {
        if (w->exited.load()) continue;
        all = false;
        if (w->in_read.load()) pthread_kill(w->thread.native_handle(), InterruptSignal());
      }
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  for (auto& w : workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  workers.clear();
}

RafsMount::RafsMount(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RafsMount::~RafsMount() {
  Status s = Stop();
  if (!s.ok()) {
    RFS_LOG(kWarning) << "unmounting " << impl_->mountpoint << ": " << s.ToString();
  }
}

Result<std::unique_ptr<RafsMount>> RafsMount::Start(const MountOptions& options,
                                                    std::shared_ptr<fs::Image> image) {
  if (image == nullptr || image->device() == nullptr) {
    return base::InvalidArgumentError("mount: the image has no blob backend");
  }
  if (options.threads < 1 || options.threads > 256) {
    return base::InvalidArgumentError("mount: threads must be 1..256, got ", options.threads);
  }
  if (options.max_read < 4096 || options.max_read > (1u << 20)) {
    return base::InvalidArgumentError("mount: max_read must be 4 KiB..1 MiB");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->image = std::move(image);
  impl->metrics = fuse::FuseMetrics(options.metrics);
  impl->zeros.assign(std::min<uint32_t>(options.max_read, 128u << 10), 0);
  uint64_t bytes = impl->image->metadata().super().bootstrap_size;
  for (const auto& b : impl->image->metadata().blobs()) bytes += b.info.uncompressed_size;
  impl->statfs_blocks = base::CeilDiv(bytes, uint64_t{4096});

  ASSIGN_OR_RETURN(impl->mountpoint, RealPath(options.mountpoint));
  struct stat st {};
  if (::stat(impl->mountpoint.c_str(), &st) != 0) {
    return base::ErrnoToStatus(errno, "stat mountpoint " + impl->mountpoint);
  }
  if (!S_ISDIR(st.st_mode)) {
    return base::FailedPreconditionError("mountpoint ", impl->mountpoint, " is not a directory");
  }

  base::UniqueFd fd;
  if (options.adopt_fd >= 0) {
    fd = base::UniqueFd(options.adopt_fd);
    MountInfo mi = FindMount(impl->mountpoint);
    if (!mi.found || mi.fstype.rfind("fuse", 0) != 0) {
      return base::FailedPreconditionError("adopt: no FUSE mount at ", impl->mountpoint);
    }
    impl->conn_minor = mi.minor;
  } else {
    ASSIGN_OR_RETURN(bool busy, IsMountPoint(impl->mountpoint));
    if (busy) {
      return base::FailedPreconditionError("mountpoint ", impl->mountpoint,
                                           " is busy: something is already mounted there");
    }
    fd = base::UniqueFd(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    if (!fd.valid()) {
      int err = errno;
      return base::FailedPreconditionError("FUSE is unavailable: open /dev/fuse: ",
                                           std::strerror(err),
                                           err == ENOENT ? " (load the fuse module)" : "");
    }
    std::ostringstream data;
    data << "fd=" << fd.get() << ",rootmode=40000,user_id=" << ::getuid()
         << ",group_id=" << ::getgid() << ",default_permissions"
         << (options.allow_other ? ",allow_other" : "") << ",max_read=" << options.max_read;
    if (::mount(options.source.c_str(), impl->mountpoint.c_str(), "fuse.rafs",
                MS_RDONLY | MS_NOATIME, data.str().c_str()) != 0) {
      int err = errno;
      if (err == EPERM) {
        return base::PermissionDeniedError("mount ", impl->mountpoint,
                                           ": mounting FUSE needs CAP_SYS_ADMIN (run as root)");
      }
      return base::ErrnoToStatus(err, "mount fuse at " + impl->mountpoint);
    }
    impl->mounted_by_us = true;
    MountInfo mi = FindMount(impl->mountpoint);
    impl->conn_minor = mi.minor;
  }

  // From here on a failure must undo the mount.
  auto undo = [&impl]() {
    if (impl->mounted_by_us) ::umount2(impl->mountpoint.c_str(), MNT_DETACH);
  };
  const char* argv[] = {"rafs", nullptr};
  fuse_args args = FUSE_ARGS_INIT(1, const_cast<char**>(argv));
  impl->se = fuse_session_new(&args, &kOps, sizeof(kOps), impl.get());
  fuse_opt_free_args(&args);
  if (impl->se == nullptr) {
    undo();
    return base::InternalError("mount: creating the FUSE session failed");
  }
  impl->fuse_fd = fd.get();
  if (int rc = fuse_session_custom_io(impl->se, &kCustomIo, fd.get()); rc != 0) {
    fuse_session_destroy(impl->se);
    impl->se = nullptr;
    undo();
    return base::ErrnoToStatus(-rc, "mount: attaching /dev/fuse to the session");
  }
  (void)fd.Release();  // the session owns it now

  if (options.adopt_fd >= 0) {
    // The kernel negotiated INIT with our predecessor; replay one locally so
    // the session is ready (its reply is swallowed by IoWritev), then ask the
    // kernel to resend whatever the predecessor read and never answered.
    struct {
      fuse_in_header h;
      fuse_init_in in;
    } msg{};
    msg.h.len = sizeof(msg);
    msg.h.opcode = FUSE_INIT;
    msg.h.unique = kReplayedInitUnique;
    msg.in.major = FUSE_KERNEL_VERSION;
    msg.in.minor = FUSE_KERNEL_MINOR_VERSION;
    msg.in.max_readahead = options.max_read;
    msg.in.flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
                   FUSE_PARALLEL_DIROPS | FUSE_CACHE_SYMLINKS | FUSE_MAX_PAGES | FUSE_POSIX_ACL |
                   FUSE_NO_OPEN_SUPPORT | FUSE_NO_OPENDIR_SUPPORT;
    fuse_buf b{};
    b.size = sizeof(msg);
    b.mem = &msg;
    fuse_session_process_buf(impl->se, &b);
    fuse_out_header resend{};
    resend.len = sizeof(resend);
    resend.error = kNotifyResend;
    resend.unique = 0;
    if (::write(impl->fuse_fd, &resend, sizeof(resend)) < 0) {
      RFS_LOG(kDebug) << "kernel cannot resend pending FUSE requests: " << std::strerror(errno);
    }
  }

  InstallInterruptHandler();
  Impl* raw = impl.get();
  {
    base::MutexLock l(&raw->mu);
    raw->running = options.threads;
  }
  for (int i = 0; i < options.threads; ++i) {
    auto w = std::make_unique<Impl::Worker>();
    Impl::Worker* wp = w.get();
    raw->workers.push_back(std::move(w));
    wp->thread = std::thread([raw, wp] { raw->WorkerLoop(wp); });
  }
  raw->StartPrefetch();
  RFS_LOG(kInfo) << (options.adopt_fd >= 0 ? "adopted" : "mounted") << " rafs image at "
                 << raw->mountpoint << " (" << options.threads << " threads)";
  return std::unique_ptr<RafsMount>(new RafsMount(std::move(impl)));
}

Result<std::unique_ptr<RafsMount>> RafsMount::Start(const MountOptions& options,
                                                    const ImageSource& source) {
  if (source.backend == nullptr) return base::InvalidArgumentError("mount: no blob backend");
  ASSIGN_OR_RETURN(std::unique_ptr<meta::Metadata> meta,
                   meta::OpenMetadataFile(source.bootstrap_path));
  ASSIGN_OR_RETURN(std::unique_ptr<fs::Image> image,
                   fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(meta)),
                                   source.backend, source.fs, source.device));
  return Start(options, std::shared_ptr<fs::Image>(std::move(image)));
}

Status RafsMount::Stop() {
  Impl& m = *impl_;
  if (m.se == nullptr) return Status::Ok();
  m.StopPrefetch();
  Status result = Status::Ok();
  bool mounted = FindMount(m.mountpoint).found;
  if (mounted && ::umount2(m.mountpoint.c_str(), 0) != 0) {
    int err = errno;
    if (err == EBUSY) {
      // Files are still open: detach the mount and abort the connection so
      // nothing waits on a server that is going away.
      RFS_LOG(kWarning) << m.mountpoint << " is busy; detaching it and aborting the connection";
      ::umount2(m.mountpoint.c_str(), MNT_DETACH);
    } else if (err != EINVAL) {
      result = base::ErrnoToStatus(err, "umount " + m.mountpoint);
    }
  }
  if (m.conn_minor != 0) {
    // No-op when the connection is already gone.
    std::ofstream abort("/sys/fs/fuse/connections/" + std::to_string(m.conn_minor) + "/abort");
    if (abort) abort << "1";
  }
  m.StopWorkers(/*interrupt=*/true);
  fuse_session_destroy(m.se);
  m.se = nullptr;
  {
    base::MutexLock l(&m.mu);
    m.ended = true;
    m.cv.SignalAll();
  }
  RFS_LOG(kInfo) << "unmounted " << m.mountpoint;
  return result;
}

Result<base::UniqueFd> RafsMount::Detach() {
  Impl& m = *impl_;
  if (m.se == nullptr) return base::FailedPreconditionError("detach: the mount is not served");
  m.StopPrefetch();
  base::UniqueFd dup(::fcntl(m.fuse_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return base::ErrnoToStatus(errno, "dup /dev/fuse");
  m.StopWorkers(/*interrupt=*/true);
  fuse_session_destroy(m.se);  // closes the session's descriptor, not our dup
  m.se = nullptr;
  {
    base::MutexLock l(&m.mu);
    m.ended = true;
    m.cv.SignalAll();
  }
  RFS_LOG(kInfo) << "stopped serving " << m.mountpoint << " (mount kept for a successor)";
  return dup;
}

Result<base::UniqueFd> RafsMount::DupFuseFd() const {
  if (impl_->se == nullptr) return base::FailedPreconditionError("the mount is not served");
  base::UniqueFd dup(::fcntl(impl_->fuse_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) return base::ErrnoToStatus(errno, "dup /dev/fuse");
  return dup;
}

void RafsMount::Wait() {
  Impl& m = *impl_;
  base::MutexLock l(&m.mu);
  while (!m.ended && m.running > 0) m.cv.Wait(&m.mu);
}

bool RafsMount::serving() const {
  Impl& m = *impl_;
  base::MutexLock l(&m.mu);
  return !m.ended && m.running > 0;
}

const std::string& RafsMount::mountpoint() const { return impl_->mountpoint; }
const fs::Image& RafsMount::image() const { return *impl_->image; }
storage::Prefetcher* RafsMount::prefetcher() const { return impl_->prefetcher.get(); }

RafsMount::Stats RafsMount::stats() const {
  Stats s;
  s.read_bytes = impl_->read_bytes.load(std::memory_order_relaxed);
  s.eio = impl_->eio_count.load(std::memory_order_relaxed);
  s.fetched_bytes = impl_->image->device()->fetched_bytes();
  return s;
}

}  // namespace rfs::rafs
