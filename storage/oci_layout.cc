#include "storage/oci_layout.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/digest.h"
#include "base/unique_fd.h"

namespace rfs::storage {

using base::Result;
using base::Status;
using Json = nlohmann::json;

namespace {

constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";

bool IsSha256Digest(const std::string& d) {
  return d.size() == 71 && d.rfind("sha256:", 0) == 0 &&
         std::all_of(d.begin() + 7, d.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status WriteAtomically(const std::string& path, base::ByteSpan bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return base::InternalError("cannot create ", tmp, ": ", std::strerror(errno));
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = base::InternalError("writing ", tmp, ": ", std::strerror(errno));
      ::unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = base::InternalError("rename to ", path, ": ", std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return base::InternalError("cannot create ", path, ": ", std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<std::pair<std::string, uint64_t>> Sha256File(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return base::NotFoundError(path, ": no such file");
    return base::InternalError("cannot open ", path, ": ", std::strerror(errno));
  }
  auto h = base::Hasher::Create(base::DigestAlgo::kSha256);
  std::vector<uint8_t> buf(1 << 20);
  uint64_t size = 0;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::InternalError("reading ", path, ": ", std::strerror(errno));
    if (n == 0) break;
    h->Update(base::ByteSpan(buf.data(), static_cast<size_t>(n)));
    size += static_cast<uint64_t>(n);
  }
  return std::make_pair("sha256:" + base::DigestHex(h->Finish()), size);
}

Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return base::NotFoundError(path, ": no such file");
    return base::InternalError("cannot open ", path, ": ", std::strerror(errno));
  }
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::InternalError("reading ", path, ": ", std::strerror(errno));
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return base::ResourceExhaustedError(path, ": larger than ", max_bytes, " bytes");
    }
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

Json DescriptorToJson(const Descriptor& d) {
  Json j = Json::object();
  j["mediaType"] = d.media_type;
  j["digest"] = d.digest;
  j["size"] = d.size;
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) {
    Json a = Json::object();
    for (const auto& [k, v] : d.annotations) a[k] = v;
    j["annotations"] = std::move(a);
  }
  if (d.platform) {
    Json p = Json::object();
    p["os"] = d.platform->os;
    p["architecture"] = d.platform->architecture;
    if (!d.platform->variant.empty()) p["variant"] = d.platform->variant;
    if (!d.platform->os_features.empty()) p["os.features"] = d.platform->os_features;
    j["platform"] = std::move(p);
  }
  return j;
}

Result<OciLayout> OciLayout::Open(const std::string& dir, bool create) {
  if (dir.empty()) return base::InvalidArgumentError("oci: layout directory name is empty");
  struct stat st;
  const std::string marker = dir + "/oci-layout";
  if (::stat(marker.c_str(), &st) == 0) return OciLayout(dir);
  if (!create) {
    return base::FailedPreconditionError(
        dir, ": not an OCI image layout directory (no oci-layout file)");
  }
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return base::FailedPreconditionError(dir, ": not a directory");
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return base::InternalError("cannot read ", dir, ": ", std::strerror(errno));
    bool empty = true;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    }
    ::closedir(d);
    if (!empty) {
      return base::FailedPreconditionError(
          dir, ": directory is not empty and not an OCI image layout (no oci-layout file)");
    }
  }
  RETURN_IF_ERROR(MakeDir(dir));
  RETURN_IF_ERROR(MakeDir(dir + "/blobs"));
  RETURN_IF_ERROR(MakeDir(dir + "/blobs/sha256"));
  const std::string index = R"({"manifests":[],"mediaType":")" + std::string(kOciIndexType) +
                            R"(","schemaVersion":2})";
  RETURN_IF_ERROR(WriteAtomically(
      dir + "/index.json",
      base::ByteSpan(reinterpret_cast<const uint8_t*>(index.data()), index.size())));
  const std::string layout = R"({"imageLayoutVersion":"1.0.0"})";
  RETURN_IF_ERROR(WriteAtomically(
      marker, base::ByteSpan(reinterpret_cast<const uint8_t*>(layout.data()), layout.size())));
  return OciLayout(dir);
}

std::string OciLayout::BlobPath(const std::string& digest) const {
  const size_t colon = digest.find(':');
  return dir_ + "/blobs/" + digest.substr(0, colon) + "/" + digest.substr(colon + 1);
}

Result<std::vector<uint8_t>> OciLayout::ReadIndex() const {
  return ReadWholeFile(dir_ + "/index.json", 16u << 20);
}

