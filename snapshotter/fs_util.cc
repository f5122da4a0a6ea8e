#include "snapshotter/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>
#include <vector>

#include "base/mountinfo.h"
#include "base/unique_fd.h"

namespace rfs::snapshotter {

using base::ErrnoToStatus;
using base::Result;
using base::Status;
using base::UniqueFd;

namespace {

// Names in the directory open at `dir_fd` (consumes a dup of it).
Result<std::vector<std::string>> ListNames(int dir_fd, const std::string& what) {
  int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return ErrnoToStatus(errno, "dup " + what);
  DIR* d = ::fdopendir(dup_fd);
  if (d == nullptr) {
    int err = errno;
    ::close(dup_fd);
    return ErrnoToStatus(err, "fdopendir " + what);
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoToStatus(err, "readdir " + what);
  return names;
}

struct DuState {
  std::set<std::pair<dev_t, ino_t>> seen;
  Usage usage;
};

void Account(const struct stat& st, DuState* s) {
  if (st.st_nlink > 1 && !S_ISDIR(st.st_mode)) {
    if (!s->seen.insert({st.st_dev, st.st_ino}).second) return;
  }
  s->usage.size_bytes += static_cast<int64_t>(st.st_blocks) * 512;
  s->usage.inodes += 1;
}

Status DuDir(int dir_fd, const std::string& path, int depth, DuState* s) {
  if (depth > 4096) return base::FailedPreconditionError("disk usage of ", path, ": tree too deep");
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_fd, path));
  for (const std::string& n : names) {
    struct stat st;
    if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile (a live upper dir)
      return ErrnoToStatus(errno, "stat " + path + "/" + n);
    }
    Account(st, s);
    if (S_ISDIR(st.st_mode)) {
      UniqueFd child(::openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child) {
        if (errno == ENOENT) continue;
        return ErrnoToStatus(errno, "open " + path + "/" + n);
      }
      RETURN_IF_ERROR(DuDir(child.get(), path + "/" + n, depth + 1, s));
    }
  }
  return Status::Ok();
}

Status RemoveChildren(int dir_fd, dev_t dev, const std::string& path, int depth) {
  if (depth > 4096) return base::FailedPreconditionError("remove ", path, ": tree too deep");
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_fd, path));
  Status first_error;
  for (const std::string& n : names) {
    std::string child_path = path + "/" + n;
    if (::unlinkat(dir_fd, n.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR) {
      if (first_error.ok()) first_error = ErrnoToStatus(errno, "unlink " + child_path);
      continue;
    }
    UniqueFd child(::openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) {
      if (errno == ENOENT) continue;
      if (first_error.ok()) first_error = ErrnoToStatus(errno, "open " + child_path);
      continue;
    }
    struct stat st;
    if (::fstat(child.get(), &st) != 0) {
      if (first_error.ok()) first_error = ErrnoToStatus(errno, "stat " + child_path);
      continue;
    }
    if (st.st_dev != dev) {
      if (first_error.ok()) {
        first_error =
            base::FailedPreconditionError("remove ", child_path, ": a mount point, not entered");
      }
      continue;
    }
    Status s = RemoveChildren(child.get(), dev, child_path, depth + 1);
    if (!s.ok()) {
      if (first_error.ok()) first_error = s;
      continue;
    }
    if (::unlinkat(dir_fd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      if (first_error.ok()) first_error = ErrnoToStatus(errno, "rmdir " + child_path);
    }
  }
  return first_error;
}

}  // namespace

Result<Usage> DiskUsage(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
  DuState s;
  Account(st, &s);
  if (S_ISDIR(st.st_mode)) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return ErrnoToStatus(errno, "open " + path);
    RETURN_IF_ERROR(DuDir(fd.get(), path, 0, &s));
  }
  return s.usage;
}

Status RemoveTree(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  if (errno != EISDIR) return ErrnoToStatus(errno, "unlink " + path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoToStatus(errno, "open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
  RETURN_IF_ERROR(RemoveChildren(fd.get(), st.st_dev, path, 0));
  fd.Reset();
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return ErrnoToStatus(errno, "rmdir " + path);
  return Status::Ok();
}

Result<std::vector<std::string>> ListDirectory(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "opendir " + path);
  UniqueFd dir(fd);
  return ListNames(dir.get(), path);
}

base::Status DetachMountsUnder(const std::string& path, const std::string& type) {
  std::vector<std::string> found;
  for (const base::MountEntry& e : base::ReadMountTable()) {
    if (e.fstype != type) continue;
    if (e.mountpoint == path || e.mountpoint.rfind(path + "/", 0) == 0) {
      found.push_back(e.mountpoint);
    }
  }
  // Deepest first.
  std::sort(found.begin(), found.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  base::Status first;
  for (const std::string& mp : found) {
    if (::umount2(mp.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      base::Status s = base::ErrnoToStatus(errno, "umount " + mp);
      if (first.ok()) first = s;
    }
  }
  return first;
}

}  // namespace rfs::snapshotter
