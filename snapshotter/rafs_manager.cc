#include "snapshotter/rafs_manager.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "base/logging.h"
#include "storage/credentials.h"
#include "storage/host_config.h"
#include "storage/registry_backend.h"

namespace rfs::snapshotter {

using base::MutexLock;
using base::Result;
using base::Status;

namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string DefaultDockerConfig() {
  const char* dc = std::getenv("DOCKER_CONFIG");
  if (dc != nullptr && *dc) return std::string(dc) + "/config.json";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home ? home : "/root") + "/.docker/config.json";
}

std::string MountDir(const std::string& snapshots_dir, int64_t id) {
  return base::StrCat(snapshots_dir, "/", id, "/mnt");
}

// The image of `labels`: from its labels, else named by `resolve`.
Result<storage::ImageReference> ImageRefFor(
    const Labels& labels, const std::function<Result<std::string>(const Labels&)>& resolve) {
  Result<storage::ImageReference> ref = RafsManager::ImageRefOf(labels);
  if (ref.ok() || ref.status().code() != base::StatusCode::kFailedPrecondition || !resolve) {
    return ref;
  }
  Result<std::string> name = resolve(labels);
  if (!name.ok()) {
    return Status(name.status().code(), base::StrCat("no ", kCriImageRefLabel,
                                                     " label, and the image could not be named: ",
                                                     name.status().message()));
  }
  ref = storage::ParseImageReference(*name);
  if (!ref.ok()) return ref.status().WithContext("image name \"" + *name + "\"");
  return ref;
}

}  // namespace

RafsManager::RafsManager(RafsManagerOptions options) : options_(std::move(options)) {
  m_instances_ = options_.metrics->GetGauge("rafs_snapshotter_instances",
                                            "RAFS images served by the daemon");
  m_start_failures_ = options_.metrics->GetCounter(
      "rafs_snapshotter_instance_start_failures_total", "RAFS instances that failed to start");
}

Result<std::shared_ptr<RafsManager>> RafsManager::Create(RafsManagerOptions options) {
  if (options.snapshots_dir.empty() || options.cache_dir.empty()) {
    return base::InvalidArgumentError("rafs manager: snapshots and cache directories are needed");
  }
  // mkdir -p (0700): the daemon's root may not exist yet on a first start.
  for (size_t at = 1; at != std::string::npos;) {
    at = options.cache_dir.find('/', at + 1);
    const std::string dir = options.cache_dir.substr(0, at);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return base::ErrnoToStatus(errno, "mkdir " + dir);
    }
  }
  std::shared_ptr<RafsManager> m(new RafsManager(std::move(options)));
  storage::CacheManagerOptions co;
  co.dir = m->options_.cache_dir;
  co.max_bytes = m->options_.cache_max_bytes;
  co.metrics = m->options_.metrics;
  ASSIGN_OR_RETURN(m->cache_, storage::CacheManager::Open(co));
  if (!m->options_.fd_keeper_socket.empty()) {
    // A keeper from before a restart holds mounts to take over (Recover);
    // otherwise one is started with the first mount (Keep).
    Result<std::unique_ptr<FdKeeperClient>> k =
        FdKeeperClient::Connect(m->options_.fd_keeper_socket, {});
    MutexLock l(&m->mu_);
    if (k.ok()) m->keeper_ = std::move(*k);
  }
  return m;
}

RafsManager::~RafsManager() {
  MutexLock l(&mu_);
  for (auto& [id, inst] : instances_) {
    if (keeper_ != nullptr) {
      // The keeper holds the connection: leave the mount for the next
      // daemon, which takes it over (Recover).
      Result<base::UniqueFd> fd = inst.mount->Detach();
      if (fd.ok()) continue;
      RFS_LOG(kWarning) << "detaching the mount of snapshot " << id << ": " << fd.status();
    }
    Status s = inst.mount->Stop();
    if (!s.ok()) {
      RFS_LOG(kWarning) << "stopping the RAFS instance of " << id << ": " << s;
    }
  }
  instances_.clear();
}

Result<storage::ImageReference> RafsManager::ImageRefOf(const Labels& labels) {
  for (const char* key : {kCriImageRefLabel, kStargzRefLabel}) {
    auto it = labels.find(key);
    if (it != labels.end() && !it->second.empty()) {
      Result<storage::ImageReference> ref = storage::ParseImageReference(it->second);
      if (!ref.ok()) return ref.status().WithContext(std::string("label ") + key);
      return ref;
    }
  }
  return base::FailedPreconditionError(
      "the image reference is unknown: its layers carry no ", kCriImageRefLabel, " or ",
      kStargzRefLabel,
      " label; pull with a client that adds them (nerdctl, the CRI plugin, ctr-remote "
      "image rpull)");
}

Result<std::string> RafsManager::FindBootstrap(const std::string& layer_dir) {
  for (const char* rel : {"/image/image.boot", "/image.boot"}) {
    const std::string p = layer_dir + rel;
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) {
        return base::DataLossError("bootstrap ", p, " is not a regular file");
      }
      return p;
    }
  }
  return base::NotFoundError("no bootstrap (image/image.boot) in the RAFS meta layer ",
                             layer_dir);
}

