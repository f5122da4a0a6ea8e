#include "rafs/builder/blob_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/bytes.h"
#include "rafs/builder/crc32c.h"
#include "rafs/format/blob.h"
#include "rafs/format/v6.h"

namespace rfs::rafs::builder {

using base::ByteSpan;

struct BlobWriter::Job {
  Node* file = nullptr;
  size_t chunk_pos = 0;
  std::vector<uint8_t> data;
  // Filled by a worker.
  bool done = false;
  base::Status status;
  base::Digest digest{};
  uint32_t crc = 0;
  std::vector<uint8_t> compressed;  // empty when stored raw
  // Non-zero: an all-zero chunk of this length whose `data` was not filled.
  size_t zero_length = 0;

  size_t length() const { return zero_length != 0 ? zero_length : data.size(); }
};

// Buffered output file that hashes what it writes (sha256 for the blob id,
// plus an optional second hasher for a ToC section digest).
class BlobWriter::OutFile {
 public:
  static base::Result<std::unique_ptr<OutFile>> Create(const std::string& dir) {
    std::string tmpl = dir + "/.rafs-blob.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    int fd = mkostemp(buf.data(), O_CLOEXEC);
    if (fd < 0) return base::ErrnoToStatus(errno, "create blob in " + dir);
    auto f = std::unique_ptr<OutFile>(new OutFile(fd, buf.data()));
    return f;
  }
  ~OutFile() {
    if (fd_ >= 0) close(fd_);
    if (!kept_) unlink(path_.c_str());
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

  // `hash`: include in the blob id; `section`: also feed the section hasher.
  base::Status Write(ByteSpan data, bool hash = true) {
    if (hash) {
      id_hasher_->Update(data);
      if (section_hasher_) section_hasher_->Update(data);
    }
    offset_ += data.size();
    while (!data.empty()) {
      size_t n = std::min(data.size(), kBufferSize - buffer_.size());
      buffer_.insert(buffer_.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(n));
      data = data.subspan(n);
      if (buffer_.size() == kBufferSize) RETURN_IF_ERROR(Drain());
    }
    return base::Status::Ok();
  }
  base::Status Zeros(uint64_t n) {
    static const uint8_t kZero[4096] = {};
    while (n > 0) {
      uint64_t k = std::min<uint64_t>(n, sizeof(kZero));
      RETURN_IF_ERROR(Write(ByteSpan(kZero, k)));
      n -= k;
    }
    return base::Status::Ok();
  }
  void StartSection() { section_hasher_ = base::Hasher::Create(base::DigestAlgo::kSha256); }
  base::Digest EndSection() {
    base::Digest d = section_hasher_->Finish();
    section_hasher_.reset();
    return d;
  }
  base::Digest FinishId() { return id_hasher_->Finish(); }

  // Flushes, closes and renames the file to `target`.
  base::Status Commit(const std::string& target) {
    RETURN_IF_ERROR(Drain());
    if (fchmod(fd_, 0644) != 0) return base::ErrnoToStatus(errno, "chmod " + path_);
    if (close(fd_) != 0) {
      fd_ = -1;
      return base::ErrnoToStatus(errno, "close " + path_);
    }
    fd_ = -1;
    if (rename(path_.c_str(), target.c_str()) != 0) {
      return base::ErrnoToStatus(errno, "rename " + path_ + " to " + target);
    }
    kept_ = true;
    return base::Status::Ok();
  }

 private:
  static constexpr size_t kBufferSize = 1 << 20;
  OutFile(int fd, std::string path)
      : fd_(fd),
        path_(std::move(path)),
        id_hasher_(base::Hasher::Create(base::DigestAlgo::kSha256)) {
    buffer_.reserve(kBufferSize);
  }
  base::Status Drain() {
    const uint8_t* p = buffer_.data();
    size_t left = buffer_.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return base::ErrnoToStatus(errno, "write " + path_);
      p += n;
      left -= static_cast<size_t>(n);
    }
    buffer_.clear();
    return base::Status::Ok();
  }

  int fd_;
  std::string path_;
  bool kept_ = false;
  uint64_t offset_ = 0;
  std::vector<uint8_t> buffer_;
  std::unique_ptr<base::Hasher> id_hasher_;
  std::unique_ptr<base::Hasher> section_hasher_;
};

size_t BlobWriter::DigestHash::operator()(const base::Digest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof(h));
  return h;
}

