#include "cmd/rafs/image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "base/digest.h"
#include "base/unique_fd.h"
#include "storage/image_ref.h"
#include "storage/oci_layout.h"

namespace rfs::cmd {

using base::Result;
using base::Status;
using storage::Descriptor;

namespace {

constexpr std::string_view kRegistryScheme = "registry://";
constexpr std::string_view kOciScheme = "oci:";
constexpr uint64_t kMaxManifestBytes = 4u << 20;

std::string Sha256Of(const std::vector<uint8_t>& b) {
  return "sha256:" + base::DigestHex(base::Sha256(b));
}

class RegistryStore final : public ImageStore {
 public:
  RegistryStore(std::string name, storage::ImageReference ref,
                std::shared_ptr<storage::RegistryBackend> backend)
      : name_(std::move(name)),
        ref_(std::move(ref)),
        backend_(backend),
        pusher_(std::move(backend)) {}

  const std::string& name() const override { return name_; }
  const storage::ImageReference& ref() const { return ref_; }

  Result<StoredDocument> GetRoot() override {
    auto m = backend_->GetManifest(ref_.Reference(), storage::IoContext{}, kMaxManifestBytes);
    if (!m.ok()) return m.status();
    return StoredDocument{m->media_type, m->digest, std::move(m->bytes)};
  }

  Result<StoredDocument> GetManifest(const Descriptor& d) override {
    auto m = backend_->GetManifest(d.digest, storage::IoContext{}, kMaxManifestBytes);
    if (!m.ok()) return m.status();
    if (m->bytes.size() != d.size) {
      return base::DataLossError("manifest ", d.digest, ": ", m->bytes.size(),
                                 " bytes, its descriptor says ", d.size);
    }
    return StoredDocument{m->media_type.empty() ? d.media_type : m->media_type, m->digest,
                          std::move(m->bytes)};
  }

  Result<std::vector<uint8_t>> ReadBlob(const Descriptor& d, uint64_t max_bytes) override {
    if (d.size > max_bytes) {
      return base::ResourceExhaustedError("blob ", d.digest, ": ", d.size,
                                          " bytes, over the limit of ", max_bytes);
    }
    if (d.digest.rfind("sha256:", 0) != 0) {
      return base::FailedPreconditionError("blob ", d.digest, ": only sha256 digests are supported");
    }
    ASSIGN_OR_RETURN(auto reader, backend_->Open(d.digest.substr(7)));
    std::vector<uint8_t> bytes(static_cast<size_t>(d.size));
    Status s = reader->ReadAt(0, bytes, storage::IoContext{});
    if (s.code() == base::StatusCode::kOutOfRange) {
      return base::DataLossError("blob ", d.digest, ": shorter than ", d.size, " bytes");
    }
    RETURN_IF_ERROR(s);
    const std::string got = Sha256Of(bytes);
    if (got != d.digest) {
      return base::DataLossError("blob ", d.digest, " from ", name_, ": content digest is ", got);
    }
    return bytes;
  }

  Status StreamBlob(const Descriptor& d, const std::function<Status(base::ByteSpan)>& consume,
                    const storage::TransferProgress& progress) override {
    return storage::StreamBlob(*backend_, d.digest, d.size, consume, progress,
                               storage::IoContext{});
  }

  Result<std::optional<uint64_t>> StatBlob(const std::string& digest) override {
    return pusher_.StatBlob(digest, storage::IoContext{});
  }

  Result<storage::BlobPush> PutBlob(const Descriptor& d, const storage::BlobContent& content,
                                    const storage::TransferProgress& progress) override {
    return pusher_.PushBlob(d.digest, d.size, content, mount_from_, progress,
                            storage::IoContext{});
  }

  Status PutManifest(const Descriptor& d, const std::vector<uint8_t>& bytes, bool tag) override {
    return pusher_.PushManifest(tag ? ref_.tag : d.digest, d.media_type, bytes,
                                storage::IoContext{});
  }

  void MountFrom(const ImageStore& source) override {
    auto* src = dynamic_cast<const RegistryStore*>(&source);
    if (src != nullptr && src->ref_.ApiHost() == ref_.ApiHost() &&
        src->ref_.repository != ref_.repository) {
      mount_from_ = src->ref_.repository;
    }
  }

 private:
  std::string name_;
  storage::ImageReference ref_;
  std::shared_ptr<storage::RegistryBackend> backend_;
  storage::RegistryPusher pusher_;
  std::string mount_from_;
};

class OciStore final : public ImageStore {
 public:
  OciStore(std::string name, storage::OciLayout layout, std::string tag)
      : name_(std::move(name)), layout_(std::move(layout)), tag_(std::move(tag)) {}

  const std::string& name() const override { return name_; }

  Result<StoredDocument> GetRoot() override {
    ASSIGN_OR_RETURN(Descriptor d, layout_.Resolve(tag_));
    return GetManifest(d);
  }

