#include "cmd/rafs-snapshotter/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "snapshotter/grpc/image_resolver.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace rfs::cmd {

using base::InvalidArgumentError;
using base::Result;
using base::Status;

const char* const kDefaultConfigYaml =
    R"yaml(# rafs-snapshotter configuration. Every key is optional; shown with its default.
# Command-line flags (--root, --address, --log-level) override the file.
version: 1

# State directory: metadata.db and snapshots/<id>/{fs,work}. Created 0700.
root: /var/lib/containerd/io.containerd.snapshotter.v1.nydus

# gRPC unix socket containerd dials ([proxy_plugins.nydus] address).
address: /run/containerd-nydus/containerd-nydus-grpc.sock

# containerd's own socket. When a pull did not label a RAFS image's layers
# with the image reference (CRI with its default
# disable_snapshot_annotations, some ctr versions), containerd is asked which
# of its images the layer belongs to. "" turns that off.
containerd_address: /run/containerd/containerd.sock

grpc:
  # Permissions of the socket (octal string) and its group (-1: unchanged).
  socket_mode: "0660"
  socket_gid: -1
  # Larger requests are refused (RESOURCE_EXHAUSTED); containerd's own limit.
  max_message_bytes: 16777216
  # On SIGTERM, in-flight RPCs get this long to finish before they are cancelled.
  shutdown_grace_seconds: 10

log:
  # debug | info | warn | error
  level: info
  # text: "2026-11-23T16:02:18.123456Z I file.cc:42] message" lines;
  # json: one {"time","level","source","msg"} object per line.
  format: text

metrics:
  # Prometheus text on GET /v1/metrics (and /metrics), liveness on GET /healthz.
  # "" turns the endpoint off. Use 127.0.0.1 unless you mean to expose it.
  address: "127.0.0.1:9110"

snapshot:
  # Delete a removed snapshot's directory at once instead of in Cleanup
  # (containerd calls Cleanup after each garbage collection).
  sync_remove: false
  # Overlay mount options added to every overlay mount.
  overlay_index_off: false
  overlay_userxattr: false
  # "volatile" on every active overlay (otherwise only for snapshots labelled
  # containerd.io/snapshot/overlay.volatile).
  overlay_volatile: false

rafs:
  # Serve RAFS (nydus) images lazily from their registry. false: no layer is
  # treated as remote (RAFS images then cannot run).
  enable: true
  # Verified chunk cache shared by all images; "" means <root>/cache.
  cache_dir: ""
  # Cap of the cache (10G, 512M; 0: none); least recently used blobs of
  # images no longer mounted are evicted first.
  cache_max_size: "0"
  # FUSE worker threads per image.
  fuse_threads: 8
  # A read waiting longer than this for its chunks fails with EIO.
  read_timeout_seconds: 60
  # A fetch for a read smaller than this also brings the chunks that follow
  # in the blob (files read together usually lie together), in the same
  # request: fewer round trips for some bytes no one may read. 0: off (for
  # a python start it saved requests, not time, and fetched 40% more).
  read_amplify_size: "0"
  # Background prefetch after an image is mounted: none, table (the image's
  # prefetch list) or all (the list, then every file).
  prefetch: table
  prefetch_threads: 2
  # Cap of prefetch traffic per image (50M = 50 MiB/s; 0: none).
  prefetch_bandwidth: "0"
  # Keep the RAFS mounts of running containers across a restart or crash of
  # the daemon: a small keeper process (this binary, --fd-keeper) holds their
  # /dev/fuse descriptors at <root>/fd-keeper.sock and the next daemon takes
  # them over. false: the mounts end with the daemon.
  keep_mounts: true

registry:
  # Registries spoken to over plain HTTP ("127.0.0.1:5000").
  plain_http: []
  # Registries whose TLS certificate is not verified.
  insecure: []
  # Extra CA bundle for registry TLS.
  ca_file: ""
  # Registry mirrors: a directory in containerd's certs.d layout
  # (<host[:port]>/hosts.toml, _default/hosts.toml), usually
  # /etc/containerd/certs.d; mirrors are tried in order, then the registry.
  # "" means none.
  config_path: ""
  # docker config.json with credentials; "" means $DOCKER_CONFIG/config.json
  # or ~/.docker/config.json. Read again for every image mounted.
  docker_config: ""
  request_timeout_seconds: 30
)yaml";

