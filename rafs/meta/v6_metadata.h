// RAFS v6 (and plain EROFS) metadata: see metadata.h for the contract.
#pragma once

#include <memory>
#include <vector>

#include "rafs/format/v6.h"
#include "rafs/meta/metadata.h"

namespace rfs::rafs::meta {

class V6Metadata final : public Metadata {
 public:
  static base::Result<std::unique_ptr<V6Metadata>> Open(std::vector<uint8_t> bytes,
                                                        const OpenOptions& options);

  base::Result<Attr> GetAttr(uint64_t ino) const override;
  base::Result<uint64_t> Lookup(uint64_t dir, std::string_view name) const override;
  base::Status ReadDir(uint64_t dir, uint64_t cookie, const DirFn& fn) const override;
  base::Result<std::string> ReadLink(uint64_t ino) const override;
  base::Result<Xattrs> GetXattrs(uint64_t ino) const override;
  base::Result<storage::ChunkIoVec> Read(uint64_t ino, uint64_t offset,
                                         uint64_t length) const override;
  base::Result<std::vector<uint64_t>> PrefetchInodes() const override;
  bool NeedsBlobMeta() const override {
    return !super_.plain_erofs && !blobs_.empty() && chunk_keys_.empty();
  }
  base::Status AttachBlobMeta(uint32_t blob_index, std::shared_ptr<const BlobMeta> meta) override;
  base::Result<storage::ChunkInfo> BlobChunk(uint32_t blob_index, uint32_t index) const override;

  uint64_t root_nid() const { return root_nid_; }
  uint64_t NidToIno(uint64_t nid) const;
  uint64_t InoToNid(uint64_t ino) const;

 private:
  explicit V6Metadata(std::vector<uint8_t> bytes) : Metadata(std::move(bytes)) {}

  base::Status Init(const OpenOptions& options);
  base::Status InitRafsTables(const OpenOptions& options);
  base::Status InitPlainDevices();

  base::Result<format::InodeV6> LoadInode(uint64_t ino) const;
  // Block `i` of a FLAT_PLAIN / FLAT_INLINE inode's data (the last block may
  // be short).
  base::Result<base::ByteSpan> FlatBlock(const format::InodeV6& in, uint64_t i) const;
  struct RawDirent {
    uint64_t nid;
    uint8_t type;
    std::string_view name;
  };
  // Decodes one directory block into `out` (validating names and offsets).
  base::Status DecodeDirBlock(const format::InodeV6& dir, uint64_t block,
                              std::vector<RawDirent>* out) const;
  base::Result<storage::ChunkInfo> ResolveChunk(const format::ChunkIndexV6& idx,
                                                uint64_t chunk_len, uint64_t ino,
                                                uint64_t chunk_no) const;

  format::ErofsSuperBlock sb_{};
  format::RafsV6ExtSuperBlock ext_{};
  uint32_t bs_ = 4096;
  uint64_t meta_base_ = 0;
  uint64_t root_nid_ = 0;

  // Chunk table index sorted by (blob_index, ci index) -> record number.
  struct ChunkKey {
    uint32_t blob_index;
    uint32_t ci_index;
    uint32_t record;
  };
  std::vector<ChunkKey> chunk_keys_;
  // Blobs whose chunks we cannot read, with the reason (encrypted, zran...).
  std::vector<std::string> unsupported_;
  std::vector<std::shared_ptr<const BlobMeta>> blob_metas_;
};

}  // namespace rfs::rafs::meta