Result<Descriptor> OciLayout::Resolve(const std::string& tag) const {
  ASSIGN_OR_RETURN(std::vector<uint8_t> raw, ReadIndex());
  auto doc = ParseManifestDocument(raw, kOciIndexType);
  if (!doc.ok()) return doc.status().WithContext(dir_ + "/index.json");
  if (!doc->is_index) return base::DataLossError(dir_, "/index.json: not an image index");
  std::string offered;
  for (const Descriptor& d : doc->manifests) {
    auto it = d.annotations.find(std::string(kOciRefNameAnnotation));
    const std::string name = it == d.annotations.end() ? "" : it->second;
    if (!tag.empty() && name == tag) return d;
    offered += (offered.empty() ? "" : ", ") + (name.empty() ? d.digest : name);
  }
  if (tag.empty() && doc->manifests.size() == 1) return doc->manifests.front();
  if (tag.empty()) {
    return base::NotFoundError(dir_, ": name a tag (oci:DIR:TAG); the layout holds ",
                               offered.empty() ? "nothing" : offered);
  }
  return base::NotFoundError(dir_, ": no image tagged '", tag, "' (it has ",
                             offered.empty() ? "none" : offered, ")");
}

Status OciLayout::VerifyBlob(const std::string& digest, uint64_t size) const {
  if (!IsSha256Digest(digest)) {
    return base::InvalidArgumentError("blob digest '", digest, "' is not sha256:<hex>");
  }
  auto got = Sha256File(BlobPath(digest));
  if (!got.ok()) return got.status().WithContext("blob " + digest);
  if (got->second != size) {
    return base::DataLossError("blob ", digest, " in ", dir_, ": ", got->second,
                               " bytes, the manifest says ", size);
  }
  if (got->first != digest) {
    return base::DataLossError("blob ", digest, " in ", dir_, ": content digest is ", got->first);
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> OciLayout::ReadBlob(const std::string& digest, uint64_t size,
                                                 uint64_t max_bytes) const {
  if (!IsSha256Digest(digest)) {
    return base::InvalidArgumentError("blob digest '", digest, "' is not sha256:<hex>");
  }
  if (size > max_bytes) {
    return base::ResourceExhaustedError("blob ", digest, ": ", size, " bytes, over the limit of ",
                                        max_bytes);
  }
  auto bytes = ReadWholeFile(BlobPath(digest), max_bytes);
  if (!bytes.ok()) return bytes.status().WithContext("blob " + digest);
  const std::string got = "sha256:" + base::DigestHex(base::Sha256(*bytes));
  if (bytes->size() != size || got != digest) {
    return base::DataLossError("blob ", digest, " in ", dir_, ": content digest is ", got, " (",
                               bytes->size(), " bytes, expected ", size, ")");
  }
  return bytes;
}

Result<bool> OciLayout::WriteBlob(const std::string& digest, base::ByteSpan bytes) {
  if (VerifyBlob(digest, bytes.size()).ok()) return true;
  const std::string got = "sha256:" + base::DigestHex(base::Sha256(bytes));
  if (got != digest) return base::InternalError("blob ", digest, ": bytes hash to ", got);
  RETURN_IF_ERROR(MakeDir(dir_ + "/blobs/sha256"));
  RETURN_IF_ERROR(WriteAtomically(BlobPath(digest), bytes));
  return false;
}

Result<bool> OciLayout::CopyBlobFile(const std::string& digest, const std::string& path) {
  ASSIGN_OR_RETURN(auto hashed, Sha256File(path));
  if (hashed.first != digest) {
    return base::DataLossError(path, ": content digest is ", hashed.first, ", expected ", digest);
  }
  if (VerifyBlob(digest, hashed.second).ok()) return true;
  RETURN_IF_ERROR(MakeDir(dir_ + "/blobs/sha256"));
  const std::string dst = BlobPath(digest);
  const std::string tmp = dst + ".tmp" + std::to_string(::getpid());
  base::UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  base::UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!in.valid() || !out.valid()) {
    return base::InternalError("copying ", path, " to ", tmp, ": ", std::strerror(errno));
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) break;
    if (n < 0 || ::write(out.get(), buf.data(), static_cast<size_t>(n)) != n) {
      Status s = base::InternalError("copying ", path, " to ", tmp, ": ", std::strerror(errno));
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    Status s = base::InternalError("rename to ", dst, ": ", std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  }
  return false;
}

Status OciLayout::Tag(const Descriptor& manifest, const std::string& tag) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> raw, ReadIndex());
  Json j = Json::parse(raw.begin(), raw.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return base::DataLossError(dir_, "/index.json: not a JSON object");
  }
  Json kept = Json::array();
  if (j.contains("manifests") && j["manifests"].is_array()) {
    for (const Json& e : j["manifests"]) {
      const bool same_tag = !tag.empty() && e.is_object() && e.contains("annotations") &&
                            e["annotations"].is_object() &&
                            e["annotations"].value(std::string(kOciRefNameAnnotation), "") == tag;
      if (!same_tag) kept.push_back(e);
    }
  }
  Descriptor entry = manifest;
  if (!tag.empty()) entry.annotations[std::string(kOciRefNameAnnotation)] = tag;
  kept.push_back(DescriptorToJson(entry));
  j["manifests"] = std::move(kept);
  j["schemaVersion"] = 2;
  if (!j.contains("mediaType")) j["mediaType"] = std::string(kOciIndexType);
  const std::string text = j.dump();
  return WriteAtomically(dir_ + "/index.json",
                         base::ByteSpan(reinterpret_cast<const uint8_t*>(text.data()),
                                        text.size()));
}

}  // namespace rfs::storage
