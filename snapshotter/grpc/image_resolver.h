// ContainerdImageResolver: which image does a RAFS meta layer belong to?
// Asked of containerd itself, for pulls whose layers carry no
// containerd.io/snapshot/cri.image-ref label (plain `ctr image pull`, spec
// SNAPSHOTTER-BEHAVIOUR 14.3 and 16).
//
// The meta (bootstrap) snapshot's labels name its chain id
// (containerd.io/snapshot.ref). The resolver lists the images of every
// containerd namespace (Namespaces.List, Images.List), reads each image's
// manifest from the content store (Content.Read; an index: each child
// manifest the store holds) and, for a nydus manifest, its config. The chain
// id of the bootstrap layer, computed from the config's rootfs.diff_ids as
// containerd does (chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " +
// diff(n))), is compared with the label. When the bootstrap layer's digest is
// known (an argument, or the cri.layer-digest label) a manifest whose
// bootstrap layer has that digest matches without reading the config.
//
// The first matching image whose name is an image reference is the answer;
// the namespace passed in is searched first, then the others in containerd's
// order. Documents are size capped and digest checked; a document that cannot
// be read or parsed skips that image (the reason is reported if nothing
// matches), never crashes or aborts the search.
//
// Caches: per manifest digest what its nydus bootstrap layer is (content is
// immutable, so forever, bounded); per chain id the image that matched, used
// again after one Images.List confirms the image still exists with the same
// target.
//
// Results: the image name; kNotFound with what to do when nothing matches;
// kUnavailable when containerd cannot be reached; kDeadlineExceeded when the
// timeout (for the whole search) runs out; kInvalidArgument when the labels
// name no chain id; other containerd errors with their code. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/deadline.h"
#include "base/mutex.h"
#include "base/status.h"
#include "snapshotter/snapshot.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace rfs::storage {
struct ManifestDocument;
}  // namespace rfs::storage

namespace rfs::snapshotter::grpc {

// How long one search may take by default (containerd answers a node's
// image list in milliseconds; this is for a containerd that hangs).
inline constexpr std::chrono::milliseconds kDefaultImageResolveTimeout{10000};

struct ImageResolverLimits {
  uint64_t max_document_bytes = 4u << 20;  // one manifest, index or config
  size_t max_index_entries = 64;           // child manifests looked at per index
  size_t max_cached_manifests = 4096;      // summaries kept; the cache restarts when full
};

// The chain ids of layers with these diff ids (bottom first), containerd's
// identity.ChainIDs. kInvalidArgument for a diff id that is not
// "<algorithm>:<hex>".
base::Result<std::vector<std::string>> ChainIds(const std::vector<std::string>& diff_ids);

class ContainerdImageResolver {
 public:
  // `address`: containerd's socket, "/run/containerd/containerd.sock" or
  // "unix:/run/...". `timeout` bounds one whole Resolve call. Connects
  // lazily: constructing never fails.
  explicit ContainerdImageResolver(std::string address,
                                   std::chrono::milliseconds timeout = kDefaultImageResolveTimeout,
                                   ImageResolverLimits limits = {});
  ~ContainerdImageResolver();
  ContainerdImageResolver(const ContainerdImageResolver&) = delete;
  ContainerdImageResolver& operator=(const ContainerdImageResolver&) = delete;

  // The name of the image whose nydus bootstrap layer is the layer described
  // by `meta_layer_labels` (its containerd.io/snapshot.ref chain id) or whose
  // bootstrap layer digest is `bootstrap_layer_digest_or_empty` (empty: the
  // cri.layer-digest label, if any). `namespace_name` is searched first;
  // empty: every namespace in containerd's order.
  base::Result<std::string> ResolveByChainOrLayer(
      const std::string& namespace_name, const Labels& meta_layer_labels,
      const std::string& bootstrap_layer_digest_or_empty) EXCLUDES(mu_);

  // ResolveByChainOrLayer of `resolver` over every namespace, as a function
  // of the labels (RafsManagerOptions::resolve_image_ref); it shares
  // ownership of the resolver.
  static std::function<base::Result<std::string>(const Labels&)> LabelResolver(
      std::shared_ptr<ContainerdImageResolver> resolver);

  const std::string& address() const { return address_; }

 private:
  struct Search;
  // What a manifest digest says about its nydus bootstrap layer. Empty
  // strings: not a nydus image (or one this resolver cannot match).
  struct Summary {
    std::string bootstrap_digest;
    std::string bootstrap_chain_id;
  };
  struct Found {
    std::string namespace_name;
    std::string image;
    std::string target_digest;
  };

  base::Result<std::vector<std::string>> ListNamespaces(Search& s);
  // The cached image still exists with the same target.
  base::Result<bool> ConfirmCached(Search& s, const Found& found);
  // Ok(true) and *name set when an image of `ns` matches.
  base::Result<bool> SearchNamespace(Search& s, const std::string& ns, std::string* name,
                                     std::string* target);
  // Whether the image whose target is (media_type, digest, size) matches;
  // an error for an unreadable or malformed image. `chosen_as_nydus`: an
  // index entry marked the manifest as the nydus variant.
  base::Result<bool> ImageMatches(Search& s, const std::string& ns, const std::string& media_type,
                                  const std::string& digest, uint64_t size, int depth,
                                  bool chosen_as_nydus) EXCLUDES(mu_);
  base::Result<Summary> SummarizeManifest(Search& s, const std::string& ns,
                                          const std::string& digest,
                                          const storage::ManifestDocument& doc,
                                          bool chosen_as_nydus);
  base::Result<std::string> ReadBlob(Search& s, const std::string& ns, const std::string& digest,
                                     uint64_t size);

  const std::string address_;
  const std::chrono::milliseconds timeout_;
  const ImageResolverLimits limits_;
  std::shared_ptr<::grpc::Channel> channel_;

  base::Mutex mu_;
  std::map<std::string, Summary> summaries_ GUARDED_BY(mu_);  // manifest digest ->
  std::map<std::string, Found> found_ GUARDED_BY(mu_);        // chain id or layer digest ->
};

}  // namespace rfs::snapshotter::grpc
