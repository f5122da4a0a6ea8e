// KernelErofsMount: loop devices and a kernel EROFS mount of a bootstrap with
// its blob as extra device, undone however the test ends (root only).
#pragma once

#include <string>
#include <vector>

#include "test/support/test_util.h"

namespace rfs::testing {

class KernelErofsMount {
 public:
  KernelErofsMount() = default;
  KernelErofsMount(const KernelErofsMount&) = delete;
  KernelErofsMount& operator=(const KernelErofsMount&) = delete;
  ~KernelErofsMount() {
    if (!mnt_.empty()) RunCommand("umount " + mnt_ + " 2>/dev/null");
    for (const auto& l : loops_) RunCommand("losetup -d " + l + " 2>/dev/null");
  }
  bool Loop(const std::string& file, std::string* dev) {
    std::string out;
    if (RunCommand("losetup -f --show " + file + " 2>/dev/null", &out) != 0) return false;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    loops_.push_back(out);
    *dev = out;
    return true;
  }
  int Mount(const std::string& boot_dev, const std::string& blob_dev, const std::string& mnt,
            std::string* out) {
    int rc = RunCommand(
        "mount -t erofs -o ro,device=" + blob_dev + " " + boot_dev + " " + mnt + " 2>&1", out);
    if (rc == 0) mnt_ = mnt;
    return rc;
  }
  // Loop-mounts `boot` with `blob` at `mnt`; false with *why when it cannot.
  bool MountImage(const std::string& boot, const std::string& blob, const std::string& mnt,
                  std::string* why) {
    std::string boot_dev, blob_dev;
    if (!Loop(boot, &boot_dev) || !Loop(blob, &blob_dev)) {
      *why = "no loop devices";
      return false;
    }
    if (Mount(boot_dev, blob_dev, mnt, why) != 0) return false;
    return true;
  }

 private:
  std::vector<std::string> loops_;
  std::string mnt_;
};

}  // namespace rfs::testing
