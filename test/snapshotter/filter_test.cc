#include "snapshotter/filter.h"

#include <gtest/gtest.h>

#include <random>

namespace rfs::snapshotter {
namespace {

Info MakeInfo(std::string name, std::string parent, Kind kind, Labels labels) {
  Info i;
  i.name = std::move(name);
  i.parent = std::move(parent);
  i.kind = kind;
  i.labels = std::move(labels);
  return i;
}

bool Matches(const std::vector<std::string>& filters, const Info& info) {
  base::Result<Filter> f = Filter::Parse(filters);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() && f->Match(info);
}

TEST(FilterTest, EmptyMatchesEverything) {
  Info i = MakeInfo("a", "", Kind::kActive, {});
  EXPECT_TRUE(Matches({}, i));
  EXPECT_TRUE(Matches({""}, i));
}

TEST(FilterTest, FieldsAndKinds) {
  Info a = MakeInfo("a", "p", Kind::kActive, {{"containerd.io/gc.root", "check-walk"}, {"l", "2"}});
  EXPECT_TRUE(Matches({"kind==active"}, a));
  EXPECT_FALSE(Matches({"kind==view"}, a));
  EXPECT_TRUE(Matches({"name==a"}, a));
  EXPECT_TRUE(Matches({"parent==p"}, a));
  EXPECT_TRUE(Matches({"parent!=\"\""}, a));
  EXPECT_TRUE(Matches({"labels.l"}, a));
  EXPECT_FALSE(Matches({"labels.m"}, a));
  EXPECT_TRUE(Matches({"labels.l==2"}, a));
  EXPECT_TRUE(Matches({"kind==active,labels.\"containerd.io/gc.root\"==check-walk"}, a));
  EXPECT_FALSE(Matches({"kind==committed,labels.\"containerd.io/gc.root\"==check-walk"}, a));
  // OR across filter strings.
  EXPECT_TRUE(Matches({"name==zzz", "name==a"}, a));
  EXPECT_FALSE(Matches({"name==zzz", "name==yyy"}, a));
  // Unknown fields are never present; != of an absent value is true.
  EXPECT_FALSE(Matches({"nosuchfield"}, a));
  EXPECT_TRUE(Matches({"labels.absent!=x"}, a));
}

TEST(FilterTest, ContainerdRemoteLayerLookup) {
  // metadata/snapshot.go builds: chain id unquoted, parent quoted, "" for none.
  Info first =
      MakeInfo("sha256:abc", "", Kind::kCommitted, {{"containerd.io/snapshot.ref", "sha256:abc"}});
  EXPECT_TRUE(Matches({"labels.\"containerd.io/snapshot.ref\"==sha256:abc,parent==\"\""}, first));
  Info second = MakeInfo("sha256:def", "k8s.io/12/sha256:abc", Kind::kCommitted,
                         {{"containerd.io/snapshot.ref", "sha256:def"}});
  EXPECT_TRUE(Matches(
      {"labels.\"containerd.io/snapshot.ref\"==sha256:def,parent==\"k8s.io/12/sha256:abc\""},
      second));
  EXPECT_FALSE(Matches({"labels.\"containerd.io/snapshot.ref\"==sha256:def,parent==\"\""}, second));
}

TEST(FilterTest, DottedLabelKeysAndEscapes) {
  Info i = MakeInfo("x", "", Kind::kView, {{"a.b.c", "1"}, {"q\"k", "v\tw"}});
  EXPECT_TRUE(Matches({"labels.a.b.c==1"}, i));
  EXPECT_TRUE(Matches({"labels.\"a.b.c\"==1"}, i));
  EXPECT_TRUE(Matches({"labels.\"q\\\"k\"==\"v\\tw\""}, i));
  EXPECT_TRUE(Matches({"labels.\"q\\x22k\""}, i));
  EXPECT_TRUE(Matches({"  name  ==  x  "}, i));
}

TEST(FilterTest, Regexp) {
  Info i = MakeInfo("k8s.io/3/sha256:abc", "", Kind::kCommitted, {});
  EXPECT_TRUE(Matches({"name~=sha256"}, i));
  // As in containerd, only Go escapes are legal inside quotes: a regexp's
  // backslash is written "\\", the quote character "\/".
  EXPECT_TRUE(Matches({"name~=/^k8s\\\\.io\\/[0-9]+\\//"}, i));
  EXPECT_EQ(Filter::Parse({"name~=/^k8s\\.io/"}).status().code(),
            base::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Matches({"name~=|abc$|"}, i));
  EXPECT_FALSE(Matches({"name~=\"^abc\""}, i));
}

TEST(FilterTest, SyntaxErrorsAreInvalidArgument) {
  for (const char* bad :
       {"name==", "name=", "name==a,", ",", "labels.", "name==/a/", "=x", "name==\"unterminated",
        "name==a b", "name~=/(/", "labels.\"x\\q\"", "name<>a"}) {
    base::Result<Filter> f = Filter::Parse({bad});
    EXPECT_FALSE(f.ok()) << bad;
    if (!f.ok()) {
      EXPECT_EQ(f.status().code(), base::StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(FilterTest, HugeFilterRejected) {
  std::string big = "name==" + std::string(100000, 'a');
  base::Result<Filter> f = Filter::Parse({big});
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), base::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rfs::snapshotter

namespace rfs::snapshotter {
namespace {

// Random strings over the grammar's characters: Parse either succeeds or
// says InvalidArgument, and a parsed filter can always be matched.
TEST(FilterTest, RandomInputNeverCrashes) {
  const std::string alphabet = "abl.s\"/|\\,=!~ x_0:\t[(*+?";
  std::mt19937 rng(20261123);
  Info info = MakeInfo("a", "b", Kind::kActive, {{"a.b", "x"}, {"l", ""}});
  int parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    size_t len = rng() % 24;
    for (size_t j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    base::Result<Filter> f = Filter::Parse({s});
    if (f.ok()) {
      ++parsed;
      (void)f->Match(info);
    } else {
      EXPECT_EQ(f.status().code(), base::StatusCode::kInvalidArgument) << s;
    }
  }
  EXPECT_GT(parsed, 100);  // the generator does reach valid filters
}

}  // namespace
}  // namespace rfs::snapshotter
