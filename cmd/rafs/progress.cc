#include "cmd/rafs/progress.h"

#include <cstdio>

namespace rfs::cmd {

using Clock = std::chrono::steady_clock;

Progress::~Progress() {
  base::MutexLock lock(&mu_);
  ClearLine();
}

std::string Progress::Bytes(uint64_t n) {
  char buf[32];
  if (n < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else if (n < (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  } else if (n < (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / 1073741824.0);
  }
  return buf;
}

std::string Progress::Rate(uint64_t n, double seconds) {
  if (seconds <= 0.0005) seconds = 0.0005;
  return Bytes(static_cast<uint64_t>(n / seconds)) + "/s";
}

void Progress::ClearLine() {
  if (drawn_) {
    std::fputs("\r\033[K", stderr);
    drawn_ = false;
  }
}

void Progress::Line(const std::string& text) {
  if (quiet_) return;
  base::MutexLock lock(&mu_);
  ClearLine();
  std::fprintf(stderr, "%s\n", text.c_str());
  Redraw(true);
}

int Progress::Begin(const std::string& label, uint64_t total) {
  base::MutexLock lock(&mu_);
  const int id = next_id_++;
  tasks_[id] = Task{label, total, 0, Clock::now()};
  Redraw(true);
  return id;
}

void Progress::Update(int id, uint64_t done) {
  base::MutexLock lock(&mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  it->second.done = done;
  Redraw(false);
}

void Progress::End(int id) {
  base::MutexLock lock(&mu_);
  tasks_.erase(id);
  Redraw(true);
}

void Progress::Redraw(bool force) {
  if (quiet_ || !terminal_) return;
  const auto now = Clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  std::string line;
  for (const auto& [id, t] : tasks_) {
    if (!line.empty()) line += " | ";
    line += t.label;
    if (t.total == 0 && t.done == 0) continue;
    const double secs = std::chrono::duration<double>(now - t.start).count();
    line += " " + Bytes(t.done);
    if (t.total > 0) line += "/" + Bytes(t.total);
    line += " " + Rate(t.done, secs);
    if (t.total > t.done && t.done > 0 && secs > 0.2) {
      const double eta = secs * static_cast<double>(t.total - t.done) / t.done;
      char buf[32];
      std::snprintf(buf, sizeof buf, " ETA %.0fs", eta);
      line += buf;
    }
  }
  // Keep to one terminal line of a usual width.
  if (line.size() > 150) line = line.substr(0, 147) + "...";
  std::fputs("\r\033[K", stderr);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = !line.empty();
}

}  // namespace rfs::cmd
