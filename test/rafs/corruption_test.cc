// Corruption: flip, truncate and extend the bytes of v5 and v6 bootstraps and
// of data blobs. Every outcome is a result or a clear error (kDataLoss, or
// kNotFound / kInvalidArgument when a corrupted name or type changes what a
// lookup finds); never a crash (ASan/UBSan run these in CI), a hang, or a
// chunk that fails its digest handed to a reader.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>

#include "rafs/fs/checker.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "test/support/memory_backend.h"
#include "test/support/rafs_writer.h"
#include "test/support/tree_compare.h"

namespace rfs::rafs {
namespace {

using base::StatusCode;
using testing::BlobLayout;
using testing::TreeEntry;
using testing::WriterOptions;

std::vector<TreeEntry> SmallTree() {
  std::vector<TreeEntry> t;
  auto add = [&](std::string path, uint32_t mode) -> TreeEntry& {
    TreeEntry e;
    e.path = std::move(path);
    e.mode = mode;
    e.mtime = 1600000000;
    t.push_back(e);
    return t.back();
  };
  add("/", S_IFDIR | 0755);
  add("/d", S_IFDIR | 0755).xattrs = {{"user.k", "value"}};
  std::string multi(3 * 4096 + 100, '\0');
  for (size_t i = 0; i < multi.size(); ++i) multi[i] = static_cast<char>(i * 7 + i / 4096);
  add("/d/multi", S_IFREG | 0644).data = multi;
  add("/d/small", S_IFREG | 0600).data = "small file";
  add("/d/hard", S_IFREG | 0600).hardlink_to = "/d/small";
  add("/link", S_IFLNK | 0777).symlink_target = "d/small";
  add("/chr", S_IFCHR | 0600).rdev = (1 << 8) | 3;
  for (int i = 0; i < 12; ++i) add("/e/f" + std::to_string(i), S_IFREG | 0644).data = "e";
  return t;
}

testing::WrittenImage Write(int version, BlobLayout layout) {
  WriterOptions o;
  o.fs_version = version;
  o.chunk_size = 4096;
  o.layout = layout;
  auto w = testing::WriteImage(SmallTree(), o);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : testing::WrittenImage{};
}

bool Allowed(StatusCode c) {
  return c == StatusCode::kOk || c == StatusCode::kDataLoss || c == StatusCode::kNotFound ||
         c == StatusCode::kInvalidArgument || c == StatusCode::kUnimplemented ||
         c == StatusCode::kCancelled;
}

// Opens `boot` and exercises every operation on every entry. Returns the
// codes seen; records a failure for a code outside Allowed().
std::set<StatusCode> Exercise(std::vector<uint8_t> boot,
                              const std::shared_ptr<testing::MemoryBackend>& blobs,
                              const std::string& what) {
  std::set<StatusCode> seen;
  auto note = [&](const base::Status& s) {
    seen.insert(s.code());
    if (!Allowed(s.code())) ADD_FAILURE() << what << ": unexpected " << s;
  };
  auto m = meta::OpenMetadata(std::move(boot));
  if (!m.ok()) {
    note(m.status());
    return seen;
  }
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)), blobs);
  if (!image.ok()) {
    note(image.status());
    return seen;
  }
  const meta::Metadata& md = (*image)->metadata();
  int budget = 200;
  meta::WalkCallbacks cb;
  cb.visit = [&](const meta::WalkEntry& e) -> base::Status {
    if (--budget < 0) return base::CancelledError("enough");
    note(md.GetXattrs(e.ino).status());
    note(md.CheckInode(e.ino));
    if (S_ISLNK(e.attr.mode)) note(md.ReadLink(e.ino).status());
    if (S_ISREG(e.attr.mode)) {
      auto data = (*image)->ReadFile(e.ino, 0, std::min<uint64_t>(e.attr.size, 1 << 20));
      note(data.status());
    }
    if (!e.name.empty()) note(md.Lookup(e.parent, e.name).status());
    return base::Status::Ok();
  };
  note(meta::WalkTree(md, "/", cb));
  note(md.PrefetchInodes().status());
  return seen;
}

struct Variant {
  std::string name;
  int version;
  BlobLayout layout;
};

class CorruptionTest : public ::testing::TestWithParam<Variant> {};

