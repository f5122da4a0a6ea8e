#include "test/support/dir_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <cstring>
#include <sstream>

namespace rfs::testing {
namespace {

struct Entry {
  struct stat st {};
  std::string target;
  std::map<std::string, std::string> xattrs;
};

void ListTree(const std::string& root, const std::string& rel, std::map<std::string, Entry>* out,
              std::vector<std::string>* errors) {
  const std::string path = rel.empty() ? root : root + "/" + rel;
  Entry e;
  if (::lstat(path.c_str(), &e.st) != 0) {
    errors->push_back("lstat " + path + " failed");
    return;
  }
  if (S_ISLNK(e.st.st_mode)) {
    std::string buf(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n >= 0) e.target.assign(buf.data(), static_cast<size_t>(n));
  }
  ssize_t len = ::llistxattr(path.c_str(), nullptr, 0);
  if (len > 0) {
    std::string names(static_cast<size_t>(len), '\0');
    len = ::llistxattr(path.c_str(), names.data(), names.size());
    for (size_t i = 0; len > 0 && i < static_cast<size_t>(len);) {
      std::string name(names.c_str() + i);
      i += name.size() + 1;
      ssize_t vl = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      std::string v(vl > 0 ? static_cast<size_t>(vl) : 0, '\0');
      if (vl > 0) vl = ::lgetxattr(path.c_str(), name.c_str(), v.data(), v.size());
      e.xattrs[name] = v;
    }
  }
  const bool dir = S_ISDIR(e.st.st_mode);
  (*out)[rel.empty() ? "/" : "/" + rel] = e;
  if (!dir) return;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    errors->push_back("opendir " + path + " failed");
    return;
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) ListTree(root, rel.empty() ? n : rel + "/" + n, out, errors);
}

bool SameContents(const std::string& a, const std::string& b) {
  int fa = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
  int fb = ::open(b.c_str(), O_RDONLY | O_CLOEXEC);
  bool same = fa >= 0 && fb >= 0;
  std::string ba(1 << 16, '\0'), bb(1 << 16, '\0');
  while (same) {
    ssize_t na = ::read(fa, ba.data(), ba.size());
    ssize_t nb = na >= 0 ? ::read(fb, bb.data(), static_cast<size_t>(na)) : -1;
    // A short read on one side: read the rest of the block.
    while (nb >= 0 && nb < na) {
      ssize_t more = ::read(fb, bb.data() + nb, static_cast<size_t>(na - nb));
      if (more <= 0) break;
      nb += more;
    }
    if (na < 0 || nb != na || std::memcmp(ba.data(), bb.data(), static_cast<size_t>(na)) != 0) {
      same = false;
    }
    if (na == 0) break;
  }
  if (same) {
    char c;
    same = ::read(fb, &c, 1) == 0;
  }
  if (fa >= 0) ::close(fa);
  if (fb >= 0) ::close(fb);
  return same;
}

}  // namespace

std::vector<std::string> CompareDirectories(const std::string& a, const std::string& b,
                                            const DirCompareOptions& o) {
  std::vector<std::string> diffs;
  std::map<std::string, Entry> ta, tb;
  ListTree(a, "", &ta, &diffs);
  ListTree(b, "", &tb, &diffs);
  for (const auto& [p, e] : ta) {
    if (!tb.count(p)) diffs.push_back(p + ": only in " + a);
  }
  for (const auto& [p, e] : tb) {
    if (!ta.count(p)) diffs.push_back(p + ": only in " + b);
  }
  // Hard-link groups: paths sharing an inode on one side must share on the other.
  std::map<ino_t, std::string> first_a, first_b;
  for (const auto& [p, ea] : ta) {
    auto it = tb.find(p);
    if (it == tb.end()) continue;
    const Entry& eb = it->second;
    std::ostringstream d;
    auto field = [&](const char* name, auto va, auto vb) {
      if (va != vb) d << " " << name << " " << va << " != " << vb;
    };
    const bool dir = S_ISDIR(ea.st.st_mode);
    field("mode", ea.st.st_mode, eb.st.st_mode);
    if (o.owners) {
      field("uid", ea.st.st_uid, eb.st.st_uid);
      field("gid", ea.st.st_gid, eb.st.st_gid);
    }
    if (!dir || o.dir_size) field("size", ea.st.st_size, eb.st.st_size);
    if (!dir || o.dir_nlink) field("nlink", ea.st.st_nlink, eb.st.st_nlink);
    if (o.blocks) field("blocks", ea.st.st_blocks, eb.st.st_blocks);
    if (S_ISCHR(ea.st.st_mode) || S_ISBLK(ea.st.st_mode)) field("rdev", ea.st.st_rdev, eb.st.st_rdev);
    if (o.mtime) {
      field("mtime", ea.st.st_mtim.tv_sec, eb.st.st_mtim.tv_sec);
      field("mtime_nsec", ea.st.st_mtim.tv_nsec, eb.st.st_mtim.tv_nsec);
    }
    if (o.inode_numbers && p != "/") field("ino", ea.st.st_ino, eb.st.st_ino);
    if (ea.target != eb.target) d << " symlink '" << ea.target << "' != '" << eb.target << "'";
    auto xa = ea.xattrs, xb = eb.xattrs;
    for (const auto& ign : o.ignore_xattrs) {
      xa.erase(ign);
      xb.erase(ign);
    }
    if (xa != xb) d << " xattrs differ (" << xa.size() << " vs " << xb.size() << ")";
    if (S_ISREG(ea.st.st_mode) && S_ISREG(eb.st.st_mode)) {
      if (o.contents && ea.st.st_size == eb.st.st_size &&
          !SameContents(a + (p == "/" ? "" : p), b + (p == "/" ? "" : p))) {
        d << " contents differ";
      }
      if (ea.st.st_nlink > 1) {
        auto [ia, new_a] = first_a.emplace(ea.st.st_ino, p);
        auto [ib, new_b] = first_b.emplace(eb.st.st_ino, p);
        if (ia->second != ib->second) {
          d << " hard link to " << ia->second << " vs " << ib->second;
        }
      }
    }
    if (!d.str().empty()) diffs.push_back(p + ":" + d.str());
  }
  return diffs;
}

}  // namespace rfs::testing
