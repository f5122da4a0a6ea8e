// Logging: levels, one line per message to stderr (or a sink for tests).
//
// Credentials never reach a log line: every message passes through
// RedactSecrets, which masks HTTP authorization values, key=value secrets
// (password, token, secret, auth...) and user:password@ in URLs. Code that
// holds a secret should still never log it; redaction is the safety net.
//
//   RFS_LOG(kInfo) << "mounted " << path;
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace rfs::base {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// "debug" | "info" | "warn" | "warning" | "error"; false when unknown.
bool ParseLogLevel(std::string_view s, LogLevel* out);

// Replaces where log lines go (nullptr restores stderr). For tests.
using LogSink = std::function<void(LogLevel, std::string_view line)>;
void SetLogSink(LogSink sink);

// Masks credentials in free text (see file comment).
std::string RedactSecrets(std::string_view text);

// Line formats:
//   text: 2026-11-23T16:02:18.123456Z I file.cc:42] message
//   json: {"time":"2026-11-23T16:02:18.123456Z","level":"info",
//          "source":"file.cc:42","msg":"message"}   (one object per line)
enum class LogFormat { kText, kJson };
void SetLogFormat(LogFormat format);
bool ParseLogFormat(std::string_view s, LogFormat* out);  // "text" | "json"

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return os_; }

 private:
  LogLevel level_;
  std::string time_;
  std::string source_;  // file:line
  std::ostringstream os_;
};

}  // namespace rfs::base

#define RFS_LOG(level)                                                        \
  if (::rfs::base::LogLevel::level < ::rfs::base::MinLogLevel()) {           \
  } else                                                                      \
    ::rfs::base::LogMessage(::rfs::base::LogLevel::level, __FILE__, __LINE__).stream()
