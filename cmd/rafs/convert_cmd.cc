#include "cmd/rafs/convert_cmd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "base/bytes.h"
#include "base/digest.h"
#include "base/unique_fd.h"
#include "base/logging.h"
#include "cmd/rafs/build_cmd.h"
#include "cmd/rafs/exit.h"
#include "cmd/rafs/image_store.h"
#include "cmd/rafs/progress.h"
#include "rafs/builder/builder.h"
#include "rafs/builder/merger.h"
#include "storage/codec.h"
#include "storage/layer_tar.h"
#include "storage/oci_layout.h"
#include "storage/registry_image.h"

namespace rfs::cmd {

using base::Result;
using base::Status;
using storage::Descriptor;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kOciConfigType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kOciGzipLayerType = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr std::string_view kFsVersionAnnotation = "containerd.io/snapshot/nydus-fs-version";
constexpr std::string_view kBlobIdsAnnotation = "containerd.io/snapshot/nydus-reference-blob-ids";
constexpr uint64_t kMaxConfigBytes = 8u << 20;
// Bumped whenever the cached artefacts of a layer would come out differently.
constexpr std::string_view kCacheFormat = "rafs-convert-cache v1 rafs-v6";

std::string ShortDigest(const std::string& d) {
  return d.size() > 19 ? d.substr(0, 19) : d;
}

std::string Sha256Of(base::ByteSpan b) { return "sha256:" + base::DigestHex(base::Sha256(b)); }

std::vector<uint8_t> ToBytes(const std::string& s) { return {s.begin(), s.end()}; }

// Local files of a conversion (cache entries, bootstraps, a dictionary).
Result<std::vector<uint8_t>> ReadFile(const std::string& path) {
  return storage::ReadWholeFile(path, uint64_t{4} << 30);
}

std::string DefaultCacheDir() {
  if (::geteuid() == 0) return "/var/lib/rafs/convert";
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg) return std::string(xdg) + "/rafs/convert";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home ? home : "/tmp") + "/.cache/rafs/convert";
}

// One converted source layer.
struct LayerResult {
  std::string bootstrap_path;
  std::string blob_id;  // empty: the layer has no file data
  std::string blob_path;
  uint64_t blob_size = 0;
  bool cached = false;
};

struct Settings {
  rafs::builder::BuildOptions build;
  std::string options_key;  // what, besides the layer digest, names a cache entry
  std::string cache_dir;
  bool use_cache = true;
  std::string work_dir;
  int jobs = 1;
  // The merged bootstrap's prefetch table (image paths, in order).
  std::vector<std::string> prefetch_paths;
};

// The conversion of one image (all platforms) from `src` to `dst`.
class Converter {
 public:
  Converter(ImageStore& src, ImageStore& dst, const Settings& settings, Progress& progress)
      : src_(src), dst_(dst), settings_(settings), progress_(progress) {}

  Result<std::string> Run(const std::vector<storage::Platform>& platforms, bool all_platforms);
  int converted() const { return converted_; }
  int reused() const { return reused_; }

 private:
  struct Output {
    Descriptor manifest;  // with the platform of the source index entry
    std::vector<uint8_t> bytes;
  };
  Result<Output> ConvertManifest(const StoredDocument& doc,
                                 const std::optional<storage::Platform>& platform,
                                 const std::string& label);
  Result<LayerResult> ConvertLayer(const Descriptor& layer, const std::string& label);
  Result<std::optional<LayerResult>> LookupCache(const std::string& dir);
  Status PushBlob(const Descriptor& d, const storage::BlobContent& content,
                  const std::string& label);
  // Waits for every blob upload started so far; the first failure.
  Status FinishPushes();

  ImageStore& src_;
  ImageStore& dst_;
  const Settings& settings_;
  Progress& progress_;
  std::mutex mu_;
  std::map<std::string, std::shared_future<Result<LayerResult>>> layers_;  // by layer digest
  std::vector<std::future<Status>> pushes_;  // blob uploads under way
  std::atomic<int> converted_{0}, reused_{0}, scratch_{0};
  std::atomic<bool> failed_{false};
};

