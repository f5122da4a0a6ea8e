#include "snapshotter/snapshotter.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <utility>

#include "base/logging.h"
#include "snapshotter/fs_util.h"

namespace rfs::snapshotter {

using base::ErrnoToStatus;
using base::MutexLock;
using base::Result;
using base::Status;
using base::UniqueFd;

namespace {

int64_t NowNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return ErrnoToStatus(errno, "mkdir " + path);
  // The mode must not depend on the process umask.
  if (::chmod(path.c_str(), mode) != 0) return ErrnoToStatus(errno, "chmod " + path);
  return Status::Ok();
}

// mkdir -p: missing parents are created with `mode` too.
Status EnsureDir(const std::string& path, mode_t mode) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return base::FailedPreconditionError(path, " exists and is not a directory");
    }
    return Status::Ok();
  }
  if (errno != ENOENT) return ErrnoToStatus(errno, "stat " + path);
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    RETURN_IF_ERROR(EnsureDir(path.substr(0, slash), mode));
  }
  Status s = MakeDir(path, mode);
  if (!s.ok() && errno == EEXIST) return Status::Ok();
  return s;
}

Status CheckKeyArgs(const std::string& key, const std::string& parent, const Labels& labels) {
  RETURN_IF_ERROR(ValidateKey("key", key));
  if (!parent.empty()) RETURN_IF_ERROR(ValidateKey("parent", parent));
  return ValidateLabels(labels);
}

// A live snapshot directory is named by the decimal id, nothing else.
bool ParseId(const std::string& name, int64_t* id) {
  if (name.empty() || name.size() > 18 || name[0] == '0') return false;
  int64_t v = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *id = v;
  return true;
}

}  // namespace

Snapshotter::Snapshotter(Options options, UniqueFd lock_fd, std::unique_ptr<MetadataStore> store)
    : options_(std::move(options)), lock_fd_(std::move(lock_fd)), store_(std::move(store)) {}

Snapshotter::~Snapshotter() = default;

Result<std::unique_ptr<Snapshotter>> Snapshotter::Open(const Options& options) {
  if (options.root.empty() || options.root[0] != '/') {
    return base::InvalidArgumentError("root \"", options.root, "\" is not an absolute path");
  }
  Options opts = options;
  while (opts.root.size() > 1 && opts.root.back() == '/') opts.root.pop_back();
  RETURN_IF_ERROR(EnsureDir(opts.root, 0700));
  std::string lock_path = opts.root + "/lock";
  UniqueFd lock_fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock_fd) return ErrnoToStatus(errno, "open " + lock_path);
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return base::FailedPreconditionError(
          "root ", opts.root, " is in use by another rafs-snapshotter (", lock_path, " is locked)");
    }
    return ErrnoToStatus(errno, "flock " + lock_path);
  }
  RETURN_IF_ERROR(EnsureDir(opts.root + "/snapshots", 0700));
  std::string db_path = opts.in_memory_store ? ":memory:" : opts.root + "/metadata.db";
  ASSIGN_OR_RETURN(std::unique_ptr<MetadataStore> store, MetadataStore::Open(db_path));
  std::unique_ptr<Snapshotter> s(new Snapshotter(opts, std::move(lock_fd), std::move(store)));
  // Repair what a crash left: directories that are not live snapshots.
  Status st = s->Cleanup();
  if (!st.ok()) {
    RFS_LOG(kWarning) << "start-up cleanup of " << opts.root << ": " << st;
  }
  if (opts.remote != nullptr) {
    // Serve again the RAFS mounts a previous process left behind.
    Snapshotter* raw = s.get();
    st = opts.remote->Recover([raw](int64_t id) -> Result<Labels> {
      MutexLock lock(&raw->mu_);
      ASSIGN_OR_RETURN(std::set<int64_t> live, raw->store_->Ids());
      if (live.count(id) == 0) return base::NotFoundError("snapshot ", id, " is gone");
      return raw->store_->LabelsOf(id);
    });
    if (!st.ok()) {
      RFS_LOG(kWarning) << "recovering RAFS mounts: " << st;
    }
  }
  return s;
}

