// ChunkReader: executes a ChunkIoVec straight from a BlobBackend, without a
// cache: read the stored bytes, decompress, verify the digest, copy the
// requested slice. Used by the tools (cat, check, extract) on local blobs;
// the cached BlobDevice builds on the same ReadChunk step.
//
// A chunk whose digest does not match is never copied to the caller: the
// result is kDataLoss naming the blob, chunk index and blob offset.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/mutex.h"
#include "base/status.h"
#include "storage/blob_reader.h"
#include "storage/chunk.h"

namespace rfs::storage {

// Reads one chunk into `out` (exactly chunk.uncompressed_size bytes):
// stored bytes from `reader`, decompressed with blob.compressor when the
// chunk is compressed, then checked against chunk.digest.
base::Status ReadChunk(BlobReader& reader, const BlobInfo& blob, const ChunkInfo& chunk,
                       base::MutableByteSpan out);

// Verifies `data` (uncompressed chunk bytes) against the chunk's digest.
base::Status VerifyChunk(const BlobInfo& blob, const ChunkInfo& chunk, base::ByteSpan data);

// Turns a chunk's stored bytes into its verified uncompressed bytes in `out`
// (exactly chunk.uncompressed_size): decompress when compressed, then verify.
base::Status DecodeChunk(const BlobInfo& blob, const ChunkInfo& chunk, base::ByteSpan stored,
                         base::MutableByteSpan out);

// "blob ID chunk N (blob offset O, S bytes)": how errors name a chunk.
std::string ChunkName(const BlobInfo& blob, const ChunkInfo& chunk);

class ChunkReader {
 public:
  // `blobs` is indexed by blob_index.
  ChunkReader(std::shared_ptr<BlobBackend> backend, std::vector<BlobInfo> blobs);

  // Fills dst (dst.size() == iov.total) with the bytes the plan describes.
  base::Status Execute(const ChunkIoVec& iov, base::MutableByteSpan dst);

  // Reads and verifies one whole chunk.
  base::Status Read(const ChunkInfo& chunk, base::MutableByteSpan out);

  const std::vector<BlobInfo>& blobs() const { return blobs_; }

 private:
  base::Result<BlobReader*> ReaderFor(uint32_t blob_index);

  std::shared_ptr<BlobBackend> backend_;
  std::vector<BlobInfo> blobs_;
  base::Mutex mu_;
  std::map<uint32_t, std::unique_ptr<BlobReader>> readers_ GUARDED_BY(mu_);
  // The last chunk decoded, so sequential small reads do not decompress the
  // same chunk again.
  std::vector<uint8_t> last_chunk_ GUARDED_BY(mu_);
  bool last_valid_ GUARDED_BY(mu_) = false;
  ChunkInfo last_info_ GUARDED_BY(mu_);
};

}  // namespace rfs::storage
