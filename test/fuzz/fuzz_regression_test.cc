// Replays every input in test/fuzz/regressions/ (inputs the fuzzer once
// crashed on) through the fuzzer's exercise. Under ASan/UBSan in CI.
#include <dirent.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test/fuzz/exercise.h"
#include "test/support/test_util.h"

namespace rfs::testing {
namespace {

TEST(FuzzRegressionTest, SavedInputsRunCleanly) {
  DIR* d = ::opendir(RFS_FUZZ_REGRESSIONS);
  ASSERT_NE(d, nullptr) << RFS_FUZZ_REGRESSIONS;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  ::closedir(d);
  ASSERT_FALSE(names.empty());
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    auto bytes = ReadFileBytes(std::string(RFS_FUZZ_REGRESSIONS) + "/" + n);
    ASSERT_FALSE(bytes.empty());
    ExerciseBootstrap(bytes.data(), bytes.size());
  }
}

}  // namespace
}  // namespace rfs::testing