  Result<StoredDocument> GetManifest(const Descriptor& d) override {
    ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                     layout_.ReadBlob(d.digest, d.size, kMaxManifestBytes));
    return StoredDocument{d.media_type, d.digest, std::move(bytes)};
  }

  Result<std::vector<uint8_t>> ReadBlob(const Descriptor& d, uint64_t max_bytes) override {
    return layout_.ReadBlob(d.digest, d.size, max_bytes);
  }

  Status StreamBlob(const Descriptor& d, const std::function<Status(base::ByteSpan)>& consume,
                    const storage::TransferProgress& progress) override {
    const std::string path = layout_.BlobPath(d.digest);
    base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      return base::NotFoundError("blob ", d.digest, " in ", name_, ": ", std::strerror(errno));
    }
    auto hasher = base::Hasher::Create(base::DigestAlgo::kSha256);
    std::vector<uint8_t> buf(1 << 20);
    uint64_t done = 0;
    for (;;) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return base::InternalError("reading ", path, ": ", std::strerror(errno));
      if (n == 0) break;
      const base::ByteSpan piece(buf.data(), static_cast<size_t>(n));
      hasher->Update(piece);
      done += static_cast<uint64_t>(n);
      if (done > d.size) break;
      RETURN_IF_ERROR(consume(piece));
      if (progress) progress(done);
    }
    const std::string got = "sha256:" + base::DigestHex(hasher->Finish());
    if (done != d.size || got != d.digest) {
      return base::DataLossError("blob ", d.digest, " in ", name_, ": content digest is ", got,
                                 " (", done, " bytes, expected ", d.size, ")");
    }
    return Status::Ok();
  }

  Result<std::optional<uint64_t>> StatBlob(const std::string& digest) override {
    struct stat st;
    if (::stat(layout_.BlobPath(digest).c_str(), &st) != 0) return std::optional<uint64_t>();
    return std::optional<uint64_t>(static_cast<uint64_t>(st.st_size));
  }

  Result<storage::BlobPush> PutBlob(const Descriptor& d, const storage::BlobContent& content,
                                    const storage::TransferProgress& progress) override {
    bool existed = false;
    if (!content.path.empty()) {
      ASSIGN_OR_RETURN(existed, layout_.CopyBlobFile(d.digest, content.path));
    } else {
      ASSIGN_OR_RETURN(existed, layout_.WriteBlob(d.digest, content.bytes));
    }
    if (progress) progress(d.size);
    return existed ? storage::BlobPush::kExisted : storage::BlobPush::kUploaded;
  }

  Status PutManifest(const Descriptor& d, const std::vector<uint8_t>& bytes, bool tag) override {
    RETURN_IF_ERROR(layout_.WriteBlob(d.digest, bytes).status());
    if (!tag) return Status::Ok();
    Descriptor entry = d;
    entry.platform.reset();
    entry.artifact_type.clear();
    return layout_.Tag(entry, tag_);
  }

 private:
  std::string name_;
  storage::OciLayout layout_;
  std::string tag_;
};

bool ValidTag(const std::string& t) {
  return !t.empty() && t.size() <= 128 && t[0] != '.' && t[0] != '-' &&
         std::all_of(t.begin(), t.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
         });
}

}  // namespace

Result<std::unique_ptr<ImageStore>> OpenImageStore(const std::string& ref,
                                                   const RegistryAccess& access, bool for_write) {
  if (ref.rfind(kRegistryScheme, 0) == 0) {
    auto parsed = storage::ParseImageReference(std::string_view(ref).substr(kRegistryScheme.size()));
    if (!parsed.ok()) return parsed.status().WithContext(ref);
    if (for_write && !parsed->digest.empty()) {
      return base::InvalidArgumentError(ref, ": a destination names a tag, not a digest");
    }
    ASSIGN_OR_RETURN(auto backend,
                     MakeRegistryBackend(parsed->ApiHost(), parsed->repository, access));
    return std::unique_ptr<ImageStore>(
        new RegistryStore(ref, std::move(*parsed), std::move(backend)));
  }
  if (ref.rfind(kOciScheme, 0) == 0) {
    std::string dir = ref.substr(kOciScheme.size());
    std::string tag;
    const size_t colon = dir.rfind(':');
    if (colon != std::string::npos && dir.find('/', colon) == std::string::npos) {
      tag = dir.substr(colon + 1);
      dir.resize(colon);
      if (!ValidTag(tag)) return base::InvalidArgumentError(ref, ": bad tag '", tag, "'");
    }
    if (dir.empty()) return base::InvalidArgumentError(ref, ": no directory (oci:DIR[:TAG])");
    if (for_write && tag.empty()) tag = "latest";
    ASSIGN_OR_RETURN(storage::OciLayout layout, storage::OciLayout::Open(dir, for_write));
    return std::unique_ptr<ImageStore>(new OciStore(ref, std::move(layout), tag));
  }
  return base::InvalidArgumentError(
      "image '", ref,
      "': want registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] or oci:DIR[:TAG]");
}

}  // namespace rfs::cmd
