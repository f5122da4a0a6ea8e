#include "rafs/fs/image.h"

#include "rafs/meta/blob_meta.h"

namespace rfs::rafs::fs {

using base::Result;

Image::Image(std::shared_ptr<meta::Metadata> meta, std::shared_ptr<storage::BlobBackend> backend,
             FsOptions options)
    : meta_(std::move(meta)), backend_(std::move(backend)), fs_(meta_, options) {}

Result<std::unique_ptr<Image>> Image::Open(std::shared_ptr<meta::Metadata> meta,
                                           std::shared_ptr<storage::BlobBackend> backend,
                                           FsOptions options) {
  if (backend != nullptr && meta->NeedsBlobMeta()) {
    for (const meta::BlobEntry& b : meta->blobs()) {
      ASSIGN_OR_RETURN(auto reader, backend->Open(b.info.blob_id));
      ASSIGN_OR_RETURN(auto bm, meta::LoadBlobMeta(b, *reader));
      RETURN_IF_ERROR(meta->AttachBlobMeta(b.info.blob_index, std::move(bm)));
    }
  }
  std::unique_ptr<Image> img(new Image(meta, backend, options));
  if (backend != nullptr) {
    img->chunks_ = std::make_unique<storage::ChunkReader>(backend, meta->BlobInfos());
  }
  return img;
}

Result<std::vector<uint8_t>> Image::ReadFile(uint64_t ino, uint64_t offset,
                                             uint64_t length) const {
  ASSIGN_OR_RETURN(storage::ChunkIoVec iov, fs_.Read(ino, offset, length));
  std::vector<uint8_t> out(iov.total);
  bool needs_blobs = false;
  for (const auto& s : iov.segments) needs_blobs |= s.kind == storage::IoSegment::Kind::kChunk;
  if (needs_blobs && chunks_ == nullptr) {
    return base::FailedPreconditionError("reading file data needs the image's blobs");
  }
  if (chunks_ == nullptr) {
    // Only zeros and inline bytes: no blob involved.
    storage::ChunkReader none(nullptr, {});
    RETURN_IF_ERROR(none.Execute(iov, out));
  } else {
    RETURN_IF_ERROR(chunks_->Execute(iov, out));
  }
  return out;
}

}  // namespace rfs::rafs::fs
