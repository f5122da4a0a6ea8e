// Checks our BLAKE3 against the b3sum tool (the reference implementation's
// command line) at test time, on every code path this CPU can run. Expected
// digests are never written into the test: b3sum computes them from the same
// seeded-random inputs.
#include "base/blake3.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "gtest/gtest.h"

extern char** environ;

namespace rfs::base {
namespace {

// Sizes around the block (64) and chunk (1024) boundaries, odd numbers of
// chunks (uneven trees), and large inputs that take the many-chunk path.
constexpr size_t kSizes[] = {0,    1,    63,   64,   65,   1023,  1024,      1025,    2048,
                             2049, 3072, 3073, 4096, 8193, 31744, 65536 + 1, 1 << 20, 16 << 20};
constexpr size_t kXofLen = 100;

std::vector<uint8_t> RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::string Hex(ByteSpan b) { return ToHex(b); }

template <size_t N>
std::string Hex(const std::array<uint8_t, N>& a) {
  return ToHex(ByteSpan(a.data(), a.size()));
}

std::string HashHex(ByteSpan data, size_t out_len) {
  Blake3Hasher h;
  h.Update(data);
  std::vector<uint8_t> out(out_len);
  h.Finalize(MutableByteSpan(out));
  return Hex(out);
}

// Runs argv (no shell, so paths need no quoting) with extra environment
// entries; returns its standard output, or nullopt if it did not exit 0.
std::optional<std::string> RunProgram(const std::vector<std::string>& argv,
                                      const std::vector<std::string>& extra_env = {}) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Extra entries first: lookups take the first match.
  std::vector<char*> env;
  for (const auto& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string out;
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fds[0]);
  if (rc != 0) return std::nullopt;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

// Path of an executable b3sum on PATH (or in /usr/bin), or empty.
std::string FindB3sum() {
  std::string path_env = "/usr/bin";
  if (const char* p = std::getenv("PATH"); p != nullptr) path_env = std::string(p) + ":/usr/bin";
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string::npos) end = path_env.size();
    std::string candidate = path_env.substr(start, end - start) + "/b3sum";
    if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// A private directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/blake3_test.XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool WriteFile(const std::string& path, ByteSpan data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(f);
}

// Output of b3sum --no-names [--length N] on a file, without the newline.
std::optional<std::string> B3sum(const std::string& b3sum, const std::string& file,
                                 std::optional<size_t> length = std::nullopt) {
  std::vector<std::string> argv = {b3sum, "--no-names"};
  if (length) {
    argv.push_back("--length");
    argv.push_back(std::to_string(*length));
  }
  argv.push_back(file);
  auto out = RunProgram(argv);
  if (!out) return std::nullopt;
  while (!out->empty() && (out->back() == '\n' || out->back() == '\r')) out->pop_back();
  return out;
}

// Makes every code path current in turn; restores the starting one.
class ImplementationScope {
 public:
  ImplementationScope() : saved_(Blake3Hasher::Implementation()) {}
  ~ImplementationScope() { SetBlake3ImplementationForTesting(saved_); }
  ImplementationScope(const ImplementationScope&) = delete;
  ImplementationScope& operator=(const ImplementationScope&) = delete;

 private:
  std::string saved_;
};

struct Case {
  std::vector<uint8_t> data;
  std::string file;
  std::string digest;  // b3sum, 32 bytes
  std::string xof;     // b3sum --length kXofLen
};

// Inputs and b3sum results shared by the tests (b3sum on 16 MiB is run once).
class Blake3VsB3sumTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    b3sum_ = new std::string(FindB3sum());
    if (b3sum_->empty()) return;
    dir_ = new TempDir();
    cases_ = new std::vector<Case>();
    if (dir_->path().empty()) return;
    for (size_t size : kSizes) {
      Case c;
      c.data = RandomBytes(size, static_cast<uint32_t>(0xB1A3E + size));
      c.file = dir_->path() + "/in_" + std::to_string(size);
      if (!WriteFile(c.file, c.data)) return;
      auto digest = B3sum(*b3sum_, c.file);
      auto xof = B3sum(*b3sum_, c.file, kXofLen);
      if (!digest || !xof) return;
      c.digest = *digest;
      c.xof = *xof;
      cases_->push_back(std::move(c));
    }
  }
  static void TearDownTestSuite() {
    delete cases_;
    delete dir_;
    delete b3sum_;
    cases_ = nullptr;
    dir_ = nullptr;
    b3sum_ = nullptr;
  }
  void SetUp() override {
    if (b3sum_->empty()) GTEST_SKIP() << "b3sum not found on PATH or in /usr/bin; skipping";
    ASSERT_FALSE(dir_->path().empty()) << "mkdtemp failed: " << std::strerror(errno);
    ASSERT_EQ(cases_->size(), std::size(kSizes)) << "writing inputs or running b3sum failed";
  }

  static std::string* b3sum_;
  static TempDir* dir_;
  static std::vector<Case>* cases_;
};

