// `rafs cache ls` and `rafs cache gc`: look after a chunk cache directory
// (the `--cache-dir` of the other subcommands, or the snapshotter's): list
// its blobs, collect blobs no image references, cap its size. Registered on
// the tool's CLI11 app by main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace rfs::cmd {

struct CacheArgs {
  std::string cache_dir;
  bool json = false;
  // gc
  std::vector<std::string> keep;  // bootstraps whose blobs stay
  std::string max_size;           // evict least recently used down to this
  std::string grace = "1h";       // stray files younger than this stay
  bool dry_run = false;
  // The subcommands, to tell which one was given.
  CLI::App* ls = nullptr;
  CLI::App* gc = nullptr;
};

// Adds `cache` with its `ls` and `gc` subcommands to `app`.
CLI::App* AddCacheCommand(CLI::App* app, CacheArgs* args);
// Runs whichever was given; returns the exit code (0 ok, 1 error, 2 usage,
// 3 a --keep bootstrap is corrupt).
int RunCache(const CacheArgs& args);

// A byte count: digits with an optional binary suffix, K/M/G/T (also k, KB,
// KiB, ...: all powers of 1024) or B. "10G", "512M", "1048576".
base::Result<uint64_t> ParseByteSize(const std::string& text);

}  // namespace rfs::cmd