Result<std::shared_ptr<storage::BlobBackend>> RafsManager::RegistryBackendFor(
    const storage::ImageReference& ref, const Labels& labels) {
  if (options_.backend_factory) return options_.backend_factory(ref, labels);
  storage::RegistryOptions o;
  o.host = ref.ApiHost();
  o.repository = ref.repository;
  o.plain_http = Contains(options_.plain_http_hosts, ref.host);
  o.skip_verify = Contains(options_.insecure_hosts, ref.host);
  o.ca_file = options_.ca_file;
  o.request_timeout = options_.request_timeout;
  o.metrics = options_.metrics;
  RETURN_IF_ERROR(storage::ConfigureMirrors(options_.hosts_dir, ref.host, &o));
  auto user = labels.find(kPullUsernameLabel);
  auto secret = labels.find(kPullSecretLabel);
  if (user != labels.end() && secret != labels.end()) {
    auto creds = std::make_shared<storage::StaticCredentials>();
    creds->Set(storage::NormalizeRegistryHost(ref.host),
               storage::Credential{user->second, secret->second, ""});
    o.credentials = creds;
  } else {
    const std::string path =
        options_.docker_config.empty() ? DefaultDockerConfig() : options_.docker_config;
    // Followed as it changes: a later login is used at the next 401.
    o.credentials = std::make_shared<storage::DockerConfigFile>(path);
  }
  ASSIGN_OR_RETURN(auto backend, storage::RegistryBackend::Create(std::move(o)));
  return std::shared_ptr<storage::BlobBackend>(std::move(backend));
}

Result<std::string> RafsManager::Mount(int64_t id, const std::string& layer_dir,
                                       const Labels& labels) {
  const std::string mnt = MountDir(options_.snapshots_dir, id);
  MutexLock l(&mu_);
  auto it = instances_.find(id);
  if (it != instances_.end()) {
    if (it->second.mount->serving()) return mnt;
    // It ended (unmounted from outside, connection aborted): start afresh.
    RFS_LOG(kWarning) << "RAFS instance of snapshot " << id << " stopped serving; restarting it";
    Status s = it->second.mount->Stop();
    if (!s.ok()) {
      RFS_LOG(kWarning) << "stopping it: " << s;
    }
    instances_.erase(it);
  }
  std::string image;
  Result<std::unique_ptr<rafs::RafsMount>> m = StartInstance(id, layer_dir, labels, -1, &image);
  if (!m.ok()) {
    m_start_failures_->Increment();
    RFS_LOG(kError) << "cannot serve the RAFS image of snapshot " << id << ": " << m.status();
    return m.status();
  }
  Keep(id, **m);
  instances_[id] = Instance{std::move(*m), image};
  m_instances_->Set(static_cast<int64_t>(instances_.size()));
  RFS_LOG(kInfo) << "serving " << image << " (snapshot " << id << ") at " << mnt;
  return mnt;
}

Result<std::unique_ptr<rafs::RafsMount>> RafsManager::StartInstance(int64_t id,
                                                                    const std::string& layer_dir,
                                                                    const Labels& labels,
                                                                    int adopt_fd,
                                                                    std::string* image) {
  base::UniqueFd adopt(adopt_fd);  // closed on every failure below
  const std::string mnt = MountDir(options_.snapshots_dir, id);
  ASSIGN_OR_RETURN(storage::ImageReference ref, ImageRefFor(labels, options_.resolve_image_ref));
  ASSIGN_OR_RETURN(std::string boot, FindBootstrap(layer_dir));
  ASSIGN_OR_RETURN(std::shared_ptr<storage::BlobBackend> backend, RegistryBackendFor(ref, labels));
  if (!adopt.valid()) {
    if (::mkdir(mnt.c_str(), 0755) != 0 && errno != EEXIST) {
      return base::ErrnoToStatus(errno, "mkdir " + mnt);
    }
    // A mount a dead predecessor left here cannot be served any more.
    Result<bool> stale = rafs::IsMountPoint(mnt);
    if (stale.ok() && *stale) {
      RFS_LOG(kWarning) << "detaching a stale mount at " << mnt;
      if (::umount2(mnt.c_str(), MNT_DETACH) != 0) {
        return base::ErrnoToStatus(errno, "umount stale " + mnt);
      }
    }
  }
  rafs::ImageSource src;
  src.bootstrap_path = boot;
  src.backend = std::move(backend);
  src.device.cache_manager = cache_;
  src.device.amplify_bytes = options_.read_amplify_bytes;
  src.device.metrics = options_.metrics;
  src.fs.mount_time = static_cast<uint64_t>(::time(nullptr));
  rafs::MountOptions mo = options_.mount;
  mo.mountpoint = mnt;
  mo.metrics = options_.metrics;
  mo.adopt_fd = adopt.Release();
  mo.source = "rafs:" + ref.ToString();
  *image = ref.ToString();
  return rafs::RafsMount::Start(mo, src);
}