namespace {

std::string NodeText(const YAML::Node& n) {
  if (n.IsScalar()) return "\"" + n.Scalar() + "\"";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "null";
}

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  Status Error(const std::string& key, const std::string& what) const {
    return InvalidArgumentError("config ", source_, ": key \"", key, "\": ", what);
  }

  // Fails on keys of `map` not in `known` (named with `prefix`).
  Status CheckKeys(const YAML::Node& map, const std::string& prefix,
                   const std::set<std::string>& known) const {
    for (const auto& kv : map) {
      std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (known.count(k) == 0) {
        std::string list;
        for (const std::string& s : known) list += (list.empty() ? "" : ", ") + s;
        return InvalidArgumentError("config ", source_, ": unknown key \"", prefix, k,
                                    "\" (known here: ", list, ")");
      }
    }
    return Status::Ok();
  }

  Status String(const YAML::Node& n, const std::string& key, std::string* out) const {
    if (!n) return Status::Ok();
    if (!n.IsScalar()) return Error(key, "expected a string, got " + NodeText(n));
    *out = n.Scalar();
    return Status::Ok();
  }

  Status Bool(const YAML::Node& n, const std::string& key, bool* out) const {
    if (!n) return Status::Ok();
    const std::string s = n.IsScalar() ? n.Scalar() : "";
    if (s == "true") {
      *out = true;
    } else if (s == "false") {
      *out = false;
    } else {
      return Error(key, "expected true or false, got " + NodeText(n));
    }
    return Status::Ok();
  }

  Status StringList(const YAML::Node& n, const std::string& key,
                    std::vector<std::string>* out) const {
    if (!n) return Status::Ok();
    if (!n.IsSequence()) return Error(key, "expected a list of strings, got " + NodeText(n));
    out->clear();
    for (const auto& item : n) {
      if (!item.IsScalar()) return Error(key, "expected strings, got " + NodeText(item));
      out->push_back(item.Scalar());
    }
    return Status::Ok();
  }

  Status ByteSize(const YAML::Node& n, const std::string& key, uint64_t* out) const {
    if (!n) return Status::Ok();
    if (!n.IsScalar()) return Error(key, "expected a size like 10G, got " + NodeText(n));
    Result<uint64_t> v = base::ParseByteSize(n.Scalar());
    if (!v.ok()) return Error(key, v.status().message());
    *out = *v;
    return Status::Ok();
  }

  Status Int(const YAML::Node& n, const std::string& key, long long lo, long long hi,
             long long* out) const {
    if (!n) return Status::Ok();
    if (!n.IsScalar()) return Error(key, "expected an integer, got " + NodeText(n));
    const std::string& s = n.Scalar();
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0) {
      return Error(key, "expected an integer, got " + NodeText(n));
    }
    if (v < lo || v > hi) {
      return Error(key, base::StrCat("value ", v, " is outside ", lo, "..", hi));
    }
    *out = v;
    return Status::Ok();
  }

 private:
  std::string source_;
};