Status Converter::FinishPushes() {
  std::vector<std::future<Status>> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pushes_);
  }
  Status first;
  for (auto& f : pending) {
    Status s = f.get();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

Status Converter::PushBlob(const Descriptor& d, const storage::BlobContent& content,
                           const std::string& label) {
  const int id = progress_.Begin(label + " push", d.size);
  const auto t0 = std::chrono::steady_clock::now();
  auto pushed = dst_.PutBlob(d, content, [&](uint64_t done) { progress_.Update(id, done); });
  progress_.End(id);
  if (!pushed.ok()) return pushed.status().WithContext(label + ": pushing " + d.digest);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  switch (*pushed) {
    case storage::BlobPush::kExisted:
      progress_.Line(label + ": " + ShortDigest(d.digest) + " already in " + dst_.name());
      break;
    case storage::BlobPush::kMounted:
      progress_.Line(label + ": " + ShortDigest(d.digest) + " mounted from the source repository");
      break;
    case storage::BlobPush::kUploaded:
      progress_.Line(label + ": pushed " + ShortDigest(d.digest) + " (" +
                     Progress::Bytes(d.size) + ", " + Progress::Rate(d.size, secs) + ")");
      break;
  }
  return Status::Ok();
}

Result<std::optional<LayerResult>> Converter::LookupCache(const std::string& dir) {
  auto raw = ReadFile(dir + "/entry.json");
  if (!raw.ok()) return std::optional<LayerResult>();
  Json j = Json::parse(raw->begin(), raw->end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("bootstrap_sha256") ||
      !j["bootstrap_sha256"].is_string() || !j.contains("blob_id") || !j["blob_id"].is_string() ||
      !j.contains("blob_size") || !j["blob_size"].is_number_unsigned()) {
    return std::optional<LayerResult>();
  }
  LayerResult r;
  r.bootstrap_path = dir + "/layer.boot";
  r.blob_id = j["blob_id"].get<std::string>();
  r.blob_size = j["blob_size"].get<uint64_t>();
  r.cached = true;
  auto boot = storage::Sha256File(r.bootstrap_path);
  if (!boot.ok() || boot->first != j["bootstrap_sha256"].get<std::string>()) {
    return std::optional<LayerResult>();
  }
  if (!r.blob_id.empty()) {
    if (r.blob_id.size() != 64 || r.blob_id.find('/') != std::string::npos) {
      return std::optional<LayerResult>();
    }
    r.blob_path = dir + "/" + r.blob_id;
    auto blob = storage::Sha256File(r.blob_path);
    if (!blob.ok() || blob->first != "sha256:" + r.blob_id || blob->second != r.blob_size) {
      return std::optional<LayerResult>();
    }
  }
  return std::optional<LayerResult>(std::move(r));
}

Result<LayerResult> Converter::ConvertLayer(const Descriptor& layer, const std::string& label) {
  const std::string key = base::DigestHex(base::Sha256(
      ToBytes(std::string(kCacheFormat) + "\n" + layer.digest + "\n" + settings_.options_key)));
  const std::string entry = settings_.cache_dir + "/" + key;
  if (settings_.use_cache) {
    ASSIGN_OR_RETURN(std::optional<LayerResult> hit, LookupCache(entry));
    if (hit) {
      ++reused_;
      progress_.Line(label + ": " + ShortDigest(layer.digest) + " cached, not converted again (" +
                     (hit->blob_id.empty() ? std::string("no data")
                                           : "blob " + hit->blob_id.substr(0, 12)) +
                     ")");
      return std::move(*hit);
    }
  }
  // Build into a private directory, renamed into the cache when complete.
  const std::string tmp = entry + ".tmp-" + std::to_string(::getpid()) + "-" +
                          std::to_string(scratch_++);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return base::InternalError("cannot create ", tmp, ": ", ec.message());
  // The layer streams from the source through a pipe into the builder, so
  // pulling, decompressing and chunking overlap and nothing is staged on
  // disk. The builder's output counts only once the stream's digest check
  // has passed.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return base::InternalError("pipe: ", std::strerror(errno));
  }
  base::UniqueFd read_end(fds[0]), write_end(fds[1]);
  ::fcntl(write_end.get(), F_SETPIPE_SZ, 1 << 20);
  const int id = progress_.Begin(label + " pull+build", layer.size);
  const auto t0 = std::chrono::steady_clock::now();
  Status pulled;
  std::atomic<bool> reader_gone{false};
  std::thread puller([&] {
    pulled = src_.StreamBlob(
        layer,
        [&](base::ByteSpan piece) -> Status {
          // When the builder gives up early (say on a gzip error), the rest
          // is still read and hashed: a digest mismatch is the better
          // explanation to report than the builder's complaint.
          for (size_t off = 0; off < piece.size() && !reader_gone;) {
            ssize_t n = ::write(write_end.get(), piece.data() + off, piece.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
              reader_gone = true;
              break;
            }
            off += static_cast<size_t>(n);
          }
          return Status::Ok();
        },
        [&](uint64_t done) { progress_.Update(id, done); });
    write_end = base::UniqueFd();  // end of the archive for the builder
  });
  auto built = rafs::builder::BuildFromTarball("/proc/self/fd/" + std::to_string(read_end.get()),
                                               tmp + "/layer.boot", tmp, settings_.build);
  read_end = base::UniqueFd();  // a puller still writing gets EPIPE
  puller.join();
  progress_.End(id);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!pulled.ok()) {
    fs::remove_all(tmp, ec);
    return pulled.WithContext(label + " " + layer.digest + " from " + src_.name());
  }
  if (!built.ok()) {
    fs::remove_all(tmp, ec);
    return built.status().WithContext(label + " " + layer.digest + ": building the RAFS blob");
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> boot, ReadFile(tmp + "/layer.boot"));
  Json info = Json::object();
  info["source"] = layer.digest;
  info["blob_id"] = built->blob_id;
  info["blob_size"] = built->blob_size;
  info["bootstrap_sha256"] = Sha256Of(boot);
  const std::string text = info.dump();
  RETURN_IF_ERROR(rafs::builder::WriteFileAtomically(tmp + "/entry.json", ToBytes(text)));
  fs::remove_all(entry, ec);  // a stale or corrupt entry
  if (::rename(tmp.c_str(), entry.c_str()) != 0) {
    fs::remove_all(tmp, ec);
    // Another conversion finished the same layer meanwhile.
    ASSIGN_OR_RETURN(std::optional<LayerResult> hit, LookupCache(entry));
    if (hit) return std::move(*hit);
    return base::InternalError("cannot store the converted layer in ", entry);
  }
  ++converted_;
  LayerResult r;
  r.bootstrap_path = entry + "/layer.boot";
  r.blob_id = built->blob_id;
  r.blob_size = built->blob_size;
  if (!r.blob_id.empty()) r.blob_path = entry + "/" + r.blob_id;
  progress_.Line(label + ": converted " + ShortDigest(layer.digest) + " (" +
                 Progress::Bytes(layer.size) + ", " + std::to_string(built->files) + " files, " +
                 Progress::Bytes(built->file_bytes) + " in " +
                 std::to_string(static_cast<int>(secs * 1000)) + " ms, " +
                 Progress::Rate(layer.size, secs) + ") -> " +
                 (r.blob_id.empty() ? std::string("no data blob")
                                    : "blob " + r.blob_id.substr(0, 12) + " (" +
                                          Progress::Bytes(r.blob_size) + ")"));
  return r;
}

