// MetadataStore: the transactional record of snapshots (SQLite, WAL mode),
// with the semantics of containerd's snapshots/storage package: keys, kinds,
// parents, labels, timestamps, usage and the numeric id that names each
// snapshot's directory.
//
// Not thread-safe: the caller serialises every call (the Snapshotter holds
// its mutex around a transaction). Each mutating call must run inside a write
// Transaction; reads may run inside any transaction or none.
//
// Errors, as containerd branches on them: NotFound (unknown key or parent),
// AlreadyExists (key or name taken), InvalidArgument (parent not committed,
// immutable field in an update), FailedPrecondition (commit of a non-active,
// mounts of a committed, remove of a snapshot with children). Storage failures
// are Internal / DataLoss naming the SQLite error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshotter/snapshot.h"

struct sqlite3;
struct sqlite3_stmt;

namespace rfs::snapshotter {

class MetadataStore {
 public:
  // Opens (creating if needed) the database at `path`; ":memory:" gives a
  // private in-memory store (tests).
  static base::Result<std::unique_ptr<MetadataStore>> Open(const std::string& path);
  ~MetadataStore();
  MetadataStore(const MetadataStore&) = delete;
  MetadataStore& operator=(const MetadataStore&) = delete;

  // A transaction; rolled back on destruction unless committed.
  class Transaction {
   public:
    Transaction(Transaction&& o) noexcept : store_(o.store_) { o.store_ = nullptr; }
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();
    base::Status Commit();

   private:
    friend class MetadataStore;
    explicit Transaction(MetadataStore* store) : store_(store) {}
    MetadataStore* store_;
  };
  base::Result<Transaction> Begin(bool write);

  // What a snapshot's mounts are built from.
  struct Snapshot {
    int64_t id = 0;
    Kind kind = Kind::kUnknown;
    std::vector<int64_t> parent_ids;  // nearest parent first
    Labels labels;
  };
  struct Record {
    int64_t id = 0;
    Info info;
    Usage usage;  // stored at commit; zero for active and view
  };

  // Creates an Active or View snapshot. Checks the parent (NotFound, then
  // InvalidArgument if not committed) before the key (AlreadyExists).
  // Labels with an empty value are not stored.
  base::Result<Snapshot> CreateSnapshot(Kind kind, const std::string& key,
                                        const std::string& parent, const Labels& labels,
                                        int64_t now_ns);
  // Active or View only; a committed key is FailedPrecondition.
  base::Result<Snapshot> GetSnapshot(const std::string& key);
  base::Result<Record> GetInfo(const std::string& key);
  // Replaces the labels named by `fieldpaths` ("labels", "labels.<k>"; none:
  // all labels) with those of `info`, refreshes updated_at.
  base::Result<Info> UpdateInfo(const Info& info, const std::vector<std::string>& fieldpaths,
                                int64_t now_ns);
  // Active `key` becomes Committed `name` with `usage`, the same id, the given
  // labels (replacing the active's) and created_at = updated_at = now.
  // Checks the name (AlreadyExists) before the key (NotFound, then
  // FailedPrecondition if not active). Returns the id.
  base::Result<int64_t> CommitActive(const std::string& key, const std::string& name,
                                     const Usage& usage, const Labels& labels, int64_t now_ns);
  // Deletes the record; FailedPrecondition if it has children.
  base::Result<Record> Remove(const std::string& key);
  // Every snapshot, in key order; stops at and returns the first error of fn.
  base::Status WalkInfo(const std::function<base::Status(const Record&)>& fn);
  base::Result<std::set<int64_t>> Ids();
  base::Result<Labels> LabelsOf(int64_t id);
  base::Result<std::map<Kind, int64_t>> CountByKind();

 private:
  explicit MetadataStore(sqlite3* db) : db_(db) {}
  base::Status Exec(const char* sql);
  base::Status Error(const char* what) const;
  base::Result<sqlite3_stmt*> Prepare(const char* sql);
  base::Result<int64_t> IdOf(const std::string& key, Kind* kind);
  base::Status WriteLabels(int64_t id, const Labels& labels);
  base::Result<Record> ReadRecord(sqlite3_stmt* st);

  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> stmts_;  // prepared once, reused
};

}  // namespace rfs::snapshotter
