// Image: a bootstrap plus the means to read its blobs, as the tools use it
// (cat, check, extract): metadata, a filesystem view, and a BlobDevice over
// a blob backend (with a chunk cache when a cache directory is given). Loads
// the blobs' ci arrays when the bootstrap lacks a chunk table.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rafs/fs/rafs_filesystem.h"
#include "rafs/meta/metadata.h"
#include "storage/blob_reader.h"
#include "storage/blob_device.h"

namespace rfs::rafs::fs {

class Image {
 public:
  // `backend` may be null for metadata-only use (ls, inspect).
  static base::Result<std::unique_ptr<Image>> Open(std::shared_ptr<meta::Metadata> meta,
                                                   std::shared_ptr<storage::BlobBackend> backend,
                                                   FsOptions options = {},
                                                   storage::DeviceOptions device = {});

  const meta::Metadata& metadata() const { return *meta_; }
  const RafsFilesystem& fs() const { return fs_; }
  // Null without a backend.
  storage::BlobDevice* device() const { return device_.get(); }
  storage::BlobBackend* backend() const { return backend_.get(); }

  // Reads [offset, offset + length) of regular file `ino` (clipped to its size).
  base::Result<std::vector<uint8_t>> ReadFile(uint64_t ino, uint64_t offset,
                                              uint64_t length) const;

 private:
  Image(std::shared_ptr<meta::Metadata> meta, std::shared_ptr<storage::BlobBackend> backend,
        FsOptions options);

  std::shared_ptr<meta::Metadata> meta_;
  std::shared_ptr<storage::BlobBackend> backend_;
  RafsFilesystem fs_;
  std::unique_ptr<storage::BlobDevice> device_;
};

}  // namespace rfs::rafs::fs
