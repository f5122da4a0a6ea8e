// libFuzzer target: any byte string as a bootstrap (see exercise.h). The
// contract: a result or an error, never a crash, hang or unbounded
// allocation. Inputs that once crashed live in test/fuzz/regressions/ and are
// replayed by rafs_fuzz_regression_test.
#include <cstddef>
#include <cstdint>

#include "test/fuzz/exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rfs::testing::ExerciseBootstrap(data, size);
  return 0;
}
