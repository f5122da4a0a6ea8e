// Self-test of the test-only RAFS writer. Without using the project's reader
// it checks: byte-level invariants of the bootstrap and blob (spec §3, §6),
// that stock erofs-utils (fsck.erofs 1.5) accepts v6 images and extracts the
// exact source tree, and, as root, that the kernel EROFS driver mounts them
// (blobs as extra devices, and flattened into one device via mapped_blkaddr)
// with the same tree, xattrs and hardlinks. v5 images are checked by a small
// record walker in this file.
#include "test/support/rafs_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "storage/codec.h"

namespace rfs::testing {
namespace {

using base::ByteSpan;
using base::LoadLe16;
using base::LoadLe32;
using base::LoadLe64;
using storage::Compressor;

// ---------------------------------------------------------------------------
// Environment helpers.

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/rafs_writer_test.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

// Runs `cmd` through the shell; returns the exit code and stdout+stderr.
int Run(const std::string& cmd, std::string* output = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* f = popen(full.c_str(), "r");
  if (f == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  int status = pclose(f);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool WriteBytes(const std::string& path, ByteSpan bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

bool HaveFsckErofs() { return access("/usr/bin/fsck.erofs", X_OK) == 0; }

// ---------------------------------------------------------------------------
// Sample trees.

TreeEntry Dir(std::string path, uint32_t perm = 0755) {
  TreeEntry e;
  e.path = std::move(path);
  e.mode = S_IFDIR | perm;
  e.mtime = 1600000000;
  e.mtime_nsec = 123;
  return e;
}

TreeEntry File(std::string path, std::string data, uint32_t perm = 0644) {
  TreeEntry e;
  e.path = std::move(path);
  e.mode = S_IFREG | perm;
  e.data = std::move(data);
  e.mtime = 1650000000;
  e.mtime_nsec = 987654321;
  return e;
}

TreeEntry Symlink(std::string path, std::string target) {
  TreeEntry e;
  e.path = std::move(path);
  e.mode = S_IFLNK | 0777;
  e.symlink_target = std::move(target);
  e.mtime = 1660000000;
  return e;
}

TreeEntry Special(std::string path, uint32_t type, uint64_t rdev) {
  TreeEntry e;
  e.path = std::move(path);
  e.mode = type | 0640;
  e.rdev = rdev;
  e.mtime = 1670000000;
  e.mtime_nsec = 5;
  return e;
}

TreeEntry Hardlink(std::string path, std::string target) {
  TreeEntry e;
  e.path = std::move(path);
  e.hardlink_to = std::move(target);
  return e;
}

std::string Text(size_t n, uint32_t seed) {
  std::string s;
  uint32_t x = seed;
  while (s.size() < n) {
    x = x * 1103515245 + 12345;
    s += "line " + std::to_string((x >> 16) % 1000) + " of some compressible text\n";
  }
  s.resize(n);
  return s;
}

std::string Random(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string PosixAcl() {
  // Version 2, then (tag u16, perm u16, id u32) entries.
  std::string v;
  auto put = [&v](uint32_t x, int bytes) {
    for (int i = 0; i < bytes; ++i) v.push_back(static_cast<char>(x >> (8 * i)));
  };
  put(2, 4);
  const uint32_t kAny = 0xFFFFFFFF;
  put(0x01, 2), put(6, 2), put(kAny, 4);  // USER_OBJ rw-
  put(0x02, 2), put(4, 2), put(1000, 4);  // USER 1000 r--
  put(0x04, 2), put(4, 2), put(kAny, 4);  // GROUP_OBJ r--
  put(0x10, 2), put(4, 2), put(kAny, 4);  // MASK r--
  put(0x20, 2), put(4, 2), put(kAny, 4);  // OTHER r--
  return v;
}

std::vector<TreeEntry> SampleTree() {
  std::vector<TreeEntry> t;
  TreeEntry root = Dir("/");
  root.mtime = 1234;
  t.push_back(root);
  t.push_back(Dir("/etc"));
  TreeEntry passwd = File("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  t.push_back(passwd);
  t.push_back(File("/etc/copy_of_passwd", passwd.data));  // deduplicated chunk
  t.push_back(File("/empty", ""));
  TreeEntry sh = File("/bin/sh", Random(50000, 1), 04755);
  sh.uid = 1000;
  sh.gid = 2000;
  t.push_back(sh);
  t.push_back(File("/big", Text(3 * 1024 * 1024 + 123, 7)));
  std::string zeros(2 * 1024 * 1024 + 5000, '\0');
  zeros[1024 * 1024 + 17] = 'x';
  t.push_back(File("/zeros", zeros));
  t.push_back(File("/exact4k", Text(4096, 9)));
  // Hardlinks: three names, one inode.
  t.push_back(Dir("/hl"));
  TreeEntry hl = File("/hl/a", Text(10000, 3), 0600);
  hl.uid = 7;
  hl.gid = 8;
  hl.xattrs = {{"user.on_hardlink", "1"}};
  t.push_back(hl);
  t.push_back(Hardlink("/hl/b", "/hl/a"));
  t.push_back(Dir("/hl/sub"));
  t.push_back(Hardlink("/hl/sub/c", "/hl/a"));
  // Symlinks: inline, long inline, plain (4096 bytes).
  t.push_back(Symlink("/lnk", "etc/passwd"));
  t.push_back(Symlink("/lnk300", std::string(300, 'p')));
  t.push_back(Symlink("/lnk4000", "/" + std::string(3999, 'q')));
  // Linux cannot show targets over 4095 bytes; 4095 is still FLAT_PLAIN.
  t.push_back(Symlink("/lnk4095", "/" + std::string(4094, 'r')));
  // Special files.
  t.push_back(Dir("/dev"));
  t.push_back(Special("/dev/null", S_IFCHR, makedev(1, 3)));
  t.push_back(Special("/dev/big", S_IFCHR, makedev(300, 70000)));
  t.push_back(Special("/dev/sda1", S_IFBLK, makedev(8, 1)));
  t.push_back(Special("/dev/fifo", S_IFIFO, 0));
  t.push_back(Special("/dev/sock", S_IFSOCK, 0));
  // Xattrs.
  TreeEntry x = File("/xattrs", "has xattrs\n");
  x.xattrs = {{"user.a", "1"},
              {"trusted.empty", ""},
              {"security.big", std::string(1000, 'v')},
              {"user.zzz", "last"},
              {"system.posix_acl_access", PosixAcl()}};
  t.push_back(x);
  TreeEntry xd = Dir("/xdir", 01777);
  xd.xattrs = {{"user.dir", "d"}, {"trusted.overlay.opaque", "y"}};
  t.push_back(xd);
  TreeEntry xl = Symlink("/xdir/link", "../xattrs");
  xl.xattrs = {{"trusted.on_symlink", "s"}};
  t.push_back(xl);
  // A 400-entry multi-block directory with names sorting around ".".
  t.push_back(Dir("/many"));
  for (const char* n : {"-dash", " space", "#hash", "+plus", "...", ".hidden", "a.b", "~tilde"}) {
    t.push_back(File(std::string("/many/") + n, n));
  }
  for (int i = 0; i < 400; ++i) {
    std::string name = "entry_" + std::to_string(i) + std::string(static_cast<size_t>(i % 37), 'n');
    if (i % 50 == 0) {
      t.push_back(Dir("/many/" + name));
    } else {
      t.push_back(File("/many/" + name, std::to_string(i)));
    }
  }
  t.push_back(File("/many/" + std::string(255, 'L'), "long name"));
  // A directory whose one-block body does not fit next to its inode (FLAT_PLAIN).
  t.push_back(Dir("/plaindir"));
  for (int i = 0; i < 36; ++i) {
    char buf[8];
    snprintf(buf, sizeof(buf), "%03d", i);
    t.push_back(Special("/plaindir/" + std::string(buf) + std::string(97, 'f'), S_IFIFO, 0));
  }
  // Implicit parents and odd owners.
  TreeEntry deep = File("/implicit/deeper/file", "deep");
  deep.uid = 70000;  // too big for a compact inode
  deep.gid = 70001;
  t.push_back(deep);
  return t;
}

std::vector<TreeEntry> MetadataOnlyTree() {
  std::vector<TreeEntry> t;
  t.push_back(Dir("/"));
  t.push_back(Dir("/a"));
  t.push_back(Dir("/a/b"));
  t.push_back(File("/a/empty", ""));
  t.push_back(Symlink("/a/link", "b"));
  t.push_back(Special("/a/null", S_IFCHR, makedev(1, 3)));
  TreeEntry x = Dir("/x");
  x.xattrs = {{"user.k", "v"}};
  t.push_back(x);
  return t;
}

// ---------------------------------------------------------------------------
// Expected tree and comparison with a real directory.

struct Expect {
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  std::string data;
  std::string target;
  uint64_t rdev = 0;
  std::map<std::string, std::string> xattrs;
  std::string group;  // path of the first name of the inode
  std::set<std::string> children;
  uint32_t nlink = 1;
};

std::string Parent(const std::string& p) {
  size_t s = p.rfind('/');
  return s == 0 ? "/" : p.substr(0, s);
}
std::string Base(const std::string& p) { return p.substr(p.rfind('/') + 1); }

std::map<std::string, Expect> ExpectedTree(const std::vector<TreeEntry>& tree) {
  std::map<std::string, Expect> m;
  auto ensure_dir = [&m](std::string path, auto& self) -> void {
    if (m.count(path)) return;
    Expect e;
    e.mode = S_IFDIR | 0755;
    e.group = path;
    m[path] = e;
    if (path != "/") {
      self(Parent(path), self);
      m[Parent(path)].children.insert(Base(path));
    }
  };
  ensure_dir("/", ensure_dir);
  for (const TreeEntry& t : tree) {
    Expect e;
    if (!t.hardlink_to.empty()) {
      e = m[t.hardlink_to];
    } else {
      e.mode = t.mode;
      e.uid = t.uid;
      e.gid = t.gid;
      e.mtime = t.mtime;
      e.mtime_nsec = t.mtime_nsec;
      e.data = t.data;
      e.target = t.symlink_target;
      e.rdev = t.rdev;
      for (const auto& [k, v] : t.xattrs) e.xattrs[k] = v;
      e.group = t.path;
    }
    if (t.path != "/") {
      ensure_dir(Parent(t.path), ensure_dir);
      m[Parent(t.path)].children.insert(Base(t.path));
    }
    if (m.count(t.path)) e.children = m[t.path].children;
    m[t.path] = e;
  }
  std::map<std::string, uint32_t> names;
  for (const auto& [p, e] : m) names[e.group]++;
  for (auto& [p, e] : m) {
    if (S_ISDIR(e.mode)) {
      uint32_t subdirs = 0;
      for (const std::string& c : e.children) {
        subdirs += S_ISDIR(m[p == "/" ? "/" + c : p + "/" + c].mode) ? 1 : 0;
      }
      e.nlink = 2 + subdirs;
    } else {
      e.nlink = names[e.group];
    }
  }
  return m;
}

struct CompareOptions {
  bool owner = true;       // uid/gid stored (EXPLICIT_UID_GID)
  bool mtime = true;       // extended inodes: mtime stored
  bool dir_mtime = true;   // directory mtimes survive (not for fsck extraction)
  bool xattrs = false;     // compare xattrs (kernel mount only)
  bool inodes = false;     // hardlink names share st_ino, st_nlink matches
  bool root_attrs = true;  // the root's own attributes
  bool setid_bits = true;  // S_ISUID/S_ISGID of regular files survive
};

std::map<std::string, std::string> ListXattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t n = llistxattr(path.c_str(), nullptr, 0);
  if (n <= 0) return out;
  std::string names(static_cast<size_t>(n), '\0');
  n = llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return out;
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t len = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    std::string value(len > 0 ? static_cast<size_t>(len) : 0, '\0');
    if (len > 0) len = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    value.resize(len > 0 ? static_cast<size_t>(len) : 0);
    out[name] = value;
  }
  return out;
}

void CompareTree(const std::string& root, const std::vector<TreeEntry>& tree,
                 const CompareOptions& opts) {
  std::map<std::string, Expect> want = ExpectedTree(tree);
  std::map<std::string, ino_t> group_ino;
  int mismatches = 0;
  for (const auto& [path, e] : want) {
    if (mismatches > 20) {
      ADD_FAILURE() << "too many mismatches, stopping";
      return;
    }
    std::string full = path == "/" ? root : root + path;
    SCOPED_TRACE(path);
    struct stat st;
    if (lstat(full.c_str(), &st) != 0) {
      ADD_FAILURE() << "missing " << path << ": " << strerror(errno);
      ++mismatches;
      continue;
    }
    int before =
        ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
    EXPECT_EQ(st.st_mode & S_IFMT, e.mode & S_IFMT);
    bool is_root = path == "/";
    if (!is_root || opts.root_attrs) {
      if (!S_ISLNK(e.mode)) {
        uint32_t mask = opts.setid_bits || !S_ISREG(e.mode) ? 07777 : 01777;
        EXPECT_EQ(st.st_mode & mask, e.mode & mask) << std::oct;
      }
      if (opts.owner) {
        EXPECT_EQ(st.st_uid, e.uid);
        EXPECT_EQ(st.st_gid, e.gid);
      }
      bool check_time = opts.mtime && (!S_ISDIR(e.mode) || opts.dir_mtime) && !S_ISLNK(e.mode);
      if (check_time) {
        EXPECT_EQ(static_cast<uint64_t>(st.st_mtim.tv_sec), e.mtime);
        EXPECT_EQ(static_cast<uint32_t>(st.st_mtim.tv_nsec), e.mtime_nsec);
      }
    }
    if (S_ISREG(e.mode)) {
      EXPECT_EQ(static_cast<uint64_t>(st.st_size), e.data.size());
      std::string got;
      ASSERT_TRUE(ReadFile(full, &got));
      EXPECT_TRUE(got == e.data) << "contents differ (" << got.size() << " vs " << e.data.size()
                                 << " bytes)";
    } else if (S_ISLNK(e.mode)) {
      std::string buf(8192, '\0');
      ssize_t n = readlink(full.c_str(), buf.data(), buf.size());
      ASSERT_GE(n, 0);
      buf.resize(static_cast<size_t>(n));
      EXPECT_EQ(buf, e.target);
    } else if (S_ISCHR(e.mode) || S_ISBLK(e.mode)) {
      EXPECT_EQ(major(st.st_rdev), major(e.rdev));
      EXPECT_EQ(minor(st.st_rdev), minor(e.rdev));
    } else if (S_ISDIR(e.mode)) {
      std::set<std::string> got;
      DIR* d = opendir(full.c_str());
      ASSERT_NE(d, nullptr);
      while (struct dirent* de = readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") got.insert(n);
      }
      closedir(d);
      EXPECT_EQ(got, e.children);
    }
    if (opts.xattrs) {
      EXPECT_EQ(ListXattrs(full), e.xattrs);
    }
    if (opts.inodes) {
      EXPECT_EQ(st.st_nlink, e.nlink);
      auto [it, inserted] = group_ino.emplace(e.group, st.st_ino);
      if (!inserted) {
        EXPECT_EQ(st.st_ino, it->second) << "hardlink names must share the inode";
      }
    }
    int after =
        ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
    if (after != before) ++mismatches;
  }
  if (opts.inodes) {
    // Distinct inodes (groups) must have distinct inode numbers.
    std::set<ino_t> seen;
    for (const auto& [g, ino] : group_ino) EXPECT_TRUE(seen.insert(ino).second) << g;
  }
}

// ---------------------------------------------------------------------------
// Minimal decoding of what the writer produced (spec §3.2, §3.4, §6).

struct BlobEntry {
  std::string id;
  uint32_t index, chunk_size, chunk_count, compressor, digester, features;
  uint64_t compressed_size, uncompressed_size;
  uint32_t toc_size, ci_compressor;
  uint64_t ci_offset, ci_csize, ci_usize;
  base::Digest toc_digest;
};

std::vector<BlobEntry> BlobTable(const std::vector<uint8_t>& boot) {
  const uint8_t* ext = boot.data() + 1152;
  uint64_t off = LoadLe64(ext + 8);
  uint32_t size = LoadLe32(ext + 16);
  std::vector<BlobEntry> out;
  for (uint32_t k = 0; k < size / 256; ++k) {
    const uint8_t* e = boot.data() + off + 256 * k;
    BlobEntry b;
    b.id = std::string(reinterpret_cast<const char*>(e),
                       strnlen(reinterpret_cast<const char*>(e), 64));
    b.index = LoadLe32(e + 64);
    b.chunk_size = LoadLe32(e + 68);
    b.chunk_count = LoadLe32(e + 72);
    b.compressor = LoadLe32(e + 76);
    b.digester = LoadLe32(e + 80);
    b.features = LoadLe32(e + 84);
    b.compressed_size = LoadLe64(e + 88);
    b.uncompressed_size = LoadLe64(e + 96);
    b.toc_size = LoadLe32(e + 104);
    b.ci_compressor = LoadLe32(e + 108);
    b.ci_offset = LoadLe64(e + 112);
    b.ci_csize = LoadLe64(e + 120);
    b.ci_usize = LoadLe64(e + 128);
    std::memcpy(b.toc_digest.data(), e + 136, 32);
    out.push_back(b);
  }
  return out;
}

struct CiEntry {
  uint64_t uoff, usize, coff, csize;
  bool compressed;
  bool has_crc = false;  // v2 only
  uint32_t crc = 0;
};

// Checks the ci header against the table entry, decodes the ci array.
std::vector<CiEntry> DecodeCi(const BlobEntry& b, const std::vector<uint8_t>& blob) {
  std::vector<CiEntry> out;
  EXPECT_LE(b.ci_offset + b.ci_csize + 4096, blob.size());
  if (b.ci_offset + b.ci_csize + 4096 > blob.size()) return out;
  const uint8_t* h = blob.data() + b.ci_offset + b.ci_csize;
  EXPECT_EQ(LoadLe32(h), 0xB10BB10Bu);
  EXPECT_EQ(LoadLe32(h + 4092), 0xB10BB10Bu);
  EXPECT_EQ(LoadLe32(h + 4), b.features);
  EXPECT_EQ(LoadLe32(h + 8), b.ci_compressor);
  EXPECT_EQ(LoadLe32(h + 12), b.chunk_count);
  EXPECT_EQ(LoadLe64(h + 16), b.ci_offset);
  EXPECT_EQ(LoadLe64(h + 24), b.ci_csize);
  EXPECT_EQ(LoadLe64(h + 32), b.ci_usize);
  bool v2 = b.features & 0x4;
  EXPECT_EQ(b.ci_usize, (v2 ? 24ull : 16ull) * b.chunk_count);
  EXPECT_LE(b.ci_csize, b.ci_usize);
  std::vector<uint8_t> ci(b.ci_usize);
  base::Status st = storage::Decompress(static_cast<Compressor>(b.ci_compressor),
                                        ByteSpan(blob.data() + b.ci_offset, b.ci_csize), ci);
  EXPECT_TRUE(st.ok()) << st;
  if (!st.ok()) return out;
  for (uint32_t k = 0; k < b.chunk_count; ++k) {
    CiEntry c;
    if (v2) {
      const uint8_t* p = ci.data() + 24 * k;
      uint64_t w0 = LoadLe64(p), w1 = LoadLe64(p + 8);
      c.uoff = (w0 & 0xFFFFFFFF) << 12;
      c.usize = ((w0 >> 32) & 0xFFFFFF) + 1;
      c.compressed = (w0 >> 56) & 1;
      c.has_crc = (w0 >> 56) & 0x10;
      c.crc = static_cast<uint32_t>(LoadLe64(p + 16));
      EXPECT_EQ((w0 >> 56) & ~0x11ull, 0u) << "unexpected v2 ci flags";
      c.coff = w1 & 0xFFFFFFFFFFull;
      c.csize = w1 >> 40;
    } else {
      const uint8_t* p = ci.data() + 16 * k;
      uint64_t w0 = LoadLe64(p), w1 = LoadLe64(p + 8);
      c.uoff = w0 & 0xFFFFFFFF000ull;
      c.usize = (((w0 >> 8) & 0xF) << 20 | (w0 >> 44)) + 1;
      c.coff = w1 & 0xFFFFFFFFFFull;
      c.csize = (((w1 >> 40) & 0xF) << 20 | (w1 >> 44)) + 1;
      c.compressed = c.csize != c.usize;
    }
    out.push_back(c);
  }
  return out;
}

// The blob's uncompressed address space (what EROFS sees as the device).
std::vector<uint8_t> DeviceImage(const BlobEntry& b, const std::vector<uint8_t>& blob,
                                 std::vector<base::Digest>* digests) {
  std::vector<uint8_t> img(b.uncompressed_size, 0);
  Compressor algo = static_cast<Compressor>(b.compressor);
  for (const CiEntry& c : DecodeCi(b, blob)) {
    EXPECT_EQ(c.uoff % 4096, 0u);
    EXPECT_LE(c.uoff + c.usize, img.size());
    EXPECT_LE(c.coff + c.csize, blob.size());
    if (c.uoff + c.usize > img.size() || c.coff + c.csize > blob.size()) break;
    if (c.compressed) {
      EXPECT_LT(c.csize, c.usize);
    }
    ByteSpan src(blob.data() + c.coff, c.csize);
    base::MutableByteSpan dst(img.data() + c.uoff, c.usize);
    base::Status st = storage::Decompress(c.compressed ? algo : Compressor::kNone, src, dst);
    EXPECT_TRUE(st.ok()) << st;
    if (digests != nullptr) {
      digests->push_back(base::ComputeDigest(static_cast<base::DigestAlgo>(b.digester), dst));
    }
  }
  return img;
}

struct TarHeader {
  std::string name;
  uint64_t size = 0;
  bool checksum_ok = false;
};

TarHeader ParseTar(const uint8_t* h) {
  TarHeader t;
  t.name =
      std::string(reinterpret_cast<const char*>(h), strnlen(reinterpret_cast<const char*>(h), 100));
  t.size = strtoull(std::string(reinterpret_cast<const char*>(h + 124), 11).c_str(), nullptr, 8);
  uint32_t sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  uint32_t stored = static_cast<uint32_t>(
      strtoul(std::string(reinterpret_cast<const char*>(h + 148), 7).c_str(), nullptr, 8));
  t.checksum_ok =
      stored == sum && h[155] == 0 && h[156] == '0' && std::memcmp(h + 257, "ustar  \0", 8) == 0;
  return t;
}

struct TocEntryView {
  uint32_t flags;
  std::string name;
  base::Digest digest;
  uint64_t offset, csize, usize;
};

std::vector<TocEntryView> ParseToc(const std::vector<uint8_t>& blob) {
  std::vector<TocEntryView> out;
  TarHeader h = ParseTar(blob.data() + blob.size() - 512);
  EXPECT_EQ(h.name, "rafs.blob.toc");
  EXPECT_TRUE(h.checksum_ok);
  EXPECT_EQ(h.size % 128, 0u);
  const uint8_t* p = blob.data() + blob.size() - 512 - h.size;
  for (uint64_t k = 0; k < h.size / 128; ++k, p += 128) {
    TocEntryView e;
    e.flags = LoadLe32(p);
    e.name = std::string(reinterpret_cast<const char*>(p + 8),
                         strnlen(reinterpret_cast<const char*>(p + 8), 16));
    std::memcpy(e.digest.data(), p + 24, 32);
    e.offset = LoadLe64(p + 56);
    e.csize = LoadLe64(p + 64);
    e.usize = LoadLe64(p + 72);
    out.push_back(e);
  }
  return out;
}

// Lets GNU tar parse one of our headers (followed by its payload).
void CheckWithGnuTar(const std::string& dir, const uint8_t* header, ByteSpan payload,
                     const std::string& name) {
  if (access("/usr/bin/tar", X_OK) != 0 && access("/bin/tar", X_OK) != 0) return;
  std::vector<uint8_t> tar(header, header + 512);
  tar.insert(tar.end(), payload.begin(), payload.end());
  tar.resize(base::AlignUp(tar.size(), 512) + 1024, 0);
  std::string path = dir + "/check.tar";
  ASSERT_TRUE(WriteBytes(path, tar));
  std::string out;
  EXPECT_EQ(Run("tar -tvf " + path, &out), 0) << out;
  EXPECT_NE(out.find(name), std::string::npos) << out;
  EXPECT_NE(out.find(" " + std::to_string(payload.size()) + " "), std::string::npos) << out;
}

// Checks the blob against spec §6 and returns its device image.
std::vector<uint8_t> CheckBlob(const std::string& dir, const BlobEntry& b,
                               const std::vector<uint8_t>& blob, const WriterOptions& o,
                               const std::vector<uint8_t>& bootstrap) {
  SCOPED_TRACE("blob " + b.id);
  uint32_t want_features = 0;
  switch (o.layout) {
    case BlobLayout::kDefault:
      want_features = 0x40000001;
      break;
    case BlobLayout::kToc:
      want_features = 0x70000021;
      break;
    case BlobLayout::kInlineMetaToc:
      want_features = 0x70000023;
      break;
    case BlobLayout::kInlineMetaNoToc:
      want_features = 0x50000003;
      break;
  }
  if (o.ci_v2) want_features |= 0x4;
  EXPECT_EQ(b.features, want_features);
  EXPECT_EQ(b.chunk_size, o.chunk_size);
  EXPECT_EQ(b.compressor, static_cast<uint32_t>(o.compressor));
  EXPECT_EQ(b.digester, static_cast<uint32_t>(o.digester));
  EXPECT_GE(b.chunk_count, 1u);
  EXPECT_EQ(b.uncompressed_size % 4096, 0u);
  bool tar = b.features & 0x10000000;
  bool toc = b.features & 0x20000000;
  bool inline_meta = b.features & 0x2;

  std::vector<base::Digest> digests;
  std::vector<uint8_t> img = DeviceImage(b, blob, &digests);
  std::vector<CiEntry> ci = DecodeCi(b, blob);
  uint64_t data_end = 0;
  for (const CiEntry& c : ci) data_end = std::max(data_end, c.coff + c.csize);
  uint64_t header_end = b.ci_offset + b.ci_csize + 4096;

  if (tar) {
    TarHeader h = ParseTar(blob.data() + data_end);
    EXPECT_EQ(h.name, "image.blob");
    EXPECT_EQ(h.size, data_end);
    EXPECT_TRUE(h.checksum_ok);
    EXPECT_EQ(b.ci_offset, data_end + 512);
    TarHeader m = ParseTar(blob.data() + header_end);
    EXPECT_EQ(m.name, "blob.meta");
    EXPECT_EQ(m.size, b.ci_csize + 4096);
    EXPECT_TRUE(m.checksum_ok);
    CheckWithGnuTar(dir, blob.data() + header_end,
                    ByteSpan(blob.data() + b.ci_offset, b.ci_csize + 4096), "blob.meta");
  } else {
    EXPECT_EQ(b.ci_offset, data_end);
  }
  if (o.layout == BlobLayout::kDefault) {
    EXPECT_EQ(header_end, blob.size());
  }

  uint64_t digest_off = 0, digest_len = 0;
  if (toc) {
    std::vector<TocEntryView> entries = ParseToc(blob);
    std::vector<std::string> names;
    for (const TocEntryView& e : entries) names.push_back(e.name);
    std::vector<std::string> want_names = {"image.blob", "blob.meta", "blob.meta.header",
                                           "blob.digest"};
    if (inline_meta) want_names.push_back("image.boot");
    EXPECT_EQ(names, want_names);
    for (const TocEntryView& e : entries) {
      SCOPED_TRACE(e.name);
      EXPECT_LE(e.offset + e.csize, blob.size());
      if (e.offset + e.csize > blob.size()) continue;
      ByteSpan payload(blob.data() + e.offset, e.csize);
      std::vector<uint8_t> plain(e.usize);
      if (e.name == "image.blob") {
        EXPECT_EQ(e.offset, 0u);
        // The digest covers the data and its tar header.
        EXPECT_EQ(e.digest, base::Sha256(ByteSpan(blob.data(), e.csize + 512)));
        continue;
      }
      Compressor c = e.flags == 0x2   ? Compressor::kZstd
                     : e.flags == 0x4 ? Compressor::kLz4Block
                                      : Compressor::kNone;
      EXPECT_TRUE(e.flags == 0x1 || e.flags == 0x2 || e.flags == 0x4) << e.flags;
      base::Status st = storage::Decompress(c, payload, plain);
      EXPECT_TRUE(st.ok()) << st;
      if (!st.ok()) continue;
      EXPECT_EQ(e.digest, base::Sha256(plain));
      if (e.name == "blob.meta") {
        EXPECT_EQ(e.offset, b.ci_offset);
        EXPECT_EQ(e.csize, b.ci_csize);
        EXPECT_EQ(e.usize, b.ci_usize);
      } else if (e.name == "blob.digest") {
        digest_off = e.offset;
        digest_len = e.csize;
        EXPECT_EQ(e.csize, 32ull * digests.size());
        if (e.csize != 32ull * digests.size()) continue;
        for (size_t k = 0; k < digests.size(); ++k) {
          EXPECT_EQ(0, std::memcmp(plain.data() + 32 * k, digests[k].data(), 32)) << k;
        }
        TarHeader h = ParseTar(blob.data() + e.offset + e.csize);
        EXPECT_EQ(h.name, "blob.digest");
        EXPECT_TRUE(h.checksum_ok);
      } else if (e.name == "image.boot") {
        // Identical to the standalone bootstrap except for the placeholder id.
        std::string inner(plain.begin(), plain.end());
        std::string outer(bootstrap.begin(), bootstrap.end());
        size_t pos;
        while ((pos = inner.find(std::string(64, 'x'))) != std::string::npos) {
          inner.replace(pos, 64, b.id);
        }
        EXPECT_TRUE(inner == outer) << "inlined bootstrap differs from the standalone one";
        TarHeader h = ParseTar(blob.data() + e.offset + e.csize);
        EXPECT_EQ(h.name, "image.boot");
        EXPECT_EQ(h.size, e.csize);
      }
    }
    uint64_t toc_size = 128 * entries.size() + 512;
    if (!inline_meta) {
      EXPECT_EQ(b.toc_size, toc_size);
      EXPECT_EQ(b.toc_digest,
                base::Sha256(ByteSpan(blob.data() + blob.size() - toc_size, toc_size)));
      EXPECT_EQ(b.compressed_size, blob.size());
    } else {
      EXPECT_EQ(b.toc_size, 0u);
    }
    CheckWithGnuTar(dir, blob.data() + blob.size() - 512,
                    ByteSpan(blob.data() + blob.size() - toc_size, toc_size - 512),
                    "rafs.blob.toc");
  } else if (inline_meta) {
    TarHeader h = ParseTar(blob.data() + blob.size() - 512);
    EXPECT_EQ(h.name, "image.boot");
    EXPECT_TRUE(h.checksum_ok);
    EXPECT_EQ(h.size, bootstrap.size());
    EXPECT_EQ(b.compressed_size, blob.size() - 512 - h.size);
    std::string inner(blob.end() - 512 - static_cast<long>(h.size), blob.end() - 512);
    size_t pos;
    while ((pos = inner.find(std::string(64, 'x'))) != std::string::npos) {
      inner.replace(pos, 64, b.id);
    }
    EXPECT_TRUE(inner == std::string(bootstrap.begin(), bootstrap.end()));
  } else {
    EXPECT_EQ(b.compressed_size, blob.size());
    EXPECT_EQ(b.toc_size, 0u);
  }

  // Blob id: SHA-256 of the blob without the raw digest array (spec §6.8).
  auto h = base::Hasher::Create(base::DigestAlgo::kSha256);
  h->Update(ByteSpan(blob.data(), digest_len ? digest_off : blob.size()));
  if (digest_len) {
    h->Update(
        ByteSpan(blob.data() + digest_off + digest_len, blob.size() - digest_off - digest_len));
  }
  EXPECT_EQ(base::DigestHex(h->Finish()), b.id);
  return img;
}

// Bootstrap-level invariants (spec §3) and the chunk table vs. the ci arrays.
void CheckV6Bootstrap(const WrittenImage& img, const std::vector<TreeEntry>& tree,
                      const WriterOptions& o, const std::vector<std::vector<uint8_t>>& devices) {
  const std::vector<uint8_t>& boot = img.bootstrap;
  ASSERT_GE(boot.size(), 8192u);
  EXPECT_EQ(boot.size() % 4096, 0u);
  const uint8_t* sb = boot.data() + 1024;
  EXPECT_EQ(LoadLe32(sb), 0xE0F5E1E2u);
  EXPECT_EQ(LoadLe32(sb + 4), 0u);
  EXPECT_EQ(LoadLe32(sb + 8), 0x40000000u);
  EXPECT_EQ(sb[12], 12);
  EXPECT_EQ(LoadLe16(sb + 14), 128);
  EXPECT_EQ(LoadLe32(sb + 80), 0x0Cu);
  EXPECT_EQ(LoadLe16(sb + 88), 11);
  EXPECT_EQ(LoadLe64(sb + 16), ExpectedTree(tree).size());  // s_inos = all names
  std::vector<BlobEntry> blobs = BlobTable(boot);
  ASSERT_EQ(blobs.size(), img.blob_ids.size());
  EXPECT_EQ(LoadLe16(sb + 86), blobs.size());
  uint64_t flags = LoadLe64(boot.data() + 1152);
  bool has_xattr = false;
  for (const TreeEntry& e : tree) has_xattr |= !e.xattrs.empty();
  uint64_t want = 0x01000000;
  want |= o.compressor == Compressor::kNone       ? 0x1
          : o.compressor == Compressor::kLz4Block ? 0x2
          : o.compressor == Compressor::kGzip     ? 0x40
                                                  : 0x80;
  want |= o.digester == base::DigestAlgo::kBlake3 ? 0x4 : 0x8;
  if (o.explicit_uid_gid) want |= 0x10;
  if (has_xattr) want |= 0x20;
  if (blobs.empty() || o.layout == BlobLayout::kToc || o.layout == BlobLayout::kInlineMetaToc) {
    want |= 0x100;
  }
  EXPECT_EQ(flags, want) << std::hex << flags << " vs " << want;
  const uint8_t* ext = boot.data() + 1152;
  EXPECT_EQ(LoadLe32(ext + 20), o.chunk_size);
  uint64_t bt_off = LoadLe64(ext + 8);
  uint64_t ct_off = LoadLe64(ext + 24);
  uint64_t ct_size = LoadLe64(ext + 32);
  EXPECT_EQ(ct_off % 4096, 0u);
  EXPECT_EQ(ct_size % 80, 0u);
  EXPECT_LE(ct_off + ct_size, boot.size());
  uint32_t meta_blkaddr = LoadLe32(sb + 40);
  if (blobs.empty()) {
    EXPECT_EQ(meta_blkaddr, 0u);
    EXPECT_EQ(bt_off, 4096u);
    EXPECT_EQ(LoadLe32(sb + 36), 0u);
    EXPECT_EQ(ct_size, 0u);
    EXPECT_EQ(ct_off, boot.size());
  } else {
    EXPECT_EQ(bt_off, base::AlignUp(1408 + 128 * blobs.size(), 4096));
    uint64_t pf_size = LoadLe32(ext + 48);
    uint64_t end = bt_off + 256 * blobs.size() + pf_size;
    if (pf_size) {
      EXPECT_EQ(LoadLe64(ext + 40), bt_off + 256 * blobs.size());
    }
    EXPECT_EQ(meta_blkaddr, base::AlignUp(end, 4096) / 4096);
  }
  // Root inode: extended (or compact), directory, nid 128.
  const uint8_t* root = boot.data() + meta_blkaddr * 4096ull + 128 * 32;
  EXPECT_EQ(LoadLe16(root + 4) & S_IFMT, S_IFDIR);
  // Device slots.
  uint64_t s_blocks = 0;
  uint64_t prev_end = boot.size();
  for (size_t k = 0; k < blobs.size(); ++k) {
    const uint8_t* slot = boot.data() + 1408 + 128 * k;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(slot), 64), blobs[k].id);
    EXPECT_EQ(blobs[k].id, img.blob_ids[k]);
    EXPECT_EQ(blobs[k].index, k);
    uint32_t blocks = LoadLe32(slot + 64);
    EXPECT_EQ(blocks, blobs[k].uncompressed_size / 4096);
    EXPECT_NE(blocks, 0u);
    uint32_t mapped = LoadLe32(slot + 68);
    EXPECT_EQ(mapped, base::AlignUp(prev_end, 512 * 1024) / 4096);
    prev_end = (mapped + uint64_t{blocks}) * 4096;
    s_blocks += blocks;
  }
  EXPECT_EQ(LoadLe32(sb + 36), s_blocks);
  // Chunk table: sorted, one record per ci entry, agreeing with the ci arrays.
  uint64_t total_chunks = 0;
  for (const BlobEntry& b : blobs) total_chunks += b.chunk_count;
  EXPECT_EQ(ct_size / 80, total_chunks);
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (uint64_t k = 0; k < ct_size / 80; ++k) {
    const uint8_t* r = boot.data() + ct_off + 80 * k;
    if (k > 0) {
      const uint8_t* prev = r - 80;
      int c = std::memcmp(prev, r, 32);
      EXPECT_TRUE(c < 0 || (c == 0 && LoadLe32(prev + 32) < LoadLe32(r + 32))) << k;
    }
    uint32_t bi = LoadLe32(r + 32);
    uint32_t index = LoadLe32(r + 72);
    ASSERT_LT(bi, blobs.size());
    EXPECT_TRUE(seen.insert({bi, index}).second);
    const std::vector<uint8_t>& blob = img.blobs.at(blobs[bi].id);
    std::vector<CiEntry> ci = DecodeCi(blobs[bi], blob);
    ASSERT_LT(index, ci.size());
    const CiEntry& c = ci[index];
    uint32_t cflags = LoadLe32(r + 36);
    EXPECT_EQ(LoadLe32(r + 40), c.csize);
    EXPECT_EQ(LoadLe32(r + 44), c.usize);
    EXPECT_EQ(LoadLe64(r + 48), c.coff);
    EXPECT_EQ(LoadLe64(r + 56), c.uoff);
    EXPECT_EQ((cflags & 1) != 0, c.compressed);
    if (blobs[bi].features & 0x4) {  // v2 ci entries carry the CRC flag and value
      EXPECT_EQ((cflags & 0x10) != 0, c.has_crc);
      EXPECT_EQ(c.crc, c.has_crc ? LoadLe32(r + 76) : 0u);
    }
    ByteSpan data(devices[bi].data() + c.uoff, c.usize);
    base::Digest d = base::ComputeDigest(o.digester, data);
    EXPECT_EQ(0, std::memcmp(r, d.data(), 32));
    if (o.chunk_crc32) {
      uint32_t crc = Crc32c(data);
      EXPECT_EQ(LoadLe32(r + 76), crc);
      EXPECT_EQ((cflags & 0x10) != 0, crc != 0);
    } else {
      EXPECT_EQ(cflags & 0x10, 0u);
    }
  }
}

// Writes the bootstrap and device images; returns the fsck.erofs --device args.
std::string WriteDevices(const std::string& dir, const WrittenImage& img,
                         const std::vector<std::vector<uint8_t>>& devices) {
  EXPECT_TRUE(WriteBytes(dir + "/bootstrap", img.bootstrap));
  std::string args;
  for (size_t k = 0; k < devices.size(); ++k) {
    std::string p = dir + "/device" + std::to_string(k);
    EXPECT_TRUE(WriteBytes(p, devices[k]));
    args += " --device=" + p;
  }
  return args;
}

// ---------------------------------------------------------------------------
// Kernel mount.

class Loop {
 public:
  bool Attach(const std::string& file, std::string* err) {
    std::string out;
    if (Run("losetup -f --show -r " + file, &out) != 0) {
      *err = out;
      return false;
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    dev_ = out;
    return true;
  }
  ~Loop() {
    if (!dev_.empty()) Run("losetup -d " + dev_);
  }
  const std::string& dev() const { return dev_; }

 private:
  std::string dev_;
};

class Mount {
 public:
  explicit Mount(std::string dir) : dir_(std::move(dir)) {}
  bool Do(const std::string& source, const std::string& options, std::string* err) {
    std::string cmd = "mount -t erofs -o ro" + options + " " + source + " " + dir_;
    if (Run(cmd, err) != 0) return false;
    mounted_ = true;
    return true;
  }
  ~Mount() {
    if (mounted_) Run("umount " + dir_);
  }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Empty string when kernel mounts can be tried, else the reason to skip.
std::string KernelSkipReason() {
  if (geteuid() != 0) return "not root: kernel EROFS mount needs CAP_SYS_ADMIN";
  std::string fs;
  if (!ReadFile("/proc/filesystems", &fs) || fs.find("erofs") == std::string::npos) {
    Run("modprobe erofs");
    if (!ReadFile("/proc/filesystems", &fs) || fs.find("erofs") == std::string::npos) {
      return "erofs not in /proc/filesystems";
    }
  }
  if (Run("losetup --version") != 0) return "losetup unavailable";
  return "";
}

// ---------------------------------------------------------------------------
// Configurations.

struct Config {
  const char* name;
  WriterOptions options;
};

std::vector<Config> Configs() {
  std::vector<Config> c;
  WriterOptions o;
  o.compressor = Compressor::kNone;
  c.push_back({"none_default", o});
  c.push_back({"zstd_default", WriterOptions{}});
  o = WriterOptions{};
  o.layout = BlobLayout::kToc;
  o.ci_v2 = true;
  o.blob_count = 3;
  o.digester = base::DigestAlgo::kSha256;
  c.push_back({"zstd_toc_v2_3blobs_sha256", o});
  o = WriterOptions{};
  o.compressor = Compressor::kLz4Block;
  o.layout = BlobLayout::kInlineMetaToc;
  c.push_back({"lz4_inline_toc", o});
  o = WriterOptions{};
  o.compressor = Compressor::kGzip;
  o.layout = BlobLayout::kInlineMetaNoToc;
  o.chunk_crc32 = false;
  c.push_back({"gzip_inline_notoc_nocrc", o});
  o = WriterOptions{};
  o.compact_inodes = true;
  o.layout = BlobLayout::kToc;
  c.push_back({"compact_toc", o});
  o = WriterOptions{};
  o.explicit_uid_gid = false;
  o.chunk_size = 4096;
  o.blob_count = 2;
  o.prefetch_paths = {"/etc", "/big", "/missing"};
  c.push_back({"no_uid_4k_chunks_2blobs_prefetch", o});
  o = WriterOptions{};
  o.compressor = Compressor::kNone;
  o.chunk_size = 16 << 20;
  o.ci_v2 = true;
  c.push_back({"none_16m_chunks_v2", o});
  return c;
}

void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

class V6ImageTest : public ::testing::TestWithParam<Config> {};

struct Built {
  WrittenImage img;
  std::vector<std::vector<uint8_t>> devices;
};

Built BuildAndCheck(const std::string& dir, const std::vector<TreeEntry>& tree,
                    const WriterOptions& o) {
  Built b;
  base::Result<WrittenImage> r = WriteImage(tree, o);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return b;
  b.img = std::move(*r);
  std::vector<BlobEntry> blobs = BlobTable(b.img.bootstrap);
  EXPECT_EQ(blobs.size(), b.img.blobs.size());
  for (const BlobEntry& e : blobs) {
    auto it = b.img.blobs.find(e.id);
    EXPECT_NE(it, b.img.blobs.end()) << e.id;
    if (it == b.img.blobs.end()) continue;
    b.devices.push_back(CheckBlob(dir, e, it->second, o, b.img.bootstrap));
  }
  CheckV6Bootstrap(b.img, tree, o, b.devices);
  return b;
}

CompareOptions CompareFor(const WriterOptions& o) {
  CompareOptions c;
  c.owner = o.explicit_uid_gid;
  c.mtime = !o.compact_inodes;
  return c;
}

void FsckAndCompare(const std::string& dir, const Built& b, const std::vector<TreeEntry>& tree,
                    const WriterOptions& o) {
  std::string args = WriteDevices(dir, b.img, b.devices);
  std::string out;
  int rc = Run("fsck.erofs" + args + " " + dir + "/bootstrap", &out);
  ASSERT_EQ(rc, 0) << out;
  std::string extract = dir + "/extract";
  rc = Run("fsck.erofs" + args + " --extract=" + extract + " " + dir + "/bootstrap", &out);
  ASSERT_EQ(rc, 0) << out;
  CompareOptions c = CompareFor(o);
  c.dir_mtime = false;   // fsck.erofs 1.5 sets directory times before filling them
  c.root_attrs = false;  // the extraction root is our directory
  c.setid_bits = false;  // fsck.erofs 1.5 chmods before chown, which drops S_ISUID
  CompareTree(extract, tree, c);
}

TEST_P(V6ImageTest, FsckErofsExtractsSourceTree) {
  if (!HaveFsckErofs()) GTEST_SKIP() << "fsck.erofs not installed";
  const Config& cfg = GetParam();
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  std::vector<TreeEntry> tree = SampleTree();
  Built b = BuildAndCheck(tmp.path(), tree, cfg.options);
  if (HasFatalFailure() || b.img.bootstrap.empty()) return;
  FsckAndCompare(tmp.path(), b, tree, cfg.options);
}

TEST_P(V6ImageTest, KernelMountShowsSourceTree) {
  std::string reason = KernelSkipReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  const Config& cfg = GetParam();
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  std::vector<TreeEntry> tree = SampleTree();
  Built b = BuildAndCheck(tmp.path(), tree, cfg.options);
  if (HasFatalFailure() || b.img.bootstrap.empty()) return;
  WriteDevices(tmp.path(), b.img, b.devices);

  CompareOptions c = CompareFor(cfg.options);
  c.xattrs = true;
  c.inodes = true;
  {
    // Blobs as extra devices.
    Loop boot;
    std::string err;
    if (!boot.Attach(tmp.path() + "/bootstrap", &err)) GTEST_SKIP() << "losetup failed: " << err;
    std::vector<std::unique_ptr<Loop>> devs;
    std::string opts;
    for (size_t k = 0; k < b.devices.size(); ++k) {
      devs.push_back(std::make_unique<Loop>());
      ASSERT_TRUE(devs.back()->Attach(tmp.path() + "/device" + std::to_string(k), &err)) << err;
      opts += ",device=" + devs.back()->dev();
    }
    std::string mnt = tmp.path() + "/mnt";
    ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
    Mount m(mnt);
    if (!m.Do(boot.dev(), opts, &err)) GTEST_SKIP() << "kernel refused to mount erofs: " << err;
    CompareTree(mnt, tree, c);
  }
  {
    // One flat device: blob i at mapped_blkaddr of device slot i.
    std::vector<uint8_t> flat = b.img.bootstrap;
    for (size_t k = 0; k < b.devices.size(); ++k) {
      uint64_t at = uint64_t{LoadLe32(b.img.bootstrap.data() + 1408 + 128 * k + 68)} * 4096;
      ASSERT_GE(at, flat.size());
      flat.resize(at, 0);
      flat.insert(flat.end(), b.devices[k].begin(), b.devices[k].end());
    }
    std::string flat_path = tmp.path() + "/flat";
    ASSERT_TRUE(WriteBytes(flat_path, flat));
    Loop loop;
    std::string err;
    ASSERT_TRUE(loop.Attach(flat_path, &err)) << err;
    std::string mnt = tmp.path() + "/mnt_flat";
    ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
    Mount m(mnt);
    ASSERT_TRUE(m.Do(loop.dev(), "", &err)) << err;
    CompareTree(mnt, tree, c);
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, V6ImageTest, ::testing::ValuesIn(Configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });

// ---------------------------------------------------------------------------
// Specific v6 properties.

TEST(RafsWriterTest, Crc32cKnownAnswer) {
  EXPECT_EQ(Crc32c(base::AsBytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(ByteSpan()), 0u);
}

TEST(RafsWriterTest, DefaultLayoutMatchesSpec91) {
  std::vector<TreeEntry> tree = {Dir("/"), File("/a", "hello\n")};
  base::Result<WrittenImage> r = WriteImage(tree, WriterOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<uint8_t>& boot = r->bootstrap;
  ASSERT_EQ(r->blobs.size(), 1u);
  EXPECT_EQ(LoadLe64(boot.data() + 1152), 0x01000094u);
  EXPECT_EQ(LoadLe64(boot.data() + 1152 + 8), 4096u);
  EXPECT_EQ(LoadLe32(boot.data() + 1024 + 40), 2u);  // meta_blkaddr
  EXPECT_EQ(LoadLe64(boot.data() + 1024 + 16), 2u);  // s_inos
  const uint8_t* root = boot.data() + 0x3000;
  EXPECT_EQ(LoadLe16(root), 0x0005);  // extended, FLAT_INLINE
  EXPECT_EQ(LoadLe16(root + 4), S_IFDIR | 0755);
  EXPECT_EQ(LoadLe64(root + 8), 12u * 3 + 1 + 2 + 1);  // ".", "..", "a"
  EXPECT_EQ(LoadLe32(root + 20), 1u);                  // i_ino
  EXPECT_EQ(LoadLe32(root + 44), 2u);                  // nlink
  // Dirents right after the inode: ".", "..", "a".
  EXPECT_EQ(LoadLe64(root + 64), 128u);
  EXPECT_EQ(LoadLe16(root + 64 + 8), 36);
  EXPECT_EQ(root[64 + 10], 2);
  EXPECT_EQ(LoadLe64(root + 64 + 12), 128u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(root + 64 + 36), 4), "...a");
  uint64_t file_nid = LoadLe64(root + 64 + 24);
  const uint8_t* f = boot.data() + 0x2000 + file_nid * 32;
  EXPECT_EQ(LoadLe16(f), 0x0009);  // extended, CHUNK_BASED
  EXPECT_EQ(LoadLe32(f + 16), 0x28u);
  EXPECT_EQ(LoadLe32(f + 20), 2u);
  EXPECT_EQ(LoadLe64(f + 64), 0x0000000000010000ull);  // ci 0, device 1, blkaddr 0
  const auto& [id, blob] = *r->blobs.begin();
  EXPECT_EQ(id, base::DigestHex(base::Sha256(blob)));
  std::vector<BlobEntry> bt = BlobTable(boot);
  ASSERT_EQ(bt.size(), 1u);
  EXPECT_EQ(bt[0].features, 0x40000001u);
  EXPECT_EQ(bt[0].ci_offset, 6u);  // "hello\n" does not compress
  EXPECT_EQ(blob.size(), 6u + 16 + 4096);
  EXPECT_EQ(bt[0].ci_compressor, 0u);  // 16 bytes do not shrink
  EXPECT_EQ(LoadLe32(boot.data() + 1408 + 68), base::AlignUp(boot.size(), 512 * 1024) / 4096);
}

TEST(RafsWriterTest, MetadataOnlyImageHasNoBlobs) {
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  std::vector<TreeEntry> tree = MetadataOnlyTree();
  WriterOptions o;
  o.prefetch_paths = {"/a"};  // no prefetch table without blobs
  Built b = BuildAndCheck(tmp.path(), tree, o);
  ASSERT_FALSE(b.img.bootstrap.empty());
  EXPECT_TRUE(b.img.blobs.empty());
  EXPECT_EQ(LoadLe32(b.img.bootstrap.data() + 1152 + 48), 0u);
  const uint8_t* root = b.img.bootstrap.data() + 4096;
  EXPECT_EQ(LoadLe16(root + 4), S_IFDIR | 0755);
  if (!HaveFsckErofs()) GTEST_SKIP() << "fsck.erofs not installed";
  FsckAndCompare(tmp.path(), b, tree, o);
}

TEST(RafsWriterTest, PrefetchTableHoldsNids) {
  std::vector<TreeEntry> tree = SampleTree();
  WriterOptions o;
  o.prefetch_paths = {"/big", "/nope", "/etc"};
  base::Result<WrittenImage> r = WriteImage(tree, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<uint8_t>& boot = r->bootstrap;
  uint64_t off = LoadLe64(boot.data() + 1152 + 40);
  ASSERT_EQ(LoadLe32(boot.data() + 1152 + 48), 8u);
  EXPECT_EQ(off, 4096u + 256);
  uint64_t meta = LoadLe32(boot.data() + 1024 + 40) * 4096ull;
  const uint8_t* big = boot.data() + meta + LoadLe32(boot.data() + off) * 32ull;
  EXPECT_EQ(LoadLe16(big + 4), S_IFREG | 0644);
  EXPECT_EQ(LoadLe64(big + 8), 3u * 1024 * 1024 + 123);
  const uint8_t* etc = boot.data() + meta + LoadLe32(boot.data() + off + 4) * 32ull;
  EXPECT_EQ(LoadLe16(etc + 4), S_IFDIR | 0755);
  // Prefetched files are written first: /big's first chunk is at blob offset 0.
  const uint8_t* idx = big + 64;
  EXPECT_EQ(LoadLe32(idx + 4), 0u);
}

TEST(RafsWriterTest, RejectsInvalidInput) {
  auto code = [](std::vector<TreeEntry> tree, WriterOptions o = WriterOptions{}) {
    return WriteImage(tree, o).status().code();
  };
  const auto kInvalid = base::StatusCode::kInvalidArgument;
  TreeEntry bad_xattr = File("/f", "x");
  bad_xattr.xattrs = {{"foo.bar", "1"}};
  EXPECT_EQ(code({bad_xattr}), kInvalid);
  bad_xattr.xattrs = {{"system.other", "1"}};
  EXPECT_EQ(code({bad_xattr}), kInvalid);
  bad_xattr.xattrs = {{"user.", "1"}};
  EXPECT_EQ(code({bad_xattr}), kInvalid);
  bad_xattr.xattrs = {{"user.a", "1"}, {"user.a", "2"}};
  EXPECT_EQ(code({bad_xattr}), kInvalid);
  EXPECT_EQ(code({Symlink("/l", std::string(4097, 'a'))}), kInvalid);
  EXPECT_EQ(code({Symlink("/l", "")}), kInvalid);
  EXPECT_EQ(code({File("/a", "1"), File("/a", "2")}), kInvalid);
  EXPECT_EQ(code({File("/a", "1"), File("/a/b", "2")}), kInvalid);
  EXPECT_EQ(code({Hardlink("/b", "/a")}), kInvalid);
  EXPECT_EQ(code({Dir("/d"), Hardlink("/b", "/d")}), kInvalid);
  EXPECT_EQ(code({File("relative", "1")}), kInvalid);
  EXPECT_EQ(code({File("/a/../b", "1")}), kInvalid);
  EXPECT_EQ(code({File("/" + std::string(256, 'n'), "1")}), kInvalid);
  EXPECT_EQ(code({File("/", "1")}), kInvalid);
  WriterOptions o;
  o.blob_count = 0;
  EXPECT_EQ(code({}, o), kInvalid);
  o.blob_count = 255;
  EXPECT_EQ(code({}, o), kInvalid);
  o = WriterOptions{};
  o.chunk_size = 1000;
  EXPECT_EQ(code({}, o), kInvalid);
  o.chunk_size = 32 << 20;
  EXPECT_EQ(code({}, o), kInvalid);
  o = WriterOptions{};
  o.layout = BlobLayout::kInlineMetaToc;
  o.blob_count = 2;
  EXPECT_EQ(code({}, o), kInvalid);
  o = WriterOptions{};
  o.fs_version = 4;
  EXPECT_EQ(code({}, o), kInvalid);
  // An incompressible full 16 MiB chunk cannot be described by ci v2.
  o = WriterOptions{};
  o.chunk_size = 16 << 20;
  o.ci_v2 = true;
  EXPECT_EQ(code({File("/r", Random(16 << 20, 5))}, o), kInvalid);
  // An empty tree is just the root.
  EXPECT_TRUE(WriteImage({}, WriterOptions{}).ok());
}

TEST(RafsWriterTest, SparseFileIsDeduplicated) {
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  std::string data(64 << 20, '\0');
  data[12345] = 'a';
  data[(40 << 20) + 7] = 'b';
  std::vector<TreeEntry> tree = {Dir("/"), File("/sparse", std::move(data)),
                                 File("/zero", std::string(1 << 20, '\0'))};
  WriterOptions o;
  base::Result<WrittenImage> r = WriteImage(tree, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->blobs.size(), 1u);
  EXPECT_LT(r->blobs.begin()->second.size(), 64u * 1024);
  std::vector<BlobEntry> bt = BlobTable(r->bootstrap);
  ASSERT_EQ(bt.size(), 1u);
  EXPECT_EQ(bt[0].chunk_count, 3u);  // zero chunk + two distinct chunks
  EXPECT_EQ(bt[0].uncompressed_size, 3u << 20);
  if (!HaveFsckErofs()) GTEST_SKIP() << "fsck.erofs not installed";
  Built b = BuildAndCheck(tmp.path(), tree, o);
  FsckAndCompare(tmp.path(), b, tree, o);
}

TEST(RafsWriterTest, WideTreeIsWellFormedAndExtractsCorrectly) {
  // Shape of the generator used by the benchmarks (test/bench/meta_bench);
  // speed is measured there, not here.
  std::vector<TreeEntry> wide = MakeWideTree(20000, 42);
  EXPECT_GT(wide.size(), 19000u);
  EXPECT_LE(wide.size(), 20001u);
  size_t dirs = 0, links = 0, files = 0;
  for (const TreeEntry& e : wide) {
    dirs += S_ISDIR(e.mode);
    links += S_ISLNK(e.mode);
    files += S_ISREG(e.mode);
  }
  EXPECT_GT(dirs, 20u);
  EXPECT_GT(links, 20u);
  EXPECT_GT(files, 10000u);
  // Same generator, same output.
  EXPECT_EQ(MakeWideTree(500, 42).size(), MakeWideTree(500, 42).size());
  EXPECT_EQ(MakeWideTree(500, 42).back().data, MakeWideTree(500, 42).back().data);

  if (!HaveFsckErofs()) GTEST_SKIP() << "fsck.erofs not installed";
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  std::vector<TreeEntry> small = MakeWideTree(5000, 7);
  Built b = BuildAndCheck(tmp.path(), small, WriterOptions{});
  FsckAndCompare(tmp.path(), b, small, WriterOptions{});
}

// ---------------------------------------------------------------------------
// v5: a walker over the records (spec §7) rebuilds the tree and the data.

struct V5Record {
  base::Digest digest;
  uint64_t parent, ino, mode, size, blocks, flags;
  uint32_t uid, gid, nlink, child_index, child_count, rdev, mtime_nsec;
  uint64_t mtime;
  std::string name, target;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<const uint8_t*> chunks;
};

void CheckV5(const WrittenImage& img, const std::vector<TreeEntry>& tree, const WriterOptions& o) {
  const std::vector<uint8_t>& boot = img.bootstrap;
  const uint8_t* b = boot.data();
  ASSERT_GE(boot.size(), 8192u);
  EXPECT_EQ(boot.size() % 8, 0u);
  EXPECT_EQ(LoadLe32(b), 0x52414653u);
  EXPECT_EQ(LoadLe32(b + 4), 0x500u);
  EXPECT_EQ(LoadLe32(b + 8), 8192u);
  EXPECT_EQ(LoadLe32(b + 12), o.chunk_size);
  uint32_t entries = LoadLe32(b + 56);
  std::map<std::string, Expect> want = ExpectedTree(tree);
  EXPECT_EQ(entries, want.size());
  std::set<std::string> groups;
  for (const auto& [p, e] : want) groups.insert(e.group);
  EXPECT_EQ(LoadLe64(b + 24), groups.size());
  EXPECT_EQ(LoadLe64(b + 32), 8192u);
  // Blob table.
  uint64_t bt_off = LoadLe64(b + 48);
  uint32_t bt_size = LoadLe32(b + 64);
  std::vector<std::string> ids;
  for (uint64_t p = bt_off; p + 8 < bt_off + bt_size;) {
    p += 8;
    std::string id;
    while (p < bt_off + bt_size && b[p] != 0) id.push_back(static_cast<char>(b[p++]));
    ids.push_back(id);
    ++p;
  }
  EXPECT_EQ(ids, img.blob_ids);
  EXPECT_EQ(LoadLe32(b + 68), ids.size());
  uint64_t ext = LoadLe64(b + 72);
  for (size_t k = 0; k < ids.size(); ++k) {
    const std::vector<uint8_t>& blob = img.blobs.at(ids[k]);
    EXPECT_EQ(base::DigestHex(base::Sha256(blob)), ids[k]);
    EXPECT_EQ(LoadLe64(b + ext + 64 * k + 16), blob.size());
  }
  // Records.
  std::vector<V5Record> recs(entries);
  for (uint32_t k = 0; k < entries; ++k) {
    uint64_t off = uint64_t{LoadLe32(b + 8192 + 4 * k)} << 3;
    ASSERT_LT(off + 128, boot.size());
    const uint8_t* p = b + off;
    V5Record& r = recs[k];
    std::memcpy(r.digest.data(), p, 32);
    r.parent = LoadLe64(p + 32);
    r.ino = LoadLe64(p + 40);
    r.uid = LoadLe32(p + 48);
    r.gid = LoadLe32(p + 52);
    r.mode = LoadLe32(p + 60);
    r.size = LoadLe64(p + 64);
    r.blocks = LoadLe64(p + 72);
    r.flags = LoadLe64(p + 80);
    r.nlink = LoadLe32(p + 88);
    r.child_index = LoadLe32(p + 92);
    r.child_count = LoadLe32(p + 96);
    uint16_t name_size = LoadLe16(p + 100);
    uint16_t link_size = LoadLe16(p + 102);
    r.rdev = LoadLe32(p + 104);
    r.mtime_nsec = LoadLe32(p + 108);
    r.mtime = LoadLe64(p + 112);
    const uint8_t* q = p + 128;
    r.name.assign(reinterpret_cast<const char*>(q), name_size);
    q += base::AlignUp(name_size, 8);
    if (link_size) {
      r.target.assign(reinterpret_cast<const char*>(q), link_size);
      q += base::AlignUp(link_size, 8);
    }
    if (r.flags & 0x4) {
      uint64_t xs = LoadLe64(q);
      const uint8_t* x = q + 8;
      const uint8_t* end = x + xs;
      while (x < end) {
        uint32_t ps = LoadLe32(x);
        std::string pair(reinterpret_cast<const char*>(x + 4), ps);
        size_t nul = pair.find('\0');
        r.xattrs.emplace_back(pair.substr(0, nul), pair.substr(nul + 1));
        x += 4 + ps;
      }
      q += 8 + base::AlignUp(xs, 8);
    }
    if (S_ISREG(r.mode)) {
      for (uint32_t c = 0; c < r.child_count; ++c) r.chunks.push_back(q + 80 * c);
    }
  }
  // Walk from the root, rebuilding paths; compare with the expected tree.
  std::map<std::string, uint64_t> group_ino;
  std::vector<std::pair<uint32_t, std::string>> stack = {{1, "/"}};
  size_t visited = 0;
  auto digest_of = [&](uint32_t index) { return recs[index - 1].digest; };
  while (!stack.empty()) {
    auto [index, path] = stack.back();
    stack.pop_back();
    ++visited;
    SCOPED_TRACE(path);
    const V5Record& r = recs[index - 1];
    ASSERT_TRUE(want.count(path));
    const Expect& e = want[path];
    EXPECT_EQ(r.name, path == "/" ? "/" : Base(path));
    EXPECT_EQ(r.mode, e.mode);
    EXPECT_EQ(r.nlink, e.nlink);
    EXPECT_EQ(r.uid, o.explicit_uid_gid ? e.uid : 0);
    EXPECT_EQ(r.gid, o.explicit_uid_gid ? e.gid : 0);
    EXPECT_EQ(r.mtime, e.mtime);
    EXPECT_EQ(r.mtime_nsec, e.mtime_nsec);
    std::map<std::string, std::string> xattrs(r.xattrs.begin(), r.xattrs.end());
    EXPECT_EQ(xattrs, e.xattrs);
    auto [it, inserted] = group_ino.emplace(e.group, r.ino);
    if (!inserted) {
      EXPECT_EQ(r.ino, it->second);
    }
    if (path == "/") {
      EXPECT_EQ(r.parent, 0u);
      EXPECT_EQ(r.ino, 1u);
    } else if (!(S_ISREG(r.mode) && r.nlink > 1)) {
      EXPECT_LT(r.parent, r.ino);
    }
    std::string computed;
    auto hash = [&](const std::string& s) {
      return base::ComputeDigest(o.digester, base::AsBytes(s));
    };
    if (S_ISDIR(r.mode)) {
      uint64_t names = 0;
      std::set<std::string> children;
      std::string prev;
      for (uint32_t c = 0; c < r.child_count; ++c) {
        uint32_t ci = r.child_index + c;
        ASSERT_LE(ci, entries);
        ASSERT_GT(ci, r.ino);
        const V5Record& child = recs[ci - 1];
        EXPECT_EQ(child.parent, index);
        if (c > 0) {
          EXPECT_LT(prev, child.name);
        }
        prev = child.name;
        children.insert(child.name);
        names += child.name.size() + 8;
        computed.append(reinterpret_cast<const char*>(digest_of(ci).data()), 32);
        stack.push_back({ci, path == "/" ? "/" + child.name : path + "/" + child.name});
      }
      EXPECT_EQ(children, e.children);
      EXPECT_EQ(r.size, names == 0 ? 4096 : base::AlignUp(names, 4096));
    } else if (S_ISREG(r.mode)) {
      EXPECT_EQ(r.size, e.data.size());
      EXPECT_EQ(r.child_count, (e.data.size() + o.chunk_size - 1) / o.chunk_size);
      std::string data(r.size, '\0');
      for (const uint8_t* c : r.chunks) {
        uint32_t blob = LoadLe32(c + 32);
        uint32_t flags = LoadLe32(c + 36);
        uint32_t csize = LoadLe32(c + 40);
        uint32_t usize = LoadLe32(c + 44);
        uint64_t coff = LoadLe64(c + 48);
        uint64_t foff = LoadLe64(c + 64);
        ASSERT_LT(blob, ids.size());
        const std::vector<uint8_t>& bl = img.blobs.at(ids[blob]);
        ASSERT_LE(coff + csize, bl.size());
        ASSERT_LE(foff + usize, data.size());
        base::MutableByteSpan dst(reinterpret_cast<uint8_t*>(data.data()) + foff, usize);
        ASSERT_TRUE(storage::Decompress((flags & 1) ? o.compressor : Compressor::kNone,
                                        ByteSpan(bl.data() + coff, csize), dst)
                        .ok());
        base::Digest d = base::ComputeDigest(o.digester, dst);
        EXPECT_EQ(0, std::memcmp(c, d.data(), 32));
        computed.append(reinterpret_cast<const char*>(c), 32);
      }
      EXPECT_TRUE(data == e.data) << "file data differs";
    } else if (S_ISLNK(r.mode)) {
      EXPECT_EQ(r.target, e.target);
      EXPECT_EQ(r.size, e.target.size());
      EXPECT_EQ(r.flags & 1, 1u);
      computed = e.target;
    } else if (S_ISCHR(r.mode) || S_ISBLK(r.mode)) {
      EXPECT_EQ(r.rdev, static_cast<uint32_t>(e.rdev));
    }
    EXPECT_EQ(r.digest, hash(computed)) << "merkle digest";
    uint64_t xsum = 0;
    for (const auto& [k, v] : e.xattrs) xsum += 4 + k.size() + 1 + v.size();
    EXPECT_EQ(r.blocks, (r.size + base::AlignUp(xsum, 8) + 511) / 512);
  }
  EXPECT_EQ(visited, entries);
}

TEST(RafsWriterTest, V5RecordsDescribeTheTree) {
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    WriterOptions o;
    o.fs_version = 5;
    if (variant == 1) {
      o.compressor = Compressor::kNone;
      o.digester = base::DigestAlgo::kSha256;
      o.explicit_uid_gid = false;
    } else if (variant == 2) {
      o.blob_count = 3;
      o.chunk_size = 64 * 1024;
      o.compressor = Compressor::kLz4Block;
      o.prefetch_paths = {"/etc", "/hl/b", "/hl/a"};
    }
    std::vector<TreeEntry> tree = SampleTree();
    base::Result<WrittenImage> r = WriteImage(tree, o);
    ASSERT_TRUE(r.ok()) << r.status();
    CheckV5(*r, tree, o);
    if (variant == 2) {
      EXPECT_EQ(LoadLe32(r->bootstrap.data() + 60), 3u);
      uint64_t pf = LoadLe64(r->bootstrap.data() + 40);
      // Root children in name order: /big 2, /bin 3, /dev 4, /empty 5, /etc 6.
      EXPECT_EQ(LoadLe32(r->bootstrap.data() + pf), 6u);
      // /hl/b and /hl/a share one i_ino.
      EXPECT_EQ(LoadLe32(r->bootstrap.data() + pf + 4), LoadLe32(r->bootstrap.data() + pf + 8));
    }
  }
  WriterOptions bad;
  bad.fs_version = 5;
  bad.layout = BlobLayout::kToc;
  EXPECT_EQ(WriteImage(SampleTree(), bad).status().code(), base::StatusCode::kInvalidArgument);
}

TEST(RafsWriterTest, WriteImageToDirWritesFiles) {
  TempDir tmp;
  ASSERT_TRUE(tmp.ok());
  base::Result<WrittenImage> r = WriteImage(SampleTree(), WriterOptions{});
  ASSERT_TRUE(r.ok());
  std::string dir = tmp.path() + "/img";
  ASSERT_TRUE(WriteImageToDir(*r, dir).ok());
  std::string got;
  ASSERT_TRUE(ReadFile(dir + "/bootstrap", &got));
  EXPECT_TRUE(got == std::string(r->bootstrap.begin(), r->bootstrap.end()));
  for (const auto& [id, bytes] : r->blobs) {
    ASSERT_TRUE(ReadFile(dir + "/blobs/" + id, &got));
    EXPECT_EQ(got.size(), bytes.size());
  }
}

}  // namespace
}  // namespace rfs::testing