// The source layer media types we can read as tar archives.
bool IsTarLayer(const std::string& media_type) {
  return media_type.find("tar") != std::string::npos &&
         media_type.find("nydus") == std::string::npos;
}

Result<Converter::Output> Converter::ConvertManifest(
    const StoredDocument& doc, const std::optional<storage::Platform>& platform,
    const std::string& label) {
  ASSIGN_OR_RETURN(storage::ManifestDocument m,
                   storage::ParseManifestDocument(doc.bytes, doc.media_type));
  const std::string where = "manifest " + doc.digest;
  for (const Descriptor& l : m.layers) {
    if (l.media_type == storage::kNydusBlobMediaType ||
        l.Annotated(storage::kNydusBootstrapAnnotation) ||
        l.Annotated(storage::kNydusBlobAnnotation)) {
      return base::FailedPreconditionError(where, ": already a nydus (RAFS) image");
    }
    if (!IsTarLayer(l.media_type)) {
      return base::FailedPreconditionError(where, ": layer ", l.digest, " has media type '",
                                           l.media_type, "', not a tar layer");
    }
  }
  auto config_bytes = src_.ReadBlob(m.config, kMaxConfigBytes);
  if (!config_bytes.ok()) return config_bytes.status().WithContext(where + ": config");
  Json config = Json::parse(config_bytes->begin(), config_bytes->end(), nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return base::DataLossError(where, ": config ", m.config.digest, " is not a JSON object");
  }
  if (config.contains("rootfs") && config["rootfs"].is_object() &&
      config["rootfs"].contains("diff_ids") && config["rootfs"]["diff_ids"].is_array() &&
      config["rootfs"]["diff_ids"].size() != m.layers.size()) {
    return base::DataLossError(where, ": config lists ", config["rootfs"]["diff_ids"].size(),
                               " diff_ids for ", m.layers.size(), " layers");
  }

  // Layers: converted in parallel (settings_.jobs at a time), each one once
  // per run even when several platforms share it.
  const size_t n = m.layers.size();
  std::vector<std::shared_future<Result<LayerResult>>> futures(n);
  std::vector<std::thread> workers;
  std::atomic<size_t> next{0};
  std::vector<std::packaged_task<Result<LayerResult>()>> tasks;
  std::vector<size_t> task_index;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < n; ++i) {
      const std::string key = m.layers[i].digest;
      auto it = layers_.find(key);
      if (it != layers_.end()) {
        futures[i] = it->second;
        continue;
      }
      const Descriptor layer = m.layers[i];
      const std::string llabel = label + "layer " + std::to_string(i + 1) + "/" +
                                 std::to_string(n);
      tasks.emplace_back([this, layer, llabel]() -> Result<LayerResult> {
        // After a failure the image fails anyway: later layers are skipped.
        if (failed_) return base::AbortedError(llabel, ": skipped after an earlier failure");
        auto converted = ConvertLayer(layer, llabel);
        if (!converted.ok()) failed_ = true;
        ASSIGN_OR_RETURN(LayerResult r, std::move(converted));
        if (!r.blob_id.empty()) {
          // Uploaded while later layers convert and the bootstrap is made.
          Descriptor blob;
          blob.media_type = std::string(storage::kNydusBlobMediaType);
          blob.digest = "sha256:" + r.blob_id;
          blob.size = r.blob_size;
          std::lock_guard<std::mutex> push_lock(mu_);
          pushes_.push_back(std::async(std::launch::async, [this, blob, r, llabel] {
            return PushBlob(blob, storage::BlobContent{r.blob_path, {}}, llabel);
          }));
        }
        return r;
      });
      futures[i] = tasks.back().get_future().share();
      layers_[key] = futures[i];
      task_index.push_back(i);
    }
  }
  const size_t threads = std::min<size_t>(tasks.size(), static_cast<size_t>(settings_.jobs));
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (size_t k; (k = next++) < tasks.size();) tasks[k]();
    });
  }
  for (auto& w : workers) w.join();
  std::vector<LayerResult> results;
  for (size_t i = 0; i < n; ++i) {
    const Result<LayerResult>& r = futures[i].get();
    if (!r.ok()) {
      (void)FinishPushes();
      return r.status();
    }
    results.push_back(*r);
  }

  // Merge the layer bootstraps (all of them: layers without data still
  // carry directories and whiteouts).
  std::vector<std::string> boots;
  for (const auto& r : results) boots.push_back(r.bootstrap_path);
  const std::string merged = settings_.work_dir + "/merged-" + std::to_string(scratch_++) + ".boot";
  auto merge = rafs::builder::MergeLayers(boots, merged, settings_.prefetch_paths);
  if (!merge.ok()) return merge.status().WithContext(where + ": merging the layer bootstraps");
  ASSIGN_OR_RETURN(std::vector<uint8_t> bootstrap, ReadFile(merged));
  ::unlink(merged.c_str());

  // Blob layers: one per source layer with data, then blobs the merged
  // bootstrap references that are not ours (chunk dictionary), which the
  // destination must already hold.
  std::vector<Descriptor> layers;
  std::set<std::string> ours;
  for (const auto& r : results) {
    if (r.blob_id.empty() || ours.count(r.blob_id)) continue;
    ours.insert(r.blob_id);
    Descriptor d;
    d.media_type = std::string(storage::kNydusBlobMediaType);
    d.digest = "sha256:" + r.blob_id;
    d.size = r.blob_size;
    d.annotations[std::string(storage::kNydusBlobAnnotation)] = "true";
    layers.push_back(std::move(d));
  }
  const size_t dict_first = layers.size();
  for (const std::string& id : merge->blob_ids) {
    if (ours.count(id)) continue;
    auto size = dst_.StatBlob("sha256:" + id);
    if (!size.ok()) return size.status().WithContext("chunk dictionary blob " + id);
    if (!*size) {
      return base::FailedPreconditionError(
          "the image references chunk dictionary blob ", id, ", which ", dst_.name(),
          " does not hold: push the dictionary's blobs there first");
    }
    ours.insert(id);
    Descriptor d;
    d.media_type = std::string(storage::kNydusBlobMediaType);
    d.digest = "sha256:" + id;
    d.size = **size;
    d.annotations[std::string(storage::kNydusBlobAnnotation)] = "true";
    layers.push_back(std::move(d));
  }

  // The bootstrap layer.
  const std::vector<uint8_t> tar = storage::MakeBootstrapLayerTar(bootstrap);
  ASSIGN_OR_RETURN(std::vector<uint8_t> gz, storage::Compress(storage::Compressor::kGzip, tar, 6));
  Descriptor boot;
  boot.media_type = std::string(kOciGzipLayerType);
  boot.digest = Sha256Of(gz);
  boot.size = gz.size();
  boot.annotations[std::string(storage::kNydusBootstrapAnnotation)] = "true";
  boot.annotations[std::string(kFsVersionAnnotation)] = "6";
  boot.annotations[std::string(kBlobIdsAnnotation)] = Json(merge->blob_ids).dump();
  RETURN_IF_ERROR(PushBlob(boot, storage::BlobContent{"", gz}, label + "bootstrap layer"));

  RETURN_IF_ERROR(FinishPushes());

  // The config: diff_ids follow the new layers; history marks source
  // layers without a blob as empty and gains the bootstrap's entry.
  Json diff_ids = Json::array();
  for (const Descriptor& d : layers) diff_ids.push_back(d.digest);
  diff_ids.push_back(Sha256Of(tar));
  if (!config.contains("rootfs") || !config["rootfs"].is_object()) config["rootfs"] = Json::object();
  config["rootfs"]["type"] = "layers";
  config["rootfs"]["diff_ids"] = std::move(diff_ids);
  if (config.contains("history") && config["history"].is_array()) {
    std::vector<Json*> layer_entries;
    for (Json& h : config["history"]) {
      if (h.is_object() && !h.value("empty_layer", false)) layer_entries.push_back(&h);
    }
    if (layer_entries.size() == results.size()) {
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i].blob_id.empty()) (*layer_entries[i])["empty_layer"] = true;
      }
    }
  } else {
    config["history"] = Json::array();
  }
  for (size_t i = dict_first; i < layers.size(); ++i) {
    Json dict_entry = Json::object();
    dict_entry["created_by"] = "rafs convert: chunk dictionary blob";
    config["history"].push_back(std::move(dict_entry));
  }
  Json entry = Json::object();
  entry["created_by"] = "rafs convert: RAFS bootstrap layer";
  entry["comment"] = "nydus bootstrap, fs version 6";
  config["history"].push_back(std::move(entry));
  const std::vector<uint8_t> config_out = ToBytes(config.dump());
  Descriptor cfg;
  cfg.media_type = std::string(kOciConfigType);
  cfg.digest = Sha256Of(config_out);
  cfg.size = config_out.size();
  RETURN_IF_ERROR(PushBlob(cfg, storage::BlobContent{"", config_out}, label + "config"));

  layers.push_back(boot);
  Json manifest = Json::object();
  manifest["schemaVersion"] = 2;
  manifest["mediaType"] = std::string(kOciManifestType);
  manifest["config"] = storage::DescriptorToJson(cfg);
  Json jl = Json::array();
  for (const Descriptor& d : layers) jl.push_back(storage::DescriptorToJson(d));
  manifest["layers"] = std::move(jl);
  Output out;
  out.bytes = ToBytes(manifest.dump());
  out.manifest.media_type = std::string(kOciManifestType);
  out.manifest.digest = Sha256Of(out.bytes);
  out.manifest.size = out.bytes.size();
  out.manifest.platform = platform;
  return out;
}

