#include "test/support/tree_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "rafs/meta/walk.h"
#include "test/support/test_util.h"

namespace rfs::testing {

namespace {

struct Node {
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  uint64_t mtime = 0;
  uint32_t nsec = 0;
  uint32_t nlink = 0;
  uint64_t rdev = 0;
  std::string symlink;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::string content_md5;
  uint64_t group = 0;  // hard-link group key (inode identity)
  std::string group_leader;
};

using Tree = std::map<std::string, Node>;

void AssignLeaders(Tree* t) {
  std::map<uint64_t, std::string> leader;
  for (auto& [path, n] : *t) {
    if (!S_ISREG(n.mode)) continue;
    auto it = leader.find(n.group);
    if (it == leader.end()) leader[n.group] = path;  // map iterates in path order
  }
  for (auto& [path, n] : *t) {
    if (S_ISREG(n.mode)) n.group_leader = leader[n.group];
  }
}

Tree FromImage(const rafs::fs::Image& image, const CompareOptions& o,
               std::vector<std::string>* diffs) {
  Tree t;
  const auto& m = image.metadata();
  rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const rafs::meta::WalkEntry& e) -> base::Status {
    Node n;
    n.mode = e.attr.mode;
    n.uid = e.attr.uid;
    n.gid = e.attr.gid;
    n.size = S_ISDIR(e.attr.mode) ? 0 : e.attr.size;
    n.mtime = e.attr.mtime;
    n.nsec = e.attr.mtime_nsec;
    n.nlink = e.attr.nlink;
    n.rdev = e.attr.rdev;
    n.group = e.ino;
    if (S_ISLNK(e.attr.mode)) {
      ASSIGN_OR_RETURN(n.symlink, m.ReadLink(e.ino));
    }
    ASSIGN_OR_RETURN(n.xattrs, m.GetXattrs(e.ino));
    std::sort(n.xattrs.begin(), n.xattrs.end());
    if (S_ISREG(e.attr.mode) && o.contents) {
      ASSIGN_OR_RETURN(auto data, image.ReadFile(e.ino, 0, e.attr.size));
      n.content_md5 = Md5Hex(data);
    }
    t[e.path] = std::move(n);
    return base::Status::Ok();
  };
  base::Status s = rafs::meta::WalkTree(m, "/", cb);
  if (!s.ok()) diffs->push_back("image walk failed: " + s.ToString());
  AssignLeaders(&t);
  return t;
}

void ScanDir(const std::string& root, const std::string& rel, const CompareOptions& o, Tree* t) {
  const std::string full = rel == "/" ? root : root + rel;
  struct stat st;
  if (::lstat(full.c_str(), &st) != 0) return;
  Node n;
  n.mode = st.st_mode;
  n.uid = st.st_uid;
  n.gid = st.st_gid;
  n.size = S_ISDIR(st.st_mode) ? 0 : static_cast<uint64_t>(st.st_size);
  n.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  n.nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  n.nlink = static_cast<uint32_t>(st.st_nlink);
  n.rdev = (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? st.st_rdev : 0;
  n.group = st.st_ino;
  if (S_ISLNK(st.st_mode)) {
    std::string buf(8192, '\0');
    ssize_t len = ::readlink(full.c_str(), buf.data(), buf.size());
    if (len >= 0) n.symlink.assign(buf.data(), static_cast<size_t>(len));
  }
  char names[65536];
  ssize_t nl = ::llistxattr(full.c_str(), names, sizeof(names));
  for (ssize_t p = 0; nl > 0 && p < nl;) {
    std::string name(names + p);
    p += static_cast<ssize_t>(name.size()) + 1;
    if (std::find(o.ignore_xattrs.begin(), o.ignore_xattrs.end(), name) != o.ignore_xattrs.end()) {
      continue;
    }
    std::string value(65536, '\0');
    ssize_t vl = ::lgetxattr(full.c_str(), name.c_str(), value.data(), value.size());
    if (vl >= 0) {
      value.resize(static_cast<size_t>(vl));
      n.xattrs.emplace_back(name, value);
    }
  }
  std::sort(n.xattrs.begin(), n.xattrs.end());
  if (S_ISREG(st.st_mode) && o.contents) n.content_md5 = Md5Hex(ReadFileBytes(full));
  (*t)[rel] = n;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = ::opendir(full.c_str());
    if (d == nullptr) return;
    std::vector<std::string> kids;
    while (struct dirent* de = ::readdir(d)) {
      std::string name = de->d_name;
      if (name != "." && name != "..") kids.push_back(name);
    }
    ::closedir(d);
    for (const auto& k : kids) ScanDir(root, (rel == "/" ? "" : rel) + "/" + k, o, t);
  }
}

Tree FromTree(const std::vector<TreeEntry>& entries, const CompareOptions& o) {
  Tree t;
  std::map<std::string, std::string> link_target;  // path -> first name
  uint64_t next_group = 1;
  std::map<std::string, uint64_t> group_of;
  auto ensure_parents = [&](const std::string& path) {
    for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      std::string parent = path.substr(0, pos);
      if (!t.count(parent)) {
        Node n;
        n.mode = S_IFDIR | 0755;
        t[parent] = n;
      }
    }
    if (!t.count("/")) {
      Node n;
      n.mode = S_IFDIR | 0755;
      t["/"] = n;
    }
  };
  for (const TreeEntry& e : entries) {
    ensure_parents(e.path);
    Node n;
    n.mode = e.mode;
    n.uid = e.uid;
    n.gid = e.gid;
    n.mtime = e.mtime;
    n.nsec = e.mtime_nsec;
    n.xattrs = e.xattrs;
    std::sort(n.xattrs.begin(), n.xattrs.end());
    if (S_ISLNK(e.mode)) {
      n.symlink = e.symlink_target;
      n.size = e.symlink_target.size();
    }
    if (S_ISCHR(e.mode) || S_ISBLK(e.mode)) n.rdev = e.rdev;
    if (S_ISREG(e.mode)) {
      if (!e.hardlink_to.empty() && t.count(e.hardlink_to)) {
        const Node& first = t[e.hardlink_to];
        n = first;
        n.group = group_of[e.hardlink_to];
      } else {
        n.size = e.data.size();
        if (o.contents) {
          n.content_md5 = Md5Hex(std::vector<uint8_t>(e.data.begin(), e.data.end()));
        }
        n.group = next_group++;
      }
      group_of[e.path] = n.group;
    }
    t[e.path] = n;
  }
  // nlink: files = names per group, directories = 2 + subdirectories.
  std::map<uint64_t, uint32_t> names;
  for (auto& [p, n] : t) {
    if (S_ISREG(n.mode)) ++names[n.group];
  }
  for (auto& [p, n] : t) {
    if (S_ISREG(n.mode)) {
      n.nlink = names[n.group];
    } else if (S_ISDIR(n.mode)) {
      n.nlink = 2;
    } else {
      n.nlink = 1;
    }
  }
  for (auto& [p, n] : t) {
    if (p == "/" || !S_ISDIR(n.mode)) continue;
    std::string parent = p.substr(0, p.find_last_of('/'));
    if (parent.empty()) parent = "/";
    ++t[parent].nlink;
  }
  AssignLeaders(&t);
  return t;
}

