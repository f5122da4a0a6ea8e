// The Snapshots service through a real gRPC channel on a unix socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "base/metrics.h"
#include "snapshotter/grpc/server.h"
#include "snapshotter/grpc/snapshots_service.h"
#include "snapshotter/snapshotter.h"
#include "test/support/test_util.h"

// After the project headers (abseil's thread-safety macros, see the service).
#include <grpcpp/grpcpp.h>

namespace rfs::snapshotter::grpc {
namespace {

using ::grpc::ClientContext;
using ::grpc::StatusCode;

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Snapshotter::Options o;
    o.root = tmp_.Sub("root");
    o.in_memory_store = true;
    auto sn = Snapshotter::Open(o);
    ASSERT_TRUE(sn.ok()) << sn.status();
    sn_ = std::move(*sn);
    options_.socket_path = tmp_.Sub("run/s.sock");
    options_.max_message_bytes = 1 << 20;
    auto server = Server::Start(options_, sn_.get(), &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ =
        ::grpc::CreateChannel("unix:" + options_.socket_path, ::grpc::InsecureChannelCredentials());
    stub_ = v1::Snapshots::NewStub(channel_);
  }

  ::grpc::Status Prepare(const std::string& key, const std::string& parent,
                         v1::PrepareSnapshotResponse* resp = nullptr) {
    ClientContext ctx;
    v1::PrepareSnapshotRequest req;
    req.set_snapshotter("nydus");
    req.set_key(key);
    req.set_parent(parent);
    v1::PrepareSnapshotResponse local;
    return stub_->Prepare(&ctx, req, resp != nullptr ? resp : &local);
  }

  ::grpc::Status Commit(const std::string& name, const std::string& key,
                        const std::map<std::string, std::string>& labels = {}) {
    ClientContext ctx;
    v1::CommitSnapshotRequest req;
    req.set_name(name);
    req.set_key(key);
    for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
    google::protobuf::Empty e;
    return stub_->Commit(&ctx, req, &e);
  }

