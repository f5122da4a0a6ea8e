#include "rafs/fs/image.h"

#include "rafs/meta/blob_meta.h"

namespace rfs::rafs::fs {

using base::Result;

Image::Image(std::shared_ptr<meta::Metadata> meta, std::shared_ptr<storage::BlobBackend> backend,
             FsOptions options)
    : meta_(std::move(meta)), backend_(std::move(backend)), fs_(meta_, options) {}

Result<std::unique_ptr<Image>> Image::Open(std::shared_ptr<meta::Metadata> meta,
                                           std::shared_ptr<storage::BlobBackend> backend,
                                           FsOptions options, storage::DeviceOptions device) {
  if (backend != nullptr && meta->NeedsBlobMeta()) {
    for (const meta::BlobEntry& b : meta->blobs()) {
      ASSIGN_OR_RETURN(auto reader, backend->Open(b.info.blob_id));
      ASSIGN_OR_RETURN(auto bm, meta::LoadBlobMeta(b, *reader));
      RETURN_IF_ERROR(meta->AttachBlobMeta(b.info.blob_index, std::move(bm)));
    }
  }
  if (!device.chunk_lookup) {
    // Reads are widened to the chunks that follow in the blob, as the
    // image's chunk table describes them.
    device.chunk_lookup = [meta](uint32_t blob_index, uint32_t index) {
      return meta->BlobChunk(blob_index, index);
    };
  }
  std::unique_ptr<Image> img(new Image(meta, backend, options));
  // Without a backend the device serves plans that need no blob (inline
  // bytes and holes) and reports any chunk read as a missing blob.
  ASSIGN_OR_RETURN(img->device_,
                   storage::BlobDevice::Create(backend, meta->BlobInfos(), std::move(device)));
  return img;
}

Result<std::vector<uint8_t>> Image::ReadFile(uint64_t ino, uint64_t offset,
                                             uint64_t length) const {
  ASSIGN_OR_RETURN(storage::ChunkIoVec iov, fs_.Read(ino, offset, length));
  std::vector<uint8_t> out(iov.total);
  bool needs_blobs = false;
  for (const auto& s : iov.segments) needs_blobs |= s.kind == storage::IoSegment::Kind::kChunk;
  if (needs_blobs && backend_ == nullptr) {
    return base::FailedPreconditionError("reading file data needs the image's blobs");
  }
  RETURN_IF_ERROR(device_->Read(iov, out, storage::IoContext{}));
  return out;
}

}  // namespace rfs::rafs::fs
