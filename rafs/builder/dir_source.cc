#include "rafs/builder/dir_source.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "rafs/builder/xattr.h"

namespace rfs::rafs::builder {
namespace {

base::Status LoadXattrs(const std::string& path, Node* n) {
  std::vector<char> names;
  for (;;) {
    ssize_t len = llistxattr(path.c_str(), nullptr, 0);
    if (len < 0) {
      if (errno == ENOTSUP) return base::Status::Ok();
      return base::ErrnoToStatus(errno, "llistxattr " + path);
    }
    if (len == 0) return base::Status::Ok();
    names.resize(static_cast<size_t>(len));
    len = llistxattr(path.c_str(), names.data(), names.size());
    if (len < 0 && errno == ERANGE) continue;
    if (len < 0) return base::ErrnoToStatus(errno, "llistxattr " + path);
    names.resize(static_cast<size_t>(len));
    break;
  }
  size_t pos = 0;
  while (pos < names.size()) {
    std::string name(names.data() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    std::string value;
    for (;;) {
      ssize_t vlen = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (vlen < 0 && errno == ENODATA) break;
      if (vlen < 0) return base::ErrnoToStatus(errno, "lgetxattr " + path + " " + name);
      value.resize(static_cast<size_t>(vlen));
      vlen = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      if (vlen < 0 && errno == ERANGE) continue;
      if (vlen < 0) return base::ErrnoToStatus(errno, "lgetxattr " + path + " " + name);
      value.resize(static_cast<size_t>(vlen));
      break;
    }
    RETURN_IF_ERROR(CheckXattr(name, value).WithContext(path));
    n->xattrs.push_back(Xattr{std::move(name), std::move(value)});
  }
  std::sort(n->xattrs.begin(), n->xattrs.end(),
            [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return base::Status::Ok();
}

base::Status FillNode(const std::string& path, const struct stat& st, Node* n) {
  n->mode = st.st_mode;
  n->uid = st.st_uid;
  n->gid = st.st_gid;
  n->mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  n->mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  if (S_ISREG(st.st_mode)) {
    n->size = static_cast<uint64_t>(st.st_size);
    n->source_path = path;
    if (st.st_nlink > 1) {
      // dev and ino packed; collisions would need two devices with equal
      // low bits and inode numbers, so keep the full ino and mix the dev.
      n->link_key = (static_cast<uint64_t>(st.st_ino) * 0x9E3779B97F4A7C15ull) ^
                    static_cast<uint64_t>(st.st_dev) ^ 1;
      if (n->link_key == 0) n->link_key = 1;
    }
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(4097, '\0');
    ssize_t len = readlink(path.c_str(), target.data(), target.size());
    if (len < 0) return base::ErrnoToStatus(errno, "readlink " + path);
    if (len == 0 || len > 4096) {
      return base::InvalidArgumentError("symlink ", path, ": target length ", len,
                                        " outside 1..4096");
    }
    target.resize(static_cast<size_t>(len));
    n->symlink = std::move(target);
    n->size = n->symlink.size();
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    n->rdev_major = major(st.st_rdev);
    n->rdev_minor = minor(st.st_rdev);
  }
  return LoadXattrs(path, n);
}

}  // namespace

base::Result<std::unique_ptr<Node>> LoadDirectory(const std::string& dir) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return base::ErrnoToStatus(errno, "lstat " + dir);
  if (!S_ISDIR(st.st_mode)) return base::InvalidArgumentError("source ", dir, ": not a directory");
  auto root = std::make_unique<Node>();
  root->name = "/";
  RETURN_IF_ERROR(FillNode(dir, st, root.get()));

  // Iterative walk; each stack entry is (directory node, its path).
  std::vector<std::pair<Node*, std::string>> stack{{root.get(), dir}};
  std::vector<std::string> names;
  while (!stack.empty()) {
    auto [node, path] = stack.back();
    stack.pop_back();
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return base::ErrnoToStatus(errno, "opendir " + path);
    names.clear();
    errno = 0;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      names.push_back(std::move(name));
    }
    int err = errno;
    closedir(d);
    if (err != 0) return base::ErrnoToStatus(err, "readdir " + path);
    std::sort(names.begin(), names.end());
    node->children.reserve(names.size());
    for (auto& name : names) {
      if (name.size() > 255) {
        return base::InvalidArgumentError("entry ", path, "/", name.substr(0, 32),
                                          "...: name length ", name.size(), " above 255");
      }
      std::string child_path = path + "/" + name;
      struct stat cst;
      if (lstat(child_path.c_str(), &cst) != 0) {
        return base::ErrnoToStatus(errno, "lstat " + child_path);
      }
      auto child = std::make_unique<Node>();
      child->name = name;
      child->parent = node;
      RETURN_IF_ERROR(FillNode(child_path, cst, child.get()));
      Node* raw = child.get();
      node->children.push_back(std::move(child));
      if (S_ISDIR(cst.st_mode)) stack.emplace_back(raw, std::move(child_path));
    }
  }
  FinalizeTree(root.get());
  return root;
}

}  // namespace rfs::rafs::builder
