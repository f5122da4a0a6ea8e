#include "snapshotter/grpc/snapshots_service.h"

#include <chrono>
#include <utility>
#include <vector>

#include "base/logging.h"
#include "snapshotter/filter.h"

namespace rfs::snapshotter::grpc {

using base::Status;
using base::StatusCode;

namespace {

constexpr const char* kMethods[] = {"Prepare", "View",   "Mounts", "Commit", "Remove",
                                    "Stat",    "Update", "List",   "Usage",  "Cleanup"};

Labels ToLabels(const ::google::protobuf::Map<std::string, std::string>& m) {
  return Labels(m.begin(), m.end());
}

void ToProto(const std::vector<Mount>& mounts,
             ::google::protobuf::RepeatedPtrField<::containerd::types::Mount>* out) {
  for (const Mount& m : mounts) {
    ::containerd::types::Mount* pm = out->Add();
    pm->set_type(m.type);
    pm->set_source(m.source);
    for (const std::string& o : m.options) pm->add_options(o);
  }
}

void ToProto(int64_t ns, ::google::protobuf::Timestamp* ts) {
  int64_t sec = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --sec;
  }
  ts->set_seconds(sec);
  ts->set_nanos(static_cast<int32_t>(nanos));
}

int64_t FromProto(const ::google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000 + ts.nanos();
}

void ToProto(const Info& info, v1::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<v1::Kind>(static_cast<int>(info.kind)));
  ToProto(info.created_at_ns, out->mutable_created_at());
  ToProto(info.updated_at_ns, out->mutable_updated_at());
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

Info FromProto(const v1::Info& p) {
  Info info;
  info.name = p.name();
  info.parent = p.parent();
  info.kind = static_cast<Kind>(p.kind());
  info.created_at_ns = FromProto(p.created_at());
  info.updated_at_ns = FromProto(p.updated_at());
  info.labels = ToLabels(p.labels());
  return info;
}

}  // namespace

::grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return ::grpc::Status::OK;
  return ::grpc::Status(static_cast<::grpc::StatusCode>(static_cast<int>(status.code())),
                        status.message());
}

// One RPC: measures it, counts its outcome, logs a failure once.
class SnapshotsService::Call {
 public:
  Call(SnapshotsService* s, const char* method)
      : s_(s), method_(method), start_(std::chrono::steady_clock::now()) {}

  ::grpc::Status Finish(const Status& st) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
                    .count();
    auto it = s_->latency_.find(method_);
    if (it != s_->latency_.end()) it->second->Observe(ms);
    s_->metrics_
        ->GetCounter("snapshotter_grpc_requests_total",
                     "Snapshots API requests by method and gRPC status code.",
                     {{"method", method_}, {"code", std::string(base::StatusCodeName(st.code()))}})
        ->Increment();
    if (!st.ok()) {
      switch (st.code()) {
        // Outcomes containerd asks for on purpose (probing, unpack races).
        case StatusCode::kNotFound:
        case StatusCode::kAlreadyExists:
        case StatusCode::kFailedPrecondition:
          RFS_LOG(kDebug) << method_ << ": " << st;
          break;
        case StatusCode::kInvalidArgument:
          RFS_LOG(kInfo) << method_ << ": " << st;
          break;
        default:
          RFS_LOG(kError) << method_ << ": " << st;
      }
    }
    return ToGrpcStatus(st);
  }

 private:
  SnapshotsService* s_;
  const char* method_;
  std::chrono::steady_clock::time_point start_;
};

SnapshotsService::SnapshotsService(Snapshotter* snapshotter, base::MetricsRegistry* metrics)
    : snapshotter_(snapshotter), metrics_(metrics) {
  // Name, label and buckets of upstream nydus-snapshotter's operation
  // histogram, so existing dashboards keep working.
  const std::vector<double> buckets = {0.5, 1,   5,   10,  50,  100, 150,
                                       200, 250, 300, 350, 400, 600, 1000};
  for (const char* m : kMethods) {
    std::string op;
    for (const char* p = m; *p; ++p) op += static_cast<char>(std::toupper(*p));
    latency_[m] = metrics_->GetHistogram("snapshotter_snapshot_operation_elapsed_milliseconds",
                                         "Latency of snapshot operations in milliseconds.", buckets,
                                         {{"snapshot_operation", op}});
  }
}