Status Apply(const YAML::Node& root, const Reader& r, Config* c) {
  if (!root || root.IsNull()) return Status::Ok();
  if (!root.IsMap()) return r.Error("", "the document must be a map, got " + NodeText(root));
  RETURN_IF_ERROR(r.CheckKeys(root, "",
                              {"version", "root", "address", "containerd_address", "grpc", "log",
                               "metrics", "snapshot",
                               "rafs", "registry"}));
  long long version = 1;
  RETURN_IF_ERROR(r.Int(root["version"], "version", 1, 1, &version));
  RETURN_IF_ERROR(r.String(root["root"], "root", &c->snapshotter.root));
  if (c->snapshotter.root.empty() || c->snapshotter.root[0] != '/') {
    return r.Error("root", "\"" + c->snapshotter.root + "\" is not an absolute path");
  }
  RETURN_IF_ERROR(r.String(root["address"], "address", &c->server.socket_path));
  if (c->server.socket_path.empty()) return r.Error("address", "must not be empty");
  RETURN_IF_ERROR(
      r.String(root["containerd_address"], "containerd_address", &c->containerd_address));
  if (!c->containerd_address.empty()) {
    const std::string& a = c->containerd_address;
    const std::string path = a.rfind("unix:", 0) == 0 ? a.substr(5) : a;
    if (path.empty() || path[0] != '/') {
      return r.Error("containerd_address",
                     "\"" + a + "\" is not a unix socket path (/run/containerd/containerd.sock)");
    }
  }

  if (YAML::Node g = root["grpc"]) {
    if (!g.IsMap()) return r.Error("grpc", "expected a map, got " + NodeText(g));
    RETURN_IF_ERROR(r.CheckKeys(
        g, "grpc.", {"socket_mode", "socket_gid", "max_message_bytes", "shutdown_grace_seconds"}));
    if (g["socket_mode"]) {
      std::string mode;
      RETURN_IF_ERROR(r.String(g["socket_mode"], "grpc.socket_mode", &mode));
      char* end = nullptr;
      unsigned long v = std::strtoul(mode.c_str(), &end, 8);
      if (mode.empty() || *end != '\0' || v > 0777) {
        return r.Error("grpc.socket_mode", "\"" + mode + "\" is not an octal mode 0000..0777");
      }
      c->server.socket_mode = static_cast<mode_t>(v);
    }
    long long gid = -1;
    RETURN_IF_ERROR(r.Int(g["socket_gid"], "grpc.socket_gid", -1, 0x7fffffff, &gid));
    c->server.socket_gid = static_cast<gid_t>(gid);
    long long max = c->server.max_message_bytes;
    RETURN_IF_ERROR(r.Int(g["max_message_bytes"], "grpc.max_message_bytes", 4096, 1 << 30, &max));
    c->server.max_message_bytes = static_cast<int>(max);
    long long grace = c->shutdown_grace.count() / 1000;
    RETURN_IF_ERROR(
        r.Int(g["shutdown_grace_seconds"], "grpc.shutdown_grace_seconds", 0, 3600, &grace));
    c->shutdown_grace = std::chrono::seconds(grace);
  }
  if (YAML::Node l = root["log"]) {
    if (!l.IsMap()) return r.Error("log", "expected a map, got " + NodeText(l));
    RETURN_IF_ERROR(r.CheckKeys(l, "log.", {"level", "format"}));
    if (l["format"]) {
      std::string format;
      RETURN_IF_ERROR(r.String(l["format"], "log.format", &format));
      if (!base::ParseLogFormat(format, &c->log_format)) {
        return r.Error("log.format", "\"" + format + "\" is not text or json");
      }
    }
    if (l["level"]) {
      std::string level;
      RETURN_IF_ERROR(r.String(l["level"], "log.level", &level));
      if (!base::ParseLogLevel(level, &c->log_level)) {
        return r.Error("log.level", "\"" + level + "\" is not debug, info, warn or error");
      }
    }
  }
  if (YAML::Node m = root["metrics"]) {
    if (!m.IsMap()) return r.Error("metrics", "expected a map, got " + NodeText(m));
    RETURN_IF_ERROR(r.CheckKeys(m, "metrics.", {"address"}));
    RETURN_IF_ERROR(r.String(m["address"], "metrics.address", &c->metrics_address));
    if (!c->metrics_address.empty()) {
      std::string host;
      int port;
      Status s = ParseHostPort(c->metrics_address, &host, &port);
      if (!s.ok()) return r.Error("metrics.address", s.message());
    }
  }
  if (YAML::Node s = root["snapshot"]) {
    if (!s.IsMap()) return r.Error("snapshot", "expected a map, got " + NodeText(s));
    RETURN_IF_ERROR(
        r.CheckKeys(s, "snapshot.",
                    {"sync_remove", "overlay_index_off", "overlay_userxattr", "overlay_volatile"}));
    RETURN_IF_ERROR(r.Bool(s["sync_remove"], "snapshot.sync_remove", &c->snapshotter.sync_remove));
    RETURN_IF_ERROR(r.Bool(s["overlay_index_off"], "snapshot.overlay_index_off",
                           &c->snapshotter.overlay.index_off));
    RETURN_IF_ERROR(r.Bool(s["overlay_userxattr"], "snapshot.overlay_userxattr",
                           &c->snapshotter.overlay.userxattr));
    RETURN_IF_ERROR(r.Bool(s["overlay_volatile"], "snapshot.overlay_volatile",
                           &c->snapshotter.overlay.volatile_all));
  }
  if (YAML::Node f = root["rafs"]) {
    if (!f.IsMap()) return r.Error("rafs", "expected a map, got " + NodeText(f));
    RETURN_IF_ERROR(r.CheckKeys(f, "rafs.",
                                {"enable", "cache_dir", "cache_max_size", "fuse_threads",
                                 "read_timeout_seconds", "read_amplify_size", "prefetch",
                                 "prefetch_threads",
                                 "prefetch_bandwidth", "keep_mounts"}));
    RafsConfig& rc = c->rafs;
    RETURN_IF_ERROR(r.Bool(f["enable"], "rafs.enable", &rc.enable));
    RETURN_IF_ERROR(r.Bool(f["keep_mounts"], "rafs.keep_mounts", &rc.keep_mounts));
    RETURN_IF_ERROR(r.String(f["cache_dir"], "rafs.cache_dir", &rc.cache_dir));
    if (!rc.cache_dir.empty() && rc.cache_dir[0] != '/') {
      return r.Error("rafs.cache_dir", "\"" + rc.cache_dir + "\" is not an absolute path");
    }
    RETURN_IF_ERROR(r.ByteSize(f["cache_max_size"], "rafs.cache_max_size", &rc.cache_max_bytes));
    RETURN_IF_ERROR(
        r.ByteSize(f["read_amplify_size"], "rafs.read_amplify_size", &rc.read_amplify_bytes));
    if (rc.read_amplify_bytes > (64u << 20)) {
      return r.Error("rafs.read_amplify_size", "more than 64M");
    }
    long long v = rc.fuse_threads;
    RETURN_IF_ERROR(r.Int(f["fuse_threads"], "rafs.fuse_threads", 1, 256, &v));
    rc.fuse_threads = static_cast<int>(v);
    v = rc.read_timeout_seconds;
    RETURN_IF_ERROR(r.Int(f["read_timeout_seconds"], "rafs.read_timeout_seconds", 1, 86400, &v));
    rc.read_timeout_seconds = static_cast<int>(v);
    RETURN_IF_ERROR(r.String(f["prefetch"], "rafs.prefetch", &rc.prefetch));
    if (rc.prefetch != "none" && rc.prefetch != "table" && rc.prefetch != "all") {
      return r.Error("rafs.prefetch", "\"" + rc.prefetch + "\" is not none, table or all");
    }
    v = rc.prefetch_threads;
    RETURN_IF_ERROR(r.Int(f["prefetch_threads"], "rafs.prefetch_threads", 1, 16, &v));
    rc.prefetch_threads = static_cast<int>(v);
    RETURN_IF_ERROR(
        r.ByteSize(f["prefetch_bandwidth"], "rafs.prefetch_bandwidth", &rc.prefetch_bandwidth));
  }
  if (YAML::Node g = root["registry"]) {
    if (!g.IsMap()) return r.Error("registry", "expected a map, got " + NodeText(g));
    RETURN_IF_ERROR(r.CheckKeys(g, "registry.",
                                {"plain_http", "insecure", "ca_file", "config_path", "docker_config",
                                 "request_timeout_seconds"}));
    RafsConfig& rc = c->rafs;
    RETURN_IF_ERROR(r.StringList(g["plain_http"], "registry.plain_http", &rc.plain_http_hosts));
    RETURN_IF_ERROR(r.StringList(g["insecure"], "registry.insecure", &rc.insecure_hosts));
    RETURN_IF_ERROR(r.String(g["ca_file"], "registry.ca_file", &rc.ca_file));
    RETURN_IF_ERROR(r.String(g["config_path"], "registry.config_path", &rc.hosts_dir));
    RETURN_IF_ERROR(r.String(g["docker_config"], "registry.docker_config", &rc.docker_config));
    long long v = rc.request_timeout_seconds;
    RETURN_IF_ERROR(
        r.Int(g["request_timeout_seconds"], "registry.request_timeout_seconds", 1, 3600, &v));
    rc.request_timeout_seconds = static_cast<int>(v);
  }
  return Status::Ok();
}

