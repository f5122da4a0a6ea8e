#include "snapshotter/grpc/image_resolver.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/logging.h"
#include "snapshotter/remote_fs.h"
#include "storage/image_ref.h"
#include "storage/registry_image.h"

// After base/mutex.h: abseil (under gRPC) defines the same thread-safety
// macros, and only a redefinition inside a system header is silent.
#include <grpcpp/grpcpp.h>

#include "api/services/content/v1/content.grpc.pb.h"
#include "api/services/images/v1/images.grpc.pb.h"
#include "api/services/namespaces/v1/namespace.grpc.pb.h"

namespace rfs::snapshotter::grpc {

using base::DataLossError;
using base::Result;
using base::Status;
using base::StatusCode;
namespace content_v1 = ::containerd::services::content::v1;
namespace images_v1 = ::containerd::services::images::v1;
namespace namespaces_v1 = ::containerd::services::namespaces::v1;

namespace {

constexpr const char* kNamespaceHeader = "containerd-namespace";
// Reasons kept for the final message when nothing matched.
constexpr size_t kMaxReportedProblems = 3;

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// "<algorithm>:<lower-case hex>".
bool IsDigest(std::string_view d) {
  const size_t colon = d.find(':');
  return colon != std::string_view::npos && colon > 0 && IsHex(d.substr(colon + 1));
}

bool IsSha256(std::string_view d) {
  return d.size() == 7 + 64 && d.rfind("sha256:", 0) == 0 && IsHex(d.substr(7));
}

std::string Sha256Digest(std::string_view data) {
  return "sha256:" + base::DigestHex(base::Sha256(base::AsBytes(data)));
}

// An image name fit for a filter's double-quoted value.
bool Quotable(const std::string& s) { return s.find_first_of("\"\\\n") == std::string::npos; }

Result<std::vector<std::string>> DiffIdsOf(std::string_view config, const std::string& digest) {
  using Json = nlohmann::json;
  Json j = Json::parse(config.begin(), config.end(), nullptr, /*allow_exceptions=*/false);
  const std::string where = "image config " + digest;
  if (j.is_discarded() || !j.is_object()) return DataLossError(where, ": not a JSON object");
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) {
    return DataLossError(where, ": \"rootfs\" is missing or not an object");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return DataLossError(where, ": \"rootfs.diff_ids\" is missing or not an array");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < ids->size(); ++i) {
    const Json& v = (*ids)[i];
    if (!v.is_string() || !IsDigest(v.get_ref<const std::string&>())) {
      return DataLossError(where, ": rootfs.diff_ids[", i, "] is not a digest");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// containerd's status -> ours (the codes are the same numbers), naming the
// call; an unreachable containerd says where we looked.
Status FromGrpc(const ::grpc::Status& s, const std::string& address, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const auto code = static_cast<StatusCode>(static_cast<int>(s.error_code()));
  if (code == StatusCode::kUnavailable) {
    return base::UnavailableError("containerd at ", address, " cannot be reached (", what,
                                  "): ", s.error_message());
  }
  if (code == StatusCode::kDeadlineExceeded) {
    return base::DeadlineExceededError("asking containerd at ", address, " (", what,
                                       "): timed out");
  }
  return Status(code, base::StrCat("containerd ", what, ": ", s.error_message()));
}

}  // namespace

Result<std::vector<std::string>> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    if (!IsDigest(diff_ids[i])) {
      return base::InvalidArgumentError("diff id ", i, " \"", diff_ids[i], "\" is not a digest");
    }
    out.push_back(i == 0 ? diff_ids[0] : Sha256Digest(out.back() + " " + diff_ids[i]));
  }
  return out;
}

// One Resolve call: what to match, its deadline, and what went wrong on
// the way (reported only if nothing matches).
struct ContainerdImageResolver::Search {
  base::Deadline deadline = base::Deadline::Infinite();
  std::string chain_id;      // of the bootstrap layer, or empty
  std::string layer_digest;  // of the bootstrap layer, or empty
  std::vector<std::string> namespaces;
  size_t images = 0;
  size_t unnamed = 0;  // names that are not image references
  std::vector<std::string> problems;
  size_t more_problems = 0;

