// `rafs mount IMAGE MOUNTPOINT`: serves an image over FUSE without
// containerd, in the background (default) or with --foreground, until
// SIGINT/SIGTERM or until the mount is unmounted from outside.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "rafs/fs/image.h"

namespace rfs::cmd {

struct MountArgs {
  std::string image;
  std::string mountpoint;
  bool foreground = false;
  int threads = 8;
  int read_timeout_seconds = 60;
  std::string metrics_address;  // host:port, empty: off
  bool allow_other = true;
  std::string log_file;  // background only
  std::string prefetch = "table";  // none | table | all
  std::vector<std::string> prefetch_paths;
  int prefetch_threads = 2;
  std::string prefetch_bandwidth;  // e.g. 50M (bytes per second); empty: unlimited
};

// Adds the mount-specific options to the `mount` subcommand.
void AddMountOptions(CLI::App* sub, MountArgs* args);

// Opens the image (called in the serving process, after daemonizing).
using ImageOpener = std::function<base::Result<std::unique_ptr<rafs::fs::Image>>()>;

// Runs it; returns the process exit code.
int RunMount(const MountArgs& args, const ImageOpener& open_image);

}  // namespace rfs::cmd