::grpc::Status SnapshotsService::Prepare(::grpc::ServerContext*,
                                         const v1::PrepareSnapshotRequest* req,
                                         v1::PrepareSnapshotResponse* resp) {
  Call call(this, "Prepare");
  auto r = snapshotter_->Prepare(req->key(), req->parent(), ToLabels(req->labels()));
  if (r.ok()) ToProto(*r, resp->mutable_mounts());
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::View(::grpc::ServerContext*, const v1::ViewSnapshotRequest* req,
                                      v1::ViewSnapshotResponse* resp) {
  Call call(this, "View");
  auto r = snapshotter_->View(req->key(), req->parent(), ToLabels(req->labels()));
  if (r.ok()) ToProto(*r, resp->mutable_mounts());
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::Mounts(::grpc::ServerContext*, const v1::MountsRequest* req,
                                        v1::MountsResponse* resp) {
  Call call(this, "Mounts");
  auto r = snapshotter_->Mounts(req->key());
  if (r.ok()) ToProto(*r, resp->mutable_mounts());
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::Commit(::grpc::ServerContext*,
                                        const v1::CommitSnapshotRequest* req,
                                        ::google::protobuf::Empty*) {
  Call call(this, "Commit");
  if (!req->parent().empty()) {
    // containerd 2.x rebase-on-commit: accepted when it names the parent the
    // active already has.
    auto st = snapshotter_->Stat(req->key());
    if (!st.ok()) return call.Finish(st.status());
    if (!st->parent.empty() && st->parent != req->parent()) {
      return call.Finish(base::InvalidArgumentError("commit of \"", req->key(), "\" onto parent \"",
                                                    req->parent(), "\": it has parent \"",
                                                    st->parent, "\""));
    }
    if (st->parent != req->parent()) {
      return call.Finish(base::UnimplementedError("commit of \"", req->key(), "\" onto parent \"",
                                                  req->parent(), "\": rebase is not supported"));
    }
  }
  return call.Finish(snapshotter_->Commit(req->name(), req->key(), ToLabels(req->labels())));
}

::grpc::Status SnapshotsService::Remove(::grpc::ServerContext*,
                                        const v1::RemoveSnapshotRequest* req,
                                        ::google::protobuf::Empty*) {
  Call call(this, "Remove");
  return call.Finish(snapshotter_->Remove(req->key()));
}

::grpc::Status SnapshotsService::Stat(::grpc::ServerContext*, const v1::StatSnapshotRequest* req,
                                      v1::StatSnapshotResponse* resp) {
  Call call(this, "Stat");
  auto r = snapshotter_->Stat(req->key());
  if (r.ok()) ToProto(*r, resp->mutable_info());
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::Update(::grpc::ServerContext*,
                                        const v1::UpdateSnapshotRequest* req,
                                        v1::UpdateSnapshotResponse* resp) {
  Call call(this, "Update");
  std::vector<std::string> paths(req->update_mask().paths().begin(),
                                 req->update_mask().paths().end());
  auto r = snapshotter_->Update(FromProto(req->info()), paths);
  if (r.ok()) ToProto(*r, resp->mutable_info());
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::List(::grpc::ServerContext* ctx,
                                      const v1::ListSnapshotsRequest* req,
                                      ::grpc::ServerWriter<v1::ListSnapshotsResponse>* writer) {
  Call call(this, "List");
  auto filter =
      Filter::Parse(std::vector<std::string>(req->filters().begin(), req->filters().end()));
  if (!filter.ok()) return call.Finish(filter.status());
  v1::ListSnapshotsResponse batch;
  auto flush = [&]() -> Status {
    if (batch.info_size() == 0) return Status::Ok();
    if (ctx->IsCancelled()) return base::CancelledError("list: client went away");
    if (!writer->Write(batch)) return base::CancelledError("list: stream closed by the client");
    batch.Clear();
    return Status::Ok();
  };
  Status st = snapshotter_->Walk(*filter, [&](const Info& info) -> Status {
    ToProto(info, batch.add_info());
    if (batch.info_size() >= kListBatch) return flush();
    return Status::Ok();
  });
  if (st.ok()) st = flush();
  return call.Finish(st);
}

::grpc::Status SnapshotsService::Usage(::grpc::ServerContext*, const v1::UsageRequest* req,
                                       v1::UsageResponse* resp) {
  Call call(this, "Usage");
  auto r = snapshotter_->GetUsage(req->key());
  if (r.ok()) {
    resp->set_size(r->size_bytes);
    resp->set_inodes(r->inodes);
  }
  return call.Finish(r.status());
}

::grpc::Status SnapshotsService::Cleanup(::grpc::ServerContext*, const v1::CleanupRequest*,
                                         ::google::protobuf::Empty*) {
  Call call(this, "Cleanup");
  return call.Finish(snapshotter_->Cleanup());
}

}  // namespace rfs::snapshotter::grpc