Result<std::string> Converter::Run(const std::vector<storage::Platform>& platforms,
                                   bool all_platforms) {
  auto root = src_.GetRoot();
  if (!root.ok()) return root.status().WithContext(src_.name());
  ASSIGN_OR_RETURN(storage::ManifestDocument doc,
                   storage::ParseManifestDocument(root->bytes, root->media_type));
  if (!doc.is_index) {
    auto out = ConvertManifest(*root, std::nullopt, "");
    if (!out.ok()) return out.status();
    RETURN_IF_ERROR(dst_.PutManifest(out->manifest, out->bytes, /*tag=*/true));
    return out->manifest.digest;
  }
  // An index: the chosen platforms, in index order.
  std::vector<Descriptor> chosen;
  for (const Descriptor& d : doc.manifests) {
    if (!d.platform || d.IsNydusManifest() || d.platform->os == "unknown") continue;
    bool want = all_platforms;
    for (const auto& p : platforms) {
      want = want || (storage::SelectManifest({d}, p).ok());
    }
    if (want) chosen.push_back(d);
  }
  if (chosen.empty()) {
    std::string wanted;
    for (const auto& p : platforms) wanted += (wanted.empty() ? "" : ", ") + p.ToString();
    std::string offered;
    for (const Descriptor& d : doc.manifests) {
      offered += (offered.empty() ? "" : ", ") +
                 (d.platform ? d.platform->ToString() : std::string("(no platform)"));
    }
    return base::NotFoundError(src_.name(), ": index has no manifest for ", wanted,
                               " (it has ", offered.empty() ? "none" : offered, ")");
  }
  std::vector<Descriptor> entries;
  for (const Descriptor& d : chosen) {
    auto m = src_.GetManifest(d);
    if (!m.ok()) return m.status().WithContext(src_.name());
    const std::string label = d.platform->ToString() + " ";
    auto out = ConvertManifest(*m, d.platform, label);
    if (!out.ok()) return out.status().WithContext(d.platform->ToString());
    RETURN_IF_ERROR(dst_.PutManifest(out->manifest, out->bytes, /*tag=*/false));
    Descriptor e = out->manifest;
    e.platform->os_features.push_back(std::string(storage::kNydusOsFeature));
    e.artifact_type = std::string(storage::kNydusManifestArtifactType);
    entries.push_back(std::move(e));
    progress_.Line(label + "manifest " + out->manifest.digest);
  }
  Json index = Json::object();
  index["schemaVersion"] = 2;
  index["mediaType"] = std::string(kOciIndexType);
  Json je = Json::array();
  for (const Descriptor& d : entries) je.push_back(storage::DescriptorToJson(d));
  index["manifests"] = std::move(je);
  const std::vector<uint8_t> bytes = ToBytes(index.dump());
  Descriptor d;
  d.media_type = std::string(kOciIndexType);
  d.digest = Sha256Of(bytes);
  d.size = bytes.size();
  RETURN_IF_ERROR(dst_.PutManifest(d, bytes, /*tag=*/true));
  return d.digest;
}

}  // namespace

