// Status and Result<T>: the one error type of the project.
//
// Codes are the gRPC canonical codes so that translation at the gRPC boundary
// is one-to-one. Messages are lower case and say what failed, on which object,
// with the bad value ("rafs v6 superblock: bad magic 0x1234 at offset 1024").
// No exceptions are used in project code; fallible functions return Status or
// Result<T>.
#pragma once

#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace rfs::base {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// Canonical lower-case name of a code ("data_loss").
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "data_loss: rafs v6 superblock: bad magic ...".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; Ok stays Ok.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

// Concatenates anything streamable into a string.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Streams an unsigned integer as 0x-prefixed hex.
struct Hex {
  explicit Hex(unsigned long long v) : value(v) {}
  unsigned long long value;
};
std::ostream& operator<<(std::ostream& os, Hex h);

#define RFS_STATUS_CTOR(Name, Code)                          \
  template <typename... Args>                                \
  Status Name(const Args&... args) {                         \
    return Status(StatusCode::Code, StrCat(args...));        \
  }
RFS_STATUS_CTOR(CancelledError, kCancelled)
RFS_STATUS_CTOR(UnknownError, kUnknown)
RFS_STATUS_CTOR(InvalidArgumentError, kInvalidArgument)
RFS_STATUS_CTOR(DeadlineExceededError, kDeadlineExceeded)
RFS_STATUS_CTOR(NotFoundError, kNotFound)
RFS_STATUS_CTOR(AlreadyExistsError, kAlreadyExists)
RFS_STATUS_CTOR(PermissionDeniedError, kPermissionDenied)
RFS_STATUS_CTOR(ResourceExhaustedError, kResourceExhausted)
RFS_STATUS_CTOR(FailedPreconditionError, kFailedPrecondition)
RFS_STATUS_CTOR(AbortedError, kAborted)
RFS_STATUS_CTOR(OutOfRangeError, kOutOfRange)
RFS_STATUS_CTOR(UnimplementedError, kUnimplemented)
RFS_STATUS_CTOR(InternalError, kInternal)
RFS_STATUS_CTOR(UnavailableError, kUnavailable)
RFS_STATUS_CTOR(DataLossError, kDataLoss)
RFS_STATUS_CTOR(UnauthenticatedError, kUnauthenticated)
#undef RFS_STATUS_CTOR

// Status from errno of a failed system call: "open /x: no such file or directory".
Status ErrnoToStatus(int err, std::string_view what);

// Result<T>: either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status(StatusCode::kInternal, "result built from ok status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

  T value_or(T other) const& { return ok() ? *value_ : std::move(other); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace rfs::base

#define RFS_CONCAT_INNER(a, b) a##b
#define RFS_CONCAT(a, b) RFS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                                 \
  do {                                                        \
    ::rfs::base::Status rfs_status_ = (expr);                 \
    if (!rfs_status_.ok()) return rfs_status_;                \
  } while (0)

#define RFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) \
  RFS_ASSIGN_OR_RETURN_IMPL(RFS_CONCAT(rfs_result_, __LINE__), lhs, expr)
