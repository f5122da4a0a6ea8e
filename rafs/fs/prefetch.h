// Which chunks to prefetch for an image: the files its prefetch table names
// (directories meaning everything below), optionally followed by every other
// file in tree order, plus paths a user asks for. Chunks come out in that
// order, each once.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "rafs/meta/metadata.h"
#include "storage/chunk.h"

namespace rfs::rafs::fs {

enum class PrefetchPolicy {
  kNone,   // nothing in the background
  kTable,  // the image's prefetch table (and `paths`)
  kAll,    // the table first, then every file
};

// "none", "table", "all".
base::Result<PrefetchPolicy> ParsePrefetchPolicy(const std::string& s);

// Paths that do not exist in the image are skipped (a prefetch hint must
// never fail a mount); a corrupt image is an error.
base::Result<std::vector<storage::ChunkInfo>> PrefetchChunks(
    const meta::Metadata& meta, PrefetchPolicy policy, const std::vector<std::string>& paths = {});

}  // namespace rfs::rafs::fs
