// `rafs build` and `rafs merge`: the image-building subcommands of
// the rafs tool, registered on its CLI11 app by main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace rfs::cmd {

// Parses a size: "1048576", "1M", "4K", "0x100000".
bool ParseSize(const std::string& s, uint64_t* out);

struct BuildArgs {
  std::string source;
  std::string bootstrap;
  std::string blob_dir;
  std::string compressor = "zstd";
  std::string digester = "blake3";
  std::string chunk_size = "1048576";
  int fs_version = 6;
  bool aligned = false;
  bool blob_toc = false;
  bool blob_inline_meta = false;
  std::string prefetch_files;
  std::string chunk_dict;
  bool json = false;
};

// Adds the `build` subcommand to `app`, filling `args` when parsed.
CLI::App* AddBuildCommand(CLI::App* app, BuildArgs* args);
// Runs it; returns the process exit code (0 ok, 1 error, 2 usage, 3 corrupt input).
int RunBuild(const BuildArgs& args);

struct MergeArgs {
  std::vector<std::string> layers;
  std::string bootstrap;
  std::string prefetch_files;
  bool json = false;
};

// Image paths from a prefetch list file: one absolute path per line;
// blank lines and lines starting with '#' are skipped.
base::Result<std::vector<std::string>> ReadPrefetchList(const std::string& file);

// Adds the `merge` subcommand to `app`.
CLI::App* AddMergeCommand(CLI::App* app, MergeArgs* args);
int RunMerge(const MergeArgs& args);

}  // namespace rfs::cmd
