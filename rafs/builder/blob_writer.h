// BlobWriter: turns regular-file data into one RAFS v6 data blob (spec
// RAFS-FORMAT section 6): chunking, digests, CRC-32C, compression,
// deduplication, then the ci array and header and, on request, tar headers,
// chunk digest array, inlined bootstrap and ToC.
//
// File data is streamed: AddFile reads one chunk at a time into a bounded
// set of buffers that worker threads hash and compress while the caller
// reads the next chunks; results are committed in submission order, so the
// blob is the same bytes whatever the thread timing (reproducible builds).
// Not thread-safe: one caller drives a BlobWriter.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/digest.h"
#include "base/mutex.h"
#include "base/status.h"
#include "rafs/builder/tree.h"
#include "storage/codec.h"

namespace rfs::rafs::builder {

struct BlobOptions {
  storage::Compressor compressor = storage::Compressor::kZstd;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  uint32_t chunk_size = 1u << 20;
  bool aligned = false;      // chunk data at 4 KiB-aligned blob offsets
  bool blob_toc = false;     // tar headers, digest array, ToC (features 0x70000021)
  bool inline_meta = false;  // bootstrap inside the blob (INLINED_FS_META)
  int threads = 0;           // hash/compress workers; 0 = hardware concurrency
  std::string blob_dir;      // where the blob file is created
};

// Reads up to dst.size() bytes of the file being added; returns the count,
// 0 at end of file.
using ReadFn = std::function<base::Result<size_t>(base::MutableByteSpan dst)>;

// Optional: true when [offset, offset + length) of the file is a hole (reads
// as zeros without being stored); the source then positions itself after
// the range so the next read continues there.
using HoleFn = std::function<bool(uint64_t offset, uint64_t length)>;

// Finds an existing chunk (chunk dictionary) by digest and size; returns its
// index in the build's chunk list.
using ChunkLookupFn = std::function<std::optional<uint32_t>(const base::Digest&, uint32_t)>;

struct BlobStats {
  uint64_t chunks_total = 0;   // chunks of all files
  uint64_t chunks_stored = 0;  // chunks written to this blob
  uint64_t chunks_dedup = 0;   // chunks found in this blob or the dictionary
  uint64_t data_bytes = 0;     // file bytes read
};

class BlobWriter {
 public:
  // `chunks` is the build's chunk list, which this writer appends to;
  // `allocate_blob_index` is called once, when the first chunk is stored.
  static base::Result<std::unique_ptr<BlobWriter>> Create(
      const BlobOptions& options, std::vector<ChunkInfo>* chunks,
      std::function<uint32_t()> allocate_blob_index, ChunkLookupFn dict_lookup = nullptr);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Streams `file->size` bytes from `read` and sets file->chunks. The data
  // must be exactly that long: shorter is kDataLoss ("file shrank"), and so
  // is more data when `check_eof` is set.
  base::Status AddFile(Node* file, const ReadFn& read, bool check_eof,
                       const HoleFn& hole = nullptr);

  // Waits for every submitted chunk.
  base::Status Flush();

  // True when at least one chunk was stored (a blob table entry is needed).
  bool has_chunks() const { return !ci_chunks_.empty(); }
  const BlobStats& stats() const { return stats_; }

  // Writes the trailing sections and names the blob file by its id. With
  // inline_meta, `make_inline_bootstrap` gets the entry (placeholder id) and
  // returns the bootstrap to embed. Returns the final entry (real id).
  // Without chunks the temporary file is removed and the entry has
  // chunk_count 0 and no id.
  base::Result<BlobEntry> Finish(
      const std::function<base::Result<std::vector<uint8_t>>(const BlobEntry&)>&
          make_inline_bootstrap);

  // Path of the finished blob file.
  const std::string& path() const { return final_path_; }

 private:
  struct Job;
  class OutFile;
  BlobWriter(const BlobOptions& options, std::vector<ChunkInfo>* chunks,
             std::function<uint32_t()> allocate_blob_index, ChunkLookupFn dict_lookup);
  void WorkerLoop();
  base::Status CommitFront();
  base::Status StoreChunk(Job& job, uint32_t* index);

  const BlobOptions options_;
  std::vector<ChunkInfo>* const chunks_;
  std::function<uint32_t()> allocate_blob_index_;
  ChunkLookupFn dict_lookup_;

  std::unique_ptr<OutFile> out_;
  std::optional<uint32_t> blob_index_;
  uint64_t next_uncompressed_ = 0;
  std::vector<uint32_t> ci_chunks_;  // chunk-list indexes in ci order
  struct DigestHash {
    size_t operator()(const base::Digest& d) const;
  };
  std::unordered_map<base::Digest, uint32_t, DigestHash> own_;
  BlobStats stats_;
  std::string final_path_;

  // Pipeline: jobs in submission order; workers fill them.
  size_t max_inflight_ = 4;
  base::Mutex mu_;
  base::CondVar work_cv_;                      // workers wait for queued jobs
  base::CondVar done_cv_;                      // the caller waits for the front job
  std::deque<std::unique_ptr<Job>> inflight_;  // only the caller touches the deque itself
  std::deque<Job*> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::vector<uint8_t>> free_buffers_;
  std::vector<std::thread> workers_;
  // Digest, CRC and compressed form of all-zero chunks by length (holes).
  struct ZeroChunk {
    base::Digest digest;
    uint32_t crc;
    std::vector<uint8_t> compressed;
  };
  std::unordered_map<size_t, ZeroChunk> zero_chunks_;
};

}  // namespace rfs::rafs::builder
