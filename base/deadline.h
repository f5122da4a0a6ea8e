// Deadline: an absolute point on the steady clock that a chain of calls
// (token fetch, redirect, range GET, retries) shares.
#pragma once

#include <algorithm>
#include <chrono>

namespace rfs::base {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  static Deadline Infinite() { return Deadline(Clock::time_point::max()); }
  static Deadline After(Clock::duration d) { return Deadline(Clock::now() + d); }
  static Deadline At(Clock::time_point t) { return Deadline(t); }

  bool is_infinite() const { return when_ == Clock::time_point::max(); }
  bool Expired() const { return !is_infinite() && Clock::now() >= when_; }
  // Time left, zero when expired, Clock::duration::max() when infinite.
  Clock::duration Remaining() const {
    if (is_infinite()) return Clock::duration::max();
    return std::max(Clock::duration::zero(), when_ - Clock::now());
  }
  Clock::time_point when() const { return when_; }
  // The earlier of two deadlines.
  Deadline Min(Deadline other) const { return when_ <= other.when_ ? *this : other; }

 private:
  explicit Deadline(Clock::time_point t) : when_(t) {}
  Clock::time_point when_;
};

}  // namespace rfs::base