base::Result<std::unique_ptr<BlobWriter>> BlobWriter::Create(
    const BlobOptions& options, std::vector<ChunkInfo>* chunks,
    std::function<uint32_t()> allocate_blob_index, ChunkLookupFn dict_lookup) {
  if (!base::IsPowerOfTwo(options.chunk_size) || options.chunk_size < 4096 ||
      options.chunk_size > (16u << 20)) {
    return base::InvalidArgumentError("chunk size ", options.chunk_size,
                                      ": not a power of two between 4096 and 16777216");
  }
  auto w = std::unique_ptr<BlobWriter>(
      new BlobWriter(options, chunks, std::move(allocate_blob_index), std::move(dict_lookup)));
  ASSIGN_OR_RETURN(w->out_, OutFile::Create(options.blob_dir));
  if (options.blob_toc) w->out_->StartSection();
  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::clamp(threads, 1, 64);
  size_t by_bytes = (48u << 20) / options.chunk_size;
  w->max_inflight_ = std::clamp<size_t>(by_bytes, static_cast<size_t>(threads) + 2,
                                        4 * static_cast<size_t>(threads) + 4);
  for (int i = 0; i < threads; ++i) w->workers_.emplace_back([p = w.get()] { p->WorkerLoop(); });
  return w;
}

BlobWriter::BlobWriter(const BlobOptions& options, std::vector<ChunkInfo>* chunks,
                       std::function<uint32_t()> allocate_blob_index, ChunkLookupFn dict_lookup)
    : options_(options),
      chunks_(chunks),
      allocate_blob_index_(std::move(allocate_blob_index)),
      dict_lookup_(std::move(dict_lookup)) {}

BlobWriter::~BlobWriter() {
  {
    base::MutexLock l(&mu_);
    stop_ = true;
  }
  work_cv_.SignalAll();
  for (auto& t : workers_) t.join();
}

