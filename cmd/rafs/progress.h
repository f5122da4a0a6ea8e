// Progress of long-running rafs subcommands (convert) on stderr: on a
// terminal one status line, redrawn at most ten times a second, showing
// each active transfer with bytes, rate and ETA, with finished steps
// printed above it; elsewhere (logs, CI) only the finished steps, one plain
// line each. Quiet prints nothing. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "base/mutex.h"

namespace rfs::cmd {

class Progress {
 public:
  // `terminal`: stderr is a terminal (decided by the caller, isatty(2)).
  Progress(bool quiet, bool terminal) : quiet_(quiet), terminal_(terminal) {}
  ~Progress();

  // A finished step.
  void Line(const std::string& text);
  // A transfer or step of `total` bytes (0: unknown); returns its id.
  int Begin(const std::string& label, uint64_t total);
  void Update(int id, uint64_t done);
  void End(int id);

  // "12.3 MiB", "512 B".
  static std::string Bytes(uint64_t n);
  // "12.3 MiB/s" for n bytes over `seconds`.
  static std::string Rate(uint64_t n, double seconds);

 private:
  struct Task {
    std::string label;
    uint64_t total = 0, done = 0;
    std::chrono::steady_clock::time_point start;
  };
  void Redraw(bool force) REQUIRES(mu_);
  void ClearLine() REQUIRES(mu_);

  const bool quiet_, terminal_;
  base::Mutex mu_;
  int next_id_ GUARDED_BY(mu_) = 0;
  std::map<int, Task> tasks_ GUARDED_BY(mu_);
  bool drawn_ GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point last_draw_ GUARDED_BY(mu_);
};

}  // namespace rfs::cmd