TEST_P(CorruptionTest, EveryFlippedBootstrapByte) {
  auto w = Write(GetParam().version, GetParam().layout);
  auto blobs = std::make_shared<testing::MemoryBackend>(w.blobs);
  // The intact image reads cleanly.
  auto clean = Exercise(w.bootstrap, blobs, "intact");
  EXPECT_EQ(clean, std::set<StatusCode>{StatusCode::kOk});
  size_t detected = 0;
  for (size_t i = 0; i < w.bootstrap.size(); ++i) {
    std::vector<uint8_t> b = w.bootstrap;
    b[i] ^= 0x5A;
    auto seen = Exercise(std::move(b), blobs, "flip at " + std::to_string(i));
    if (seen.count(StatusCode::kDataLoss)) ++detected;
    if (HasFailure()) break;
  }
  // Most bytes are padding or reserved; the rest must be caught.
  EXPECT_GT(detected, 100u);
}

TEST_P(CorruptionTest, TruncatedAndExtendedBootstrap) {
  auto w = Write(GetParam().version, GetParam().layout);
  auto blobs = std::make_shared<testing::MemoryBackend>(w.blobs);
  for (size_t len = 0; len < w.bootstrap.size(); len += (len < 9000 ? 61 : 512)) {
    std::vector<uint8_t> b(w.bootstrap.begin(), w.bootstrap.begin() + len);
    auto seen = Exercise(std::move(b), blobs, "truncated to " + std::to_string(len));
    EXPECT_TRUE(seen.count(StatusCode::kDataLoss)) << "truncation to " << len << " unnoticed";
  }
  // One byte more breaks the size rule of both versions.
  std::vector<uint8_t> plus1 = w.bootstrap;
  plus1.push_back(0);
  EXPECT_EQ(meta::OpenMetadata(plus1).status().code(), StatusCode::kDataLoss);
  // A block of zeros more is harmless: the tree reads the same.
  std::vector<uint8_t> plus4k = w.bootstrap;
  plus4k.resize(plus4k.size() + 4096, 0);
  auto m = meta::OpenMetadata(plus4k);
  ASSERT_TRUE(m.ok()) << m.status();
  auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)), blobs);
  ASSERT_TRUE(image.ok());
  EXPECT_TRUE(testing::CompareImageWithTree(**image, SmallTree()).empty());
}

TEST_P(CorruptionTest, EveryFlippedBlobByteIsCaughtByCheck) {
  auto w = Write(GetParam().version, GetParam().layout);
  ASSERT_EQ(w.blobs.size(), 1u);
  const std::string id = w.blobs.begin()->first;
  const std::vector<uint8_t>& blob = w.blobs.begin()->second;
  // Where each chunk's stored bytes are.
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> chunk_at;  // offset -> (end, ci index)
  {
    auto m = meta::OpenMetadata(w.bootstrap);
    ASSERT_TRUE(m.ok());
    meta::WalkCallbacks cb;
    cb.visit = [&](const meta::WalkEntry& e) {
      if (S_ISREG(e.attr.mode)) {
        auto plan = (*m)->Read(e.ino, 0, e.attr.size);
        if (!plan.ok()) return plan.status();
        for (const auto& s : plan->segments) {
          chunk_at[s.chunk.compressed_offset] = {
              s.chunk.compressed_offset + s.chunk.compressed_size, s.chunk.index};
        }
      }
      return base::Status::Ok();
    };
    ASSERT_TRUE(meta::WalkTree(**m, "/", cb).ok());
  }
  auto chunk_of = [&](uint64_t off) -> int64_t {
    auto it = chunk_at.upper_bound(off);
    if (it == chunk_at.begin()) return -1;
    --it;
    return off < it->second.first ? static_cast<int64_t>(it->second.second) : -1;
  };
  size_t in_chunks = 0, in_chunks_detected = 0;
  for (size_t i = 0; i < blob.size(); ++i) {
    auto mutated = w.blobs;
    mutated[id][i] ^= 0x01;
    auto m = meta::OpenMetadata(w.bootstrap);
    ASSERT_TRUE(m.ok());
    auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                                 std::make_shared<testing::MemoryBackend>(mutated));
    if (!image.ok()) {
      EXPECT_EQ(image.status().code(), StatusCode::kDataLoss) << i << ": " << image.status();
      continue;
    }
    auto r = fs::CheckImage(**image, {});
    const int64_t chunk = chunk_of(i);
    if (r.ok()) {
      // Not detected: then the flip did not change what readers get (a
      // compressed frame's header bits can be irrelevant). Prove it.
      auto diffs = testing::CompareImageWithTree(**image, SmallTree());
      EXPECT_TRUE(diffs.empty()) << "flip at " << i << " passed check but changed contents: "
                                 << diffs.front();
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << i << ": " << r.status();
    }
    if (chunk >= 0) {
      ++in_chunks;
      if (!r.ok()) {
        ++in_chunks_detected;
        EXPECT_NE(r.status().message().find("chunk " + std::to_string(chunk) + " "),
                  std::string::npos)
            << "flip at " << i << ": " << r.status();
      }
    }
    if (HasFailure()) break;
  }
  EXPECT_GT(in_chunks, 0u);
  // Nearly every byte of stored chunk data matters.
  EXPECT_GT(in_chunks_detected * 100, in_chunks * 95) << in_chunks_detected << " of " << in_chunks;
}

