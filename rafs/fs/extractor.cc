#include "rafs/fs/extractor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <vector>

#include "base/unique_fd.h"
#include "rafs/meta/walk.h"

namespace rfs::rafs::fs {

using base::ErrnoToStatus;
using base::Result;
using base::Status;
using base::UniqueFd;

namespace {

constexpr uint64_t kPiece = 4u << 20;

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

class Extractor {
 public:
  Extractor(const Image& image, const ExtractOptions& options)
      : image_(image), meta_(image.metadata()), options_(options) {
    is_root_ = ::geteuid() == 0;
  }

  Result<ExtractReport> Run(const std::string& target) {
    if (::mkdir(target.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, "create " + target);
    }
    int fd = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, "open " + target);
    UniqueFd root(fd);
    {
      // Refuse a non-empty target: nothing existing is overwritten or mixed in.
      int dup_fd = ::dup(root.get());
      DIR* d = dup_fd >= 0 ? ::fdopendir(dup_fd) : nullptr;
      if (d == nullptr) return ErrnoToStatus(errno, "list " + target);
      bool empty = true;
      while (struct dirent* de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") empty = false;
      }
      ::closedir(d);
      if (!empty) return base::FailedPreconditionError("target ", target, " is not empty");
    }
    dirs_.push_back(std::move(root));
    meta::WalkCallbacks cb;
    cb.visit = [&](const meta::WalkEntry& e) { return Visit(e).WithContext(e.path); };
    cb.leave_dir = [&](const meta::WalkEntry& e) { return LeaveDir(e).WithContext(e.path); };
    RETURN_IF_ERROR(meta::WalkTree(meta_, "/", cb));
    return report_;
  }

 private:
  int ParentFd(const meta::WalkEntry& e) const { return dirs_[e.depth - 1].get(); }

  std::string ProcPath(int dirfd, const std::string& name) const {
    return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  }

  Status SetXattrs(const meta::WalkEntry& e, int fd, int dirfd) {
    ASSIGN_OR_RETURN(meta::Xattrs xs, meta_.GetXattrs(e.ino));
    for (const auto& [k, v] : xs) {
      int r = fd >= 0 ? ::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0)
                      : ::lsetxattr(ProcPath(dirfd, e.name).c_str(), k.c_str(), v.data(),
                                    v.size(), 0);
      if (r != 0) {
        if (errno == EPERM || errno == ENOTSUP || errno == EACCES) {
          ++report_.skipped_xattrs;
          continue;
        }
        return ErrnoToStatus(errno, "set xattr " + k);
      }
    }
    return Status::Ok();
  }