std::string* Blake3VsB3sumTest::b3sum_ = nullptr;
TempDir* Blake3VsB3sumTest::dir_ = nullptr;
std::vector<Case>* Blake3VsB3sumTest::cases_ = nullptr;

TEST_F(Blake3VsB3sumTest, B3sumOutputLooksLikeADigest) {
  for (const Case& c : *cases_) {
    EXPECT_EQ(c.digest.size(), 64u) << c.digest;
    EXPECT_EQ(c.xof.size(), 2 * kXofLen) << c.xof;
    // The extendable output starts with the 32-byte digest.
    EXPECT_EQ(c.xof.substr(0, 64), c.digest);
  }
}

TEST_F(Blake3VsB3sumTest, OneShotOnEveryImplementation) {
  ImplementationScope scope;
  for (std::string_view impl : Blake3Implementations()) {
    ASSERT_TRUE(SetBlake3ImplementationForTesting(impl));
    ASSERT_EQ(Blake3Hasher::Implementation(), impl);
    for (const Case& c : *cases_) {
      EXPECT_EQ(Hex(Blake3(c.data)), c.digest) << impl << " size " << c.data.size();
      EXPECT_EQ(HashHex(c.data, kXofLen), c.xof) << impl << " size " << c.data.size();
    }
  }
}

TEST_F(Blake3VsB3sumTest, ImplementationsAgree) {
  ImplementationScope scope;
  std::map<size_t, std::string> portable;
  ASSERT_TRUE(SetBlake3ImplementationForTesting("portable"));
  for (const Case& c : *cases_) portable[c.data.size()] = HashHex(c.data, 200);
  for (std::string_view impl : Blake3Implementations()) {
    ASSERT_TRUE(SetBlake3ImplementationForTesting(impl));
    for (const Case& c : *cases_) {
      EXPECT_EQ(HashHex(c.data, 200), portable[c.data.size()]) << impl << " size " << c.data.size();
    }
  }
}

TEST_F(Blake3VsB3sumTest, OneByteAtATime) {
  for (const Case& c : *cases_) {
    if (c.data.size() > 8193) continue;
    Blake3Hasher h;
    for (uint8_t b : c.data) h.Update(ByteSpan(&b, 1));
    EXPECT_EQ(Hex(h.Finalize()), c.digest) << "size " << c.data.size();
  }
}

TEST_F(Blake3VsB3sumTest, FixedSplitSizes) {
  // Splits at and around block and chunk boundaries, including pieces that
  // end exactly on a chunk so that the next piece finishes that chunk.
  ImplementationScope scope;
  for (std::string_view impl : Blake3Implementations()) {
    ASSERT_TRUE(SetBlake3ImplementationForTesting(impl));
    for (size_t piece : {63, 64, 65, 1000, 1024, 1025, 3000, 4096, 65536, 100000}) {
      for (const Case& c : *cases_) {
        Blake3Hasher h;
        for (size_t pos = 0; pos < c.data.size(); pos += piece) {
          h.Update(ByteSpan(c.data).subspan(pos, std::min(piece, c.data.size() - pos)));
        }
        EXPECT_EQ(Hex(h.Finalize()), c.digest)
            << impl << " piece " << piece << " size " << c.data.size();
      }
    }
  }
}

