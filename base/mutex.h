// Mutex with clang thread-safety annotations (-Wthread-safety).
//
// Shared state is guarded by one Mutex per object and annotated GUARDED_BY so
// the compiler checks that every access holds the lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define RFS_TSA(x) __attribute__((x))
#else
#define RFS_TSA(x)
#endif

#define CAPABILITY(x) RFS_TSA(capability(x))
#define SCOPED_CAPABILITY RFS_TSA(scoped_lockable)
#define GUARDED_BY(x) RFS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) RFS_TSA(pt_guarded_by(x))
#define REQUIRES(...) RFS_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) RFS_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) RFS_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) RFS_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) RFS_TSA(try_acquire_capability(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS RFS_TSA(no_thread_safety_analysis)

namespace rfs::base {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// Condition variable bound to a Mutex the caller holds.
class CondVar {
 public:
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu->mu_, std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // Returns false on timeout.
  template <typename Clock, typename Dur>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Dur> t) REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu->mu_, std::adopt_lock);
    bool ok = cv_.wait_until(lk, t) == std::cv_status::no_timeout;
    lk.release();
    return ok;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace rfs::base
