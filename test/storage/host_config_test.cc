// hosts.toml parsing (the TOML subset and containerd's keys), the certs.d
// directory lookup and how a configuration becomes RegistryOptions.
#include "storage/host_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "storage/registry_backend.h"
#include "test/support/test_util.h"

namespace rfs::storage {
namespace {

using base::StatusCode;

constexpr char kFile[] = "/etc/certs.d/reg.example/hosts.toml";

HostConfig Parse(const std::string& text) {
  auto c = ParseHostsToml(text, kFile);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : HostConfig{};
}

// The error for `text`: kInvalidArgument naming the file and `line`.
std::string ErrorAt(const std::string& text, int line) {
  auto c = ParseHostsToml(text, kFile);
  EXPECT_FALSE(c.ok()) << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  const std::string where = std::string(kFile) + ":" + std::to_string(line) + ": ";
  EXPECT_NE(c.status().message().find(where), std::string::npos)
      << c.status() << " (want " << where << ")";
  return std::string(c.status().message());
}

TEST(HostConfigTest, ContainerdStyleFile) {
  HostConfig c = Parse(R"(# mirrors for reg.example
server = "https://reg.example:5000"   # the origin

[host."https://mirror-a.example"]
  capabilities = ["pull", "resolve"]
  ca = "a-ca.pem"

[host."http://10.0.0.7:5000"]
  capabilities = [
    "pull",   # blobs only
  ]
  skip_verify = true
  ca = ["/etc/ssl/one.pem", '/etc/ssl/two.pem', "/etc/ssl/one.pem"]
  dial_timeout = "3s"

[host."http://10.0.0.7:5000".header]
  x-custom = ["v"]

[host."mirror-c.example/prefix/"]
  override_path = true
  capabilities = ["push"]
)");
  EXPECT_EQ(c.server_scheme, "https");
  EXPECT_EQ(c.server_host, "reg.example:5000");
  ASSERT_EQ(c.hosts.size(), 3u);
  EXPECT_EQ(c.hosts[0].scheme, "https");
  EXPECT_EQ(c.hosts[0].host, "mirror-a.example");
  EXPECT_EQ(c.hosts[0].path, "/v2");
  EXPECT_TRUE(c.hosts[0].pull);
  EXPECT_TRUE(c.hosts[0].resolve);
  EXPECT_FALSE(c.hosts[0].push);
  EXPECT_FALSE(c.hosts[0].skip_verify);
  EXPECT_EQ(c.hosts[0].ca_files, std::vector<std::string>{"/etc/certs.d/reg.example/a-ca.pem"});
  EXPECT_EQ(c.hosts[0].line, 4);
  EXPECT_EQ(c.hosts[1].scheme, "http");
  EXPECT_EQ(c.hosts[1].host, "10.0.0.7:5000");
  EXPECT_TRUE(c.hosts[1].pull);
  EXPECT_FALSE(c.hosts[1].resolve);
  EXPECT_TRUE(c.hosts[1].skip_verify);
  EXPECT_EQ(c.hosts[1].ca_files, (std::vector<std::string>{"/etc/ssl/one.pem", "/etc/ssl/two.pem"}));
  EXPECT_EQ(c.hosts[2].scheme, "https");  // the default
  EXPECT_EQ(c.hosts[2].host, "mirror-c.example");
  EXPECT_EQ(c.hosts[2].path, "/prefix");  // override_path: the API root as given
  EXPECT_FALSE(c.hosts[2].pull);
  EXPECT_TRUE(c.hosts[2].push);
}

TEST(HostConfigTest, DefaultsEscapesAndOddSpacing) {
  HostConfig c = Parse(
      "[ host . \"https://m.example/base\" ]\r\n"
      "\"skip_verify\"=false\r\n"
      "ca='C:\\literal'\n"
      "[host.'https://n.example']\n"
      "num = -1_000\n"
      "empty = []\n"
      "esc = \"tab\\there \\\"q\\\" \\\\ \\U0001F600\"");
  ASSERT_EQ(c.hosts.size(), 2u);
  EXPECT_TRUE(c.server_host.empty());
  EXPECT_EQ(c.hosts[0].host, "m.example");
  EXPECT_EQ(c.hosts[0].path, "/base/v2");  // /v2 below a given path
  EXPECT_TRUE(c.hosts[0].pull && c.hosts[0].resolve && c.hosts[0].push);  // all by default
  EXPECT_EQ(c.hosts[0].ca_files, std::vector<std::string>{"/etc/certs.d/reg.example/C:\\literal"});
  // A literal string keeps its backslashes: \u0041 is no escape there, and
  // the host is rejected below only when it is not a valid host.
  EXPECT_FALSE(ParseHostsToml("[host.'https://x\\u0041.example']\n", kFile).ok());
  EXPECT_EQ(Parse("[host.\"https://x\\u0041.example\"]").hosts[0].host, "xA.example");
  EXPECT_TRUE(Parse("").hosts.empty());
  EXPECT_TRUE(Parse("# only a comment").hosts.empty());
}

TEST(HostConfigTest, EveryErrorNamesFileAndLine) {
  // Syntax.
  EXPECT_NE(ErrorAt("\n\nserver = \"https://a\n", 3).find("unterminated string"),
            std::string::npos);
  EXPECT_NE(ErrorAt("x = 'abc\n", 1).find("unterminated string"), std::string::npos);
  EXPECT_NE(ErrorAt("x = \"\"\"long\"\"\"\n", 1).find("multi-line"), std::string::npos);
  EXPECT_NE(ErrorAt("x = '''long'''\n", 1).find("multi-line"), std::string::npos);
  EXPECT_NE(ErrorAt("x = \"a\\qb\"\n", 1).find("unknown escape"), std::string::npos);
  EXPECT_NE(ErrorAt("x = \"\\u12\"\n", 1).find("escape"), std::string::npos);
  EXPECT_NE(ErrorAt("x = \"\\ud800\"\n", 1).find("unicode"), std::string::npos);
  EXPECT_NE(ErrorAt(std::string("x = \"a\x01\"\n"), 1).find("control character"),
            std::string::npos);
  EXPECT_NE(ErrorAt(std::string("# a\x00 comment\n", 14), 1).find("control character"),
            std::string::npos);
  EXPECT_NE(ErrorAt("\nx = { a = 1 }\n", 2).find("inline tables"), std::string::npos);
  EXPECT_NE(ErrorAt("[[host]]\n", 1).find("arrays of tables"), std::string::npos);
  EXPECT_NE(ErrorAt("x = [[\"a\"]]\n", 1).find("nested arrays"), std::string::npos);
  EXPECT_NE(ErrorAt("x = [\"a\",\n\"b\"\n", 3).find("unterminated array"), std::string::npos);
  EXPECT_NE(ErrorAt("x = [\"a\" \"b\"]\n", 1).find("expected ',' or ']'"), std::string::npos);
  EXPECT_NE(ErrorAt("x = 1.5\n", 1).find("only integers"), std::string::npos);
  EXPECT_NE(ErrorAt("x = 1979-05-27\n", 1).find("only integers"), std::string::npos);
  EXPECT_NE(ErrorAt("x = 99999999999999999999\n", 1).find("out of range"), std::string::npos);
  EXPECT_NE(ErrorAt("x = yes\n", 1).find("strings need quotes"), std::string::npos);
  EXPECT_NE(ErrorAt("x =\n", 1).find("expected a value"), std::string::npos);
  EXPECT_NE(ErrorAt("x \"a\"\n", 1).find("expected '='"), std::string::npos);
  EXPECT_NE(ErrorAt("= \"a\"\n", 1).find("in a key"), std::string::npos);
  EXPECT_NE(ErrorAt("x = \"a\" y = \"b\"\n", 1).find("one key per line"), std::string::npos);
  EXPECT_NE(ErrorAt("[host\n", 1).find("expected ']'"), std::string::npos);
  // Structure.
  EXPECT_NE(ErrorAt("x = 1\n\nx = 2\n", 3).find("duplicate key 'x' (first set at line 1)"),
            std::string::npos);
  EXPECT_NE(ErrorAt("[a]\n[b]\n[a]\n", 3).find("defined twice"), std::string::npos);
  EXPECT_NE(ErrorAt("a = 1\n[a]\n", 2).find("conflicts"), std::string::npos);
  EXPECT_NE(ErrorAt("[a.b]\n[a]\nb = 1\n", 3).find("also a table"), std::string::npos);
  EXPECT_NE(ErrorAt("a.b = 1\na = 2\n", 2).find("also a table"), std::string::npos);
  // containerd's keys with the wrong types or values.
  EXPECT_NE(ErrorAt("server = true\n", 1).find("server must be a URL"), std::string::npos);
  EXPECT_NE(ErrorAt("server = \"ftp://x\"\n", 1).find("http or https"), std::string::npos);
  EXPECT_NE(ErrorAt("server = \"https:///v2\"\n", 1).find("no host"), std::string::npos);
  EXPECT_NE(ErrorAt("host = \"https://m\"\n", 1).find("table"), std::string::npos);
  EXPECT_NE(ErrorAt("host.\"https://m\" = 1\n", 1).find("must be a table"), std::string::npos);
  EXPECT_NE(ErrorAt("[host.\"https://m n\"]\n", 1).find("bad character in the host"),
            std::string::npos);
  EXPECT_NE(ErrorAt("[host.\"https://m/a?b\"]\n", 1).find("bad character in the path"),
            std::string::npos);
  const std::string h = "[host.\"https://m\"]\n";
  EXPECT_NE(ErrorAt(h + "capabilities = \"pull\"\n", 2).find("array of strings"),
            std::string::npos);
  EXPECT_NE(ErrorAt(h + "capabilities = [\"pull\", 1]\n", 2).find("array of strings"),
            std::string::npos);
  EXPECT_NE(ErrorAt(h + "capabilities = [\"pull\",\n\"fetch\"]\n", 3).find("'fetch'"),
            std::string::npos);
  EXPECT_NE(ErrorAt(h + "skip_verify = \"true\"\n", 2).find("true or false"), std::string::npos);
  EXPECT_NE(ErrorAt(h + "override_path = 1\n", 2).find("true or false"), std::string::npos);
  EXPECT_NE(ErrorAt(h + "ca = 7\n", 2).find("file name"), std::string::npos);
  EXPECT_NE(ErrorAt(h + "ca = [\"\"]\n", 2).find("file name"), std::string::npos);
  std::string many;
  for (int i = 0; i < 65; ++i) many += "[host.\"https://m" + std::to_string(i) + "\"]\n";
  EXPECT_NE(ErrorAt(many, 65).find("more than 64 hosts"), std::string::npos);
}

TEST(HostConfigTest, ArbitraryBytesNeverCrash) {
  const std::string good = R"(server = "https://r.example"
[host."https://m.example"]
  capabilities = ["pull", "resolve"]
  ca = ["a.pem", 'b.pem']
  skip_verify = true
)";
  for (size_t n = 0; n <= good.size(); ++n) (void)ParseHostsToml(good.substr(0, n), kFile);
  for (size_t i = 0; i < good.size(); ++i) {
    for (char c : {'\0', '"', '\'', '[', ']', '=', '\n', '\\', '#', '.', '\xff'}) {
      std::string t = good;
      t[i] = c;
      (void)ParseHostsToml(t, kFile);
    }
  }
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(HostConfigTest, DirectoryLookupAndOptions) {
  testing::TempDir dir;
  const std::string d = dir.path();
  ::mkdir((d + "/reg.example:5000").c_str(), 0755);
  ::mkdir((d + "/other_5000_").c_str(), 0755);
  ::mkdir((d + "/docker.io").c_str(), 0755);
  ::mkdir((d + "/_default").c_str(), 0755);
  ::mkdir((d + "/empty.example").c_str(), 0755);
  Write(d + "/reg.example:5000/hosts.toml",
        "server = \"http://reg.example:5000\"\n"
        "[host.\"https://m1.example\"]\ncapabilities = [\"pull\"]\nca = \"ca.pem\"\n"
        "[host.\"http://reg.example:5000\"]\n"
        "[host.\"https://push.example\"]\ncapabilities = [\"push\"]\n"
        "[host.\"https://m2.example/mirror\"]\nskip_verify = true\n");
  Write(d + "/other_5000_/hosts.toml", "[host.\"https://o.example\"]\n");
  Write(d + "/docker.io/hosts.toml",
        "server = \"https://registry-1.docker.io\"\n[host.\"https://hub-mirror.example\"]\n");
  Write(d + "/_default/hosts.toml",
        "server = \"https://elsewhere.example\"\n[host.\"https://any.example\"]\n");

  RegistryOptions o;
  o.host = "reg.example:5000";
  o.repository = "app";
  ASSERT_TRUE(ConfigureMirrors(d, "reg.example:5000", &o).ok());
  EXPECT_TRUE(o.plain_http);  // from server
  EXPECT_EQ(o.host, "reg.example:5000");
  // Push-only hosts and the origin itself are no mirrors.
  ASSERT_EQ(o.mirrors.size(), 2u);
  EXPECT_EQ(o.mirrors[0].origin, "https://m1.example");
  EXPECT_EQ(o.mirrors[0].host, "m1.example");
  EXPECT_EQ(o.mirrors[0].path, "/v2");
  EXPECT_TRUE(o.mirrors[0].pull);
  EXPECT_FALSE(o.mirrors[0].resolve);
  EXPECT_EQ(o.mirrors[0].ca_files,
            std::vector<std::string>{d + "/reg.example:5000/ca.pem"});
  EXPECT_EQ(o.mirrors[1].origin, "https://m2.example");
  EXPECT_EQ(o.mirrors[1].path, "/mirror/v2");
  EXPECT_TRUE(o.mirrors[1].skip_verify);
  EXPECT_TRUE(o.mirrors[1].resolve);
  ASSERT_TRUE(RegistryBackend::Create(o).ok());

  // host:port spelled host_port_.
  auto other = LoadHostConfig(d, "other:5000");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_EQ(other->hosts.size(), 1u);
  EXPECT_EQ(other->hosts[0].host, "o.example");
  // Docker Hub under any of its names.
  for (const char* hub : {"docker.io", "registry-1.docker.io", "index.docker.io"}) {
    auto c = LoadHostConfig(d, hub);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_EQ(c->hosts.size(), 1u) << hub;
    EXPECT_EQ(c->hosts[0].host, "hub-mirror.example");
  }
  // A directory without hosts.toml: on to _default, whose server is ignored.
  for (const char* h : {"empty.example", "unknown.example"}) {
    RegistryOptions u;
    u.host = h;
    ASSERT_TRUE(ConfigureMirrors(d, h, &u).ok());
    EXPECT_EQ(u.host, h);
    ASSERT_EQ(u.mirrors.size(), 1u);
    EXPECT_EQ(u.mirrors[0].origin, "https://any.example");
  }
  // No directory configured, or none matching: no mirrors.
  RegistryOptions none;
  none.host = "x.example";
  ASSERT_TRUE(ConfigureMirrors("", "x.example", &none).ok());
  EXPECT_TRUE(none.mirrors.empty());
  ::unlink((d + "/_default/hosts.toml").c_str());
  auto c = LoadHostConfig(d, "unknown.example");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->hosts.empty());
  EXPECT_TRUE(c->file.empty());
  // Bad names and broken files.
  EXPECT_EQ(LoadHostConfig(d, "../etc").status().code(), StatusCode::kInvalidArgument);
  Write(d + "/other_5000_/hosts.toml", "[host.\"https://o.example\"\n");
  auto broken = LoadHostConfig(d, "other:5000");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find(d + "/other_5000_/hosts.toml:1: "),
            std::string::npos)
      << broken.status();
  Write(d + "/other_5000_/hosts.toml", std::string((1u << 20) + 1, '#'));
  EXPECT_NE(LoadHostConfig(d, "other:5000").status().message().find("larger than"),
            std::string::npos);
}

}  // namespace
}  // namespace rfs::storage