Result<std::vector<Mount>> Snapshotter::Prepare(const std::string& key, const std::string& parent,
                                                const Labels& labels) {
  if (base::MinLogLevel() <= base::LogLevel::kDebug) {
    std::string keys;
    for (const auto& [k, v] : labels) keys += (keys.empty() ? "" : " ") + k;
    RFS_LOG(kDebug) << "prepare \"" << key << "\" labels: " << keys;
  }
  auto target = labels.find(kTargetRefLabel);
  if (options_.remote != nullptr && target != labels.end() && labels.count(kNydusBlobLabel) != 0) {
    // A RAFS data layer: nothing to download, its chunks are read on demand.
    RETURN_IF_ERROR(Create(Kind::kActive, key, parent, labels).status());
    Status c = Commit(target->second, key, labels);
    if (!c.ok()) {
      Status rm = Remove(key);
      if (!rm.ok()) {
        RFS_LOG(kWarning) << "remove \"" << key << "\": " << rm;
      }
      if (c.code() != base::StatusCode::kAlreadyExists) return c;
    }
    RFS_LOG(kDebug) << "remote RAFS data layer " << target->second << " committed";
    return base::AlreadyExistsError("target snapshot \"", target->second,
                                    "\" exists: a RAFS data layer is read on demand");
  }
  return Create(Kind::kActive, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::View(const std::string& key, const std::string& parent,
                                             const Labels& labels) {
  return Create(Kind::kView, key, parent, labels);
}

Result<std::vector<Mount>> Snapshotter::Create(Kind kind, const std::string& key,
                                               const std::string& parent, const Labels& labels) {
  ASSIGN_OR_RETURN(Plan plan, CreateLocked(kind, key, parent, labels));
  Result<std::vector<Mount>> mounts = Realize(plan);
  if (mounts.ok() && plan.meta_id != 0) {
    // Say on the snapshot how it is served (ctr snapshots info shows it).
    Info info;
    info.name = key;
    info.labels[kRafsStatusLabel] = "lazy";
    Result<Info> u = Update(info, {std::string("labels.") + kRafsStatusLabel});
    if (!u.ok()) {
      RFS_LOG(kWarning) << "label \"" << key << "\": " << u.status();
    }
  }
  if (!mounts.ok()) {
    // Nothing half-made stays behind.
    Status rm = Remove(key);
    if (!rm.ok()) {
      RFS_LOG(kWarning) << "remove \"" << key << "\": " << rm;
    }
  }
  return mounts;
}

Status Snapshotter::FindMeta(const MetadataStore::Snapshot& snap, Plan* plan) {
  if (options_.remote == nullptr || snap.labels.count(kTargetRefLabel) != 0) return Status::Ok();
  for (size_t i = 0; i < snap.parent_ids.size(); ++i) {
    ASSIGN_OR_RETURN(Labels l, store_->LabelsOf(snap.parent_ids[i]));
    if (l.count(kNydusBootstrapLabel) != 0) {
      plan->meta_id = snap.parent_ids[i];
      // A client may name the image on the container's snapshot instead
      // (`ctr run --snapshotter-label containerd.io/snapshot/cri.image-ref=...`).
      for (const char* key : {kCriImageRefLabel, kPullUsernameLabel, kPullSecretLabel}) {
        auto own = snap.labels.find(key);
        if (own != snap.labels.end() && l.count(key) == 0) l[key] = own->second;
      }
      plan->meta_labels = std::move(l);
      plan->above_meta.assign(snap.parent_ids.begin(), snap.parent_ids.begin() + i);
      return Status::Ok();
    }
  }
  return Status::Ok();
}

Result<std::vector<Mount>> Snapshotter::Realize(const Plan& plan) {
  if (plan.meta_id == 0) return plan.native;
  const std::string layer = base::StrCat(snapshots_dir(), "/", plan.meta_id, "/fs");
  Result<std::string> dir = options_.remote->Mount(plan.meta_id, layer, plan.meta_labels);
  if (!dir.ok()) {
    return Status(dir.status().code(),
                  base::StrCat("the RAFS image of layer ", plan.meta_id,
                               " cannot be served: ", dir.status().message()));
  }
  return BuildRemoteMounts(snapshots_dir(), plan.kind, plan.id, plan.above_meta, *dir,
                           plan.labels, options_.overlay);
}

Result<Snapshotter::Plan> Snapshotter::CreateLocked(Kind kind, const std::string& key,
                                                    const std::string& parent,
                                                    const Labels& labels) {
  RETURN_IF_ERROR(CheckKeyArgs(key, parent, labels));
  const std::string dir = snapshots_dir();
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(true));

  // Build the directory under a temporary name first.
  std::string tmpl = dir + "/new-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoToStatus(errno, "mkdtemp " + tmpl);
  std::string td = tmpl;
  auto discard_td = [&td]() {
    Status s = RemoveTree(td);
    if (!s.ok()) {
      RFS_LOG(kWarning) << "remove temporary snapshot dir: " << s;
    }
  };
  Status s = MakeDir(td + "/fs", 0755);
  if (s.ok() && kind == Kind::kActive) s = MakeDir(td + "/work", 0711);
  if (!s.ok()) {
    discard_td();
    return s;
  }
  Result<MetadataStore::Snapshot> snap = store_->CreateSnapshot(kind, key, parent, labels, NowNs());
  if (!snap.ok()) {
    discard_td();
    return snap.status();
  }
  if (snap->parent_ids.size() > kMaxOverlayLowers) {
    discard_td();
    return base::FailedPreconditionError("snapshot \"", key, "\": ", snap->parent_ids.size(),
                                         " parent layers, overlayfs stacks at most ",
                                         kMaxOverlayLowers);
  }
  if (!snap->parent_ids.empty()) {
    // Like containerd: the new upper dir gets the owner of the parent's root.
    std::string pfs = base::StrCat(dir, "/", snap->parent_ids[0], "/fs");
    struct stat st;
    if (::stat(pfs.c_str(), &st) != 0) {
      s = ErrnoToStatus(errno, "stat parent " + pfs);
    } else if (::lchown((td + "/fs").c_str(), st.st_uid, st.st_gid) != 0) {
      s = ErrnoToStatus(errno, "chown " + td + "/fs");
    }
    if (!s.ok()) {
      discard_td();
      return s;
    }
  }
  std::string path = base::StrCat(dir, "/", snap->id);
  if (::access(path.c_str(), F_OK) == 0) {
    // Only a crash between rename and commit leaves such a dir (the id was
    // handed out again because the transaction never committed).
    RFS_LOG(kWarning) << "removing stale snapshot dir " << path << " left by an earlier crash";
    s = RemoveTree(path);
    if (!s.ok()) {
      discard_td();
      return s;
    }
  }
  if (::rename(td.c_str(), path.c_str()) != 0) {
    s = ErrnoToStatus(errno, "rename " + td + " to " + path);
    discard_td();
    return s;
  }
  s = tx.Commit();
  if (!s.ok()) {
    Status rm = RemoveTree(path);
    if (!rm.ok()) {
      RFS_LOG(kWarning) << "remove uncommitted snapshot dir: " << rm;
    }
    return s;
  }
  RFS_LOG(kDebug) << "created " << KindName(kind) << " snapshot \"" << key << "\" id " << snap->id;
  Plan plan;
  plan.native = BuildMounts(dir, kind, snap->id, snap->parent_ids, snap->labels, options_.overlay);
  plan.kind = kind;
  plan.id = snap->id;
  plan.labels = snap->labels;
  s = FindMeta(*snap, &plan);
  if (!s.ok()) {
    // The snapshot is committed: report, and serve it natively.
    RFS_LOG(kWarning) << "snapshot \"" << key << "\": looking for a RAFS meta layer: " << s;
  }
  return plan;
}

Result<std::vector<Mount>> Snapshotter::Mounts(const std::string& key) {
  RETURN_IF_ERROR(ValidateKey("key", key));
  Plan plan;
  {
    MutexLock lock(&mu_);
    if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
    ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(false));
    ASSIGN_OR_RETURN(MetadataStore::Snapshot snap, store_->GetSnapshot(key));
    plan.native = BuildMounts(snapshots_dir(), snap.kind, snap.id, snap.parent_ids, snap.labels,
                              options_.overlay);
    plan.kind = snap.kind;
    plan.id = snap.id;
    plan.labels = snap.labels;
    RETURN_IF_ERROR(FindMeta(snap, &plan));
  }
  // The same decision as Prepare/View; a missing instance is started again.
  return Realize(plan);
}

