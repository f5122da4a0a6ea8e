// RafsFilesystem driven without a mount: the runtime conventions and the
// error codes a FUSE server maps to errno.
#include "rafs/fs/rafs_filesystem.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "rafs/meta/metadata.h"
#include "test/support/rafs_writer.h"

namespace rfs::rafs::fs {
namespace {

using base::StatusCode;

std::shared_ptr<meta::Metadata> Build(bool explicit_ids, uint64_t root_mtime) {
  std::vector<testing::TreeEntry> t(3);
  t[0].path = "/";
  t[0].mode = S_IFDIR | 0700;
  t[0].mtime = root_mtime;
  t[1].path = "/f";
  t[1].mode = S_IFREG | 0640;
  t[1].uid = 5;
  t[1].gid = 6;
  t[1].mtime = 1234;
  t[1].data = "data";
  t[1].xattrs = {{"user.a", "1"}, {"security.capability", "cap"}};
  t[2].path = "/l";
  t[2].mode = S_IFLNK | 0777;
  t[2].symlink_target = "f";
  testing::WriterOptions o;
  o.explicit_uid_gid = explicit_ids;
  auto w = testing::WriteImage(t, o);
  EXPECT_TRUE(w.ok()) << w.status();
  auto m = meta::OpenMetadata(std::move(w->bootstrap));
  EXPECT_TRUE(m.ok()) << m.status();
  return std::shared_ptr<meta::Metadata>(std::move(*m));
}

TEST(RafsFilesystemTest, RuntimeConventions) {
  FsOptions o;
  o.default_uid = 77;
  o.default_gid = 88;
  o.mount_time = 1700000000;
  RafsFilesystem explicit_fs(Build(true, 0), o);
  auto root = explicit_fs.GetAttr(meta::kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->attr.mode, S_IFDIR | 0755u);    // root forced to 0755
  EXPECT_EQ(root->attr.mtime, 1700000000u);       // mtime 0 -> mount time
  EXPECT_EQ(root->blksize, 4096u);
  auto f = explicit_fs.Lookup(meta::kRootIno, "f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->attr.uid, 5u);
  EXPECT_EQ(f->attr.gid, 6u);
  EXPECT_EQ(f->attr.mtime, 1234u);
  EXPECT_EQ(f->attr.blocks, 1u);  // ceil(4 / 512)

  RafsFilesystem implicit_fs(Build(false, 99), o);
  auto g = implicit_fs.Lookup(meta::kRootIno, "f");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->attr.uid, 77u);  // no explicit ids: the daemon's
  EXPECT_EQ(g->attr.gid, 88u);
  EXPECT_EQ(implicit_fs.GetAttr(meta::kRootIno)->attr.mtime, 99u);
}

TEST(RafsFilesystemTest, XattrsLinksAndErrors) {
  RafsFilesystem fs(Build(true, 0), FsOptions{});
  auto f = fs.Lookup(meta::kRootIno, "f");
  ASSERT_TRUE(f.ok());
  const uint64_t ino = f->attr.ino;
  EXPECT_EQ(*fs.GetXattr(ino, "security.capability"), "cap");
  EXPECT_EQ(fs.GetXattr(ino, "user.missing").status().code(), StatusCode::kNotFound);
  auto names = fs.ListXattr(ino);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->size(), 2u);
  auto l = fs.Lookup(meta::kRootIno, "l");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*fs.ReadLink(l->attr.ino), "f");
  EXPECT_EQ(fs.ReadLink(ino).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(fs.Lookup(meta::kRootIno, "nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(fs.Lookup(ino, "x").status().code(), StatusCode::kInvalidArgument);  // ENOTDIR
  EXPECT_EQ(fs.Read(meta::kRootIno, 0, 10).status().code(), StatusCode::kInvalidArgument);
  auto plan = fs.Read(ino, 1, 100);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->total, 3u);  // clipped to the file size
  ASSERT_EQ(plan->segments.size(), 1u);
  EXPECT_EQ(plan->segments[0].offset_in_chunk, 1u);
}

}  // namespace
}  // namespace rfs::rafs::fs
