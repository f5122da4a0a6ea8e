// Chunk vocabulary shared by the RAFS reader (which produces chunk I/O
// vectors) and the storage stack (which executes them). Storage knows chunks
// and blobs only: never inodes, paths or images.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/digest.h"
#include "storage/codec.h"

namespace rfs::storage {

// What storage needs to know about one data blob.
struct BlobInfo {
  std::string blob_id;  // name used to fetch the blob (64 hex chars in practice)
  uint32_t blob_index = 0;
  Compressor compressor = Compressor::kNone;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  uint32_t chunk_size = 0;
  uint32_t chunk_count = 0;
  uint64_t compressed_size = 0;    // blob file size as recorded (informational)
  uint64_t uncompressed_size = 0;  // size of the uncompressed address space
};

// Where one chunk's bytes are and how to check them.
struct ChunkInfo {
  uint32_t blob_index = 0;
  uint32_t index = 0;  // chunk number inside its blob (ci index)
  uint64_t compressed_offset = 0;
  uint32_t compressed_size = 0;
  uint64_t uncompressed_offset = 0;
  uint32_t uncompressed_size = 0;
  bool compressed = false;  // stored with the blob's compressor, else raw
  bool has_digest = false;  // false only for plain EROFS data (nothing to verify)
  base::Digest digest{};
};

// One piece of a read: bytes of a chunk, zeros (holes), or bytes already in
// memory (inline data of the metadata, valid while the filesystem lives).
struct IoSegment {
  enum class Kind : uint8_t { kChunk, kZero, kBytes };
  Kind kind = Kind::kZero;
  uint64_t length = 0;
  // kChunk: `length` bytes starting at `offset_in_chunk` of the chunk's
  // uncompressed data.
  ChunkInfo chunk;
  uint32_t offset_in_chunk = 0;
  // kBytes
  const uint8_t* bytes = nullptr;
};

// The plan for one read: segments in file order, `total` bytes in all.
struct ChunkIoVec {
  std::vector<IoSegment> segments;
  uint64_t total = 0;
};

}  // namespace rfs::storage