Status Snapshotter::Commit(const std::string& name, const std::string& key, const Labels& labels) {
  RETURN_IF_ERROR(ValidateKey("name", name));
  RETURN_IF_ERROR(ValidateKey("key", key));
  RETURN_IF_ERROR(ValidateLabels(labels));
  MetadataStore::Record rec;
  {
    MutexLock lock(&mu_);
    if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
    ASSIGN_OR_RETURN(rec, store_->GetInfo(key));
  }
  // The walk of the upper dir can be long: it runs without the lock, and the
  // id is checked again below.
  Usage usage;
  if (rec.info.kind == Kind::kActive) {
    ASSIGN_OR_RETURN(usage, DiskUsage(base::StrCat(snapshots_dir(), "/", rec.id, "/fs")));
  }
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(true));
  ASSIGN_OR_RETURN(int64_t id, store_->CommitActive(key, name, usage, labels, NowNs()));
  if (id != rec.id) {
    return base::AbortedError("snapshot \"", key, "\" was replaced while it was being committed");
  }
  RETURN_IF_ERROR(tx.Commit());
  RFS_LOG(kDebug) << "committed \"" << key << "\" as \"" << name << "\" id " << id;
  return Status::Ok();
}

Status Snapshotter::Remove(const std::string& key) {
  RETURN_IF_ERROR(ValidateKey("key", key));
  std::string doomed;
  {
    MutexLock lock(&mu_);
    if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
    ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(true));
    ASSIGN_OR_RETURN(MetadataStore::Record rec, store_->Remove(key));
    RETURN_IF_ERROR(tx.Commit());
    RFS_LOG(kDebug) << "removed snapshot \"" << key << "\" id " << rec.id;
    if (options_.remote != nullptr) {
      // The last snapshot of a RAFS image (its meta snapshot, which has no
      // children now) takes the image's instance with it.
      Status u = options_.remote->Unmount(rec.id);
      if (!u.ok()) {
        RFS_LOG(kWarning) << "stop the RAFS instance of \"" << key << "\": " << u;
      }
    }
    if (options_.sync_remove) {
      std::string path = base::StrCat(snapshots_dir(), "/", rec.id);
      doomed = base::StrCat(snapshots_dir(), "/rm-", rec.id);
      if (::rename(path.c_str(), doomed.c_str()) != 0) {
        // The record is gone; Cleanup will find the orphan.
        RFS_LOG(kWarning) << "rename " << path << ": " << ErrnoToStatus(errno, "rename");
        doomed.clear();
      }
    }
  }
  if (!doomed.empty()) {
    Status s = RemoveTree(doomed);
    if (!s.ok()) {
      RFS_LOG(kWarning) << "remove snapshot dir (left for Cleanup): " << s;
    }
  }
  return Status::Ok();
}

