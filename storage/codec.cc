#include "storage/codec.h"

#include <lz4.h>
#include <zlib.h>
#include <zstd.h>

#include <climits>
#include <cstring>

namespace rfs::storage {

using base::ByteSpan;
using base::DataLossError;
using base::MutableByteSpan;
using base::Result;
using base::Status;

std::string_view CompressorName(Compressor c) {
  switch (c) {
    case Compressor::kNone: return "none";
    case Compressor::kLz4Block: return "lz4_block";
    case Compressor::kGzip: return "gzip";
    case Compressor::kZstd: return "zstd";
  }
  return "unknown";
}

Result<Compressor> ParseCompressor(std::string_view name) {
  if (name == "none") return Compressor::kNone;
  if (name == "lz4_block" || name == "lz4") return Compressor::kLz4Block;
  if (name == "gzip") return Compressor::kGzip;
  if (name == "zstd") return Compressor::kZstd;
  return base::InvalidArgumentError("unknown compressor '", name,
                                    "' (want none, lz4_block, gzip or zstd)");
}

Result<Compressor> CompressorFromCode(uint32_t code) {
  if (code > 3) return DataLossError("unknown compression code ", code);
  return static_cast<Compressor>(code);
}

namespace {

Status DecompressZstd(ByteSpan src, MutableByteSpan dst) {
  // The frame's declared content size, when present, must match exactly:
  // this rejects bombs before any work and catches size mismatches early.
  unsigned long long declared = ZSTD_getFrameContentSize(src.data(), src.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return DataLossError("zstd: not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != dst.size()) {
    return DataLossError("zstd: frame holds ", declared, " bytes, expected ", dst.size());
  }
  size_t frame = ZSTD_findFrameCompressedSize(src.data(), src.size());
  if (ZSTD_isError(frame)) {
    return DataLossError("zstd: ", ZSTD_getErrorName(frame));
  }
  if (frame != src.size()) {
    return DataLossError("zstd: ", src.size() - frame, " trailing bytes after frame");
  }
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  if (ctx == nullptr) return base::ResourceExhaustedError("zstd: cannot allocate context");
  // Bound the window so a hostile frame cannot ask for a huge allocation.
  ZSTD_DCtx_setParameter(ctx, ZSTD_d_windowLogMax, 27);
  ZSTD_inBuffer in{src.data(), src.size(), 0};
  ZSTD_outBuffer out{dst.data(), dst.size(), 0};
  Status status;
  for (;;) {
    size_t r = ZSTD_decompressStream(ctx, &out, &in);
    if (ZSTD_isError(r)) {
      status = DataLossError("zstd: ", ZSTD_getErrorName(r));
      break;
    }
    if (r == 0) {  // frame complete
      if (out.pos != dst.size()) {
        status = DataLossError("zstd: decompressed ", out.pos, " bytes, expected ", dst.size());
      }
      break;
    }
    if (out.pos == out.size) {
      // Output full but frame not finished: it would produce more bytes.
      uint8_t probe;
      ZSTD_outBuffer extra{&probe, 1, 0};
      size_t r2 = ZSTD_decompressStream(ctx, &extra, &in);
      if (ZSTD_isError(r2)) {
        status = DataLossError("zstd: ", ZSTD_getErrorName(r2));
      } else if (extra.pos > 0) {
        status = DataLossError("zstd: output larger than expected ", dst.size(), " bytes");
      } else if (r2 != 0) {
        status = DataLossError("zstd: truncated frame");
      }
      break;
    }
    if (in.pos == in.size) {
      status = DataLossError("zstd: truncated frame after ", out.pos, " bytes");
      break;
    }
  }
  ZSTD_freeDCtx(ctx);
  return status;
}

Status DecompressLz4(ByteSpan src, MutableByteSpan dst) {
  if (src.size() > INT_MAX || dst.size() > INT_MAX) {
    return DataLossError("lz4: block too large (", src.size(), " -> ", dst.size(), ")");
  }
  int n = LZ4_decompress_safe(reinterpret_cast<const char*>(src.data()),
                              reinterpret_cast<char*>(dst.data()), static_cast<int>(src.size()),
                              static_cast<int>(dst.size()));
  if (n < 0) return DataLossError("lz4: corrupt block");
  if (static_cast<size_t>(n) != dst.size()) {
    return DataLossError("lz4: decompressed ", n, " bytes, expected ", dst.size());
  }
  return Status::Ok();
}

Status DecompressGzip(ByteSpan src, MutableByteSpan dst) {
  if (src.size() > UINT_MAX || dst.size() > UINT_MAX) return DataLossError("gzip: member too large");
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return base::ResourceExhaustedError("gzip: cannot initialise inflate");
  }
  zs.next_in = const_cast<Bytef*>(src.data());
  zs.avail_in = static_cast<uInt>(src.size());
  // zlib makes no progress with a zero-sized output buffer: give it one
  // scratch byte, which must stay unused.
  uint8_t scratch = 0;
  zs.next_out = dst.empty() ? &scratch : dst.data();
  zs.avail_out = dst.empty() ? 1 : static_cast<uInt>(dst.size());
  int r = inflate(&zs, Z_FINISH);
  Status status;
  if (r == Z_STREAM_END) {
    if (zs.total_out != dst.size()) {
      status = DataLossError("gzip: decompressed ", zs.total_out, " bytes, expected ", dst.size());
    } else if (zs.avail_in != 0) {
      status = DataLossError("gzip: ", zs.avail_in, " trailing bytes after member");
    }
  } else if ((r == Z_BUF_ERROR && zs.avail_out == 0) || (r == Z_OK && dst.empty())) {
    status = DataLossError("gzip: output larger than expected ", dst.size(), " bytes");
  } else if (r == Z_BUF_ERROR) {
    status = DataLossError("gzip: truncated member after ", zs.total_out, " bytes");
  } else {
    status = DataLossError("gzip: ", zs.msg != nullptr ? zs.msg : "corrupt member");
  }
  inflateEnd(&zs);
  return status;
}

}  // namespace

Status Decompress(Compressor c, ByteSpan src, MutableByteSpan dst) {
  switch (c) {
    case Compressor::kNone:
      if (src.size() != dst.size()) {
        return DataLossError("none: stored ", src.size(), " bytes, expected ", dst.size());
      }
      if (!src.empty()) std::memcpy(dst.data(), src.data(), src.size());
      return Status::Ok();
    case Compressor::kLz4Block: return DecompressLz4(src, dst);
    case Compressor::kGzip: return DecompressGzip(src, dst);
    case Compressor::kZstd: return DecompressZstd(src, dst);
  }
  return DataLossError("unknown compressor ", static_cast<uint32_t>(c));
}

Result<std::vector<uint8_t>> Compress(Compressor c, ByteSpan src, int level) {
  std::vector<uint8_t> out;
  switch (c) {
    case Compressor::kNone:
      out.assign(src.begin(), src.end());
      return out;
    case Compressor::kLz4Block: {
      if (src.size() > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) {
        return base::InvalidArgumentError("lz4: input of ", src.size(), " bytes too large");
      }
      out.resize(LZ4_compressBound(static_cast<int>(src.size())));
      int n = LZ4_compress_default(reinterpret_cast<const char*>(src.data()),
                                   reinterpret_cast<char*>(out.data()),
                                   static_cast<int>(src.size()), static_cast<int>(out.size()));
      if (n <= 0 && !src.empty()) return base::InternalError("lz4: compression failed");
      out.resize(n);
      return out;
    }
    case Compressor::kGzip: {
      z_stream zs{};
      if (deflateInit2(&zs, level > 0 ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                       16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return base::ResourceExhaustedError("gzip: cannot initialise deflate");
      }
      out.resize(deflateBound(&zs, src.size()) + 32);
      zs.next_in = const_cast<Bytef*>(src.data());
      zs.avail_in = static_cast<uInt>(src.size());
      zs.next_out = out.data();
      zs.avail_out = static_cast<uInt>(out.size());
      int r = deflate(&zs, Z_FINISH);
      size_t n = zs.total_out;
      deflateEnd(&zs);
      if (r != Z_STREAM_END) return base::InternalError("gzip: compression failed");
      out.resize(n);
      return out;
    }
    case Compressor::kZstd: {
      out.resize(ZSTD_compressBound(src.size()));
      size_t n = ZSTD_compress(out.data(), out.size(), src.data(), src.size(),
                               level > 0 ? level : ZSTD_CLEVEL_DEFAULT);
      if (ZSTD_isError(n)) return base::InternalError("zstd: ", ZSTD_getErrorName(n));
      out.resize(n);
      return out;
    }
  }
  return base::InvalidArgumentError("unknown compressor ", static_cast<uint32_t>(c));
}

}  // namespace rfs::storage
