// Snapshotter: containerd snapshot semantics over a root directory, for plain
// OCI layers (behaves like containerd's overlayfs snapshotter).
//
// Layout under the root (created 0700):
//   lock                 flock()ed by the one process that owns the root
//   metadata.db          MetadataStore (SQLite, WAL)
//   snapshots/<id>/fs    layer contents or upper dir (0755)
//   snapshots/<id>/work  overlay workdir (0711, active snapshots only)
//
// Crash safety: a snapshot directory is built as snapshots/new-XXXXXX and
// renamed to its id before the transaction that records it commits; a removed
// snapshot's directory is renamed to rm-<id> before it is deleted. After a
// kill -9 at any moment, every directory whose name is not a live id is an
// orphan, and Open (and Cleanup) delete orphans, so the next start repairs
// the state. Records never point at missing directories: a record commits
// only after its directory is in place, and a directory goes only after its
// record.
//
// Thread-safe. Metadata operations are serialised by one mutex; disk-usage
// walks and directory deletion run outside it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "snapshotter/filter.h"
#include "snapshotter/metadata_store.h"
#include "snapshotter/mounts.h"
#include "snapshotter/remote_fs.h"
#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

class Snapshotter {
 public:
  struct Options {
    std::string root;  // absolute path
    // Delete a removed snapshot's directory in Remove instead of in Cleanup.
    bool sync_remove = false;
    OverlayOptions overlay;
    // Metadata in memory instead of root/metadata.db (unit tests).
    bool in_memory_store = false;
    // Serves RAFS images lazily (remote_fs.h); null: every image is
    // unpacked like with the overlayfs snapshotter.
    std::shared_ptr<RemoteFs> remote;
  };

  // Creates the root (and missing parents, 0700) if missing, takes its lock (FailedPrecondition if
  // another process holds it), opens the store and deletes orphan
  // directories left by a crash.
  static base::Result<std::unique_ptr<Snapshotter>> Open(const Options& options);
  ~Snapshotter();

  // Active snapshot `key` on committed `parent` ("" for none). Errors:
  // InvalidArgument (bad key/labels, parent not committed), NotFound
  // (parent), AlreadyExists (key).
  //
  // With a RemoteFs: a RAFS data layer being unpacked (labels
  // kTargetRefLabel and kNydusBlobLabel) is committed at once under the
  // target name and AlreadyExists is returned, as containerd expects of a
  // remote layer; a snapshot whose parent chain holds a RAFS meta snapshot
  // (and that is not itself a layer being unpacked) gets the image's RAFS
  // mount as its lower layer; if the image cannot be served the snapshot is
  // removed again and the error says why.
  base::Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                           const Labels& labels);
  // Read-only View snapshot; same errors as Prepare.
  base::Result<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                        const Labels& labels);
  // Mounts of an active or view (FailedPrecondition for committed).
  base::Result<std::vector<Mount>> Mounts(const std::string& key);
  // Active `key` becomes committed `name` (labels replaced by `labels`).
  // NotFound (key), AlreadyExists (name), FailedPrecondition (not active).
  base::Status Commit(const std::string& name, const std::string& key, const Labels& labels);
  // NotFound, FailedPrecondition (has children).
  base::Status Remove(const std::string& key);
  base::Result<Info> Stat(const std::string& key);
  // Only labels are mutable (fieldpaths "labels", "labels.<key>"; none: all
  // labels); anything else is InvalidArgument.
  base::Result<Info> Update(const Info& info, const std::vector<std::string>& fieldpaths);
  // Snapshots matching `filter`, in key order. fn runs without the lock held.
  base::Status Walk(const Filter& filter, const std::function<base::Status(const Info&)>& fn);
  // Active: live du of its fs dir; otherwise the usage stored at commit.
  base::Result<Usage> GetUsage(const std::string& key);
  // Deletes every directory under snapshots/ that is not a live snapshot.
  base::Status Cleanup();
  base::Result<std::map<Kind, int64_t>> CountByKind();

  const std::string& root() const { return options_.root; }
  std::string snapshots_dir() const { return options_.root + "/snapshots"; }

 private:
  Snapshotter(Options options, base::UniqueFd lock_fd, std::unique_ptr<MetadataStore> store);
  base::Result<std::vector<Mount>> Create(Kind kind, const std::string& key,
                                          const std::string& parent, const Labels& labels)
      EXCLUDES(mu_);
  // Renames orphan directories to rm-<name> (under the lock) and returns the
  // rm-* names to delete.
  base::Result<std::vector<std::string>> ClaimOrphans() EXCLUDES(mu_);

  // What Prepare/View/Mounts decided for a snapshot.
  struct Plan {
    std::vector<Mount> native;
    Kind kind = Kind::kUnknown;
    int64_t id = 0;
    Labels labels;
    int64_t meta_id = 0;  // 0: not a RAFS image snapshot
    Labels meta_labels;
    std::vector<int64_t> above_meta;  // parents above the meta snapshot
  };
  // Finds the RAFS meta snapshot in `snap`'s parent chain.
  base::Status FindMeta(const MetadataStore::Snapshot& snap, Plan* plan) REQUIRES(mu_);
  // The mounts of a plan, starting the RAFS instance when it needs one.
  base::Result<std::vector<Mount>> Realize(const Plan& plan) EXCLUDES(mu_);
  base::Result<Plan> CreateLocked(Kind kind, const std::string& key, const std::string& parent,
                                  const Labels& labels) EXCLUDES(mu_);
  base::Status DeleteClaimed(const std::vector<std::string>& names);

  const Options options_;
  const base::UniqueFd lock_fd_;
  base::Mutex mu_;
  std::unique_ptr<MetadataStore> store_ GUARDED_BY(mu_);
  base::Mutex cleanup_mu_;  // one orphan deletion at a time
};

}  // namespace rfs::snapshotter