Result<Info> Snapshotter::Stat(const std::string& key) {
  RETURN_IF_ERROR(ValidateKey("key", key));
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  ASSIGN_OR_RETURN(MetadataStore::Record rec, store_->GetInfo(key));
  return rec.info;
}

Result<Info> Snapshotter::Update(const Info& info, const std::vector<std::string>& fieldpaths) {
  RETURN_IF_ERROR(ValidateKey("name", info.name));
  RETURN_IF_ERROR(ValidateLabels(info.labels));
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(true));
  ASSIGN_OR_RETURN(Info updated, store_->UpdateInfo(info, fieldpaths, NowNs()));
  RETURN_IF_ERROR(tx.Commit());
  return updated;
}

Status Snapshotter::Walk(const Filter& filter, const std::function<Status(const Info&)>& fn) {
  std::vector<Info> matched;
  {
    MutexLock lock(&mu_);
    if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
    ASSIGN_OR_RETURN(MetadataStore::Transaction tx, store_->Begin(false));
    RETURN_IF_ERROR(store_->WalkInfo([&](const MetadataStore::Record& r) {
      if (filter.Match(r.info)) matched.push_back(r.info);
      return Status::Ok();
    }));
  }
  for (const Info& info : matched) RETURN_IF_ERROR(fn(info));
  return Status::Ok();
}

