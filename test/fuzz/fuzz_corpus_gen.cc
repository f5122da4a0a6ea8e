// Writes seed bootstraps for the fuzzer into DIR: v5 and v6 images with
// every inode kind, xattrs, multi-block directories and hard links.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "test/support/rafs_writer.h"
#include "test/support/test_util.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_corpus_gen DIR\n");
    return 2;
  }
  using rfs::testing::TreeEntry;
  std::vector<TreeEntry> tree;
  auto add = [&](std::string path, uint32_t mode) -> TreeEntry& {
    TreeEntry e;
    e.path = std::move(path);
    e.mode = mode;
    e.mtime = 1700000000;
    tree.push_back(e);
    return tree.back();
  };
  add("/", S_IFDIR | 0755);
  add("/dir", S_IFDIR | 0750).xattrs = {{"user.k", "v"}, {"trusted.t", ""}};
  add("/dir/file", S_IFREG | 0644).data = std::string(10000, 'x');
  add("/dir/link", S_IFLNK | 0777).symlink_target = "../dir/file";
  add("/dir/hard", S_IFREG | 0644).hardlink_to = "/dir/file";
  add("/chr", S_IFCHR | 0600).rdev = (5u << 8) | 1;
  add("/fifo", S_IFIFO | 0600);
  add("/sock", S_IFSOCK | 0600);
  add("/big", S_IFDIR | 0755);
  for (int i = 0; i < 150; ++i) add("/big/entry-" + std::to_string(i), S_IFREG | 0600).data = "y";

  int written = 0;
  for (int version : {5, 6}) {
    for (bool compact : {false, true}) {
      if (version == 5 && compact) continue;
      rfs::testing::WriterOptions o;
      o.fs_version = version;
      o.compact_inodes = compact;
      o.chunk_size = 4096;
      auto img = rfs::testing::WriteImage(tree, o);
      if (!img.ok()) {
        std::fprintf(stderr, "write v%d: %s\n", version, img.status().ToString().c_str());
        return 1;
      }
      std::string path = std::string(argv[1]) + "/seed-v" + std::to_string(version) +
                         (compact ? "-compact" : "");
      rfs::testing::WriteFileBytes(path, img->bootstrap);
      ++written;
    }
  }
  std::printf("wrote %d seeds\n", written);
  return 0;
}
