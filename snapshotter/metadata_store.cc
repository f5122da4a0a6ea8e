#include "snapshotter/metadata_store.h"

#include <sqlite3.h>

#include <utility>

namespace rfs::snapshotter {

using base::AlreadyExistsError;
using base::FailedPreconditionError;
using base::InvalidArgumentError;
using base::NotFoundError;
using base::Result;
using base::Status;

namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (snapshot_id, key)
) WITHOUT ROWID;
)sql";

constexpr const char* kSelectRecord =
    "SELECT s.id, s.key, p.key, s.kind, s.created_ns, s.updated_ns, s.size, s.inodes "
    "FROM snapshots s LEFT JOIN snapshots p ON s.parent_id = p.id ";

// Resets a cached statement when it goes out of scope.
class StmtGuard {
 public:
  explicit StmtGuard(sqlite3_stmt* st) : st_(st) {}
  ~StmtGuard() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  StmtGuard(const StmtGuard&) = delete;
  StmtGuard& operator=(const StmtGuard&) = delete;

 private:
  sqlite3_stmt* st_;
};

void BindText(sqlite3_stmt* st, int i, const std::string& s) {
  sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
}

std::string ColumnText(sqlite3_stmt* st, int i) {
  const unsigned char* p = sqlite3_column_text(st, i);
  if (p == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(st, i)));
}

bool ValidKind(int64_t k) { return k >= 1 && k <= 3; }

}  // namespace

Result<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return base::InternalError("metadata store ", path, ": open: ", msg);
  }
  std::unique_ptr<MetadataStore> store(new MetadataStore(db));
  sqlite3_busy_timeout(db, 5000);
  // WAL: a commit is one append + fsync, readers never block the writer, and
  // a kill -9 at any moment leaves the last committed state.
  if (path != ":memory:") RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys=ON"));
  RETURN_IF_ERROR(store->Exec("BEGIN IMMEDIATE"));
  Status s = store->Exec(kSchema);
  if (s.ok()) {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     store->Prepare("SELECT value FROM meta WHERE key = 'schema'"));
    StmtGuard g(st);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      std::string v = ColumnText(st, 0);
      if (v != std::to_string(kSchemaVersion)) {
        s = base::FailedPreconditionError("metadata store ", path, ": schema version ", v,
                                          " is not the supported ", kSchemaVersion);
      }
    } else if (rc == SQLITE_DONE) {
      s = store->Exec("INSERT INTO meta(key, value) VALUES ('schema', '1')");
    } else {
      s = store->Error("read schema version");
    }
  }
  if (!s.ok()) {
    (void)store->Exec("ROLLBACK");
    return s.WithContext("metadata store " + path);
  }
  RETURN_IF_ERROR(store->Exec("COMMIT"));
  return store;
}

MetadataStore::~MetadataStore() {
  for (auto& [sql, st] : stmts_) sqlite3_finalize(st);
  sqlite3_close(db_);
}

Status MetadataStore::Error(const char* what) const {
  int code = sqlite3_extended_errcode(db_);
  std::string msg = base::StrCat("metadata store: ", what, ": ", sqlite3_errmsg(db_));
  if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB) {
    return base::DataLossError(msg);
  }
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) {
    return base::UnavailableError(msg);
  }
  return base::InternalError(msg);
}

Status MetadataStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    return base::InternalError("metadata store: ", msg);
  }
  return Status::Ok();
}

Result<sqlite3_stmt*> MetadataStore::Prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return it->second;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Error("prepare");
  stmts_.emplace(sql, st);
  return st;
}

MetadataStore::Transaction::~Transaction() {
  if (store_ != nullptr) (void)store_->Exec("ROLLBACK");
}

Status MetadataStore::Transaction::Commit() {
  MetadataStore* s = store_;
  store_ = nullptr;
  Status st = s->Exec("COMMIT");
  if (!st.ok()) (void)s->Exec("ROLLBACK");
  return st;
}

Result<MetadataStore::Transaction> MetadataStore::Begin(bool write) {
  RETURN_IF_ERROR(Exec(write ? "BEGIN IMMEDIATE" : "BEGIN"));
  return Transaction(this);
}

