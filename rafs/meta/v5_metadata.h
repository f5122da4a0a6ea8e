// RAFS v5 metadata: see metadata.h for the contract.
#pragma once

#include <memory>
#include <vector>

#include "rafs/format/v5.h"
#include "rafs/meta/metadata.h"

namespace rfs::rafs::meta {

class V5Metadata final : public Metadata {
 public:
  static base::Result<std::unique_ptr<V5Metadata>> Open(std::vector<uint8_t> bytes,
                                                        const OpenOptions& options);

  base::Result<Attr> GetAttr(uint64_t ino) const override;
  base::Result<uint64_t> Lookup(uint64_t dir, std::string_view name) const override;
  base::Status ReadDir(uint64_t dir, uint64_t cookie, const DirFn& fn) const override;
  base::Result<std::string> ReadLink(uint64_t ino) const override;
  base::Result<Xattrs> GetXattrs(uint64_t ino) const override;
  base::Result<storage::ChunkIoVec> Read(uint64_t ino, uint64_t offset,
                                         uint64_t length) const override;
  base::Result<std::vector<uint64_t>> PrefetchInodes() const override;
  base::Status CheckInode(uint64_t ino) const override;

 private:
  explicit V5Metadata(std::vector<uint8_t> bytes) : Metadata(std::move(bytes)) {}
  base::Status Init(const OpenOptions& options);

  // The record for table index `index` (1-based).
  base::Result<format::V5InodeRecord> RecordAt(uint64_t index) const;
  // The record of inode `ino` (the first name of a hard-linked file).
  base::Result<format::V5InodeRecord> LoadInode(uint64_t ino) const;
  std::string_view NameOf(const format::V5InodeRecord& r) const;
  // Offset of the chunk records of a regular file, and their validation.
  base::Result<uint64_t> ChunksOffset(const format::V5InodeRecord& r) const;
  base::Status CheckChildRange(const format::V5InodeRecord& r) const;

  format::RafsV5SuperBlock sb_{};
};

}  // namespace rfs::rafs::meta
