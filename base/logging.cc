#include "base/logging.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace rfs::base {

namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_sink_mu;
LogSink* g_sink = nullptr;  // guarded by g_sink_mu

const char* LevelTag(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "D";
    case LogLevel::kInfo: return "I";
    case LogLevel::kWarning: return "W";
    case LogLevel::kError: return "E";
  }
  return "?";
}

bool IEqualsAt(std::string_view text, size_t pos, std::string_view word) {
  if (pos + word.size() > text.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[pos + i])) != word[i]) return false;
  }
  return true;
}

bool IsSecretChar(char c) {
  return !std::isspace(static_cast<unsigned char>(c)) && c != '"' && c != '\'' && c != ',' &&
         c != '&' && c != ';' && c != '}' && c != ')';
}

// Keys whose values are secrets in key=value / key: value / "key":"value" text.
constexpr std::string_view kSecretKeys[] = {
    "password", "passwd", "token", "secret", "auth", "identitytoken", "credential", "apikey",
};

}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(g_min_level.load()); }

bool ParseLogLevel(std::string_view s, LogLevel* out) {
  if (s == "debug") *out = LogLevel::kDebug;
  else if (s == "info") *out = LogLevel::kInfo;
  else if (s == "warn" || s == "warning") *out = LogLevel::kWarning;
  else if (s == "error") *out = LogLevel::kError;
  else return false;
  return true;
}

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  delete g_sink;
  g_sink = sink ? new LogSink(std::move(sink)) : nullptr;
}

std::string RedactSecrets(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  auto mask_value_from = [&](size_t start) {
    // Copy separators, then replace the value with ***.
    size_t j = start;
    while (j < text.size() && (text[j] == ' ' || text[j] == '"' || text[j] == '\'' ||
                               text[j] == '=' || text[j] == ':')) {
      out.push_back(text[j]);
      ++j;
    }
    // An authorization value keeps its scheme word; the credential goes.
    for (std::string_view scheme : {"bearer ", "basic "}) {
      if (IEqualsAt(text, j, scheme)) {
        out.append(text.substr(j, scheme.size()));
        j += scheme.size();
        break;
      }
    }
    size_t k = j;
    while (k < text.size() && IsSecretChar(text[k])) ++k;
    if (k > j) out += "***";
    return k;
  };
  while (i < text.size()) {
    // "Bearer <token>" / "Basic <b64>".
    if (IEqualsAt(text, i, "bearer ") || IEqualsAt(text, i, "basic ")) {
      i = mask_value_from(i);
      continue;
    }
    // user:password@host in URLs.
    if (IEqualsAt(text, i, "://")) {
      size_t at = text.find('@', i + 3);
      size_t end = text.find_first_of(" /\t\n\"'", i + 3);
      if (at != std::string_view::npos && (end == std::string_view::npos || at < end)) {
        size_t colon = text.find(':', i + 3);
        if (colon != std::string_view::npos && colon < at) {
          out.append(text.substr(i, colon + 1 - i));
          out += "***";
          i = at;
          continue;
        }
      }
    }
    bool matched = false;
    for (std::string_view key : kSecretKeys) {
      bool boundary = i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1]));
      // "access_token": '_' before the key counts as a boundary.
      if (boundary && IEqualsAt(text, i, key)) {
        size_t after = i + key.size();
        // The key may continue ("password_file", "tokens"); what decides is a
        // separator after the word. Prefixed keys ("access_token") are caught
        // by the loop arriving at "token" only after a non-alphanumeric, so
        // also accept '_' before the key.
        size_t j = after;
        while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) ||
                                   text[j] == '_')) {
          ++j;
        }
        size_t k = j;
        while (k < text.size() && (text[k] == ' ' || text[k] == '"' || text[k] == '\'')) ++k;
        if (k < text.size() && (text[k] == '=' || text[k] == ':')) {
          out.append(text.substr(i, j - i));
          i = mask_value_from(j);
          matched = true;
        }
        break;
      }
    }
    if (matched) continue;
    out.push_back(text[i]);
    ++i;
  }
  return out;
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  const char* base = file;
  for (const char* p = file; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()) %
            std::chrono::seconds(1);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long>(us.count()));
  time_ = buf;
  source_ = std::string(base) + ":" + std::to_string(line);
}

namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", c);
          out->append(esc);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format.store(format); }

bool ParseLogFormat(std::string_view s, LogFormat* out) {
  if (s == "text") {
    *out = LogFormat::kText;
  } else if (s == "json") {
    *out = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

LogMessage::~LogMessage() {
  const std::string msg = RedactSecrets(os_.str());
  std::string line;
  if (g_format.load() == LogFormat::kJson) {
    line = "{\"time\":\"" + time_ + "\",\"level\":\"" + LevelName(level_) + "\",\"source\":";
    AppendJsonString(&line, source_);
    line += ",\"msg\":";
    AppendJsonString(&line, msg);
    line += "}";
  } else {
    line = time_ + " " + LevelTag(level_) + " " + source_ + "] " + msg;
  }
  std::lock_guard<std::mutex> lock(g_sink_mu);
  if (g_sink != nullptr) {
    (*g_sink)(level_, line);
    return;
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace rfs::base