TEST_P(CorruptionTest, TruncatedBlobIsDataLoss) {
  auto w = Write(GetParam().version, GetParam().layout);
  const std::string id = w.blobs.begin()->first;
  const size_t size = w.blobs.begin()->second.size();
  for (size_t len : {size_t{0}, size_t{1}, size / 3, size / 2, size - 1}) {
    auto mutated = w.blobs;
    mutated[id].resize(len);
    auto m = meta::OpenMetadata(w.bootstrap);
    ASSERT_TRUE(m.ok());
    auto image = fs::Image::Open(std::shared_ptr<meta::Metadata>(std::move(*m)),
                                 std::make_shared<testing::MemoryBackend>(mutated));
    base::Status s = image.ok() ? fs::CheckImage(**image, {}).status() : image.status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << "truncated to " << len << ": " << s;
  }
}

// Named fields whose corruption must be refused at open time.
TEST(CorruptionFieldsTest, V6SuperblockAndTables) {
  auto w = Write(6, BlobLayout::kDefault);
  struct Field {
    const char* name;
    size_t offset;
    uint8_t value;
  } fields[] = {
      {"s_magic", 1024, 0x00},
      {"s_checksum", 1028, 0x01},
      {"s_blkszbits", 1036, 13},
      {"s_extslots", 1037, 1},
      {"s_root_nid", 1038, 0x81},  // points into the root's own slot: not an inode
      {"s_meta_blkaddr", 1064 + 3, 0x10},
      {"s_feature_incompat", 1104, 0x0F},
      {"s_extra_devices", 1110, 2},
      {"s_devt_slotoff", 1112, 12},
      {"ext s_flags (unknown bit)", 1152 + 5, 0x10},
      {"ext s_flags (two hashes)", 1152, 0x9C},
      {"ext s_blob_table_offset", 1152 + 9, 0x01},
      {"ext s_blob_table_size", 1152 + 16, 0x7F},
      {"ext s_chunk_size", 1152 + 20, 0x01},
      {"blob_index", 4096 + 64, 1},
      {"blob chunk_size", 4096 + 68, 1},
      {"blob chunk_count", 4096 + 72 + 3, 0x10},
      {"blob compression_algo", 4096 + 76, 9},
      {"blob digest_algo", 4096 + 80, 2},
      {"blob features", 4096 + 84 + 1, 0x10},
      {"blob ci_uncompressed_size", 4096 + 128, 0x01},
      {"device slot blocks", 1408 + 64, 0},
  };
  for (const auto& f : fields) {
    std::vector<uint8_t> b = w.bootstrap;
    if (f.offset == 1408 + 64) {
      std::fill(b.begin() + f.offset, b.begin() + f.offset + 4, 0);
    } else {
      b[f.offset] = f.value;
    }
    auto m = meta::OpenMetadata(b);
    EXPECT_EQ(m.status().code(), StatusCode::kDataLoss) << f.name << ": " << m.status();
  }
}

TEST(CorruptionFieldsTest, V5SuperblockAndInodeTable) {
  auto w = Write(5, BlobLayout::kDefault);
  struct Field {
    const char* name;
    size_t offset;
    uint8_t value;
  } fields[] = {
      {"s_magic", 0, 0},          {"s_fs_version", 5, 0x06},
      {"s_sb_size", 9, 0},        {"s_block_size", 12, 0x01},
      {"s_flags", 16 + 4, 0x01},  {"s_inodes_count", 24 + 4, 1},
      {"inode table offset", 32 + 4, 1},
      {"inode table entry 1 (root)", 8192, 0},
  };
  for (const auto& f : fields) {
    std::vector<uint8_t> b = w.bootstrap;
    if (std::string(f.name).rfind("inode table entry", 0) == 0) {
      std::fill(b.begin() + f.offset, b.begin() + f.offset + 4, 0);
    } else {
      b[f.offset] = f.value;
    }
    auto m = meta::OpenMetadata(b);
    EXPECT_EQ(m.status().code(), StatusCode::kDataLoss) << f.name << ": " << m.status();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Images, CorruptionTest,
    ::testing::Values(Variant{"V6Default", 6, BlobLayout::kDefault},
                      Variant{"V6Toc", 6, BlobLayout::kToc},
                      Variant{"V5", 5, BlobLayout::kDefault}),
    [](const ::testing::TestParamInfo<Variant>& p) { return p.param.name; });

}  // namespace
}  // namespace rfs::rafs
