// rafs/builder: directory builds read back by our reader, checker and
// extractor, by stock fsck.erofs and (as root) by the kernel EROFS driver;
// the default layout of spec RAFS-FORMAT 9.1 byte by byte; reproducibility.
#include "rafs/builder/builder.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <tuple>

#include "base/bytes.h"
#include "base/digest.h"
#include "rafs/builder/crc32c.h"
#include "rafs/format/blob.h"
#include "rafs/format/v6.h"
#include "rafs/fs/checker.h"
#include "rafs/fs/extractor.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "test/rafs/builder/tree_gen.h"
#include "test/support/kernel_mount.h"
#include "test/support/test_util.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs::builder {
namespace {

using base::LoadLe32;
using base::LoadLe64;
using testing::TempDir;

// Round trip: check (every digest), compare with the source, extract and
// compare the extracted tree with the source too.
void ExpectRoundTrip(const std::string& src, const std::string& boot, const std::string& blobs,
                     const std::string& scratch) {
  auto image = testing::OpenBuilt(boot, blobs);
  ASSERT_NE(image, nullptr);
  auto report = fs::CheckImage(*image, {});
  ASSERT_TRUE(report.ok()) << report.status();
  auto diffs = testing::CompareImageWithDirectory(*image, src);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  const std::string out = scratch + "/extracted";
  fs::ExtractOptions xo;
  // Owners are compared on the image itself above; the extractor sets them
  // after xattrs and chown drops security.capability, so leave them.
  xo.preserve_owners = false;
  xo.create_devices = testing::IsRoot();
  auto x = fs::ExtractImage(*image, out, xo);
  ASSERT_TRUE(x.ok()) << x.status();
  testing::SetMtime(out, 0, 0);
  testing::CompareOptions co;
  co.owners = false;
  auto xdiffs = testing::CompareImageWithDirectory(*image, out, co);
  EXPECT_TRUE(xdiffs.empty()) << testing::JoinLines(xdiffs);
}

// fsck.erofs accepts the bootstrap (metadata; the blob as extra device).
void ExpectFsckAccepts(const std::string& boot, const std::string& blob) {
  if (!testing::HaveCommand("fsck.erofs")) {
    std::cout << "fsck.erofs not installed: skipping its check\n";
    return;
  }
  std::string out;
  std::string dev = blob.empty() ? "" : " --device=" + blob;
  int rc = testing::RunCommand("fsck.erofs" + dev + " " + boot + " 2>&1", &out);
  EXPECT_EQ(rc, 0) << out;
}

struct Variant {
  storage::Compressor compressor;
  base::DigestAlgo digester;
  uint32_t chunk_size;
  bool aligned, toc, inline_meta;
};

std::string Name(const Variant& v) {
  return std::string(storage::CompressorName(v.compressor)) + "_" +
         std::string(base::DigestAlgoName(v.digester)) + "_" + std::to_string(v.chunk_size) +
         (v.aligned ? "_aligned" : "") + (v.toc ? "_toc" : "") + (v.inline_meta ? "_inline" : "");
}

class BuilderVariantTest : public ::testing::TestWithParam<Variant> {};

TEST_P(BuilderVariantTest, RichTreeRoundTrips) {
  const Variant& v = GetParam();
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  testing::MakeRichTree(src);
  BuildOptions o;
  o.compressor = v.compressor;
  o.digester = v.digester;
  o.chunk_size = v.chunk_size;
  o.aligned = v.aligned;
  o.blob_toc = v.toc;
  o.blob_inline_meta = v.inline_meta;
  auto r = BuildFromDirectory(src, boot, blobs, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->chunks_stored, r->chunks);  // duplicates were stored once
  ExpectRoundTrip(src, boot, blobs, t.path());
  ExpectFsckAccepts(boot, r->blob_path);

  auto meta = meta::OpenMetadataFile(boot);
  ASSERT_TRUE(meta.ok());
  ASSERT_EQ((*meta)->blobs().size(), 1u);
  if (v.inline_meta) {
    // The blob alone is a complete image too.
    auto from_blob = testing::OpenBuilt(r->blob_path, blobs);
    ASSERT_NE(from_blob, nullptr);
    auto report = fs::CheckImage(*from_blob, {});
    EXPECT_TRUE(report.ok()) << report.status();
    auto diffs = testing::CompareImageWithDirectory(*from_blob, src);
    EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, BuilderVariantTest,
    ::testing::Values(
        Variant{storage::Compressor::kZstd, base::DigestAlgo::kBlake3, 1u << 20, false, false,
                false},
        Variant{storage::Compressor::kZstd, base::DigestAlgo::kSha256, 1u << 20, false, true,
                false},
        Variant{storage::Compressor::kZstd, base::DigestAlgo::kSha256, 1u << 20, false, false,
                true},
        Variant{storage::Compressor::kZstd, base::DigestAlgo::kSha256, 1u << 20, false, true, true},
        Variant{storage::Compressor::kLz4Block, base::DigestAlgo::kBlake3, 4096, false, false,
                false},
        Variant{storage::Compressor::kNone, base::DigestAlgo::kSha256, 65536, true, false, false},
        Variant{storage::Compressor::kZstd, base::DigestAlgo::kSha256, 16u << 20, true, false,
                false}),
    [](const ::testing::TestParamInfo<Variant>& p) { return Name(p.param); });

// The default layout, field by field (spec 9.1).
TEST(BuilderLayoutTest, DefaultLayoutMatchesSpec91) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  testing::MakeRichTree(src);
  auto r = BuildFromDirectory(src, boot, blobs, {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto b = testing::ReadFileBytes(boot);
  auto blob = testing::ReadFileBytes(r->blob_path);
  ASSERT_EQ(b.size() % 4096, 0u);
  // Blob id = sha256 of the file, and the file's name.
  EXPECT_EQ(r->blob_id, base::DigestHex(base::Sha256(blob)));
  EXPECT_EQ(r->blob_path, blobs + "/" + r->blob_id);
  // Superblocks.
  EXPECT_EQ(LoadLe32(&b[1024]), format::kErofsMagic);
  EXPECT_EQ(LoadLe32(&b[1024 + 8]), 0x40000000u);
  EXPECT_EQ(b[1024 + 12], 12);
  EXPECT_EQ(base::LoadLe16(&b[1024 + 14]), 128);
  EXPECT_EQ(LoadLe32(&b[1024 + 40]), 2u);  // meta_blkaddr with one blob
  EXPECT_EQ(LoadLe32(&b[1024 + 80]), 0x0Cu);
  EXPECT_EQ(base::LoadLe16(&b[1024 + 86]), 1);
  EXPECT_EQ(base::LoadLe16(&b[1024 + 88]), 11);
  EXPECT_EQ(LoadLe64(&b[1152]), 0x01000094u | 0x20u);  // xattrs present
  EXPECT_EQ(LoadLe64(&b[1152 + 8]), 4096u);
  EXPECT_EQ(LoadLe32(&b[1152 + 16]), 256u);
  EXPECT_EQ(LoadLe32(&b[1152 + 20]), 1u << 20);
  EXPECT_EQ(LoadLe64(&b[1152 + 40]), 0u);  // no prefetch table
  // Root inode at 0x3000, extended.
  EXPECT_EQ(base::LoadLe16(&b[0x3000]) & 1, 1);
  // Blob table entry.
  const uint8_t* e = &b[4096];
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(e), 64), r->blob_id);
  EXPECT_EQ(LoadLe32(e + 84), 0x40000001u);
  EXPECT_EQ(LoadLe64(e + 88), blob.size());
  EXPECT_EQ(LoadLe32(e + 104), 0u);
  const uint32_t count = LoadLe32(e + 72);
  const uint64_t ci_offset = LoadLe64(e + 112);
  const uint64_t ci_csize = LoadLe64(e + 120);
  EXPECT_EQ(LoadLe64(e + 128), 16u * count);
  // Blob = data + ci + 4096-byte header, nothing else.
  EXPECT_EQ(ci_offset + ci_csize + 4096, blob.size());
  auto hdr = format::DecodeCiHeader(base::ByteSpan(blob).subspan(blob.size() - 4096));
  ASSERT_TRUE(hdr.ok()) << hdr.status();
  EXPECT_EQ(hdr->s_features, 0x40000001u);
  EXPECT_EQ(hdr->s_ci_entries, count);
  EXPECT_EQ(hdr->s_ci_offset, ci_offset);
  // Chunk table sorted by (digest, blob index), CRC-32C flags.
  const uint64_t ct = LoadLe64(&b[1152 + 24]);
  const uint64_t ct_size = LoadLe64(&b[1152 + 32]);
  ASSERT_EQ(ct_size, 80u * count);
  for (uint64_t i = 0; i < count; ++i) {
    auto rec = format::DecodeChunkRecord(&b[ct + 80 * i]);
    if (i > 0) {
      auto prev = format::DecodeChunkRecord(&b[ct + 80 * (i - 1)]);
      EXPECT_LT(std::memcmp(prev.block_id, rec.block_id, 32), 0);
    }
    EXPECT_EQ(rec.uncompressed_offset % 4096, 0u);
    std::vector<uint8_t> data(rec.uncompressed_size);
    base::ByteSpan stored(&blob[rec.compressed_offset], rec.compressed_size);
    if (rec.flags & format::kChunkCompressed) {
      ASSERT_TRUE(storage::Decompress(storage::Compressor::kZstd, stored, data).ok());
    } else {
      std::copy(stored.begin(), stored.end(), data.begin());
    }
    EXPECT_EQ(rec.crc32, Crc32c(data));
    EXPECT_EQ((rec.flags & format::kChunkHasCrc32) != 0, rec.crc32 != 0);
  }
}

TEST(BuilderLayoutTest, PrefetchTableAndDataOrder) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  testing::MakeRichTree(src);
  BuildOptions o;
  o.digester = base::DigestAlgo::kSha256;
  o.prefetch_paths = {"/z/hl2", "/missing", "/etc"};
  auto r = BuildFromDirectory(src, boot, blobs, o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto b = testing::ReadFileBytes(boot);
  const uint64_t pf_off = LoadLe64(&b[1152 + 40]);
  const uint32_t pf_size = LoadLe32(&b[1152 + 48]);
  ASSERT_EQ(pf_size, 8u);  // two of the three patterns matched
  EXPECT_EQ(pf_off, 4096u + 256u);
  auto meta = meta::OpenMetadataFile(boot);
  ASSERT_TRUE(meta.ok()) << meta.status();
  auto pf = (*meta)->PrefetchInodes();
  ASSERT_TRUE(pf.ok()) << pf.status();
  auto hl2 = meta::ResolvePath(**meta, "/z/hl2");
  auto etc = meta::ResolvePath(**meta, "/etc");
  ASSERT_TRUE(hl2.ok() && etc.ok());
  EXPECT_EQ(*pf, (std::vector<uint64_t>{*hl2, *etc}));
  // The prefetched file's data comes first in the blob.
  auto blob = testing::ReadFileBytes(r->blob_path);
  const std::string first = "linked content\n";
  ASSERT_GE(blob.size(), first.size());
  EXPECT_EQ(std::string(blob.begin(), blob.begin() + first.size()), first);
  auto image = testing::OpenBuilt(boot, blobs);
  ASSERT_NE(image, nullptr);
  EXPECT_TRUE(testing::CompareImageWithDirectory(*image, src).empty());
  ExpectFsckAccepts(boot, r->blob_path);
}

TEST(BuilderLayoutTest, MetadataOnlyTreeHasNoBlob) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((src + "/d").c_str(), 0755), 0);
  ASSERT_EQ(symlink("d", (src + "/s").c_str()), 0);
  testing::WriteFileBytes(src + "/empty", {});
  testing::SetMtime(src, 0, 0);
  auto r = BuildFromDirectory(src, boot, blobs, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->blob_id.empty());
  EXPECT_TRUE(std::filesystem::is_empty(blobs));  // no blob, no temporary left
  auto b = testing::ReadFileBytes(boot);
  EXPECT_EQ(LoadLe32(&b[1024 + 40]), 0u);       // meta_blkaddr 0
  EXPECT_EQ(base::LoadLe16(&b[1024 + 86]), 0);  // no devices
  EXPECT_EQ(LoadLe64(&b[1152]), 0x01000194u);   // + INLINED_CHUNK_DIGEST
  EXPECT_EQ(LoadLe64(&b[1152 + 8]), 4096u);
  EXPECT_EQ(LoadLe32(&b[1152 + 16]), 0u);
  EXPECT_EQ(LoadLe64(&b[1152 + 24]), b.size());  // chunk table offset = end
  EXPECT_EQ(base::LoadLe16(&b[4096]) & 1, 1);    // root inode at 4096
  ExpectRoundTrip(src, boot, blobs, t.path());
  ExpectFsckAccepts(boot, "");
}

