// Exit codes of the rafs tool and its one-line error report, shared by all
// subcommands (documented in --help and the README).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "base/status.h"

namespace rfs::cmd {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;    // missing file, bad argument, i/o failure
constexpr int kExitUsage = 2;    // bad command line
constexpr int kExitCorrupt = 3;  // the image or a blob is corrupt

// Prints "rafs CMD: message" to stderr and returns the exit code for `s`.
inline int Fail(std::string_view cmd, const base::Status& s) {
  std::fprintf(stderr, "rafs %.*s: %s\n", static_cast<int>(cmd.size()), cmd.data(),
               s.message().c_str());
  return s.code() == base::StatusCode::kDataLoss ? kExitCorrupt : kExitError;
}

}  // namespace rfs::cmd
