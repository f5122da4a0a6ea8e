#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

using base::InvalidArgumentError;
using base::Status;

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return "view";
    case Kind::kActive:
      return "active";
    case Kind::kCommitted:
      return "committed";
    case Kind::kUnknown:
      break;
  }
  return "unknown";
}

namespace {

// Quotes a key for an error message, shortened so a huge key cannot flood logs.
std::string Quoted(std::string_view key) {
  constexpr size_t kShown = 128;
  std::string out = "\"";
  for (char c : key.substr(0, kShown)) {
    if (c == '\0') {
      out += "\\0";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += "\"";
  if (key.size() > kShown) out += base::StrCat("... (", key.size(), " bytes)");
  return out;
}

}  // namespace

Status ValidateKey(std::string_view what, std::string_view key) {
  if (key.empty()) return InvalidArgumentError(what, " must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return InvalidArgumentError(what, " ", Quoted(key), " is longer than ", kMaxKeyBytes, " bytes");
  }
  if (key.find('\0') != std::string_view::npos || key.find('\n') != std::string_view::npos) {
    return InvalidArgumentError(what, " ", Quoted(key), " contains a NUL or newline");
  }
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    if (key.substr(start, end - start) == "..") {
      return InvalidArgumentError(what, " ", Quoted(key), " has a \"..\" path component");
    }
    start = end + 1;
  }
  return Status::Ok();
}

Status ValidateLabels(const Labels& labels) {
  for (const auto& [k, v] : labels) {
    if (k.empty()) return InvalidArgumentError("label key must not be empty");
    if (k.size() + v.size() > kMaxLabelBytes) {
      return InvalidArgumentError("label ", Quoted(k), ": key and value are ", k.size() + v.size(),
                                  " bytes, more than the limit of ", kMaxLabelBytes);
    }
  }
  return Status::Ok();
}

}  // namespace rfs::snapshotter