  void Problem(const std::string& image, const Status& s) {
    if (problems.size() < kMaxReportedProblems) {
      problems.push_back(image + ": " + s.message());
    } else {
      ++more_problems;
    }
  }
  bool Matches(const Summary& summary) const {
    return (!chain_id.empty() && summary.bootstrap_chain_id == chain_id) ||
           (!layer_digest.empty() && summary.bootstrap_digest == layer_digest);
  }
  // A client context for one call in namespace `ns` ("" for none).
  void Prepare(::grpc::ClientContext* ctx, const std::string& ns) const {
    ctx->set_deadline(std::chrono::time_point_cast<std::chrono::system_clock::duration>(
        std::chrono::system_clock::now() + deadline.Remaining()));
    if (!ns.empty()) ctx->AddMetadata(kNamespaceHeader, ns);
  }
};

ContainerdImageResolver::ContainerdImageResolver(std::string address,
                                                 std::chrono::milliseconds timeout,
                                                 ImageResolverLimits limits)
    : address_(std::move(address)), timeout_(timeout), limits_(limits) {
  const std::string target = address_.rfind("unix:", 0) == 0 ? address_ : "unix:" + address_;
  ::grpc::ChannelArguments args;
  // Image lists of a busy node and manifests in one message can be large.
  args.SetMaxReceiveMessageSize(64 << 20);
  // A restarted containerd is reachable again within a second, not after
  // gRPC's default backoff of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = ::grpc::CreateCustomChannel(target, ::grpc::InsecureChannelCredentials(), args);
}

ContainerdImageResolver::~ContainerdImageResolver() = default;

std::function<Result<std::string>(const Labels&)> ContainerdImageResolver::LabelResolver(
    std::shared_ptr<ContainerdImageResolver> resolver) {
  return [resolver = std::move(resolver)](const Labels& labels) {
    return resolver->ResolveByChainOrLayer("", labels, "");
  };
}

Result<std::string> ContainerdImageResolver::ResolveByChainOrLayer(
    const std::string& namespace_name, const Labels& meta_layer_labels,
    const std::string& bootstrap_layer_digest_or_empty) {
  Search s;
  s.deadline = base::Deadline::After(timeout_);
  if (auto it = meta_layer_labels.find(kTargetRefLabel); it != meta_layer_labels.end()) {
    s.chain_id = it->second;
  }
  s.layer_digest = bootstrap_layer_digest_or_empty;
  if (s.layer_digest.empty()) {
    if (auto it = meta_layer_labels.find(kCriLayerDigestLabel); it != meta_layer_labels.end()) {
      s.layer_digest = it->second;
    }
  }
  if (!s.chain_id.empty() && !IsDigest(s.chain_id)) {
    return base::InvalidArgumentError("label ", kTargetRefLabel, " \"", s.chain_id,
                                      "\" is not a chain id");
  }
  if (s.chain_id.empty() && s.layer_digest.empty()) {
    return base::InvalidArgumentError("the layer's labels name neither its chain id (",
                                      kTargetRefLabel, ") nor its digest (", kCriLayerDigestLabel,
                                      "): nothing to look for in containerd");
  }
  const std::string key = s.chain_id.empty() ? "layer " + s.layer_digest : s.chain_id;
  const std::string what =
      s.chain_id.empty() ? "bootstrap layer " + s.layer_digest : "layer chain id " + s.chain_id;

  std::optional<Found> cached;
  {
    base::MutexLock l(&mu_);
    if (auto it = found_.find(key); it != found_.end()) cached = it->second;
  }
  if (cached) {
    Result<bool> still = ConfirmCached(s, *cached);
    if (!still.ok()) return still.status();
    if (*still) return cached->image;
    base::MutexLock l(&mu_);
    found_.erase(key);
  }

  ASSIGN_OR_RETURN(std::vector<std::string> all, ListNamespaces(s));
  if (!namespace_name.empty()) s.namespaces.push_back(namespace_name);
  for (std::string& ns : all) {
    if (ns != namespace_name) s.namespaces.push_back(std::move(ns));
  }
  for (const std::string& ns : s.namespaces) {
    std::string name, target;
    Result<bool> hit = SearchNamespace(s, ns, &name, &target);
    if (!hit.ok()) return hit.status();
    if (!*hit) continue;
    RFS_LOG(kInfo) << "containerd names the image of " << what << ": " << name << " (namespace "
                   << ns << ")";
    base::MutexLock l(&mu_);
    found_[key] = Found{ns, name, target};
    return name;
  }

  std::string searched;
  for (const std::string& ns : s.namespaces) searched += (searched.empty() ? "" : ", ") + ns;
  std::string msg = base::StrCat(
      "no image in containerd at ", address_, " has a nydus bootstrap layer with ", what, " (",
      s.images, " image(s) in namespace(s) ", searched.empty() ? "(none)" : searched, ")");
  if (s.unnamed > 0) {
    msg += base::StrCat("; ", s.unnamed, " image(s) skipped: names are not image references");
  }
  for (const std::string& p : s.problems) msg += "; skipped " + p;
  if (s.more_problems > 0) msg += base::StrCat("; and ", s.more_problems, " more");
  msg += base::StrCat(
      ". The image was removed from containerd, or its layers were unpacked without it: pull "
      "the image into containerd again, or with a client that labels layers with the image "
      "reference (",
      kCriImageRefLabel,
      "): nerdctl --snapshotter nydus pull, ctr-remote images rpull, or the CRI plugin with "
      "disable_snapshot_annotations = false");
  return base::NotFoundError(msg);
}

Result<std::vector<std::string>> ContainerdImageResolver::ListNamespaces(Search& s) {
  auto stub = namespaces_v1::Namespaces::NewStub(channel_);
  ::grpc::ClientContext ctx;
  s.Prepare(&ctx, "");
  namespaces_v1::ListNamespacesRequest req;
  namespaces_v1::ListNamespacesResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->List(&ctx, req, &resp), address_, "list namespaces"));
  std::vector<std::string> out;
  for (const auto& n : resp.namespaces()) out.push_back(n.name());
  return out;
}

