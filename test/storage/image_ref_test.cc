// Image reference parsing: what is accepted, how it is split, and that every
// malformed reference is a clear kInvalidArgument.
#include "storage/image_ref.h"

#include <gtest/gtest.h>

namespace rfs::storage {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ImageRefTest, SplitsHostRepositoryTagAndDigest) {
  struct Case {
    std::string in, host, repo, tag, digest;
  } cases[] = {
      {"127.0.0.1:5000/demo/app:v1", "127.0.0.1:5000", "demo/app", "v1", ""},
      {"127.0.0.1:5000/demo/app", "127.0.0.1:5000", "demo/app", "latest", ""},
      {"registry.example.com/a/b/c:1.0-rc_1", "registry.example.com", "a/b/c", "1.0-rc_1", ""},
      {"localhost/app", "localhost", "app", "latest", ""},
      {"localhost:1/x.y__z-w---q:TAG", "localhost:1", "x.y__z-w---q", "TAG", ""},
      {"[::1]:5000/app:t", "[::1]:5000", "app", "t", ""},
      {"r.io/app@sha256:" + kHex, "r.io", "app", "", "sha256:" + kHex},
      {"r.io/app:v2@sha256:" + kHex, "r.io", "app", "v2", "sha256:" + kHex},
      {"docker.io/busybox", "docker.io", "library/busybox", "latest", ""},
      {"docker.io/team/app:1", "docker.io", "team/app", "1", ""},
  };
  for (const Case& c : cases) {
    auto r = ParseImageReference(c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.status();
    EXPECT_EQ(r->host, c.host) << c.in;
    EXPECT_EQ(r->repository, c.repo) << c.in;
    EXPECT_EQ(r->tag, c.tag) << c.in;
    EXPECT_EQ(r->digest, c.digest) << c.in;
    EXPECT_EQ(r->Reference(), c.digest.empty() ? c.tag : c.digest) << c.in;
    // ToString parses back to the same reference.
    auto again = ParseImageReference(r->ToString());
    ASSERT_TRUE(again.ok()) << r->ToString();
    EXPECT_EQ(again->repository, r->repository);
    EXPECT_EQ(again->Reference(), r->Reference());
  }
  EXPECT_EQ(ParseImageReference("docker.io/busybox")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(ParseImageReference("index.docker.io/busybox")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(ParseImageReference("127.0.0.1:5000/a")->ApiHost(), "127.0.0.1:5000");
}

TEST(ImageRefTest, RejectsMalformedReferencesClearly) {
  struct Case {
    std::string in, says;
  } cases[] = {
      {"", "empty image reference"},
      {"busybox", "has no registry host"},
      {"library/busybox", "'library' is not a registry host"},
      {"registry://r.io/app", "must not have a scheme"},
      {"r.io/", "has no repository"},
      {"r.io/:tag", "has no repository"},
      {"r.io/App", "bad repository 'App'"},
      {"r.io/a//b", "bad repository"},
      {"r.io/a/", "bad repository"},
      {"r.io/-a", "bad repository"},
      {"r.io/a..b", "bad repository"},
      {"r.io/a___b", "bad repository"},
      {"r.io/a:", "bad tag ''"},
      {"r.io/a:-x", "bad tag"},
      {"r.io/a:" + std::string(129, 't'), "bad tag"},
      {"r.io/a:b:c", "bad repository"},
      {"r.io/a:t@", "has no algorithm"},
      {"r.io/a@sha512:" + kHex + kHex, "unsupported digest algorithm 'sha512'"},
      {"r.io/a@sha256:" + kHex.substr(1), "is not sha256:<64 lower-case hex digits>"},
      {"r.io/a@sha256:" + std::string(64, 'G'), "is not sha256"},
      {"r.io:0/a", "bad port"},
      {"r.io:65536/a", "bad port"},
      {"r.io:/a", "bad port"},
      {"r.io:12x/a", "bad port"},
      {"-r.io/a", "bad host"},
      {"r_io.com/a", "bad host"},
      {"[::1/a", "bad host"},
      {"r.io/a b", "white space"},
      {"r.io/a\n", "control characters"},
      {"r.io/" + std::string(300, 'a'), "longer than 255"},
  };
  for (const Case& c : cases) {
    auto r = ParseImageReference(c.in);
    ASSERT_FALSE(r.ok()) << "accepted '" << c.in << "'";
    EXPECT_EQ(r.status().code(), base::StatusCode::kInvalidArgument) << c.in;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos)
        << c.in << " -> " << r.status();
  }
}

}  // namespace
}  // namespace rfs::storage