CLI::App* AddConvertCommand(CLI::App* app, ConvertArgs* args) {
  CLI::App* c = app->add_subcommand(
      "convert",
      "convert an OCI/Docker image to a RAFS (nydus) image: SRC and DST are "
      "registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] or oci:DIR[:TAG]");
  c->add_option("SRC", args->source, "the image to convert")->required();
  c->add_option("DST", args->destination, "where the RAFS image goes (a tag)")->required();
  c->add_option("--compressor", args->compressor, "chunk compression: zstd, lz4 or none")
      ->capture_default_str();
  c->add_option("--chunk-size", args->chunk_size,
                "chunk size, a power of two from 4096 to 16M (1M, 0x100000)")
      ->capture_default_str();
  c->add_option("--chunk-dict", args->chunk_dict,
                "bootstrap whose chunks are reused (its blobs must be in DST's repository)");
  c->add_option("--prefetch-files", args->prefetch_files,
                "file listing image paths (one per line) a mount fetches first: the image's "
                "prefetch table");
  AddRegistryAccessOptions(c, &args->access);
  c->remove_option(c->get_option("--platform"));
  c->add_option("--platform", args->platforms,
                "for an index: OS/ARCH[/VARIANT] to convert (repeatable; default " +
                    storage::HostPlatform().ToString() + ")");
  c->add_flag("--all-platforms", args->all_platforms, "convert every platform of an index");
  c->add_option("--work-dir", args->work_dir,
                "scratch directory (default: a new directory under $TMPDIR or /var/tmp, "
                "removed afterwards)");
  c->add_option("--cache-dir", args->cache_dir,
                "converted layers kept for later conversions (default: " + DefaultCacheDir() +
                    ")");
  c->add_flag("--no-cache", args->no_cache, "neither use nor keep converted layers");
  c->add_option("-j,--jobs", args->jobs, "layers converted at once (default 2)");
  c->add_flag("-q,--quiet", args->quiet, "no progress output");
  return c;
}