Result<bool> ContainerdImageResolver::ConfirmCached(Search& s, const Found& found) {
  if (!Quotable(found.image)) return false;
  auto stub = images_v1::Images::NewStub(channel_);
  ::grpc::ClientContext ctx;
  s.Prepare(&ctx, found.namespace_name);
  images_v1::ListImagesRequest req;
  req.add_filters("name==\"" + found.image + "\"");
  images_v1::ListImagesResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->List(&ctx, req, &resp), address_,
                           "list images of namespace " + found.namespace_name));
  for (const auto& image : resp.images()) {
    if (image.name() == found.image && image.target().digest() == found.target_digest) return true;
  }
  return false;
}

Result<bool> ContainerdImageResolver::SearchNamespace(Search& s, const std::string& ns,
                                                      std::string* name, std::string* target) {
  auto stub = images_v1::Images::NewStub(channel_);
  ::grpc::ClientContext ctx;
  s.Prepare(&ctx, ns);
  images_v1::ListImagesRequest req;
  images_v1::ListImagesResponse resp;
  RETURN_IF_ERROR(
      FromGrpc(stub->List(&ctx, req, &resp), address_, "list images of namespace " + ns));
  for (const auto& image : resp.images()) {
    ++s.images;
    if (!storage::ParseImageReference(image.name()).ok()) {
      ++s.unnamed;
      continue;
    }
    const auto& t = image.target();
    if (t.size() < 0) {
      s.Problem(image.name(), DataLossError("negative target size"));
      continue;
    }
    Result<bool> m =
        ImageMatches(s, ns, t.media_type(), t.digest(), static_cast<uint64_t>(t.size()), 0, false);
    if (!m.ok()) {
      // containerd itself failing ends the search; one bad image does not.
      const StatusCode c = m.status().code();
      if (c == StatusCode::kUnavailable || c == StatusCode::kDeadlineExceeded) return m.status();
      RFS_LOG(kDebug) << "image " << image.name() << " (namespace " << ns
                      << ") cannot be matched: " << m.status();
      s.Problem(image.name(), m.status());
      continue;
    }
    if (*m) {
      *name = image.name();
      *target = t.digest();
      return true;
    }
  }
  return false;
}

Result<bool> ContainerdImageResolver::ImageMatches(Search& s, const std::string& ns,
                                                   const std::string& media_type,
                                                   const std::string& digest, uint64_t size,
                                                   int depth, bool chosen_as_nydus) {
  const std::string cache_key = chosen_as_nydus ? digest + " nydus" : digest;
  {
    base::MutexLock l(&mu_);
    if (auto it = summaries_.find(cache_key); it != summaries_.end()) return s.Matches(it->second);
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadBlob(s, ns, digest, size));
  ASSIGN_OR_RETURN(storage::ManifestDocument doc,
                   storage::ParseManifestDocument(base::AsBytes(bytes), media_type));
  if (doc.is_index) {
    if (depth >= 2) return DataLossError("index ", digest, ": indexes nested too deep");
    // Nydus entries first: they are the likely match.
    std::vector<const storage::Descriptor*> entries;
    for (const auto& d : doc.manifests) {
      if (d.IsNydusManifest()) entries.push_back(&d);
    }
    for (const auto& d : doc.manifests) {
      if (!d.IsNydusManifest()) entries.push_back(&d);
    }
    if (entries.size() > limits_.max_index_entries) entries.resize(limits_.max_index_entries);
    // One bad entry does not hide a matching one; it is the answer only
    // when nothing matches.
    Status first_error;
    for (const storage::Descriptor* d : entries) {
      Result<bool> m =
          ImageMatches(s, ns, d->media_type, d->digest, d->size, depth + 1, d->IsNydusManifest());
      if (m.ok() && *m) return true;
      if (m.ok()) continue;
      const StatusCode c = m.status().code();
      if (c == StatusCode::kUnavailable || c == StatusCode::kDeadlineExceeded) return m.status();
      // A pull fetches one platform: the others are not in the store.
      if (c == StatusCode::kNotFound) continue;
      if (first_error.ok()) first_error = m.status().WithContext("index " + digest);
    }
    if (!first_error.ok()) return first_error;
    return false;
  }
  ASSIGN_OR_RETURN(Summary summary, SummarizeManifest(s, ns, digest, doc, chosen_as_nydus));
  const bool match = s.Matches(summary);
  base::MutexLock l(&mu_);
  if (summaries_.size() >= limits_.max_cached_manifests) summaries_.clear();
  summaries_[cache_key] = std::move(summary);
  return match;
}