Result<int64_t> MetadataStore::IdOf(const std::string& key, Kind* kind) {
  ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare("SELECT id, kind FROM snapshots WHERE key = ?"));
  StmtGuard g(st);
  BindText(st, 1, key);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return NotFoundError("snapshot \"", key, "\" does not exist");
  if (rc != SQLITE_ROW) return Error("look up snapshot");
  int64_t k = sqlite3_column_int64(st, 1);
  if (!ValidKind(k)) return base::DataLossError("snapshot \"", key, "\": bad kind ", k);
  if (kind != nullptr) *kind = static_cast<Kind>(k);
  return static_cast<int64_t>(sqlite3_column_int64(st, 0));
}

Result<Labels> MetadataStore::LabelsOf(int64_t id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   Prepare("SELECT key, value FROM labels WHERE snapshot_id = ?"));
  StmtGuard g(st);
  sqlite3_bind_int64(st, 1, id);
  Labels labels;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) labels[ColumnText(st, 0)] = ColumnText(st, 1);
  if (rc != SQLITE_DONE) return Error("read labels");
  return labels;
}

Status MetadataStore::WriteLabels(int64_t id, const Labels& labels) {
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * del, Prepare("DELETE FROM labels WHERE snapshot_id = ?"));
    StmtGuard g(del);
    sqlite3_bind_int64(del, 1, id);
    if (sqlite3_step(del) != SQLITE_DONE) return Error("delete labels");
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * ins,
                   Prepare("INSERT INTO labels(snapshot_id, key, value) VALUES (?, ?, ?)"));
  for (const auto& [k, v] : labels) {
    if (v.empty()) continue;  // containerd: an empty value deletes the label
    StmtGuard g(ins);
    sqlite3_bind_int64(ins, 1, id);
    BindText(ins, 2, k);
    BindText(ins, 3, v);
    if (sqlite3_step(ins) != SQLITE_DONE) return Error("write label");
  }
  return Status::Ok();
}

Result<MetadataStore::Record> MetadataStore::ReadRecord(sqlite3_stmt* st) {
  Record r;
  r.id = sqlite3_column_int64(st, 0);
  r.info.name = ColumnText(st, 1);
  r.info.parent = ColumnText(st, 2);
  int64_t k = sqlite3_column_int64(st, 3);
  if (!ValidKind(k)) return base::DataLossError("snapshot \"", r.info.name, "\": bad kind ", k);
  r.info.kind = static_cast<Kind>(k);
  r.info.created_at_ns = sqlite3_column_int64(st, 4);
  r.info.updated_at_ns = sqlite3_column_int64(st, 5);
  r.usage.size_bytes = sqlite3_column_int64(st, 6);
  r.usage.inodes = sqlite3_column_int64(st, 7);
  return r;
}

Result<MetadataStore::Snapshot> MetadataStore::CreateSnapshot(Kind kind, const std::string& key,
                                                              const std::string& parent,
                                                              const Labels& labels,
                                                              int64_t now_ns) {
  if (kind != Kind::kActive && kind != Kind::kView) {
    return InvalidArgumentError("snapshot \"", key, "\": cannot create a ", KindName(kind),
                                " snapshot");
  }
  Snapshot snap;
  snap.kind = kind;
  int64_t parent_id = 0;
  if (!parent.empty()) {
    Kind pkind;
    Result<int64_t> pid = IdOf(parent, &pkind);
    if (!pid.ok()) {
      if (pid.status().code() == base::StatusCode::kNotFound) {
        return NotFoundError("parent snapshot \"", parent, "\" does not exist");
      }
      return pid.status();
    }
    if (pkind != Kind::kCommitted) {
      return InvalidArgumentError("parent snapshot \"", parent, "\" is ", KindName(pkind),
                                  ", not committed");
    }
    parent_id = *pid;
  }
  {
    Result<int64_t> existing = IdOf(key, nullptr);
    if (existing.ok()) return AlreadyExistsError("snapshot \"", key, "\" already exists");
    if (existing.status().code() != base::StatusCode::kNotFound) return existing.status();
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     Prepare("INSERT INTO snapshots(key, parent_id, kind, created_ns, updated_ns) "
                             "VALUES (?, ?, ?, ?, ?)"));
    StmtGuard g(st);
    BindText(st, 1, key);
    if (parent_id != 0) {
      sqlite3_bind_int64(st, 2, parent_id);
    } else {
      sqlite3_bind_null(st, 2);
    }
    sqlite3_bind_int64(st, 3, static_cast<int>(kind));
    sqlite3_bind_int64(st, 4, now_ns);
    sqlite3_bind_int64(st, 5, now_ns);
    if (sqlite3_step(st) != SQLITE_DONE) return Error("insert snapshot");
    snap.id = sqlite3_last_insert_rowid(db_);
  }
  RETURN_IF_ERROR(WriteLabels(snap.id, labels));
  ASSIGN_OR_RETURN(snap, GetSnapshot(key));
  return snap;
}

