// In-memory blob backend for tests: blob id -> bytes, with a count of reads.
#pragma once

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "storage/blob_reader.h"

namespace rfs::testing {

class MemoryBackend final : public storage::BlobBackend {
 public:
  explicit MemoryBackend(std::map<std::string, std::vector<uint8_t>> blobs)
      : blobs_(std::make_shared<std::map<std::string, std::vector<uint8_t>>>(std::move(blobs))) {}

  base::Result<std::unique_ptr<storage::BlobReader>> Open(const std::string& id) override {
    auto it = blobs_->find(id);
    if (it == blobs_->end()) return base::NotFoundError("blob ", id, " not found");
    return std::unique_ptr<storage::BlobReader>(new Reader(id, &it->second, &reads_));
  }
  uint64_t reads() const { return reads_.load(); }

 private:
  class Reader final : public storage::BlobReader {
   public:
    Reader(std::string id, const std::vector<uint8_t>* data, std::atomic<uint64_t>* reads)
        : id_(std::move(id)), data_(data), reads_(reads) {}
    const std::string& blob_id() const override { return id_; }
    base::Result<uint64_t> Size() override { return data_->size(); }
   private:
    base::Status TryReadAt(uint64_t offset, base::MutableByteSpan dst,
                           const storage::IoContext&) override {
      reads_->fetch_add(1);
      if (!base::RangeInside(offset, dst.size(), data_->size())) {
        return base::OutOfRangeError("blob ", id_, ": range [", offset, ", +", dst.size(),
                                     ") passes its end ", data_->size());
      }
      if (!dst.empty()) std::memcpy(dst.data(), data_->data() + offset, dst.size());
      return base::Status::Ok();
    }

    std::string id_;
    const std::vector<uint8_t>* data_;
    std::atomic<uint64_t>* reads_;
  };

  std::shared_ptr<std::map<std::string, std::vector<uint8_t>>> blobs_;
  std::atomic<uint64_t> reads_{0};
};

}  // namespace rfs::testing
