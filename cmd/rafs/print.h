// Text and JSON renderings used by the `rafs` tool.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "rafs/fs/checker.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"

namespace rfs::cmd {

std::string SuperFlagNames(uint64_t flags);
std::string BlobFeatureNames(uint32_t features);
std::string ModeString(uint32_t mode);  // "drwxr-xr-x"

struct TreeCounts {
  uint64_t directories = 0, files = 0, symlinks = 0, others = 0, hardlinks = 0;
};

nlohmann::json InspectJson(const rafs::meta::Metadata& m, const TreeCounts& counts);
std::string InspectText(const rafs::meta::Metadata& m, const TreeCounts& counts);

// One `ls` entry.
nlohmann::json EntryJson(const rafs::meta::WalkEntry& e, const std::string& symlink,
                         const rafs::meta::Xattrs& xattrs);
std::string EntryText(const rafs::meta::WalkEntry& e, const std::string& symlink,
                      const rafs::meta::Xattrs& xattrs);

nlohmann::json CheckJson(const rafs::fs::CheckReport& r);
std::string CheckText(const rafs::fs::CheckReport& r);

// Quotes a byte string for one-line display (C-style escapes).
std::string Quote(const std::string& s);

}  // namespace rfs::cmd
