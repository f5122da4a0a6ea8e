#include "storage/chunk_reader.h"

#include <cstring>

namespace rfs::storage {

using base::ByteSpan;
using base::DataLossError;
using base::MutableByteSpan;
using base::MutexLock;
using base::Result;
using base::Status;

// Stored chunks are never larger than this (RAFS chunks are at most 16 MiB;
// a compressed chunk is at most slightly larger).
constexpr uint32_t kMaxStoredChunk = (16u << 20) + (1u << 20);

// Same stored bytes and same expected content: a chunk decoded and verified
// for `a` can serve `b`.
static bool SameStoredChunk(const ChunkInfo& a, const ChunkInfo& b) {
  return a.blob_index == b.blob_index && a.compressed_offset == b.compressed_offset &&
         a.compressed_size == b.compressed_size && a.uncompressed_size == b.uncompressed_size &&
         a.compressed == b.compressed && a.has_digest == b.has_digest && a.digest == b.digest;
}

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
                 MutableByteSpan out) {
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
    Status s = reader.ReadAt(chunk.compressed_offset, out);
    if (!s.ok()) return read_error(s);
    return DecodeChunk(blob, chunk, ByteSpan(out.data(), out.size()), out);
  }
  std::vector<uint8_t> stored(chunk.compressed_size);
  Status s = reader.ReadAt(chunk.compressed_offset, stored);
  if (!s.ok()) return read_error(s);
  return DecodeChunk(blob, chunk, stored, out);
}

ChunkReader::ChunkReader(std::shared_ptr<BlobBackend> backend, std::vector<BlobInfo> blobs)
    : backend_(std::move(backend)), blobs_(std::move(blobs)) {}

Result<BlobReader*> ChunkReader::ReaderFor(uint32_t blob_index) {
  if (blob_index >= blobs_.size()) {
    return DataLossError("chunk refers to blob index ", blob_index, " of ", blobs_.size());
  }
  MutexLock lock(&mu_);
  auto it = readers_.find(blob_index);
  if (it != readers_.end()) return it->second.get();
  ASSIGN_OR_RETURN(auto reader, backend_->Open(blobs_[blob_index].blob_id));
  BlobReader* raw = reader.get();
  readers_[blob_index] = std::move(reader);
  return raw;
}

Status ChunkReader::Read(const ChunkInfo& chunk, MutableByteSpan out) {
  ASSIGN_OR_RETURN(BlobReader * reader, ReaderFor(chunk.blob_index));
  return ReadChunk(*reader, blobs_[chunk.blob_index], chunk, out);
}

Status ChunkReader::Execute(const ChunkIoVec& iov, MutableByteSpan dst) {
  if (dst.size() != iov.total) {
    return base::InternalError("read buffer of ", dst.size(), " bytes for a plan of ", iov.total);
  }
  uint64_t pos = 0;
  for (const IoSegment& seg : iov.segments) {
    if (seg.length > dst.size() - pos) return base::InternalError("read plan overflows buffer");
    uint8_t* out = dst.data() + pos;
    switch (seg.kind) {
      case IoSegment::Kind::kZero:
        std::memset(out, 0, seg.length);
        break;
      case IoSegment::Kind::kBytes:
        std::memcpy(out, seg.bytes, seg.length);
        break;
      case IoSegment::Kind::kChunk: {
        const ChunkInfo& c = seg.chunk;
        if (uint64_t{seg.offset_in_chunk} + seg.length > c.uncompressed_size) {
          return DataLossError("blob index ", c.blob_index, " chunk ", c.index, ": read of [",
                               seg.offset_in_chunk, ", +", seg.length, ") outside its ",
                               c.uncompressed_size, " bytes");
        }
        // Whole chunk already decoded by the previous call?
        {
          MutexLock lock(&mu_);
          if (last_valid_ && SameStoredChunk(last_info_, c)) {
            std::memcpy(out, last_chunk_.data() + seg.offset_in_chunk, seg.length);
            break;
          }
        }
        std::vector<uint8_t> buf(c.uncompressed_size);
        RETURN_IF_ERROR(Read(c, buf));
        std::memcpy(out, buf.data() + seg.offset_in_chunk, seg.length);
        MutexLock lock(&mu_);
        last_chunk_ = std::move(buf);
        last_valid_ = true;
        last_info_ = c;
        break;
      }
    }
    pos += seg.length;
  }
  if (pos != dst.size()) return base::InternalError("read plan covers ", pos, " of ", dst.size());
  return Status::Ok();
}

}  // namespace rfs::storage