Result<MetadataStore::Snapshot> MetadataStore::GetSnapshot(const std::string& key) {
  Snapshot snap;
  ASSIGN_OR_RETURN(snap.id, IdOf(key, &snap.kind));
  if (snap.kind != Kind::kActive && snap.kind != Kind::kView) {
    return FailedPreconditionError("snapshot \"", key, "\" is ", KindName(snap.kind),
                                   ", not active or view");
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare("SELECT parent_id FROM snapshots WHERE id = ?"));
  int64_t id = snap.id;
  // The chain is acyclic by construction (a parent exists before its child);
  // the bound only guards against a damaged database.
  for (int depth = 0;; ++depth) {
    if (depth > 100000) return base::DataLossError("snapshot \"", key, "\": parent chain loops");
    StmtGuard g(st);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
      return base::DataLossError("snapshot \"", key, "\": parent id ", id, " missing");
    }
    if (rc != SQLITE_ROW) return Error("read parent chain");
    if (sqlite3_column_type(st, 0) == SQLITE_NULL) break;
    id = sqlite3_column_int64(st, 0);
    snap.parent_ids.push_back(id);
  }
  ASSIGN_OR_RETURN(snap.labels, LabelsOf(snap.id));
  return snap;
}

Result<MetadataStore::Record> MetadataStore::GetInfo(const std::string& key) {
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   Prepare(std::string(kSelectRecord).append("WHERE s.key = ?").c_str()));
  Record r;
  {
    StmtGuard g(st);
    BindText(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return NotFoundError("snapshot \"", key, "\" does not exist");
    if (rc != SQLITE_ROW) return Error("read snapshot");
    ASSIGN_OR_RETURN(r, ReadRecord(st));
  }
  ASSIGN_OR_RETURN(r.info.labels, LabelsOf(r.id));
  return r;
}

Result<Info> MetadataStore::UpdateInfo(const Info& info, const std::vector<std::string>& fieldpaths,
                                       int64_t now_ns) {
  ASSIGN_OR_RETURN(Record r, GetInfo(info.name));
  Labels labels = r.info.labels;
  if (fieldpaths.empty()) {
    labels = info.labels;
  } else {
    for (const std::string& path : fieldpaths) {
      if (path.rfind("labels.", 0) == 0) {
        std::string key = path.substr(7);
        auto it = info.labels.find(key);
        if (it == info.labels.end() || it->second.empty()) {
          labels.erase(key);
        } else {
          labels[key] = it->second;
        }
      } else if (path == "labels") {
        labels = info.labels;
      } else {
        return InvalidArgumentError("cannot update field \"", path, "\" of snapshot \"", info.name,
                                    "\": only labels are mutable");
      }
    }
  }
  RETURN_IF_ERROR(ValidateLabels(labels));
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     Prepare("UPDATE snapshots SET updated_ns = ? WHERE id = ?"));
    StmtGuard g(st);
    sqlite3_bind_int64(st, 1, now_ns);
    sqlite3_bind_int64(st, 2, r.id);
    if (sqlite3_step(st) != SQLITE_DONE) return Error("update snapshot");
  }
  RETURN_IF_ERROR(WriteLabels(r.id, labels));
  ASSIGN_OR_RETURN(Record updated, GetInfo(info.name));
  return updated.info;
}