TEST_F(Blake3VsB3sumTest, RandomSplitSizes) {
  ImplementationScope scope;
  std::mt19937 rng(12345);
  for (std::string_view impl : Blake3Implementations()) {
    ASSERT_TRUE(SetBlake3ImplementationForTesting(impl));
    for (const Case& c : *cases_) {
      for (int trial = 0; trial < 3; ++trial) {
        Blake3Hasher h;
        size_t pos = 0;
        while (pos < c.data.size()) {
          // Mostly small or chunk-sized pieces, sometimes large ones.
          size_t piece;
          switch (rng() % 4) {
            case 0:
              piece = 1 + rng() % 100;
              break;
            case 1:
              piece = 900 + rng() % 300;
              break;
            case 2:
              piece = 1 + rng() % 20000;
              break;
            default:
              piece = 1 + rng() % 600000;
              break;
          }
          piece = std::min(piece, c.data.size() - pos);
          h.Update(ByteSpan(c.data).subspan(pos, piece));
          pos += piece;
        }
        EXPECT_EQ(Hex(h.Finalize()), c.digest) << impl << " size " << c.data.size();
      }
    }
  }
}

TEST_F(Blake3VsB3sumTest, FinalizeDoesNotChangeState) {
  for (const Case& c : *cases_) {
    const size_t half = c.data.size() / 2;
    Blake3Hasher h;
    h.Update(ByteSpan(c.data).first(half));
    const auto first = h.Finalize();
    EXPECT_EQ(h.Finalize(), first) << "size " << c.data.size();
    EXPECT_EQ(first, Blake3(ByteSpan(c.data).first(half))) << "size " << c.data.size();
    // Input after a Finalize continues the same message.
    h.Update(ByteSpan(c.data).subspan(half));
    EXPECT_EQ(Hex(h.Finalize()), c.digest) << "size " << c.data.size();
    EXPECT_EQ(Hex(h.Finalize()), c.digest) << "size " << c.data.size();
  }
}

TEST_F(Blake3VsB3sumTest, ResetStartsOver) {
  const Case& c = cases_->back();
  Blake3Hasher h;
  h.Update(c.data);
  h.Reset();
  EXPECT_EQ(Hex(h.Finalize()), cases_->front().digest);  // the empty input
  h.Update(c.data);
  EXPECT_EQ(Hex(h.Finalize()), c.digest);
}

TEST_F(Blake3VsB3sumTest, XofLengths) {
  // Output lengths around the 64-byte output block, on inputs that end in a
  // single chunk, in a parent node, and with an empty input.
  for (size_t index : {size_t{0}, size_t{7}, size_t{13}}) {
    const Case& c = (*cases_)[index];
    for (size_t len : {1, 31, 32, 33, 63, 64, 65, 128, 1000, 4097}) {
      auto expected = B3sum(*b3sum_, c.file, len);
      ASSERT_TRUE(expected.has_value());
      EXPECT_EQ(HashHex(c.data, len), *expected) << "size " << c.data.size() << " len " << len;
    }
  }
  // A zero-length output writes nothing.
  Blake3Hasher h;
  h.Finalize(MutableByteSpan());
}

TEST(Blake3Test, ImplementationNames) {
  const auto names = Blake3Implementations();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "portable");
  EXPECT_FALSE(SetBlake3ImplementationForTesting("no-such-path"));
  const std::string current = Blake3Hasher::Implementation();
  EXPECT_NE(std::find(names.begin(), names.end(), current), names.end()) << current;
  std::printf("blake3 implementations available:");
  for (auto n : names) std::printf(" %.*s", static_cast<int>(n.size()), n.data());
  std::printf("; default %s\n", current.c_str());
}

TEST(Blake3Test, ForcePortableEnvironment) {
  // Runs this test binary again with the variable set; the child checks the
  // choice made at startup.
  if (const char* want = std::getenv("RFS_BLAKE3_TEST_EXPECT_IMPL"); want != nullptr) {
    EXPECT_STREQ(Blake3Hasher::Implementation(), want);
    return;
  }
  auto out = RunProgram({"/proc/self/exe", "--gtest_filter=Blake3Test.ForcePortableEnvironment"},
                        {"RFS_BLAKE3_FORCE_PORTABLE=1", "RFS_BLAKE3_TEST_EXPECT_IMPL=portable"});
  EXPECT_TRUE(out.has_value()) << "child run failed";
}

}  // namespace
}  // namespace rfs::base
