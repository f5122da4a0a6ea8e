// snapshotter_bench: Prepare+Commit+Remove round trips over gRPC against any
// snapshotter serving containerd's Snapshots API on a unix socket (ours, or
// containerd's overlayfs through integration/bench/overlayfs-grpc).
//
//   snapshotter_bench --socket PATH [--iterations N] [--parent-depth D] [--fill N]
//
// Each iteration: Prepare(key, parent) -> Commit(name, key) -> Remove(name),
// timed as one round trip from the client. --parent-depth builds a chain of D
// committed layers first and prepares on top of it; --fill creates N extra
// committed snapshots first (store size) and times one full List. Prints iterations per second and
// p50/p90/p99/max latency in milliseconds.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace v1 = containerd::services::snapshots::v1;

namespace {

bool Check(const grpc::Status& st, const char* what) {
  if (st.ok()) return true;
  std::cerr << what << ": " << st.error_code() << " " << st.error_message() << "\n";
  return false;
}

struct Client {
  std::unique_ptr<v1::Snapshots::Stub> stub;

  grpc::Status Prepare(const std::string& key, const std::string& parent) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "bench");
    v1::PrepareSnapshotRequest req;
    req.set_snapshotter("bench");
    req.set_key(key);
    req.set_parent(parent);
    v1::PrepareSnapshotResponse resp;
    return stub->Prepare(&ctx, req, &resp);
  }
  grpc::Status Commit(const std::string& name, const std::string& key) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "bench");
    v1::CommitSnapshotRequest req;
    req.set_snapshotter("bench");
    req.set_name(name);
    req.set_key(key);
    google::protobuf::Empty e;
    return stub->Commit(&ctx, req, &e);
  }
  grpc::Status Remove(const std::string& key) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "bench");
    v1::RemoveSnapshotRequest req;
    req.set_snapshotter("bench");
    req.set_key(key);
    google::protobuf::Empty e;
    return stub->Remove(&ctx, req, &e);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string socket;
  int iterations = 1000, depth = 0, fill = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--socket") {
      socket = argv[i + 1];
    } else if (a == "--iterations") {
      iterations = std::atoi(argv[i + 1]);
    } else if (a == "--parent-depth") {
      depth = std::atoi(argv[i + 1]);
    } else if (a == "--fill") {
      fill = std::atoi(argv[i + 1]);
    } else {
      std::cerr << "unknown argument " << a << "\n";
      return 2;
    }
  }
  if (socket.empty() || iterations <= 0) {
    std::cerr << "usage: snapshotter_bench --socket PATH [--iterations N] [--parent-depth D] "
                 "[--fill N]\n";
    return 2;
  }
  Client c;
  c.stub = v1::Snapshots::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  std::string run = std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  std::string parent;
  for (int i = 0; i < depth; ++i) {
    std::string name = run + "-layer-" + std::to_string(i);
    if (!Check(c.Prepare(name + "-tmp", parent), "prepare layer")) return 1;
    if (!Check(c.Commit(name, name + "-tmp"), "commit layer")) return 1;
    parent = name;
  }
  for (int i = 0; i < fill; ++i) {
    std::string name = run + "-fill-" + std::to_string(i);
    if (!Check(c.Prepare(name + "-tmp", ""), "prepare fill")) return 1;
    if (!Check(c.Commit(name, name + "-tmp"), "commit fill")) return 1;
  }
  if (fill > 0) {
    // One full List (what containerd's GC does) over the filled store.
    auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    v1::ListSnapshotsRequest req;
    req.set_snapshotter("bench");
    auto reader = c.stub->List(&ctx, req);
    v1::ListSnapshotsResponse resp;
    int n = 0;
    while (reader->Read(&resp)) n += resp.info_size();
    if (!Check(reader->Finish(), "list")) return 1;
    std::printf(
        "list of %d snapshots: %.1f ms\n", n,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> ms;
  ms.reserve(iterations);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    std::string key = run + "-active-" + std::to_string(i);
    std::string name = run + "-committed-" + std::to_string(i);
    auto t0 = std::chrono::steady_clock::now();
    if (!Check(c.Prepare(key, parent), "prepare")) return 1;
    if (!Check(c.Commit(name, key), "commit")) return 1;
    if (!Check(c.Remove(name), "remove")) return 1;
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf("iterations %d  parent-depth %d  fill %d\n", iterations, depth, fill);
  std::printf("round trips/s %.1f  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
              iterations / secs, pct(0.50), pct(0.90), pct(0.99), ms.back());
  return 0;
}