int RunConvert(const ConvertArgs& args) {
  const char* kCmd = "convert";
  // Writes into a pipe whose reader has gone must fail, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  auto usage = [&](const std::string& msg) {
    std::fprintf(stderr, "rafs convert: %s\n", msg.c_str());
    return kExitUsage;
  };
  Settings s;
  std::string comp = args.compressor == "lz4" ? "lz4_block" : args.compressor;
  auto c = storage::ParseCompressor(comp);
  if (!c.ok() || *c == storage::Compressor::kGzip) {
    return usage("bad --compressor '" + args.compressor + "' (zstd, lz4, none)");
  }
  s.build.compressor = *c;
  uint64_t cs = 0;
  if (!ParseSize(args.chunk_size, &cs) || !base::IsPowerOfTwo(cs) || cs < 4096 ||
      cs > (16u << 20)) {
    return usage("bad --chunk-size '" + args.chunk_size + "' (a power of two from 4096 to 16M)");
  }
  s.build.chunk_size = static_cast<uint32_t>(cs);
  // The default blob layout (data, ci array, ci header): its blob id is the
  // sha256 of the file, so the blob layer's digest is the id the bootstrap
  // stores (RAFS-FORMAT 6.8, 12).
  s.options_key = std::string(storage::CompressorName(s.build.compressor)) + " chunk " +
                  std::to_string(cs) + " digester blake3";
  if (!args.chunk_dict.empty()) {
    auto dict = ReadFile(args.chunk_dict);
    if (!dict.ok()) return Fail(kCmd, dict.status().WithContext("--chunk-dict"));
    s.build.chunk_dict = args.chunk_dict;
    s.options_key += " dict " + Sha256Of(*dict);
  }
  if (!args.prefetch_files.empty()) {
    auto list = ReadPrefetchList(args.prefetch_files);
    if (!list.ok()) return Fail(kCmd, list.status().WithContext("--prefetch-files"));
    s.prefetch_paths = std::move(*list);
  }
  std::vector<storage::Platform> platforms;
  for (const auto& p : args.platforms) {
    auto parsed = storage::ParsePlatform(p);
    if (!parsed.ok()) return usage(parsed.status().message());
    platforms.push_back(*parsed);
  }
  if (platforms.empty()) platforms.push_back(storage::HostPlatform());
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  s.jobs = args.jobs > 0 ? args.jobs : 2;
  s.build.threads = static_cast<int>(std::max(1u, cores));

  auto src = OpenImageStore(args.source, args.access, /*for_write=*/false);
  if (!src.ok()) return Fail(kCmd, src.status());
  auto dst = OpenImageStore(args.destination, args.access, /*for_write=*/true);
  if (!dst.ok()) return Fail(kCmd, dst.status());
  (*dst)->MountFrom(**src);

  // Scratch space, removed at the end unless the user named it.
  std::error_code ec;
  bool own_work = args.work_dir.empty();
  if (own_work) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp ? tmp : "/var/tmp") +
                          "/rafs-convert.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return Fail(kCmd, base::InternalError("cannot create a work directory ", pattern, ": ",
                                            std::strerror(errno)));
    }
    s.work_dir = pattern;
  } else {
    s.work_dir = args.work_dir;
    fs::create_directories(s.work_dir, ec);
    if (ec) {
      return Fail(kCmd, base::InternalError("cannot create --work-dir ", s.work_dir, ": ",
                                            ec.message()));
    }
  }
  s.use_cache = !args.no_cache;
  s.cache_dir = args.no_cache ? s.work_dir + "/layers"
                              : (args.cache_dir.empty() ? DefaultCacheDir() : args.cache_dir);
  fs::create_directories(s.cache_dir, ec);
  if (ec) {
    if (own_work) fs::remove_all(s.work_dir, ec);
    return Fail(kCmd, base::InternalError("cannot create the cache directory ", s.cache_dir,
                                          ": ", ec.message()));
  }

  const auto t0 = std::chrono::steady_clock::now();
  std::optional<Result<std::string>> digest;
  int converted = 0, reused = 0;
  {
    Progress progress(args.quiet, ::isatty(2) == 1);
    Converter converter(**src, **dst, s, progress);
    digest = converter.Run(platforms, args.all_platforms);
    converted = converter.converted();
    reused = converter.reused();
  }
  if (own_work) {
    fs::remove_all(s.work_dir, ec);
  } else if (args.no_cache) {
    fs::remove_all(s.cache_dir, ec);
  }
  if (!digest->ok()) return Fail(kCmd, digest->status());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!args.quiet) {
    std::fprintf(stderr, "converted %s to %s in %.2fs (%d layers converted, %d from the cache)\n",
                 args.source.c_str(), args.destination.c_str(), secs, converted, reused);
  }
  std::printf("%s\n", (*digest)->c_str());
  return kExitOk;
}

}  // namespace rfs::cmd
