// rafs-snapshotter's YAML config and its metrics/health endpoint.
#include "cmd/rafs-snapshotter/config.h"

#include <gtest/gtest.h>

#include "cmd/common/metrics_http.h"
#include "test/support/test_util.h"

namespace rfs::cmd {
namespace {

using base::StatusCode;

TEST(ConfigTest, DefaultsAreDocumentedValues) {
  Config c = DefaultConfig();
  EXPECT_EQ(c.snapshotter.root, "/var/lib/containerd/io.containerd.snapshotter.v1.nydus");
  EXPECT_EQ(c.server.socket_path, "/run/containerd-nydus/containerd-nydus-grpc.sock");
  EXPECT_EQ(c.server.socket_mode, 0660u);
  EXPECT_EQ(c.server.socket_gid, static_cast<gid_t>(-1));
  EXPECT_EQ(c.server.max_message_bytes, 16 << 20);
  EXPECT_EQ(c.metrics_address, "127.0.0.1:9110");
  EXPECT_EQ(c.log_level, base::LogLevel::kInfo);
  EXPECT_FALSE(c.snapshotter.sync_remove);
  EXPECT_FALSE(c.snapshotter.overlay.index_off);
  EXPECT_EQ(c.shutdown_grace, std::chrono::seconds(10));
  // An empty file is all defaults.
  auto empty = ParseConfig("", "empty.yaml");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->snapshotter.root, c.snapshotter.root);
}

TEST(ConfigTest, ContainerdAddress) {
  EXPECT_EQ(DefaultConfig().containerd_address, "/run/containerd/containerd.sock");
  auto c = ParseConfig("containerd_address: /srv/containerd.sock", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->containerd_address, "/srv/containerd.sock");
  c = ParseConfig("containerd_address: unix:///srv/c.sock", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->containerd_address, "unix:///srv/c.sock");
  c = ParseConfig("containerd_address: \"\"", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->containerd_address.empty());
  for (const char* bad : {"containerd_address: relative.sock", "containerd_address: [a]",
                          "containerd_address: \"unix:\""}) {
    auto r = ParseConfig(bad, "t.yaml");
    ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("key \"containerd_address\""), std::string::npos)
        << r.status();
  }
  // The RAFS manager asks containerd there for images whose labels name none.
  rfs::testing::TempDir tmp;
  c = ParseConfig("containerd_address: " + tmp.Sub("containerd.sock"), "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  auto o = RafsManagerOptionsFrom(*c, &base::MetricsRegistry::Global());
  ASSERT_TRUE(o.resolve_image_ref);
  auto ref =
      o.resolve_image_ref({{"containerd.io/snapshot.ref", "sha256:" + std::string(64, 'a')}});
  EXPECT_EQ(ref.status().code(), StatusCode::kUnavailable) << ref.status();
  EXPECT_NE(ref.status().message().find(tmp.Sub("containerd.sock")), std::string::npos)
      << ref.status();
  c = ParseConfig("containerd_address: \"\"", "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(RafsManagerOptionsFrom(*c, &base::MetricsRegistry::Global()).resolve_image_ref);
}

TEST(ConfigTest, EveryKeyParsed) {
  auto c = ParseConfig(R"(
version: 1
root: /var/lib/x
address: /run/x.sock
grpc: {socket_mode: "0600", socket_gid: 42, max_message_bytes: 65536, shutdown_grace_seconds: 3}
log: {level: debug, format: json}
metrics: {address: "[::1]:9999"}
snapshot:
  sync_remove: true
  overlay_index_off: true
  overlay_userxattr: true
  overlay_volatile: true
)",
                       "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->snapshotter.root, "/var/lib/x");
  EXPECT_EQ(c->server.socket_path, "/run/x.sock");
  EXPECT_EQ(c->server.socket_mode, 0600u);
  EXPECT_EQ(c->server.socket_gid, 42u);
  EXPECT_EQ(c->server.max_message_bytes, 65536);
  EXPECT_EQ(c->shutdown_grace, std::chrono::seconds(3));
  EXPECT_EQ(c->log_level, base::LogLevel::kDebug);
  EXPECT_EQ(c->log_format, base::LogFormat::kJson);
  EXPECT_EQ(DefaultConfig().log_format, base::LogFormat::kText);
  EXPECT_EQ(c->metrics_address, "[::1]:9999");
  EXPECT_TRUE(c->snapshotter.sync_remove);
  EXPECT_TRUE(c->snapshotter.overlay.index_off);
  EXPECT_TRUE(c->snapshotter.overlay.userxattr);
  EXPECT_TRUE(c->snapshotter.overlay.volatile_all);
  EXPECT_TRUE(ParseConfig("metrics: {address: \"\"}", "t")->metrics_address.empty());
}

TEST(ConfigTest, ErrorsNameTheKeyAndValue) {
  struct Case {
    const char* yaml;
    const char* want;  // substring of the message
  } cases[] = {
      {"snapshot: {sync_remov: true}", "unknown key \"snapshot.sync_remov\""},
      {"bogus: 1", "unknown key \"bogus\""},
      {"version: 2", "key \"version\": value 2 is outside 1..1"},
      {"root: relative/dir", "key \"root\": \"relative/dir\" is not an absolute path"},
      {"grpc: {socket_mode: \"0999\"}", "key \"grpc.socket_mode\": \"0999\" is not an octal mode"},
      {"grpc: {max_message_bytes: lots}",
       "key \"grpc.max_message_bytes\": expected an integer, got \"lots\""},
      {"log: {level: loud}", "key \"log.level\": \"loud\" is not debug, info, warn or error"},
      {"log: {format: xml}", "key \"log.format\": \"xml\" is not text or json"},
      {"metrics: {address: 9110}", "key \"metrics.address\": \"9110\" is not host:port"},
      {"metrics: {address: \"h:70000\"}", "port 1..65535"},
      {"snapshot: {sync_remove: yes please}",
       "key \"snapshot.sync_remove\": expected true or false"},
      {"snapshot: [1, 2]", "key \"snapshot\": expected a map, got a list"},
      {"root: [a]", "key \"root\": expected a string, got a list"},
      {"- just\n- a list", "the document must be a map"},
      {"root: /x\n  bad: indent", "line 2"},
  };
  for (const Case& c : cases) {
    auto r = ParseConfig(c.yaml, "f.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << c.yaml << " -> " << r.status().message();
    EXPECT_EQ(r.status().message().rfind("config f.yaml", 0), 0u) << r.status().message();
  }
  EXPECT_EQ(LoadConfig("/nonexistent/rafs.yaml").status().code(), StatusCode::kNotFound);
}

TEST(ConfigTest, RafsAndRegistryKeys) {
  Config d = DefaultConfig();
  EXPECT_TRUE(d.rafs.enable);
  EXPECT_EQ(d.rafs.prefetch, "table");
  EXPECT_EQ(d.rafs.cache_max_bytes, 0u);
  auto o = RafsManagerOptionsFrom(d, &base::MetricsRegistry::Global());
  EXPECT_EQ(o.cache_dir, d.snapshotter.root + "/cache");
  EXPECT_EQ(o.snapshots_dir, d.snapshotter.root + "/snapshots");

  auto c = ParseConfig(R"(
root: /r
rafs:
  enable: false
  cache_dir: /c
  cache_max_size: 2G
  fuse_threads: 3
  read_timeout_seconds: 7
  prefetch: all
  prefetch_threads: 4
  prefetch_bandwidth: 10M
registry:
  plain_http: ["127.0.0.1:5000", "localhost:5001"]
  insecure: [reg.example]
  ca_file: /ca.pem
  config_path: /etc/containerd/certs.d
  docker_config: /dc.json
  request_timeout_seconds: 9
)",
                       "t.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->rafs.enable);
  EXPECT_EQ(c->rafs.cache_max_bytes, 2ull << 30);
  EXPECT_EQ(c->rafs.prefetch_bandwidth, 10ull << 20);
  o = RafsManagerOptionsFrom(*c, &base::MetricsRegistry::Global());
  EXPECT_EQ(o.cache_dir, "/c");
  EXPECT_EQ(o.mount.threads, 3);
  EXPECT_EQ(o.mount.read_timeout, std::chrono::seconds(7));
  EXPECT_EQ(o.mount.prefetch, rafs::fs::PrefetchPolicy::kAll);
  EXPECT_EQ(o.mount.prefetch_options.threads, 4);
  EXPECT_EQ(o.plain_http_hosts, (std::vector<std::string>{"127.0.0.1:5000", "localhost:5001"}));
  EXPECT_EQ(o.insecure_hosts, (std::vector<std::string>{"reg.example"}));
  EXPECT_EQ(o.ca_file, "/ca.pem");
  EXPECT_EQ(o.hosts_dir, "/etc/containerd/certs.d");
  EXPECT_EQ(o.docker_config, "/dc.json");
  EXPECT_EQ(o.request_timeout, std::chrono::seconds(9));

  for (const char* bad : {"rafs: {prefetch: some}", "rafs: {cache_max_size: lots}",
                          "rafs: {cache_dir: rel}", "registry: {plain_http: host}",
                          "rafs: {fuse_threads: 0}", "registry: {bogus: 1}"}) {
    auto r = ParseConfig(bad, "f.yaml");
    EXPECT_FALSE(r.ok()) << bad;
  }
}

// docs/rafs-snapshotter.md shows the defaults: its first yaml block is
// exactly --print-default-config.
TEST(ConfigTest, DocsShowTheDefaults) {
  const std::string docs = std::string(RFS_SOURCE_DIR) + "/docs/rafs-snapshotter.md";
  auto bytes = rfs::testing::ReadFileBytes(docs);
  const std::string text(bytes.begin(), bytes.end());
  const size_t start = text.find("```yaml\n");
  ASSERT_NE(start, std::string::npos) << docs;
  const size_t end = text.find("```", start + 8);
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(text.substr(start + 8, end - start - 8), std::string(kDefaultConfigYaml))
      << "update the yaml block in " << docs << " from rafs-snapshotter --print-default-config";
}

TEST(ConfigTest, LoadFromFile) {
  rfs::testing::TempDir tmp;
  std::string text = "root: /srv/r\n";
  rfs::testing::WriteFileBytes(tmp.Sub("c.yaml"), std::vector<uint8_t>(text.begin(), text.end()));
  auto c = LoadConfig(tmp.Sub("c.yaml"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->snapshotter.root, "/srv/r");
}

TEST(MetricsHttpTest, MetricsAndHealth) {
  if (!rfs::testing::HaveCommand("curl")) GTEST_SKIP() << "curl is not installed";
  rfs::testing::TempDir tmp;
  snapshotter::Snapshotter::Options o;
  o.root = tmp.Sub("root");
  o.in_memory_store = true;
  auto sn = snapshotter::Snapshotter::Open(o);
  ASSERT_TRUE(sn.ok());
  ASSERT_TRUE((*sn)->Prepare("a", "", {}).ok());
  ASSERT_TRUE((*sn)->Commit("c", "a", {}).ok());
  ASSERT_TRUE((*sn)->View("v", "c", {}).ok());
  base::MetricsRegistry metrics;
  // Port 0 is refused by the config; find a free port by trying a range.
  std::unique_ptr<MetricsHttpServer> http;
  int port = 0;
  for (int p = 39110; p < 39200 && http == nullptr; ++p) {
    auto h = MetricsHttpServer::Start("127.0.0.1:" + std::to_string(p), &metrics,
                                      SnapshotterMetricsHooks(sn->get(), &metrics));
    if (h.ok()) {
      http = std::move(*h);
      port = p;
    }
  }
  ASSERT_NE(http, nullptr);
  std::string out;
  std::string base = "curl -fsS http://127.0.0.1:" + std::to_string(port);
  ASSERT_EQ(rfs::testing::RunCommand(base + "/healthz", &out), 0);
  EXPECT_EQ(out, "ok\n");
  out.clear();
  ASSERT_EQ(rfs::testing::RunCommand(base + "/v1/metrics", &out), 0);
  EXPECT_NE(out.find("snapshotter_snapshots{kind=\"committed\"} 1"), std::string::npos) << out;
  EXPECT_NE(out.find("snapshotter_snapshots{kind=\"view\"} 1"), std::string::npos);
  EXPECT_NE(out.find("snapshotter_snapshots{kind=\"active\"} 0"), std::string::npos);
  EXPECT_NE(out.find("snapshotter_memory_usage_kilobytes"), std::string::npos);
  EXPECT_NE(rfs::testing::RunCommand(base + "/nothing-here 2>/dev/null"), 0);
  // A second server on the same address is refused, not silently shared.
  auto again = MetricsHttpServer::Start("127.0.0.1:" + std::to_string(port), &metrics,
                                        SnapshotterMetricsHooks(sn->get(), &metrics));
  EXPECT_FALSE(again.ok());
}

}  // namespace
}  // namespace rfs::cmd