Result<ContainerdImageResolver::Summary> ContainerdImageResolver::SummarizeManifest(
    Search& s, const std::string& ns, const std::string& digest,
    const storage::ManifestDocument& doc, bool chosen_as_nydus) {
  Result<storage::NydusLayers> layers = storage::FindNydusLayers(doc, chosen_as_nydus);
  // Not a nydus image: a summary that matches nothing.
  if (!layers.ok() && layers.status().code() == StatusCode::kFailedPrecondition) return Summary{};
  if (!layers.ok()) return layers.status().WithContext("manifest " + digest);
  size_t index = doc.layers.size();
  for (size_t i = 0; i < doc.layers.size(); ++i) {
    if (doc.layers[i].digest == layers->bootstrap.digest) index = i;
  }
  const storage::Descriptor& config = doc.config;
  ASSIGN_OR_RETURN(std::string config_bytes, ReadBlob(s, ns, config.digest, config.size));
  ASSIGN_OR_RETURN(std::vector<std::string> diff_ids, DiffIdsOf(config_bytes, config.digest));
  if (diff_ids.size() != doc.layers.size()) {
    return DataLossError("manifest ", digest, ": ", doc.layers.size(), " layers but its config ",
                         config.digest, " has ", diff_ids.size(), " diff ids");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> chain, ChainIds(diff_ids));
  Summary out;
  out.bootstrap_digest = layers->bootstrap.digest;
  out.bootstrap_chain_id = chain[index];
  return out;
}

Result<std::string> ContainerdImageResolver::ReadBlob(Search& s, const std::string& ns,
                                                      const std::string& digest, uint64_t size) {
  if (!IsSha256(digest)) {
    return base::FailedPreconditionError("blob \"", digest,
                                         "\": only sha256 digests are checked and read");
  }
  if (size > limits_.max_document_bytes) {
    return base::ResourceExhaustedError("blob ", digest, ": ", size, " bytes, over the limit of ",
                                        limits_.max_document_bytes);
  }
  auto stub = content_v1::Content::NewStub(channel_);
  ::grpc::ClientContext ctx;
  s.Prepare(&ctx, ns);
  content_v1::ReadContentRequest req;
  req.set_digest(digest);
  std::unique_ptr<::grpc::ClientReader<content_v1::ReadContentResponse>> reader =
      stub->Read(&ctx, req);
  std::string data;
  content_v1::ReadContentResponse resp;
  Status bad;
  while (reader->Read(&resp)) {
    if (resp.offset() != static_cast<int64_t>(data.size())) {
      bad = DataLossError("blob ", digest, ": data at offset ", resp.offset(), ", expected ",
                          data.size());
    } else if (data.size() + resp.data().size() > size) {
      bad =
          DataLossError("blob ", digest, ": longer than the ", size, " bytes its descriptor says");
    }
    if (!bad.ok()) {
      ctx.TryCancel();
      break;
    }
    data += resp.data();
  }
  ::grpc::Status st = reader->Finish();
  if (!bad.ok()) return bad;
  RETURN_IF_ERROR(FromGrpc(st, address_, "read blob " + digest));
  if (data.size() != size) {
    return DataLossError("blob ", digest, ": ", data.size(), " bytes, its descriptor says ", size);
  }
  if (Sha256Digest(data) != digest) {
    return DataLossError("blob ", digest, ": content does not match its digest");
  }
  return data;
}

}  // namespace rfs::snapshotter::grpc
