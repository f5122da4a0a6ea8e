#include "test/rafs/builder/tree_gen.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "rafs/meta/metadata.h"
#include "test/support/test_util.h"

namespace rfs::testing {
namespace {

std::string Pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Half random, half text so compression has something to do.
    s[i] = (i / 4096) % 2 ? static_cast<char>(x >> 24) : static_cast<char>('a' + (x >> 60));
  }
  return s;
}

void Write(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  ASSERT_GE(fd, 0) << path;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
  close(fd);
  chmod(path.c_str(), mode);
}

void MakeSocket(const std::string& path) {
  // mknod works for sockets too (and needs no bind path length limit).
  ASSERT_EQ(mknod(path.c_str(), S_IFSOCK | 0755, 0), 0) << path << ": " << strerror(errno);
}

void Xattr(const std::string& path, const std::string& name, const std::string& value) {
  ASSERT_EQ(lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0)
      << path << " " << name << ": " << strerror(errno);
}

}  // namespace

void SetMtime(const std::string& path, int64_t sec, long nsec) {
  struct timespec ts[2];
  ts[0].tv_sec = sec;
  ts[0].tv_nsec = nsec;
  ts[1] = ts[0];
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path;
}

void MakeRichTree(const std::string& d) {
  const bool root = IsRoot();
  ASSERT_EQ(mkdir((d + "/etc").c_str(), 0755), 0);
  Write(d + "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  Write(d + "/etc/passwd.copy", "root:x:0:0:root:/root:/bin/sh\n");  // deduplicated chunk
  Write(d + "/empty", "");
  // Multi-chunk file with repeated 64 KiB pieces (dedup across files and
  // within a file at small chunk sizes) and an unaligned tail.
  std::string piece = Pattern(65536, 1);
  std::string big;
  for (int i = 0; i < 20; ++i) big += (i % 3 == 0) ? piece : Pattern(65536, 10 + i);
  big += Pattern(12345, 99);
  Write(d + "/big.bin", big);
  Write(d + "/big.copy", big);
  // Sparse file: data, hole, data.
  {
    int fd = open((d + "/sparse").c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    std::string a = Pattern(5000, 3);
    ASSERT_EQ(pwrite(fd, a.data(), a.size(), 0), static_cast<ssize_t>(a.size()));
    ASSERT_EQ(pwrite(fd, a.data(), a.size(), 3 << 20), static_cast<ssize_t>(a.size()));
    ASSERT_EQ(ftruncate(fd, (3 << 20) + 8192 + 17), 0);
    close(fd);
  }
  // Hard links (three names) and a hard-linked empty file.
  Write(d + "/etc/shared", "linked content\n", 0640);
  ASSERT_EQ(link((d + "/etc/shared").c_str(), (d + "/hl1").c_str()), 0);
  ASSERT_EQ(mkdir((d + "/z").c_str(), 0700), 0);
  ASSERT_EQ(link((d + "/etc/shared").c_str(), (d + "/z/hl2").c_str()), 0);
  Write(d + "/e1", "");
  ASSERT_EQ(link((d + "/e1").c_str(), (d + "/e2").c_str()), 0);
  // Symlinks: short, long (4000 bytes, FLAT_PLAIN), dangling.
  ASSERT_EQ(symlink("etc/passwd", (d + "/sym").c_str()), 0);
  std::string long_target;
  while (long_target.size() < 4000) long_target += "long/";
  long_target.resize(4000);
  ASSERT_EQ(symlink(long_target.c_str(), (d + "/longsym").c_str()), 0);
  ASSERT_EQ(symlink("/nonexistent/x", (d + "/dangling").c_str()), 0);
  // 255-byte names, names sorting before '.', deep path.
  Write(d + "/" + std::string(255, 'n'), "max name\n");
  ASSERT_EQ(mkdir((d + "/" + std::string(255, 'D')).c_str(), 0755), 0);
  Write(d + "/-dash", "sorts before dot\n");
  Write(d + "/ space", "");
  std::string deep = d;
  for (int i = 0; i < 40; ++i) {
    deep += "/level" + std::to_string(i);
    ASSERT_EQ(mkdir(deep.c_str(), 0755), 0);
  }
  Write(deep + "/bottom", "deep\n");
  // A directory large enough for several dirent blocks.
  ASSERT_EQ(mkdir((d + "/many").c_str(), 0755), 0);
  for (int i = 0; i < 700; ++i) {
    Write(d + "/many/entry_with_a_longish_name_" + std::to_string(i), i % 7 ? "" : "x");
  }
  // Special files and mode bits.
  ASSERT_EQ(mkfifo((d + "/fifo").c_str(), 0644), 0);
  MakeSocket(d + "/sock");
  Write(d + "/setuid", "#!/bin/sh\n", 04755);
  Write(d + "/setgid", "#!/bin/sh\n", 02755);
  ASSERT_EQ(mkdir((d + "/sticky").c_str(), 01777), 0);
  chmod((d + "/sticky").c_str(), 01777);
  // Xattrs: user.*, empty value, large value, on a directory and a symlink
  // target (user.* cannot be set on symlinks).
  Xattr(d + "/etc/passwd", "user.mime", "text/plain");
  Xattr(d + "/etc/passwd", "user.empty", "");
  Xattr(d + "/etc", "user.dirattr", "d");
  Xattr(d + "/big.bin", "user.large", std::string(3000, 'v'));
  if (root) {
    ASSERT_EQ(mknod((d + "/chr").c_str(), S_IFCHR | 0620, makedev(300, 70000)), 0);
    ASSERT_EQ(mknod((d + "/blk").c_str(), S_IFBLK | 0660, makedev(8, 1)), 0);
    ASSERT_EQ(mknod((d + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(lchown((d + "/etc/passwd").c_str(), 100000, 200000), 0);
    ASSERT_EQ(lchown((d + "/sym").c_str(), 70000, 70001), 0);
    Xattr(d + "/etc/passwd", "trusted.overlay.x", "y");
    // security.capability v2: cap_net_bind_service+ep.
    std::string cap(
        "\x00\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
    Xattr(d + "/setuid", "security.capability", cap);
    Xattr(d + "/z", "trusted.opaque", "");
  }
  // Nanosecond mtimes everywhere; the root gets 0 (what the builder writes).
  SetMtime(d + "/etc/passwd", 1650000000, 123456789);
  SetMtime(d + "/sym", 1660000000, 1);
  SetMtime(d + "/etc", 1600000000, 999999999);
  SetMtime(d, 0, 0);
}

void MakeRandomTree(const std::string& dir, uint64_t seed, int entries) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> dirs{dir};
  std::vector<std::string> files;
  std::vector<std::string> contents;
  for (int i = 0; i < 8; ++i) contents.push_back(Pattern(rng() % 100000, rng()));
  for (int i = 0; i < entries; ++i) {
    const std::string& parent = dirs[rng() % dirs.size()];
    std::string name = "e" + std::to_string(i);
    if (rng() % 5 == 0) name += std::string(rng() % 60, static_cast<char>('a' + rng() % 26));
    std::string path = parent + "/" + name;
    switch (rng() % 10) {
      case 0:
      case 1:
        ASSERT_EQ(mkdir(path.c_str(), 0700 | (rng() % 0100)), 0);
        chmod(path.c_str(), 0700 | (rng() % 01000));
        dirs.push_back(path);
        break;
      case 2:
        ASSERT_EQ(symlink(("target" + std::to_string(rng() % 1000)).c_str(), path.c_str()), 0);
        break;
      case 3:
        if (!files.empty()) {
          ASSERT_EQ(link(files[rng() % files.size()].c_str(), path.c_str()), 0);
          break;
        }
        [[fallthrough]];
      case 4:
        Write(path, contents[rng() % contents.size()], 0600 | (rng() % 0200));
        files.push_back(path);
        break;
      case 5:
        ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
        break;
      default: {
        Write(path, Pattern(rng() % 10000, rng()), 0600 | (rng() % 0200));
        if (rng() % 4 == 0)
          Xattr(path, "user.k" + std::to_string(rng() % 3), Pattern(rng() % 50, 1));
        files.push_back(path);
        break;
      }
    }
    if (rng() % 3 == 0)
      SetMtime(path, static_cast<int64_t>(rng() % 2000000000), rng() % 1000000000);
  }
  // Directory mtimes last (adding entries changed them).
  for (size_t i = 1; i < dirs.size(); ++i) {
    SetMtime(dirs[i], static_cast<int64_t>(rng() % 2000000000), rng() % 1000000000);
  }
  SetMtime(dir, 0, 0);
}

std::unique_ptr<rafs::fs::Image> OpenBuilt(const std::string& boot, const std::string& blob_dir) {
  auto meta = rafs::meta::OpenMetadataFile(boot);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (!meta.ok()) return nullptr;
  auto backend = std::make_shared<storage::LocalFsBackend>(blob_dir);
  auto image =
      rafs::fs::Image::Open(std::shared_ptr<rafs::meta::Metadata>(std::move(*meta)), backend);
  EXPECT_TRUE(image.ok()) << image.status();
  if (!image.ok()) return nullptr;
  return std::move(*image);
}

std::string JoinLines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

}  // namespace rfs::testing