void RafsManager::Keep(int64_t id, const rafs::RafsMount& mount) {
  if (options_.fd_keeper_socket.empty()) return;
  if (keeper_ == nullptr) {
    Result<std::unique_ptr<FdKeeperClient>> k =
        FdKeeperClient::Connect(options_.fd_keeper_socket, options_.fd_keeper_launcher);
    if (!k.ok()) {
      RFS_LOG(kWarning) << "no fd keeper (" << k.status()
                        << "): RAFS mounts will not survive a restart of the daemon";
      return;
    }
    keeper_ = std::move(*k);
  }
  Result<base::UniqueFd> fd = mount.DupFuseFd();
  Status s = fd.ok() ? keeper_->Put(std::to_string(id), fd->get()) : fd.status();
  if (!s.ok()) {
    RFS_LOG(kWarning) << "the mount of snapshot " << id
                      << " will not survive a restart of the daemon: " << s;
  }
}

Status RafsManager::Recover(const std::function<Result<Labels>(int64_t id)>& labels_of) {
  MutexLock l(&mu_);
  if (keeper_ == nullptr) return Status::Ok();
  ASSIGN_OR_RETURN(auto held, keeper_->List());
  for (auto& [name, fd] : held) {
    char* end = nullptr;
    const long long id = std::strtoll(name.c_str(), &end, 10);
    const std::string mnt = MountDir(options_.snapshots_dir, id);
    Result<Labels> labels = end != nullptr && *end == '\0' && id > 0
                                ? labels_of(id)
                                : Result<Labels>(base::NotFoundError("bad name ", name));
    Result<bool> mounted = rafs::IsMountPoint(mnt);
    if (!labels.ok() || !mounted.ok() || !*mounted) {
      // Its snapshot or its mount is gone: let the connection go.
      RFS_LOG(kInfo) << "dropping the kept mount of snapshot " << name << ": "
                     << (labels.ok() ? "not mounted any more" : labels.status().ToString());
      if (mounted.ok() && *mounted) ::umount2(mnt.c_str(), MNT_DETACH);
      Status d = keeper_->Delete(name);
      if (!d.ok()) {
        RFS_LOG(kWarning) << d;
      }
      continue;
    }
    std::string image;
    Result<std::unique_ptr<rafs::RafsMount>> m =
        StartInstance(id, base::StrCat(options_.snapshots_dir, "/", id, "/fs"), *labels,
                      fd.Release(), &image);
    if (!m.ok()) {
      m_start_failures_->Increment();
      RFS_LOG(kError) << "cannot take over the mount of snapshot " << id << ": " << m.status();
      continue;
    }
    instances_[id] = Instance{std::move(*m), image};
    RFS_LOG(kInfo) << "took over the mount of " << image << " (snapshot " << id << ") at "
                   << mnt;
  }
  m_instances_->Set(static_cast<int64_t>(instances_.size()));
  return Status::Ok();
}

Status RafsManager::Unmount(int64_t id) {
  std::unique_ptr<rafs::RafsMount> doomed;
  {
    MutexLock l(&mu_);
    auto it = instances_.find(id);
    if (it == instances_.end()) return Status::Ok();
    doomed = std::move(it->second.mount);
    instances_.erase(it);
    m_instances_->Set(static_cast<int64_t>(instances_.size()));
    if (keeper_ != nullptr) {
      Status d = keeper_->Delete(std::to_string(id));
      if (!d.ok()) {
        RFS_LOG(kWarning) << "fd keeper: " << d;
      }
    }
  }
  RFS_LOG(kInfo) << "stopping the RAFS instance of snapshot " << id;
  return doomed->Stop();
}

std::vector<int64_t> RafsManager::Instances() {
  MutexLock l(&mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, inst] : instances_) ids.push_back(id);
  return ids;
}

Result<uint64_t> RafsManager::CacheBytes() const {
  ASSIGN_OR_RETURN(std::vector<storage::CacheEntry> entries, cache_->List());
  uint64_t total = 0;
  for (const auto& e : entries) total += e.bytes();
  return total;
}

std::vector<RafsManager::InstanceStatus> RafsManager::InstanceStatuses() {
  MutexLock l(&mu_);
  std::vector<InstanceStatus> out;
  for (const auto& [id, inst] : instances_) {
    InstanceStatus st;
    st.id = id;
    st.image = inst.image;
    st.mountpoint = inst.mount->mountpoint();
    st.serving = inst.mount->serving();
    for (const auto& b : inst.mount->image().metadata().blobs()) {
      st.image_bytes += b.info.compressed_size;
    }
    rafs::RafsMount::Stats s = inst.mount->stats();
    st.fetched_bytes = s.fetched_bytes;
    st.read_bytes = s.read_bytes;
    st.eio = s.eio;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace rfs::snapshotter
