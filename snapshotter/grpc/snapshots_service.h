// SnapshotsService: containerd.services.snapshots.v1.Snapshots over the
// snapshotter core. Converts messages to and from core types, maps Status to
// grpc::Status one to one (codes are the gRPC canonical codes), logs each
// failure once here, and records per-method request counts by code and
// latency in a MetricsRegistry.
//
// The request's `snapshotter` field (the proxy plugin name) and the
// containerd-namespace metadata are ignored: keys arrive namespaced.
// List streams Info in batches of kListBatch per message, as containerd's
// own server does.
#pragma once

#include <map>
#include <string>

#include "base/metrics.h"
#include "base/status.h"
#include "snapshotter/snapshotter.h"

// After base/mutex.h: abseil (under gRPC) defines the same thread-safety
// macros, and only a redefinition inside a system header is silent.
#include <grpcpp/grpcpp.h>

#include "api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace rfs::snapshotter::grpc {

namespace v1 = ::containerd::services::snapshots::v1;

::grpc::Status ToGrpcStatus(const base::Status& status);

class SnapshotsService final : public v1::Snapshots::Service {
 public:
  static constexpr int kListBatch = 100;

  // Both must outlive the service.
  SnapshotsService(Snapshotter* snapshotter, base::MetricsRegistry* metrics);

  ::grpc::Status Prepare(::grpc::ServerContext* ctx, const v1::PrepareSnapshotRequest* req,
                         v1::PrepareSnapshotResponse* resp) override;
  ::grpc::Status View(::grpc::ServerContext* ctx, const v1::ViewSnapshotRequest* req,
                      v1::ViewSnapshotResponse* resp) override;
  ::grpc::Status Mounts(::grpc::ServerContext* ctx, const v1::MountsRequest* req,
                        v1::MountsResponse* resp) override;
  ::grpc::Status Commit(::grpc::ServerContext* ctx, const v1::CommitSnapshotRequest* req,
                        ::google::protobuf::Empty* resp) override;
  ::grpc::Status Remove(::grpc::ServerContext* ctx, const v1::RemoveSnapshotRequest* req,
                        ::google::protobuf::Empty* resp) override;
  ::grpc::Status Stat(::grpc::ServerContext* ctx, const v1::StatSnapshotRequest* req,
                      v1::StatSnapshotResponse* resp) override;
  ::grpc::Status Update(::grpc::ServerContext* ctx, const v1::UpdateSnapshotRequest* req,
                        v1::UpdateSnapshotResponse* resp) override;
  ::grpc::Status List(::grpc::ServerContext* ctx, const v1::ListSnapshotsRequest* req,
                      ::grpc::ServerWriter<v1::ListSnapshotsResponse>* writer) override;
  ::grpc::Status Usage(::grpc::ServerContext* ctx, const v1::UsageRequest* req,
                       v1::UsageResponse* resp) override;
  ::grpc::Status Cleanup(::grpc::ServerContext* ctx, const v1::CleanupRequest* req,
                         ::google::protobuf::Empty* resp) override;

 private:
  class Call;

  Snapshotter* const snapshotter_;
  base::MetricsRegistry* const metrics_;
  std::map<std::string, base::Histogram*> latency_;  // by method; filled in the constructor
};

}  // namespace rfs::snapshotter::grpc