TEST(BuilderTest, ReproducibleBytes) {
  TempDir t;
  const std::string src = t.Sub("src");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  testing::MakeRichTree(src);
  for (bool toc : {false, true}) {
    std::vector<std::vector<uint8_t>> boots, blobs_bytes;
    for (int i = 0; i < 2; ++i) {
      const std::string blobs = t.Sub("blobs" + std::to_string(i) + (toc ? "t" : ""));
      ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
      BuildOptions o;
      o.blob_toc = toc;
      o.blob_inline_meta = toc;
      // BLAKE3 is slow in sanitizer builds; the default digester is covered
      // by the first round.
      if (toc) o.digester = base::DigestAlgo::kSha256;
      o.threads = i + 1;  // thread count must not change the output
      auto r = BuildFromDirectory(src, blobs + "/boot", blobs, o);
      ASSERT_TRUE(r.ok()) << r.status();
      boots.push_back(testing::ReadFileBytes(blobs + "/boot"));
      blobs_bytes.push_back(testing::ReadFileBytes(r->blob_path));
    }
    EXPECT_TRUE(boots[0] == boots[1]) << "bootstraps differ, toc=" << toc;
    EXPECT_TRUE(blobs_bytes[0] == blobs_bytes[1]) << "blobs differ, toc=" << toc;
  }
}

class BuilderRandomTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(BuilderRandomTest, RandomTreeRoundTrips) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  testing::MakeRandomTree(src, GetParam(), 400);
  BuildOptions o;
  o.chunk_size = 1u << (12 + GetParam() % 6);
  if (GetParam() % 2 == 0) o.digester = base::DigestAlgo::kSha256;
  auto r = BuildFromDirectory(src, boot, blobs, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectRoundTrip(src, boot, blobs, t.path());
  ExpectFsckAccepts(boot, r->blob_path);
}

INSTANTIATE_TEST_SUITE_P(Seeds, BuilderRandomTest, ::testing::Values(1, 2, 3, 4));

TEST(BuilderTest, HundredThousandEntryDirectory) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((src + "/d").c_str(), 0755), 0);
  for (int i = 0; i < 100000; ++i) {
    std::string p = src + "/d/f" + std::to_string(i);
    int fd = open(p.c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
  }
  testing::SetMtime(src, 0, 0);
  auto r = BuildFromDirectory(src, boot, blobs, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries, 100002u);
  auto image = testing::OpenBuilt(boot, blobs);
  ASSERT_NE(image, nullptr);
  testing::CompareOptions co;
  co.contents = false;
  auto diffs = testing::CompareImageWithDirectory(*image, src, co);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
  ExpectFsckAccepts(boot, "");
}

