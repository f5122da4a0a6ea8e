#include "storage/chunk_reader.h"

#include <cstring>

namespace rfs::storage {

using base::ByteSpan;
using base::DataLossError;
using base::MutableByteSpan;
using base::Result;
using base::Status;

// Stored chunks are never larger than this (RAFS chunks are at most 16 MiB;
// a compressed chunk is at most slightly larger).
constexpr uint32_t kMaxStoredChunk = (16u << 20) + (1u << 20);

Status VerifyChunk(const BlobInfo& blob, const ChunkInfo& chunk, ByteSpan data) {
  if (!chunk.has_digest) return Status::Ok();
  base::Digest d = base::ComputeDigest(blob.digester, data);
  if (d != chunk.digest) {
    return DataLossError(ChunkName(blob, chunk), ": ", base::DigestAlgoName(blob.digester),
                         " digest mismatch: got ",
                         base::DigestHex(d), ", expected ", base::DigestHex(chunk.digest));
  }
  return Status::Ok();
}

std::string ChunkName(const BlobInfo& blob, const ChunkInfo& chunk) {
  return base::StrCat("blob ", blob.blob_id, " chunk ", chunk.index, " (blob offset ",
                      chunk.compressed_offset, ", ", chunk.compressed_size, " bytes)");
}

Status DecodeChunk(const BlobInfo& blob, const ChunkInfo& chunk, ByteSpan stored,
                   MutableByteSpan out) {
  if (!chunk.compressed && chunk.compressed_size != chunk.uncompressed_size) {
    return DataLossError(ChunkName(blob, chunk), ": stored raw but sizes differ (",
                         chunk.uncompressed_size, " uncompressed)");
  }
  if (out.size() != chunk.uncompressed_size || stored.size() != chunk.compressed_size) {
    return base::InternalError("chunk buffers of ", stored.size(), " and ", out.size(),
                               " bytes for ", ChunkName(blob, chunk));
  }
  if (!chunk.compressed) {
    if (stored.data() != out.data() && !out.empty()) {
      std::memcpy(out.data(), stored.data(), out.size());
    }
  } else {
    Status s = Decompress(blob.compressor, stored, out);
    if (!s.ok()) return s.WithContext(ChunkName(blob, chunk));
  }
  return VerifyChunk(blob, chunk, out);
}

Status ReadChunk(BlobReader& reader, const BlobInfo& blob, const ChunkInfo& chunk,
                 MutableByteSpan out, const IoContext& ctx) {
  if (out.size() != chunk.uncompressed_size) {
    return base::InternalError("chunk buffer of ", out.size(), " bytes for a chunk of ",
                               chunk.uncompressed_size);
  }
  if (chunk.compressed_size > kMaxStoredChunk || chunk.uncompressed_size > kMaxStoredChunk) {
    return DataLossError(ChunkName(blob, chunk), ": implausible size ", chunk.compressed_size,
                         " -> ", chunk.uncompressed_size);
  }
  // A chunk that lies past the end of its blob is corrupt metadata.
  auto read_error = [&](const Status& s) {
    if (s.code() == base::StatusCode::kOutOfRange) {
      return DataLossError(ChunkName(blob, chunk), ": ", s.message());
    }
    return s.WithContext(ChunkName(blob, chunk));
  };
  if (!chunk.compressed) {
    // Raw chunks are read straight into the output, then verified.
    Status s = reader.ReadAt(chunk.compressed_offset, out, ctx);
    if (!s.ok()) return read_error(s);
    return DecodeChunk(blob, chunk, ByteSpan(out.data(), out.size()), out);
  }
  std::vector<uint8_t> stored(chunk.compressed_size);
  Status s = reader.ReadAt(chunk.compressed_offset, stored, ctx);
  if (!s.ok()) return read_error(s);
  return DecodeChunk(blob, chunk, stored, out);
}

}  // namespace rfs::storage