Result<Config> ParseInto(Config c, const std::string& yaml, const std::string& source) {
  YAML::Node root;
  // yaml-cpp reports syntax errors by throwing; caught here, at the call.
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError("config ", source, ": line ", e.mark.line + 1, ", column ",
                                e.mark.column + 1, ": ", e.msg);
  }
  Reader r(source);
  Status s;
  try {
    s = Apply(root, r, &c);
  } catch (const YAML::Exception& e) {
    s = InvalidArgumentError("config ", source, ": ", e.what());
  }
  if (!s.ok()) return s;
  return c;
}

}  // namespace

Config DefaultConfig() {
  Result<Config> c = ParseInto(Config(), kDefaultConfigYaml, "<defaults>");
  if (!c.ok()) {
    // The built-in text is tested; failing here is a programming error.
    RFS_LOG(kError) << c.status();
    std::abort();
  }
  return *c;
}

Result<Config> ParseConfig(const std::string& yaml, const std::string& source) {
  return ParseInto(DefaultConfig(), yaml, source);
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return base::NotFoundError("config ", path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return base::InternalError("config ", path, ": read failed");
  return ParseConfig(ss.str(), path);
}

std::string RafsStatusJson(snapshotter::RafsManager* rafs) {
  nlohmann::json images = nlohmann::json::array();
  for (const auto& st : rafs->InstanceStatuses()) {
    images.push_back({{"snapshot_id", st.id},
                      {"image", st.image},
                      {"mountpoint", st.mountpoint},
                      {"serving", st.serving},
                      {"image_bytes", st.image_bytes},
                      {"fetched_bytes", st.fetched_bytes},
                      {"read_bytes", st.read_bytes},
                      {"eio", st.eio}});
  }
  nlohmann::json out;
  out["images"] = std::move(images);
  out["cache_dir"] = rafs->cache_dir();
  Result<uint64_t> bytes = rafs->CacheBytes();
  if (bytes.ok()) {
    out["cache_bytes"] = *bytes;
  } else {
    out["cache_error"] = bytes.status().ToString();
  }
  return out.dump(2) + "\n";
}

MetricsHttpServer::Hooks SnapshotterMetricsHooks(snapshotter::Snapshotter* sn,
                                                 base::MetricsRegistry* metrics,
                                                 snapshotter::RafsManager* rafs) {
  MetricsHttpServer::Hooks h;
  if (rafs != nullptr) h.json_routes["/v1/status"] = [rafs] { return RafsStatusJson(rafs); };
  h.process_prefix = "snapshotter";
  h.refresh = [sn, metrics] {
    auto counts = sn->CountByKind();
    if (!counts.ok()) return;
    for (auto kind :
         {snapshotter::Kind::kActive, snapshotter::Kind::kView, snapshotter::Kind::kCommitted}) {
      auto it = counts->find(kind);
      metrics
          ->GetGauge("snapshotter_snapshots", "Snapshots by kind.",
                     {{"kind", std::string(snapshotter::KindName(kind))}})
          ->Set(it == counts->end() ? 0 : it->second);
    }
  };
  h.health = [sn]() -> Status {
    auto counts = sn->CountByKind();
    return counts.ok() ? Status::Ok() : counts.status();
  };
  return h;
}

snapshotter::RafsManagerOptions RafsManagerOptionsFrom(const Config& config,
                                                       base::MetricsRegistry* metrics) {
  const RafsConfig& rc = config.rafs;
  snapshotter::RafsManagerOptions o;
  o.snapshots_dir = config.snapshotter.root + "/snapshots";
  o.cache_dir = rc.cache_dir.empty() ? config.snapshotter.root + "/cache" : rc.cache_dir;
  o.cache_max_bytes = rc.cache_max_bytes;
  o.read_amplify_bytes = rc.read_amplify_bytes;
  o.mount.threads = rc.fuse_threads;
  o.mount.read_timeout = std::chrono::seconds(rc.read_timeout_seconds);
  Result<rafs::fs::PrefetchPolicy> p = rafs::fs::ParsePrefetchPolicy(rc.prefetch);
  o.mount.prefetch = p.ok() ? *p : rafs::fs::PrefetchPolicy::kTable;  // validated when parsed
  o.mount.prefetch_options.threads = rc.prefetch_threads;
  o.mount.prefetch_options.bandwidth_bytes_per_second = rc.prefetch_bandwidth;
  o.plain_http_hosts = rc.plain_http_hosts;
  o.insecure_hosts = rc.insecure_hosts;
  o.ca_file = rc.ca_file;
  o.hosts_dir = rc.hosts_dir;
  o.docker_config = rc.docker_config;
  o.request_timeout = std::chrono::seconds(rc.request_timeout_seconds);
  o.metrics = metrics;
  if (rc.keep_mounts) {
    o.fd_keeper_socket = config.snapshotter.root + "/fd-keeper.sock";
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) o.fd_keeper_launcher = {std::string(self, static_cast<size_t>(n))};
  }
  if (!config.containerd_address.empty()) {
    o.resolve_image_ref = snapshotter::grpc::ContainerdImageResolver::LabelResolver(
        std::make_shared<snapshotter::grpc::ContainerdImageResolver>(config.containerd_address));
  }
  return o;
}

}  // namespace rfs::cmd
