// What the fuzzer does with one input: open it as a bootstrap, walk the
// whole tree and exercise every metadata operation on every entry. Shared by
// the libFuzzer target and the regression test over saved crash inputs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rfs::testing {

// Returns the number of entries visited (0 when the input does not open).
int ExerciseBootstrap(const uint8_t* data, size_t size);

}  // namespace rfs::testing