Result<int64_t> MetadataStore::CommitActive(const std::string& key, const std::string& name,
                                            const Usage& usage, const Labels& labels,
                                            int64_t now_ns) {
  {
    Result<int64_t> existing = IdOf(name, nullptr);
    if (existing.ok()) return AlreadyExistsError("snapshot \"", name, "\" already exists");
    if (existing.status().code() != base::StatusCode::kNotFound) return existing.status();
  }
  Kind kind;
  ASSIGN_OR_RETURN(int64_t id, IdOf(key, &kind));
  if (kind != Kind::kActive) {
    return FailedPreconditionError("snapshot \"", key, "\" is ", KindName(kind),
                                   ", only an active snapshot can be committed");
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     Prepare("UPDATE snapshots SET key = ?, kind = ?, created_ns = ?, "
                             "updated_ns = ?, size = ?, inodes = ? WHERE id = ?"));
    StmtGuard g(st);
    BindText(st, 1, name);
    sqlite3_bind_int64(st, 2, static_cast<int>(Kind::kCommitted));
    sqlite3_bind_int64(st, 3, now_ns);
    sqlite3_bind_int64(st, 4, now_ns);
    sqlite3_bind_int64(st, 5, usage.size_bytes);
    sqlite3_bind_int64(st, 6, usage.inodes);
    sqlite3_bind_int64(st, 7, id);
    if (sqlite3_step(st) != SQLITE_DONE) return Error("commit snapshot");
  }
  RETURN_IF_ERROR(WriteLabels(id, labels));
  return id;
}

Result<MetadataStore::Record> MetadataStore::Remove(const std::string& key) {
  ASSIGN_OR_RETURN(Record r, GetInfo(key));
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     Prepare("SELECT key FROM snapshots WHERE parent_id = ? LIMIT 1"));
    StmtGuard g(st);
    sqlite3_bind_int64(st, 1, r.id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      return FailedPreconditionError("cannot remove snapshot \"", key, "\": snapshot \"",
                                     ColumnText(st, 0), "\" has it as parent");
    }
    if (rc != SQLITE_DONE) return Error("look up children");
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare("DELETE FROM snapshots WHERE id = ?"));
    StmtGuard g(st);
    sqlite3_bind_int64(st, 1, r.id);
    if (sqlite3_step(st) != SQLITE_DONE) return Error("delete snapshot");
  }
  return r;
}

Status MetadataStore::WalkInfo(const std::function<Status(const Record&)>& fn) {
  std::map<int64_t, Labels> labels;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare("SELECT snapshot_id, key, value FROM labels"));
    StmtGuard g(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      labels[sqlite3_column_int64(st, 0)][ColumnText(st, 1)] = ColumnText(st, 2);
    }
    if (rc != SQLITE_DONE) return Error("read labels");
  }
  std::vector<Record> records;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     Prepare(std::string(kSelectRecord).append("ORDER BY s.key").c_str()));
    StmtGuard g(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      ASSIGN_OR_RETURN(Record r, ReadRecord(st));
      auto it = labels.find(r.id);
      if (it != labels.end()) r.info.labels = std::move(it->second);
      records.push_back(std::move(r));
    }
    if (rc != SQLITE_DONE) return Error("read snapshots");
  }
  for (const Record& r : records) RETURN_IF_ERROR(fn(r));
  return Status::Ok();
}

Result<std::set<int64_t>> MetadataStore::Ids() {
  ASSIGN_OR_RETURN(sqlite3_stmt * st, Prepare("SELECT id FROM snapshots"));
  StmtGuard g(st);
  std::set<int64_t> ids;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) ids.insert(sqlite3_column_int64(st, 0));
  if (rc != SQLITE_DONE) return Error("read ids");
  return ids;
}

Result<std::map<Kind, int64_t>> MetadataStore::CountByKind() {
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   Prepare("SELECT kind, COUNT(*) FROM snapshots GROUP BY kind"));
  StmtGuard g(st);
  std::map<Kind, int64_t> counts;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t k = sqlite3_column_int64(st, 0);
    if (ValidKind(k)) counts[static_cast<Kind>(k)] = sqlite3_column_int64(st, 1);
  }
  if (rc != SQLITE_DONE) return Error("count snapshots");
  return counts;
}

}  // namespace rfs::snapshotter
