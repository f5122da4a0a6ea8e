// Vocabulary of the snapshotter core: snapshot kinds, Info, Usage, Mount, and
// the validation of the keys and labels clients send.
//
// These mirror containerd's snapshots package (snapshots.Info, Usage,
// mount.Mount) in our own types; snapshotter/grpc converts them to and from
// the wire messages.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace rfs::snapshotter {

// Values equal containerd.services.snapshots.v1.Kind.
enum class Kind : int { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

// "view" | "active" | "committed" | "unknown" (containerd's filter strings).
std::string_view KindName(Kind kind);

using Labels = std::map<std::string, std::string>;

struct Info {
  std::string name;
  std::string parent;  // empty: no parent
  Kind kind = Kind::kUnknown;
  int64_t created_at_ns = 0;  // since the Unix epoch, UTC
  int64_t updated_at_ns = 0;
  Labels labels;
};

struct Usage {
  int64_t size_bytes = 0;  // allocated bytes (st_blocks * 512), like du
  int64_t inodes = 0;
};

// A mount the client performs; the target is the client's choice.
struct Mount {
  std::string type;
  std::string source;
  std::vector<std::string> options;
  friend bool operator==(const Mount&, const Mount&) = default;
};

// containerd's limit on one label (key + value bytes).
inline constexpr size_t kMaxLabelBytes = 4096;
// Our limit on a key or name; containerd's own keys are well below it.
inline constexpr size_t kMaxKeyBytes = 4096;

// A key or name: non-empty, at most kMaxKeyBytes, no NUL or newline, and no
// ".." path component ("../x", "a/../b"). Keys never become paths here (the
// directory of a snapshot is named by its numeric id), so this is defence in
// depth: a key that looks like a traversal is refused before it is stored.
// `what` names the argument in the message ("key", "parent", "name").
base::Status ValidateKey(std::string_view what, std::string_view key);

// Every label's key + value within kMaxLabelBytes, keys non-empty.
base::Status ValidateLabels(const Labels& labels);

}  // namespace rfs::snapshotter
