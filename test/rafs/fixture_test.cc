// The upstream fixture (../shared/fixtures/upstream) reads exactly as its
// README says.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>

#include "rafs/fs/checker.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/v6_metadata.h"
#include "rafs/meta/walk.h"
#include "test/support/test_util.h"

namespace rfs::rafs {
namespace {

using testing::UpstreamFixture;

constexpr char kBlobId[] = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";

std::unique_ptr<fs::Image> OpenFixture() {
  auto m = meta::OpenMetadataFile(UpstreamFixture("rafs-v6-2.2.boot"));
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  auto backend = std::make_shared<storage::LocalFsBackend>(UpstreamFixture(""));
  auto img = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)), backend);
  EXPECT_TRUE(img.ok()) << img.status();
  return img.ok() ? std::move(*img) : nullptr;
}

TEST(FixtureTest, SuperblockAndBlobTable) {
  auto img = OpenFixture();
  ASSERT_NE(img, nullptr);
  const auto& sb = img->metadata().super();
  EXPECT_EQ(sb.version, 6);
  EXPECT_FALSE(sb.plain_erofs);
  EXPECT_EQ(sb.flags, 0x194u);
  EXPECT_EQ(sb.compressor, storage::Compressor::kZstd);
  EXPECT_EQ(sb.digester, base::DigestAlgo::kBlake3);
  EXPECT_EQ(sb.chunk_size, 1u << 20);
  EXPECT_EQ(sb.block_size, 4096u);
  EXPECT_EQ(sb.inode_count, 3u);
  EXPECT_EQ(sb.chunk_table_records, 2u);
  EXPECT_TRUE(sb.explicit_uid_gid);
  ASSERT_EQ(img->metadata().blobs().size(), 1u);
  const auto& b = img->metadata().blobs()[0];
  EXPECT_EQ(b.info.blob_id, kBlobId);
  EXPECT_EQ(b.info.compressed_size, 14554u);
  EXPECT_EQ(b.info.chunk_count, 2u);
  EXPECT_EQ(b.features, 0x70000021u);
  auto* v6 = dynamic_cast<const meta::V6Metadata*>(&img->metadata());
  ASSERT_NE(v6, nullptr);
  EXPECT_EQ(v6->root_nid(), 128u);
  EXPECT_TRUE(img->metadata().PrefetchInodes()->empty());
}

TEST(FixtureTest, ListingMatchesReadme) {
  auto img = OpenFixture();
  ASSERT_NE(img, nullptr);
  struct Want {
    uint32_t mode;
    uint64_t size;
    uint32_t nlink;
    uint64_t mtime;
    uint32_t nsec;
    std::string md5;
  };
  std::map<std::string, Want> want = {
      {"/", {S_IFDIR | 0755, 67, 2, 0, 0, ""}},
      {"/lib.rs",
       {S_IFREG | 0644, 16931, 1, 1676819553, 628661334, "4709cf8873e419ecedc7d43fdee4a75f"}},
      {"/sync_io.rs",
       {S_IFREG | 0644, 13400, 1, 1676819553, 628993084, "5442bc7dc9dc5f985c7594e23866ae6f"}},
  };
  std::map<std::string, bool> seen;
  meta::WalkCallbacks cb;
  cb.visit = [&](const meta::WalkEntry& e) {
    auto it = want.find(e.path);
    EXPECT_NE(it, want.end()) << "unexpected " << e.path;
    if (it == want.end()) return base::Status::Ok();
    seen[e.path] = true;
    EXPECT_EQ(e.attr.mode, it->second.mode) << e.path;
    EXPECT_EQ(e.attr.size, it->second.size) << e.path;
    EXPECT_EQ(e.attr.nlink, it->second.nlink) << e.path;
    EXPECT_EQ(e.attr.mtime, it->second.mtime) << e.path;
    EXPECT_EQ(e.attr.mtime_nsec, it->second.nsec) << e.path;
    EXPECT_EQ(e.attr.uid, 0u);
    EXPECT_EQ(e.attr.gid, 0u);
    if (S_ISREG(e.attr.mode)) {
      auto data = img->ReadFile(e.ino, 0, e.attr.size);
      EXPECT_TRUE(data.ok()) << data.status();
      if (data.ok()) {
        EXPECT_EQ(testing::Md5Hex(*data), it->second.md5) << e.path;
      }
    }
    return base::Status::Ok();
  };
  ASSERT_TRUE(meta::WalkTree(img->metadata(), "/", cb).ok());
  EXPECT_EQ(seen.size(), want.size());
  // Inode numbers are the nids (root is 1).
  EXPECT_EQ(*meta::ResolvePath(img->metadata(), "/lib.rs"), 133u);
  EXPECT_EQ(*meta::ResolvePath(img->metadata(), "/sync_io.rs"), 136u);
  EXPECT_EQ(*meta::ResolvePath(img->metadata(), "/"), meta::kRootIno);
}

