// Chunk codecs: none, lz4 block, gzip, zstd (RAFS compression codes, spec 2.1).
//
// Decompress writes exactly dst.size() bytes, the uncompressed size known from
// metadata; any other outcome (corrupt input, output larger or smaller than
// dst, trailing garbage) is kDataLoss and never writes past dst.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::storage {

enum class Compressor : uint32_t { kNone = 0, kLz4Block = 1, kGzip = 2, kZstd = 3 };

std::string_view CompressorName(Compressor c);  // "none", "lz4_block", "gzip", "zstd"
base::Result<Compressor> ParseCompressor(std::string_view name);
// From a RAFS on-disk code; kDataLoss for unknown codes.
base::Result<Compressor> CompressorFromCode(uint32_t code);

// Decompresses `src` into exactly `dst.size()` bytes.
base::Status Decompress(Compressor c, base::ByteSpan src, base::MutableByteSpan dst);

// Compresses `src`. Returns the compressed bytes, which may be larger than the
// input; callers store data raw when compression does not shrink it.
base::Result<std::vector<uint8_t>> Compress(Compressor c, base::ByteSpan src, int level = 0);

}  // namespace rfs::storage