Result<Usage> Snapshotter::GetUsage(const std::string& key) {
  RETURN_IF_ERROR(ValidateKey("key", key));
  MetadataStore::Record rec;
  {
    MutexLock lock(&mu_);
    if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
    ASSIGN_OR_RETURN(rec, store_->GetInfo(key));
  }
  if (rec.info.kind != Kind::kActive) return rec.usage;
  return DiskUsage(base::StrCat(snapshots_dir(), "/", rec.id, "/fs"));
}

Result<std::vector<std::string>> Snapshotter::ClaimOrphans() {
  const std::string dir = snapshots_dir();
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  ASSIGN_OR_RETURN(std::set<int64_t> live, store_->Ids());
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(dir));
  std::vector<std::string> claimed;
  for (const std::string& n : names) {
    int64_t id;
    if (ParseId(n, &id) && live.count(id) != 0) continue;
    if (n.rfind("rm-", 0) == 0) {
      claimed.push_back(n);
      continue;
    }
    // Directories under construction exist only while the lock is held, so
    // everything else here is an orphan.
    std::string to = "rm-" + n;
    if (::rename((dir + "/" + n).c_str(), (dir + "/" + to).c_str()) != 0) {
      RFS_LOG(kWarning) << ErrnoToStatus(errno, "rename orphan " + dir + "/" + n);
      continue;
    }
    claimed.push_back(to);
  }
  return claimed;
}

Status Snapshotter::DeleteClaimed(const std::vector<std::string>& names) {
  Status first;
  for (const std::string& n : names) {
    // Mounts a dead process left inside (a RAFS instance) go first.
    Status d = DetachMountsUnder(snapshots_dir() + "/" + n, "fuse.rafs");
    if (!d.ok()) {
      RFS_LOG(kWarning) << "cleanup: " << d;
    }
    Status s = RemoveTree(snapshots_dir() + "/" + n);
    if (!s.ok()) {
      RFS_LOG(kWarning) << "cleanup: " << s;
      if (first.ok()) first = s;
    } else {
      RFS_LOG(kDebug) << "cleanup: removed " << n;
    }
  }
  return first;
}

Status Snapshotter::Cleanup() {
  MutexLock cleanup_lock(&cleanup_mu_);
  ASSIGN_OR_RETURN(std::vector<std::string> claimed, ClaimOrphans());
  return DeleteClaimed(claimed);
}

Result<std::map<Kind, int64_t>> Snapshotter::CountByKind() {
  MutexLock lock(&mu_);
  if (store_ == nullptr) return base::UnavailableError("snapshotter is closed");
  return store_->CountByKind();
}

}  // namespace rfs::snapshotter