  // Owner, xattrs, mode and times of an entry created at (dirfd, name) or
  // open as fd. The order matters: chown drops security.capability and the
  // set-id bits, so xattrs and the mode come after it.
  Status SetAttrs(const meta::WalkEntry& e, int fd, int dirfd) {
    const meta::Attr& a = e.attr;
    const bool link = S_ISLNK(a.mode);
    if (options_.preserve_owners && is_root_) {
      int r = fd >= 0 ? ::fchown(fd, a.uid, a.gid)
                      : ::fchownat(dirfd, e.name.c_str(), a.uid, a.gid, AT_SYMLINK_NOFOLLOW);
      if (r != 0) return ErrnoToStatus(errno, "chown");
    }
    RETURN_IF_ERROR(SetXattrs(e, fd, dirfd));
    if (!link) {
      int r = fd >= 0 ? ::fchmod(fd, a.mode & 07777)
                      : ::fchmodat(dirfd, e.name.c_str(), a.mode & 07777, 0);
      if (r != 0) return ErrnoToStatus(errno, "chmod");
    }
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(a.mtime);
    ts[0].tv_nsec = ts[1].tv_nsec = a.mtime_nsec < 1000000000 ? a.mtime_nsec : 0;
    int r = fd >= 0 ? ::futimens(fd, ts)
                    : ::utimensat(dirfd, e.name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
    if (r != 0) return ErrnoToStatus(errno, "set times");
    return Status::Ok();
  }

  Status WriteFile(const meta::WalkEntry& e, int fd) {
    const uint64_t size = e.attr.size;
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return ErrnoToStatus(errno, "truncate");
    for (uint64_t off = 0; off < size; off += kPiece) {
      ASSIGN_OR_RETURN(auto data, image_.ReadFile(e.ino, off, kPiece));
      // Leave all-zero runs as holes (the file was sized by ftruncate).
      constexpr size_t kRun = 64 << 10;
      for (size_t p = 0; p < data.size(); p += kRun) {
        const size_t n = std::min(kRun, data.size() - p);
        if (AllZero(data.data() + p, n)) continue;
        size_t done = 0;
        while (done < n) {
          ssize_t w = ::pwrite(fd, data.data() + p + done, n - done,
                               static_cast<off_t>(off + p + done));
          if (w < 0) {
            if (errno == EINTR) continue;
            return ErrnoToStatus(errno, "write");
          }
          done += static_cast<size_t>(w);
        }
      }
      report_.bytes += data.size();
    }
    return Status::Ok();
  }

  Status Visit(const meta::WalkEntry& e) {
    if (e.depth == 0) {
      ++report_.directories;
      return Status::Ok();  // the target itself
    }
    dirs_.resize(e.depth);  // close directories we have left
    const int parent = ParentFd(e);
    const char* name = e.name.c_str();
    const uint32_t type = e.attr.mode & S_IFMT;
    switch (type) {
      case S_IFDIR: {
        if (::mkdirat(parent, name, 0700) != 0) return ErrnoToStatus(errno, "mkdir");
        int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return ErrnoToStatus(errno, "open directory");
        dirs_.emplace_back(fd);
        ++report_.directories;
        return Status::Ok();  // attributes when the directory is left
      }
      case S_IFREG: {
        if (e.attr.nlink > 1) {
          auto it = first_name_.find(e.ino);
          if (it != first_name_.end()) {
            if (::linkat(dirs_[0].get(), it->second.c_str(), parent, name, 0) != 0) {
              return ErrnoToStatus(errno, "link to " + it->second);
            }
            ++report_.hardlinks;
            return Status::Ok();
          }
          first_name_[e.ino] = e.path.substr(1);
        }
        int fd = ::openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                          0600);
        if (fd < 0) return ErrnoToStatus(errno, "create");
        UniqueFd file(fd);
        ++report_.files;
        RETURN_IF_ERROR(WriteFile(e, fd));
        return SetAttrs(e, fd, parent);
      }
      case S_IFLNK: {
        ASSIGN_OR_RETURN(std::string target, meta_.ReadLink(e.ino));
        if (target.find('\0') != std::string::npos) {
          return base::DataLossError("symlink target contains a NUL byte");
        }
        if (::symlinkat(target.c_str(), parent, name) != 0) return ErrnoToStatus(errno, "symlink");
        ++report_.symlinks;
        return SetAttrs(e, -1, parent);
      }
      default: {
        const bool device = type == S_IFCHR || type == S_IFBLK;
        if (device && (!options_.create_devices || !is_root_)) {
          ++report_.skipped_devices;
          return Status::Ok();
        }
        if (::mknodat(parent, name, type | 0600, device ? e.attr.rdev : 0) != 0) {
          return ErrnoToStatus(errno, "mknod");
        }
        ++report_.specials;
        return SetAttrs(e, -1, parent);
      }
    }
  }

  Status LeaveDir(const meta::WalkEntry& e) {
    // The directory being left is the last open one.
    const int fd = dirs_[e.depth].get();
    RETURN_IF_ERROR(SetAttrs(e, fd, -1));
    dirs_.resize(e.depth);
    return Status::Ok();
  }

  const Image& image_;
  const meta::Metadata& meta_;
  ExtractOptions options_;
  bool is_root_ = false;
  std::vector<UniqueFd> dirs_;  // open directory fds by depth
  std::map<uint64_t, std::string> first_name_;  // hard-linked ino -> path relative to target
  ExtractReport report_;
};

}  // namespace

Result<ExtractReport> ExtractImage(const Image& image, const std::string& target,
                                   const ExtractOptions& options) {
  Extractor x(image, options);
  return x.Run(target);
}

}  // namespace rfs::rafs::fs
