// Extractor (`rafs extract`): unpacks an image's tree into a directory with
// modes, owners, times, xattrs, devices, fifos, sockets, symlinks and hard
// links.
//
// Safety: every entry is created relative to a directory file descriptor
// that the extractor itself created (mkdirat + O_NOFOLLOW), names come
// validated from the reader (no '/', no "." or ".."), nothing existing is
// overwritten (O_EXCL), and symlinks in the image are created but never
// followed, so no name in the image can make it write outside the target.
#pragma once

#include <cstdint>
#include <string>

#include "rafs/fs/image.h"

namespace rfs::rafs::fs {

struct ExtractOptions {
  // Set owners (needs root); when false, or when not root, files belong to
  // the caller.
  bool preserve_owners = true;
  // Create device nodes (needs root); when false they are skipped with a
  // count.
  bool create_devices = true;
};

struct ExtractReport {
  uint64_t directories = 0;
  uint64_t files = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;
  uint64_t specials = 0;
  uint64_t skipped_devices = 0;
  uint64_t skipped_xattrs = 0;  // refused by the target filesystem or for lack of privilege
  uint64_t bytes = 0;
};

// `target` must be an existing empty directory or not exist yet.
base::Result<ExtractReport> ExtractImage(const Image& image, const std::string& target,
                                         const ExtractOptions& options);

}  // namespace rfs::rafs::fs
