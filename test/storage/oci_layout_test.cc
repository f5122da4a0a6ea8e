// OciLayout: creating, tagging, resolving, verified reads and writes; and
// the reproducible bootstrap layer tar.
#include "storage/oci_layout.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/digest.h"
#include "storage/layer_tar.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using testing::TempDir;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string Digest(const std::vector<uint8_t>& b) {
  return "sha256:" + base::DigestHex(base::Sha256(b));
}

TEST(OciLayoutTest, CreatesTagsResolvesAndVerifies) {
  TempDir t;
  const std::string dir = t.Sub("layout");
  auto layout = OciLayout::Open(dir, /*create=*/true);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const auto blob = Bytes("hello layer");
  auto wrote = layout->WriteBlob(Digest(blob), blob);
  ASSERT_TRUE(wrote.ok());
  EXPECT_FALSE(*wrote);
  wrote = layout->WriteBlob(Digest(blob), blob);
  ASSERT_TRUE(wrote.ok());
  EXPECT_TRUE(*wrote);  // already there
  EXPECT_TRUE(layout->VerifyBlob(Digest(blob), blob.size()).ok());
  EXPECT_EQ(layout->VerifyBlob(Digest(blob), blob.size() + 1).code(), base::StatusCode::kDataLoss);

  Descriptor m;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.digest = Digest(blob);
  m.size = blob.size();
  ASSERT_TRUE(layout->Tag(m, "v1").ok());
  ASSERT_TRUE(layout->Tag(m, "v2").ok());
  ASSERT_TRUE(layout->Tag(m, "v1").ok());  // replaces, not duplicates
  auto v1 = layout->Resolve("v1");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->digest, m.digest);
  auto none = layout->Resolve("v3");
  EXPECT_EQ(none.status().code(), base::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("v1"), std::string::npos) << none.status();
  // Two entries: an empty tag is ambiguous.
  EXPECT_EQ(layout->Resolve("").status().code(), base::StatusCode::kNotFound);

  // Reopened without create; reads are verified.
  auto again = OciLayout::Open(dir, /*create=*/false);
  ASSERT_TRUE(again.ok());
  auto read = again->ReadBlob(Digest(blob), blob.size(), 1 << 20);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, blob);
  testing::WriteFileBytes(again->BlobPath(Digest(blob)), Bytes("hellO layer"));
  EXPECT_EQ(again->ReadBlob(Digest(blob), blob.size(), 1 << 20).status().code(),
            base::StatusCode::kDataLoss);
  EXPECT_EQ(again->ReadBlob(Digest(blob), blob.size(), 4).status().code(),
            base::StatusCode::kResourceExhausted);
}

TEST(OciLayoutTest, RefusesDirectoriesThatAreNotLayouts) {
  TempDir t;
  EXPECT_EQ(OciLayout::Open(t.path(), false).status().code(),
            base::StatusCode::kFailedPrecondition);
  testing::WriteFileBytes(t.Sub("other-file"), Bytes("x"));
  auto s = OciLayout::Open(t.path(), true).status();
  EXPECT_EQ(s.code(), base::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("not empty"), std::string::npos) << s;
}

TEST(BootstrapLayerTarTest, ReproducibleAndReadBack) {
  std::vector<uint8_t> boot(5000);
  for (size_t i = 0; i < boot.size(); ++i) boot[i] = static_cast<uint8_t>(i * 7);
  const auto a = MakeBootstrapLayerTar(boot);
  EXPECT_EQ(a, MakeBootstrapLayerTar(boot));
  EXPECT_EQ(a.size() % 512, 0u);
  auto back = ReadBootstrapLayer(a, false);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->bootstrap_name, "image/image.boot");
  EXPECT_EQ(back->bootstrap, boot);
  // Header fields: mode 0444, owner 0:0, mtime 0, no user name.
  const uint8_t* h = a.data() + 512;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h + 100), 7), "0000444");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(h + 136), 11), "00000000000");
  EXPECT_EQ(h[265], 0);
}

}  // namespace
}  // namespace rfs::storage
