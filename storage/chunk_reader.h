// Reading one chunk: the stored bytes, decompressed, verified against the
// chunk's digest. BlobDevice builds on these steps.
//
// A chunk whose digest does not match is never copied to the caller: the
// result is kDataLoss naming the blob, chunk index and blob offset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "storage/blob_reader.h"
#include "storage/chunk.h"

namespace rfs::storage {

// Reads one chunk into `out` (exactly chunk.uncompressed_size bytes):
// stored bytes from `reader` (within ctx's deadline), decompressed with
// blob.compressor when the chunk is compressed, then checked against
// chunk.digest.
base::Status ReadChunk(BlobReader& reader, const BlobInfo& blob, const ChunkInfo& chunk,
                       base::MutableByteSpan out, const IoContext& ctx);

// Verifies `data` (uncompressed chunk bytes) against the chunk's digest.
base::Status VerifyChunk(const BlobInfo& blob, const ChunkInfo& chunk, base::ByteSpan data);

// Turns a chunk's stored bytes into its verified uncompressed bytes in `out`
// (exactly chunk.uncompressed_size): decompress when compressed, then verify.
base::Status DecodeChunk(const BlobInfo& blob, const ChunkInfo& chunk, base::ByteSpan stored,
                         base::MutableByteSpan out);

// "blob ID chunk N (blob offset O, S bytes)": how errors name a chunk.
std::string ChunkName(const BlobInfo& blob, const ChunkInfo& chunk);

}  // namespace rfs::storage