std::string FmtXattrs(const std::vector<std::pair<std::string, std::string>>& x) {
  std::ostringstream os;
  for (const auto& [k, v] : x) os << k << "=" << v.size() << "B;";
  return os.str();
}

std::vector<std::string> Diff(const Tree& img, const Tree& want, const CompareOptions& o,
                              std::vector<std::string> diffs) {
  for (const auto& [path, w] : want) {
    auto it = img.find(path);
    if (it == img.end()) {
      diffs.push_back(path + ": missing from the image");
      continue;
    }
    const Node& g = it->second;
    const std::string& where = path;  // clang 14 cannot capture structured bindings
    auto d = [&](const std::string& what, const auto& got, const auto& expect) {
      if (!(got == expect)) {
        std::ostringstream os;
        os << where << ": " << what << " is " << got << ", expected " << expect;
        diffs.push_back(os.str());
      }
    };
    d("mode", g.mode, w.mode);
    if (o.owners) {
      d("uid", g.uid, w.uid);
      d("gid", g.gid, w.gid);
    }
    if (!S_ISDIR(w.mode)) d("size", g.size, w.size);
    if (o.mtime) {
      d("mtime", g.mtime, w.mtime);
      d("mtime nsec", g.nsec, w.nsec);
    }
    if (!S_ISDIR(w.mode) || o.dir_nlink) d("nlink", g.nlink, w.nlink);
    d("rdev", g.rdev, w.rdev);
    d("symlink", g.symlink, w.symlink);
    d("xattrs", FmtXattrs(g.xattrs), FmtXattrs(w.xattrs));
    if (g.xattrs != w.xattrs && FmtXattrs(g.xattrs) == FmtXattrs(w.xattrs)) {
      diffs.push_back(path + ": xattr values differ");
    }
    d("content md5", g.content_md5, w.content_md5);
    d("hard-link group", g.group_leader, w.group_leader);
  }
  for (const auto& [path, g] : img) {
    if (!want.count(path)) diffs.push_back(path + ": in the image but not expected");
  }
  return diffs;
}

}  // namespace

std::vector<std::string> CompareImageWithDirectory(const rafs::fs::Image& image,
                                                   const std::string& dir,
                                                   const CompareOptions& options) {
  std::vector<std::string> diffs;
  Tree img = FromImage(image, options, &diffs);
  Tree want;
  ScanDir(dir, "/", options, &want);
  AssignLeaders(&want);
  return Diff(img, want, options, std::move(diffs));
}

std::vector<std::string> CompareImageWithTree(const rafs::fs::Image& image,
                                              const std::vector<TreeEntry>& tree,
                                              const CompareOptions& options) {
  std::vector<std::string> diffs;
  Tree img = FromImage(image, options, &diffs);
  Tree want = FromTree(tree, options);
  return Diff(img, want, options, std::move(diffs));
}

}  // namespace rfs::testing