TEST(FixtureTest, DotEntriesAndLookup) {
  auto img = OpenFixture();
  ASSERT_NE(img, nullptr);
  const auto& m = img->metadata();
  std::vector<std::string> names;
  ASSERT_TRUE(m.ReadDir(meta::kRootIno, 0, [&](const meta::DirEntry& d, uint64_t) {
                 names.push_back(d.name);
                 return true;
               }).ok());
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "lib.rs", "sync_io.rs"}));
  EXPECT_EQ(*m.Lookup(meta::kRootIno, ".."), meta::kRootIno);
  EXPECT_EQ(m.Lookup(meta::kRootIno, "missing").status().code(), base::StatusCode::kNotFound);
  EXPECT_EQ(m.Lookup(133, "x").status().code(), base::StatusCode::kInvalidArgument);
  // Resuming from each cookie yields the remaining entries.
  uint64_t cookie = 0;
  std::vector<std::string> resumed;
  for (;;) {
    bool got = false;
    ASSERT_TRUE(m.ReadDir(meta::kRootIno, cookie, [&](const meta::DirEntry& d, uint64_t next) {
                   resumed.push_back(d.name);
                   cookie = next;
                   got = true;
                   return false;
                 }).ok());
    if (!got) break;
  }
  EXPECT_EQ(resumed, names);
}

TEST(FixtureTest, PartialReads) {
  auto img = OpenFixture();
  ASSERT_NE(img, nullptr);
  auto whole = img->ReadFile(133, 0, 1 << 20);
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->size(), 16931u);
  for (uint64_t off : {0ull, 1ull, 4095ull, 4096ull, 16930ull}) {
    auto part = img->ReadFile(133, off, 100);
    ASSERT_TRUE(part.ok());
    std::vector<uint8_t> expect(whole->begin() + off,
                                whole->begin() + std::min<uint64_t>(off + 100, 16931));
    EXPECT_EQ(*part, expect) << off;
  }
  EXPECT_TRUE(img->ReadFile(133, 16931, 10)->empty());
  EXPECT_TRUE(img->ReadFile(133, 1ull << 40, 10)->empty());
}

TEST(FixtureTest, CheckVerifiesEveryChunk) {
  auto img = OpenFixture();
  ASSERT_NE(img, nullptr);
  auto r = fs::CheckImage(*img, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files, 2u);
  EXPECT_EQ(r->directories, 1u);
  EXPECT_EQ(r->chunks_verified, 2u);
  EXPECT_EQ(r->blobs_checked, 1u);
}

TEST(FixtureTest, FlippedBlobByteFailsCheckNamingTheChunk) {
  testing::TempDir dir;
  auto blob = testing::ReadFileBytes(UpstreamFixture(kBlobId));
  ASSERT_EQ(blob.size(), 14554u);
  // Byte 100 lies in chunk 0's compressed data (compressed offset 0, size 0x12DC).
  blob[100] ^= 0x01;
  testing::WriteFileBytes(dir.Sub(kBlobId), blob);
  auto m = meta::OpenMetadataFile(UpstreamFixture("rafs-v6-2.2.boot"));
  ASSERT_TRUE(m.ok());
  auto img = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                             std::make_shared<storage::LocalFsBackend>(dir.path()));
  ASSERT_TRUE(img.ok());
  auto r = fs::CheckImage(**img, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), base::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("/lib.rs"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("chunk 0"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("blob offset 0"), std::string::npos) << r.status();
  // A reader never gets the bytes of the bad chunk; the other file is fine.
  EXPECT_FALSE((*img)->ReadFile(133, 0, 10).ok());
  EXPECT_TRUE((*img)->ReadFile(136, 0, 10).ok());
}

}  // namespace
}  // namespace rfs::rafs