void BlobWriter::WorkerLoop() {
  for (;;) {
    Job* job;
    {
      base::MutexLock l(&mu_);
      while (queue_.empty() && !stop_) work_cv_.Wait(&mu_);
      if (queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
    }
    ByteSpan data(job->data);
    job->digest = base::ComputeDigest(options_.digester, data);
    job->crc = Crc32c(data);
    if (options_.compressor != storage::Compressor::kNone) {
      auto c = storage::Compress(options_.compressor, data);
      if (!c.ok()) {
        job->status = c.status();
      } else if (c->size() < data.size()) {
        job->compressed = std::move(*c);
      }
    }
    {
      base::MutexLock l(&mu_);
      job->done = true;
    }
    done_cv_.SignalAll();
  }
}

base::Status BlobWriter::StoreChunk(Job& job, uint32_t* index) {
  if (!blob_index_) blob_index_ = allocate_blob_index_();
  if (ci_chunks_.size() >= 0xFFFFFF) {
    return base::ResourceExhaustedError("blob: more than ", 0xFFFFFF, " chunks");
  }
  if (options_.aligned)
    RETURN_IF_ERROR(out_->Zeros(base::AlignUp(out_->offset(), 4096) - out_->offset()));
  ChunkInfo c;
  c.digest = job.digest;
  c.blob_index = *blob_index_;
  c.uncompressed_size = static_cast<uint32_t>(job.length());
  if (job.zero_length != 0 && job.compressed.empty()) job.data.assign(job.zero_length, 0);
  c.compressed_offset = out_->offset();
  c.uncompressed_offset = next_uncompressed_;
  c.index = static_cast<uint32_t>(ci_chunks_.size());
  c.crc32 = job.crc;
  c.flags = job.crc != 0 ? format::kChunkHasCrc32 : 0;
  if (!job.compressed.empty()) {
    c.flags |= format::kChunkCompressed;
    c.compressed_size = static_cast<uint32_t>(job.compressed.size());
    RETURN_IF_ERROR(out_->Write(job.compressed));
  } else {
    c.compressed_size = c.uncompressed_size;
    RETURN_IF_ERROR(out_->Write(job.data));
  }
  if (c.compressed_offset >= (uint64_t{1} << 40)) {
    return base::ResourceExhaustedError("blob: compressed offset ", c.compressed_offset,
                                        " beyond 2^40");
  }
  next_uncompressed_ += base::AlignUp(c.uncompressed_size, 4096);
  *index = static_cast<uint32_t>(chunks_->size());
  chunks_->push_back(c);
  ci_chunks_.push_back(*index);
  own_.emplace(c.digest, *index);
  ++stats_.chunks_stored;
  return base::Status::Ok();
}

base::Status BlobWriter::CommitFront() {
  std::unique_ptr<Job> job = std::move(inflight_.front());
  inflight_.pop_front();
  {
    base::MutexLock l(&mu_);
    while (!job->done) done_cv_.Wait(&mu_);
  }
  RETURN_IF_ERROR(job->status);
  const uint32_t size = static_cast<uint32_t>(job->length());
  std::optional<uint32_t> found;
  if (dict_lookup_) found = dict_lookup_(job->digest, size);
  if (!found) {
    auto it = own_.find(job->digest);
    if (it != own_.end() && (*chunks_)[it->second].uncompressed_size == size) found = it->second;
  }
  uint32_t index;
  if (found) {
    index = *found;
    ++stats_.chunks_dedup;
  } else {
    RETURN_IF_ERROR(StoreChunk(*job, &index));
  }
  job->file->chunks[job->chunk_pos] = index;
  job->compressed.clear();
  job->compressed.shrink_to_fit();
  free_buffers_.push_back(std::move(job->data));
  return base::Status::Ok();
}

base::Status BlobWriter::AddFile(Node* file, const ReadFn& read, bool check_eof,
                                 const HoleFn& hole) {
  const uint64_t cs = options_.chunk_size;
  const uint64_t count = (file->size + cs - 1) / cs;
  file->chunks.assign(count, 0);
  for (uint64_t k = 0; k < count; ++k) {
    while (inflight_.size() >= max_inflight_) RETURN_IF_ERROR(CommitFront());
    auto job = std::make_unique<Job>();
    job->file = file;
    job->chunk_pos = k;
    if (!free_buffers_.empty()) {
      job->data = std::move(free_buffers_.back());
      free_buffers_.pop_back();
    }
    const size_t len = static_cast<size_t>(std::min<uint64_t>(cs, file->size - k * cs));
    if (hole && hole(k * cs, len)) {
      // A hole: zeros, hashed and compressed once per length. The job
      // carries no data unless the chunk has to be stored.
      auto it = zero_chunks_.find(len);
      if (it == zero_chunks_.end()) {
        job->data.assign(len, 0);
        ZeroChunk z;
        z.digest = base::ComputeDigest(options_.digester, job->data);
        z.crc = Crc32c(job->data);
        if (options_.compressor != storage::Compressor::kNone) {
          ASSIGN_OR_RETURN(auto c, storage::Compress(options_.compressor, job->data));
          if (c.size() < len) z.compressed = std::move(c);
        }
        it = zero_chunks_.emplace(len, std::move(z)).first;
      } else {
        job->zero_length = len;
        job->data.clear();
      }
      job->digest = it->second.digest;
      job->crc = it->second.crc;
      job->compressed = it->second.compressed;
      job->done = true;
      stats_.data_bytes += len;
      ++stats_.chunks_total;
      inflight_.push_back(std::move(job));
      continue;
    }
    job->data.resize(len);
    size_t got = 0;
    while (got < len) {
      ASSIGN_OR_RETURN(size_t n, read(base::MutableByteSpan(job->data.data() + got, len - got)));
      if (n == 0) {
        return base::DataLossError("file ", file->Path(), ": shrank while building (", k * cs + got,
                                   " of ", file->size, " bytes)");
      }
      got += n;
    }
    stats_.data_bytes += len;
    ++stats_.chunks_total;
    Job* raw = job.get();
    inflight_.push_back(std::move(job));
    {
      base::MutexLock l(&mu_);
      queue_.push_back(raw);
    }
    work_cv_.Signal();
  }
  if (check_eof) {
    uint8_t extra;
    ASSIGN_OR_RETURN(size_t n, read(base::MutableByteSpan(&extra, 1)));
    if (n != 0) {
      return base::DataLossError("file ", file->Path(), ": grew while building (beyond ",
                                 file->size, " bytes)");
    }
  }
  return base::Status::Ok();
}

base::Status BlobWriter::Flush() {
  while (!inflight_.empty()) RETURN_IF_ERROR(CommitFront());
  return base::Status::Ok();
}

namespace {

void PutCiEntryV1(const ChunkInfo& c, uint8_t* p) {
  const uint64_t us = c.uncompressed_size - 1;
  const uint64_t cs = c.compressed_size - 1;
  uint64_t w0 = (c.uncompressed_offset & 0xFFFFFFFFF000ull) | (((us >> 20) & 0xF) << 8) |
                ((us & 0xFFFFF) << 44);
  uint64_t w1 =
      (c.compressed_offset & 0xFFFFFFFFFFull) | (((cs >> 20) & 0xF) << 40) | ((cs & 0xFFFFF) << 44);
  base::StoreLe64(p, w0);
  base::StoreLe64(p + 8, w1);
}

void PutTocEntry(uint32_t flags, const std::string& name, const base::Digest& digest,
                 uint64_t offset, uint64_t csize, uint64_t usize, std::vector<uint8_t>* out) {
  uint8_t e[format::kTocEntrySize] = {};
  base::StoreLe32(e, flags);
  std::memcpy(e + 8, name.data(), std::min<size_t>(name.size(), 16));
  std::memcpy(e + 24, digest.data(), 32);
  base::StoreLe64(e + 56, offset);
  base::StoreLe64(e + 64, csize);
  base::StoreLe64(e + 72, usize);
  out->insert(out->end(), e, e + sizeof(e));
}

uint32_t TocFlags(uint32_t compressor_code) {
  switch (compressor_code) {
    case 3:
      return format::kTocZstd;
    case 1:
      return format::kTocLz4;
    default:
      return format::kTocNone;
  }
}

}  // namespace

base::Result<BlobEntry> BlobWriter::Finish(
    const std::function<base::Result<std::vector<uint8_t>>(const BlobEntry&)>&
        make_inline_bootstrap) {
  RETURN_IF_ERROR(Flush());
  BlobEntry e;
  e.chunk_size = options_.chunk_size;
  e.compression_algo = static_cast<uint32_t>(options_.compressor);
  e.digest_algo = static_cast<uint32_t>(options_.digester);
  if (ci_chunks_.empty()) {
    out_.reset();  // removes the temporary file
    return e;
  }
  const bool tar_headers = options_.blob_toc || options_.inline_meta;
  e.features = format::kBlobCapTarToc | format::kBlobAligned;
  if (tar_headers) e.features |= format::kBlobHasTarHeader;
  if (options_.blob_toc) e.features |= format::kBlobHasToc | format::kBlobInlinedChunkDigest;
  if (options_.inline_meta) e.features |= format::kBlobInlinedFsMeta;
  e.chunk_count = static_cast<uint32_t>(ci_chunks_.size());
  e.uncompressed_size = next_uncompressed_;

  std::vector<uint8_t> toc;
  uint8_t hdr[format::kTarHeaderSize];

  // Section 1 (+2): chunk data, padded to a block in aligned mode.
  if (options_.aligned) {
    RETURN_IF_ERROR(out_->Zeros(base::AlignUp(out_->offset(), 4096) - out_->offset()));
  }
  const uint64_t data_size = out_->offset();
  // The image.blob ToC digest covers the data and its header (section
  // hasher started in Create).
  if (tar_headers) {
    format::EncodeTarHeader("image.blob", data_size, hdr);
    RETURN_IF_ERROR(out_->Write(ByteSpan(hdr, sizeof(hdr))));
  }
  base::Digest data_digest{};
  if (options_.blob_toc) data_digest = out_->EndSection();

  // Sections 3 and 4: ci array and header.
  std::vector<uint8_t> ci(ci_chunks_.size() * format::kCiEntryV1Size);
  for (size_t i = 0; i < ci_chunks_.size(); ++i) {
    PutCiEntryV1((*chunks_)[ci_chunks_[i]], ci.data() + i * format::kCiEntryV1Size);
  }
  std::vector<uint8_t> ci_stored;
  e.ci_compressor = 0;
  if (options_.compressor != storage::Compressor::kNone) {
    ASSIGN_OR_RETURN(auto c, storage::Compress(options_.compressor, ci));
    if (c.size() < ci.size()) {
      ci_stored = std::move(c);
      e.ci_compressor = static_cast<uint32_t>(options_.compressor);
    }
  }
  if (e.ci_compressor == 0) ci_stored = ci;
  e.ci_offset = out_->offset();
  e.ci_compressed_size = ci_stored.size();
  e.ci_uncompressed_size = ci.size();
  RETURN_IF_ERROR(out_->Write(ci_stored));
  std::vector<uint8_t> header(format::kCiHeaderSize, 0);
  base::StoreLe32(&header[0], format::kCiHeaderMagic);
  base::StoreLe32(&header[4], e.features);
  base::StoreLe32(&header[8], e.ci_compressor);
  base::StoreLe32(&header[12], e.chunk_count);
  base::StoreLe64(&header[16], e.ci_offset);
  base::StoreLe64(&header[24], e.ci_compressed_size);
  base::StoreLe64(&header[32], e.ci_uncompressed_size);
  base::StoreLe32(&header[4092], format::kCiHeaderMagic);
  const uint64_t header_offset = out_->offset();
  RETURN_IF_ERROR(out_->Write(header));
  if (tar_headers) {
    format::EncodeTarHeader("blob.meta", ci_stored.size() + format::kCiHeaderSize, hdr);
    RETURN_IF_ERROR(out_->Write(ByteSpan(hdr, sizeof(hdr))));
  }

  // Section 6: digest array (not part of the blob id) and its header.
  std::vector<uint8_t> digests;
  uint64_t digests_offset = 0;
  if (options_.blob_toc) {
    digests.reserve(ci_chunks_.size() * 32);
    for (uint32_t idx : ci_chunks_) {
      const auto& d = (*chunks_)[idx].digest;
      digests.insert(digests.end(), d.begin(), d.end());
    }
    digests_offset = out_->offset();
    RETURN_IF_ERROR(out_->Write(digests, /*hash=*/false));
    format::EncodeTarHeader("blob.digest", digests.size(), hdr);
    RETURN_IF_ERROR(out_->Write(ByteSpan(hdr, sizeof(hdr))));
  }
  e.compressed_size = out_->offset();

  // Section 7: inlined bootstrap.
  std::vector<uint8_t> boot;
  std::vector<uint8_t> boot_stored;
  uint32_t boot_flags = format::kTocNone;
  uint64_t boot_offset = 0;
  if (options_.inline_meta) {
    BlobEntry placeholder = e;
    placeholder.blob_id = std::string(64, 'x');
    ASSIGN_OR_RETURN(boot, make_inline_bootstrap(placeholder));
    if (options_.blob_toc) {
      ASSIGN_OR_RETURN(auto z, storage::Compress(storage::Compressor::kZstd, boot));
      if (z.size() < boot.size()) {
        boot_stored = std::move(z);
        boot_flags = format::kTocZstd;
      }
    }
    if (boot_flags == format::kTocNone) boot_stored = boot;
    boot_offset = out_->offset();
    RETURN_IF_ERROR(out_->Write(boot_stored));
    format::EncodeTarHeader("image.boot", boot_stored.size(), hdr);
    RETURN_IF_ERROR(out_->Write(ByteSpan(hdr, sizeof(hdr))));
  }

  // Section 8: ToC.
  if (options_.blob_toc) {
    PutTocEntry(format::kTocNone, "image.blob", data_digest, 0, data_size, data_size, &toc);
    PutTocEntry(TocFlags(e.ci_compressor), "blob.meta", base::Sha256(ci), e.ci_offset,
                ci_stored.size(), ci.size(), &toc);
    PutTocEntry(format::kTocNone, "blob.meta.header", base::Sha256(header), header_offset,
                header.size(), header.size(), &toc);
    PutTocEntry(format::kTocNone, "blob.digest", base::Sha256(digests), digests_offset,
                digests.size(), digests.size(), &toc);
    if (options_.inline_meta) {
      PutTocEntry(boot_flags, "image.boot", base::Sha256(boot), boot_offset, boot_stored.size(),
                  boot.size(), &toc);
    }
    format::EncodeTarHeader("rafs.blob.toc", toc.size(), hdr);
    toc.insert(toc.end(), hdr, hdr + sizeof(hdr));
    RETURN_IF_ERROR(out_->Write(toc));
    if (!options_.inline_meta) {
      e.blob_toc_size = static_cast<uint32_t>(toc.size());
      e.blob_toc_digest = base::Sha256(toc);
    }
  }
  if (!options_.inline_meta) e.compressed_size = out_->offset();
  e.blob_id = base::DigestHex(out_->FinishId());
  final_path_ = options_.blob_dir + "/" + e.blob_id;
  RETURN_IF_ERROR(out_->Commit(final_path_));
  out_.reset();
  return e;
}

}  // namespace rfs::rafs::builder
