// Storage test helpers: synthetic chunked blobs with digests, read plans
// over them, and a backend decorator that counts and slows requests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/digest.h"
#include "storage/blob_reader.h"
#include "storage/chunk.h"
#include "storage/codec.h"

namespace rfs::storage {

// A blob of `n` chunks of `size` bytes each (last one shorter), zstd
// compressed where that helps, with digests. Chunks start 4 KiB aligned in
// the uncompressed address space.
struct TestBlob {
  BlobInfo info;
  std::vector<uint8_t> bytes;
  std::vector<ChunkInfo> chunks;
  std::vector<std::vector<uint8_t>> plain;
};

inline TestBlob MakeBlob(int n, uint32_t size, uint32_t seed) {
  TestBlob b;
  b.info.blob_id = "blob" + std::to_string(seed);
  b.info.compressor = Compressor::kZstd;
  b.info.digester = base::DigestAlgo::kBlake3;
  b.info.chunk_size = size;
  b.info.chunk_count = static_cast<uint32_t>(n);
  std::mt19937 rng(seed);
  uint64_t uoff = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<uint8_t> data(i == n - 1 ? size / 3 : size);
    // Half random, half compressible.
    for (size_t k = 0; k < data.size(); ++k) {
      data[k] = k < data.size() / 2 ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>(k % 7);
    }
    auto packed = *Compress(Compressor::kZstd, data);
    ChunkInfo c;
    c.index = static_cast<uint32_t>(i);
    c.compressed_offset = b.bytes.size();
    c.uncompressed_offset = uoff;
    c.uncompressed_size = static_cast<uint32_t>(data.size());
    c.compressed = packed.size() < data.size();
    const auto& stored = c.compressed ? packed : data;
    c.compressed_size = static_cast<uint32_t>(stored.size());
    c.has_digest = true;
    c.digest = base::ComputeDigest(b.info.digester, data);
    b.bytes.insert(b.bytes.end(), stored.begin(), stored.end());
    uoff += base::AlignUp(data.size(), 4096);
    b.chunks.push_back(c);
    b.plain.push_back(std::move(data));
  }
  b.info.uncompressed_size = uoff;
  b.info.compressed_size = b.bytes.size();
  return b;
}

// The plan reading whole chunks `which` of `b` (whose blob_index it uses).
inline ChunkIoVec PlanFor(const TestBlob& b, const std::vector<int>& which) {
  ChunkIoVec iov;
  for (int i : which) {
    IoSegment s;
    s.kind = IoSegment::Kind::kChunk;
    s.chunk = b.chunks[i];
    s.chunk.blob_index = b.info.blob_index;
    s.length = b.chunks[i].uncompressed_size;
    iov.segments.push_back(s);
    iov.total += s.length;
  }
  return iov;
}

inline std::vector<uint8_t> Concat(const TestBlob& b, const std::vector<int>& which) {
  std::vector<uint8_t> out;
  for (int i : which) out.insert(out.end(), b.plain[i].begin(), b.plain[i].end());
  return out;
}

// Serves the given blobs from memory; every request sleeps `delay` first
// and is counted (requests, bytes).
class SlowMemoryBackend final : public BlobBackend {
 public:
  explicit SlowMemoryBackend(std::vector<const TestBlob*> blobs) : blobs_(std::move(blobs)) {}
  base::Result<std::unique_ptr<BlobReader>> Open(const std::string& id) override {
    for (const TestBlob* b : blobs_) {
      if (b->info.blob_id == id) return std::unique_ptr<BlobReader>(new Reader(this, b));
    }
    return base::NotFoundError("blob ", id, " not found");
  }
  std::atomic<int> delay_us{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bytes{0};

 private:
  class Reader final : public BlobReader {
   public:
    Reader(SlowMemoryBackend* owner, const TestBlob* blob) : owner_(owner), blob_(blob) {}
    const std::string& blob_id() const override { return blob_->info.blob_id; }
    base::Result<uint64_t> Size() override { return blob_->bytes.size(); }

   private:
    base::Status TryReadAt(uint64_t off, base::MutableByteSpan dst, const IoContext&) override {
      if (owner_->delay_us > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(owner_->delay_us.load()));
      }
      owner_->requests++;
      owner_->bytes += dst.size();
      if (!base::RangeInside(off, dst.size(), blob_->bytes.size())) {
        return base::OutOfRangeError("past the end of ", blob_->info.blob_id);
      }
      if (!dst.empty()) std::memcpy(dst.data(), blob_->bytes.data() + off, dst.size());
      return base::Status::Ok();
    }
    SlowMemoryBackend* owner_;
    const TestBlob* blob_;
  };
  std::vector<const TestBlob*> blobs_;
};

}  // namespace rfs::storage