  rfs::testing::TempDir tmp_;
  base::MetricsRegistry metrics_;
  std::unique_ptr<Snapshotter> sn_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<::grpc::Channel> channel_;
  std::unique_ptr<v1::Snapshots::Stub> stub_;
};

TEST_F(GrpcServiceTest, SocketIsGroupOnlyAndDirCreated) {
  struct stat st;
  ASSERT_EQ(::lstat(options_.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  ASSERT_EQ(::stat(tmp_.Sub("run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(GrpcServiceTest, LifecycleOverTheWire) {
  v1::PrepareSnapshotResponse prep;
  ASSERT_TRUE(Prepare("ns/1/a", "", &prep).ok());
  ASSERT_EQ(prep.mounts_size(), 1);
  EXPECT_EQ(prep.mounts(0).type(), "bind");
  EXPECT_EQ(prep.mounts(0).source(), tmp_.Sub("root/snapshots/1/fs"));
  EXPECT_EQ(prep.mounts(0).target(), "");
  EXPECT_EQ(prep.mounts(0).options_size(), 2);
  rfs::testing::WriteFileBytes(tmp_.Sub("root/snapshots/1/fs/f"), std::vector<uint8_t>(4096, 1));
  ASSERT_TRUE(Commit("ns/2/c", "ns/1/a", {{"containerd.io/snapshot.ref", "sha256:x"}}).ok());
  ASSERT_TRUE(Prepare("ns/3/b", "ns/2/c", &prep).ok());
  EXPECT_EQ(prep.mounts(0).type(), "overlay");
  EXPECT_EQ(prep.mounts(0).source(), "overlay");

  {
    ClientContext ctx;
    v1::MountsRequest req;
    req.set_key("ns/3/b");
    v1::MountsResponse resp;
    ASSERT_TRUE(stub_->Mounts(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.mounts(0).SerializeAsString(), prep.mounts(0).SerializeAsString());
  }
  {
    ClientContext ctx;
    v1::StatSnapshotRequest req;
    req.set_key("ns/2/c");
    v1::StatSnapshotResponse resp;
    ASSERT_TRUE(stub_->Stat(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.info().name(), "ns/2/c");
    EXPECT_EQ(resp.info().parent(), "");
    EXPECT_EQ(resp.info().kind(), v1::COMMITTED);
    EXPECT_EQ(resp.info().labels().at("containerd.io/snapshot.ref"), "sha256:x");
    EXPECT_GT(resp.info().created_at().seconds(), 1600000000);
    EXPECT_EQ(resp.info().created_at().SerializeAsString(),
              resp.info().updated_at().SerializeAsString());
  }
  {
    ClientContext ctx;
    v1::UsageRequest req;
    req.set_key("ns/2/c");
    v1::UsageResponse resp;
    ASSERT_TRUE(stub_->Usage(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.inodes(), 2);
    EXPECT_GE(resp.size(), 4096);
  }
  {
    ClientContext ctx;
    v1::UpdateSnapshotRequest req;
    req.mutable_info()->set_name("ns/3/b");
    req.mutable_info()->set_parent("ignored");
    (*req.mutable_info()->mutable_labels())["x"] = "1";
    req.mutable_update_mask()->add_paths("labels.x");
    v1::UpdateSnapshotResponse resp;
    ASSERT_TRUE(stub_->Update(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.info().labels().at("x"), "1");
    EXPECT_EQ(resp.info().parent(), "ns/2/c");
    EXPECT_EQ(resp.info().kind(), v1::ACTIVE);
  }
  {
    ClientContext ctx;
    v1::UpdateSnapshotRequest req;
    req.mutable_info()->set_name("ns/3/b");
    req.mutable_update_mask()->add_paths("parent");
    v1::UpdateSnapshotResponse resp;
    EXPECT_EQ(stub_->Update(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    ClientContext ctx;
    v1::RemoveSnapshotRequest req;
    req.set_key("ns/2/c");
    google::protobuf::Empty e;
    EXPECT_EQ(stub_->Remove(&ctx, req, &e).error_code(), StatusCode::FAILED_PRECONDITION);
  }
  for (const char* key : {"ns/3/b", "ns/2/c"}) {
    ClientContext ctx;
    v1::RemoveSnapshotRequest req;
    req.set_key(key);
    google::protobuf::Empty e;
    EXPECT_TRUE(stub_->Remove(&ctx, req, &e).ok()) << key;
  }
  {
    ClientContext ctx;
    v1::CleanupRequest req;
    google::protobuf::Empty e;
    EXPECT_TRUE(stub_->Cleanup(&ctx, req, &e).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("root/snapshots/1")));
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("root/snapshots/2")));
}

TEST_F(GrpcServiceTest, ErrorCodesCrossTheWireUnchanged) {
  ASSERT_TRUE(Prepare("a", "").ok());
  EXPECT_EQ(Prepare("a", "").error_code(), StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Prepare("b", "missing").error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(Prepare("b", "a").error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Prepare("../escape", "").error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit("c", "missing").error_code(), StatusCode::NOT_FOUND);
  ClientContext ctx;
  v1::MountsRequest req;
  req.set_key("nope");
  v1::MountsResponse resp;
  EXPECT_EQ(stub_->Mounts(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
  // Counted by method and code.
  std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(
      text.find("snapshotter_grpc_requests_total{method=\"Prepare\",code=\"already_exists\"} 1"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("snapshotter_snapshot_operation_elapsed_milliseconds_bucket"),
            std::string::npos);
}

TEST_F(GrpcServiceTest, ListStreamsInBatchesWithFilters) {
  constexpr int kCount = 250;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(Prepare("k" + std::to_string(i), "").ok());
  }
  ASSERT_TRUE(Commit("committed", "k0").ok());
  auto list = [&](const std::vector<std::string>& filters, std::vector<int>* batch_sizes) {
    ClientContext ctx;
    v1::ListSnapshotsRequest req;
    for (const auto& f : filters) req.add_filters(f);
    auto reader = stub_->List(&ctx, req);
    v1::ListSnapshotsResponse resp;
    int total = 0;
    while (reader->Read(&resp)) {
      if (batch_sizes != nullptr) batch_sizes->push_back(resp.info_size());
      total += resp.info_size();
    }
    ::grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return total;
  };
  std::vector<int> batches;
  EXPECT_EQ(list({}, &batches), kCount);
  EXPECT_EQ(batches, (std::vector<int>{100, 100, 50}));
  EXPECT_EQ(list({"kind==committed"}, nullptr), 1);
  EXPECT_EQ(list({"kind==active"}, nullptr), kCount - 1);
  EXPECT_EQ(list({"name==nothing"}, nullptr), 0);

  ClientContext ctx;
  v1::ListSnapshotsRequest req;
  req.add_filters("name==");
  auto reader = stub_->List(&ctx, req);
  v1::ListSnapshotsResponse resp;
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcServiceTest, HugeMessageRefusedAndServerSurvives) {
  ClientContext ctx;
  v1::PrepareSnapshotRequest req;
  req.set_key("huge");
  (*req.mutable_labels())["big"] = std::string(2 << 20, 'x');
  v1::PrepareSnapshotResponse resp;
  EXPECT_EQ(stub_->Prepare(&ctx, req, &resp).error_code(), StatusCode::RESOURCE_EXHAUSTED);
  // Within the message limit but beyond containerd's label limit.
  ClientContext ctx2;
  (*req.mutable_labels())["big"] = std::string(5000, 'x');
  EXPECT_EQ(stub_->Prepare(&ctx2, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Prepare("after", "").ok());
}

TEST_F(GrpcServiceTest, GarbageOnTheSocketDoesNotHurt) {
  for (int round = 0; round < 3; ++round) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk = round == 0 ? std::string(100000, '\xff')
                                  : "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + std::string(64, '\x01');
    (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    ::close(fd);
  }
  EXPECT_TRUE(Prepare("still-serving", "").ok());
}

TEST_F(GrpcServiceTest, SecondServerOnALiveSocketIsRefused) {
  auto second = Server::Start(options_, sn_.get(), &metrics_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), base::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Prepare("first-still-serves", "").ok());
  // A stale socket (nobody listening) is replaced.
  server_.reset();
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, options_.socket_path.data(), options_.socket_path.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  auto third = Server::Start(options_, sn_.get(), &metrics_);
  ASSERT_TRUE(third.ok()) << third.status();
  // Something that is not a socket is never replaced.
  third->reset();
  rfs::testing::WriteFileBytes(options_.socket_path, {1});
  auto fourth = Server::Start(options_, sn_.get(), &metrics_);
  EXPECT_EQ(fourth.status().code(), base::StatusCode::kFailedPrecondition);
}

TEST_F(GrpcServiceTest, ShutdownLetsInFlightListFinish) {
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(Prepare("k" + std::to_string(i), "").ok());
  ClientContext ctx;
  v1::ListSnapshotsRequest req;
  auto reader = stub_->List(&ctx, req);
  v1::ListSnapshotsResponse resp;
  ASSERT_TRUE(reader->Read(&resp));  // the stream is in flight
  std::thread stopper([&] { server_->Shutdown(std::chrono::seconds(10)); });
  int total = resp.info_size();
  while (reader->Read(&resp)) total += resp.info_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(total, 300);
  stopper.join();
}

}  // namespace
}  // namespace rfs::snapshotter::grpc
