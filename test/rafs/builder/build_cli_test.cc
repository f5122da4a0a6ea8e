// `rafs build` and `rafs merge` as users run them: exit codes, one-line
// errors, the JSON summary, and images that `rafs check` accepts.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <string>

#include "test/rafs/builder/tree_gen.h"
#include "test/support/test_util.h"

namespace rfs::testing {
namespace {

int Rafs(const std::string& args, std::string* out) {
  out->clear();
  return RunCommand(std::string(RFS_RAFS_BINARY) + " " + args + " 2>&1", out);
}

TEST(BuildCliTest, BuildCheckMergeAndErrors) {
  TempDir t;
  const std::string src = t.Sub("src"), blobs = t.Sub("blobs");
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(blobs.c_str(), 0755), 0);
  MakeRandomTree(src, 7, 100);
  std::string out;
  ASSERT_EQ(Rafs("build " + src + " --bootstrap " + t.Sub("boot") + " --blob-dir " + blobs +
                     " --digester sha256 --chunk-size 64K --json",
                 &out),
            0)
      << out;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["chunk_size"], 65536);
  EXPECT_EQ(j["digester"], "sha256");
  EXPECT_EQ(std::string(j["blob_id"]).size(), 64u);
  EXPECT_GT(j["chunks_stored"].get<uint64_t>(), 0u);
  EXPECT_EQ(Rafs("check " + t.Sub("boot") + " --blob-dir " + blobs, &out), 0) << out;

  ASSERT_EQ(Rafs("merge " + t.Sub("boot") + " " + t.Sub("boot") + " --bootstrap " +
                     t.Sub("merged") + " --json",
                 &out),
            0)
      << out;
  EXPECT_EQ(Rafs("check " + t.Sub("merged") + " --blob-dir " + blobs, &out), 0) << out;

  // Bad usage: exit 2 and a line naming the value.
  EXPECT_EQ(Rafs("build " + src + " --bootstrap " + t.Sub("x") + " --blob-dir " + blobs +
                     " --chunk-size 3000",
                 &out),
            2);
  EXPECT_NE(out.find("3000"), std::string::npos) << out;
  EXPECT_EQ(Rafs("build " + src + " --bootstrap " + t.Sub("x") + " --blob-dir " + blobs +
                     " --compressor gzip",
                 &out),
            2);
  // Missing source: exit 1.
  EXPECT_EQ(
      Rafs("build " + t.Sub("nope") + " --bootstrap " + t.Sub("x") + " --blob-dir " + blobs, &out),
      1);
  EXPECT_NE(out.find("nope"), std::string::npos) << out;
  // Truncated layer: exit 3 (corrupt input), one line.
  ASSERT_EQ(RunCommand("tar -cf " + t.Sub("l.tar") + " -C " + src + " . && truncate -s 3000 " +
                       t.Sub("l.tar")),
            0);
  EXPECT_EQ(
      Rafs("build " + t.Sub("l.tar") + " --bootstrap " + t.Sub("x") + " --blob-dir " + blobs, &out),
      3)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(out.rfind("rafs build: ", 0), 0u) << out;
}

}  // namespace
}  // namespace rfs::testing