TEST(BuilderTest, FileAbove4GiBIsSparseAndReadable) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  const uint64_t size = (5ull << 30) + 4097;
  const std::string tail = "the end of a large file";
  {
    int fd = open((src + "/huge").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, tail.data(), tail.size(), static_cast<off_t>(size - tail.size())),
              static_cast<ssize_t>(tail.size()));
    close(fd);
  }
  auto r = BuildFromDirectory(src, boot, blobs, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->file_bytes, size);
  EXPECT_LE(r->chunks_stored, 3u);  // zero chunk, last chunk
  auto image = testing::OpenBuilt(boot, blobs);
  ASSERT_NE(image, nullptr);
  auto st = image->fs().Lookup(1, "huge");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->attr.size, size);
  auto end = image->ReadFile(st->attr.ino, size - tail.size(), tail.size());
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(std::string(end->begin(), end->end()), tail);
  auto mid = image->ReadFile(st->attr.ino, 4ull << 30, 100);
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(*mid, std::vector<uint8_t>(100, 0));
}

TEST(BuilderTest, ErrorsNameTheProblem) {
  TempDir t;
  const std::string blobs = t.Sub("blobs");
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  auto missing = BuildFromDirectory(t.Sub("nope"), t.Sub("boot"), blobs, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  BuildOptions o;
  o.chunk_size = 12345;
  ASSERT_EQ(mkdir(t.Sub("src").c_str(), 0755), 0);
  testing::WriteFileBytes(t.Sub("src") + "/f", {1, 2, 3});
  auto bad = BuildFromDirectory(t.Sub("src"), t.Sub("boot"), blobs, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("12345"), std::string::npos);
}

TEST(BuilderKernelTest, AlignedUncompressedImageMountsAsErofs) {
  if (!testing::IsRoot()) GTEST_SKIP() << "needs root for loop devices and mount";
  if (!testing::HaveCommand("losetup")) GTEST_SKIP() << "losetup not installed";
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs"), boot = t.Sub("boot");
  const std::string mnt = t.Sub("mnt");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
  testing::MakeRichTree(src);
  BuildOptions o;
  o.aligned = true;
  o.compressor = storage::Compressor::kNone;
  o.digester = base::DigestAlgo::kSha256;  // BLAKE3 is slow under sanitizers
  o.chunk_size = 64 * 1024;
  auto r = BuildFromDirectory(src, boot, blobs, o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto image = testing::OpenBuilt(boot, blobs);
  ASSERT_NE(image, nullptr);
  ASSERT_TRUE(testing::CompareImageWithDirectory(*image, src).empty());
  // fsck.erofs extracts the same tree from bootstrap + blob.
  if (testing::HaveCommand("fsck.erofs")) {
    std::string out;
    ASSERT_EQ(testing::RunCommand("fsck.erofs --device=" + r->blob_path +
                                      " --extract=" + t.Sub("fsck") + " " + boot + " 2>&1",
                                  &out),
              0)
        << out;
    // fsck.erofs 1.5 extracts names, types and contents (no xattrs, no
    // hard links, no set-id bits), so compare those with diff.
    std::string diff;
    EXPECT_EQ(
        testing::RunCommand("diff -r --no-dereference -x fifo -x sock -x chr -x blk -x null " +
                                src + " " + t.Sub("fsck") + " 2>&1",
                            &diff),
        0)
        << diff;
  }
  testing::KernelErofsMount km;
  std::string boot_dev, blob_dev, out;
  if (!km.Loop(boot, &boot_dev) || !km.Loop(r->blob_path, &blob_dev)) {
    GTEST_SKIP() << "no loop devices available";
  }
  if (km.Mount(boot_dev, blob_dev, mnt, &out) != 0) {
    if (testing::RunCommand("grep -qw erofs /proc/filesystems") != 0) {
      GTEST_SKIP() << "kernel without erofs: " << out;
    }
    FAIL() << "mount failed: " << out;
  }
  auto diffs = testing::CompareImageWithDirectory(*image, mnt);
  EXPECT_TRUE(diffs.empty()) << testing::JoinLines(diffs);
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(base::AsBytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(base::AsBytes("")), 0u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
}

}  // namespace
}  // namespace rfs::rafs::builder
