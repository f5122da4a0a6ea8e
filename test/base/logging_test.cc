#include "base/logging.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace rfs::base {
namespace {

TEST(LoggingTest, RedactsCredentials) {
  const char* kSecret = "s3cr3tValue";
  const std::string cases[] = {
      std::string("Authorization: Bearer ") + kSecret,
      std::string("authorization: Basic ") + kSecret,
      std::string("password=") + kSecret + " user=bob",
      std::string("{\"password\": \"") + kSecret + "\"}",
      std::string("{\"identitytoken\":\"") + kSecret + "\"}",
      std::string("access_token=") + kSecret + "&expires_in=300",
      std::string("GET https://bob:") + kSecret + "@registry.local/v2/",
      std::string("auth: ") + kSecret,
      std::string("Secret=") + kSecret,
  };
  for (const std::string& c : cases) {
    std::string r = RedactSecrets(c);
    EXPECT_EQ(r.find(kSecret), std::string::npos) << c << " -> " << r;
    EXPECT_NE(r.find("***"), std::string::npos) << c << " -> " << r;
  }
  // Ordinary text is untouched.
  EXPECT_EQ(RedactSecrets("read 4096 bytes of blob abc at offset 12"),
            "read 4096 bytes of blob abc at offset 12");
  EXPECT_EQ(RedactSecrets("user=bob"), "user=bob");
}

TEST(LoggingTest, LogLinesPassThroughRedaction) {
  std::vector<std::string> lines;
  SetLogSink([&](LogLevel, std::string_view line) { lines.emplace_back(line); });
  RFS_LOG(kWarning) << "token fetch failed: token=abcdef123";
  RFS_LOG(kDebug) << "not shown at info level";
  SetLogSink(nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find("abcdef123"), std::string::npos);
  EXPECT_NE(lines[0].find("token fetch failed"), std::string::npos);
  EXPECT_NE(lines[0].find(" W "), std::string::npos);
}

TEST(LoggingTest, JsonLinesAreOneObjectEach) {
  std::vector<std::string> lines;
  SetLogSink([&](LogLevel, std::string_view line) { lines.emplace_back(line); });
  SetLogFormat(LogFormat::kJson);
  RFS_LOG(kError) << "quote \" backslash \\ newline\n tab\t ctl\x01 password=hunter2";
  SetLogFormat(LogFormat::kText);
  SetLogSink(nullptr);
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);  // throws (fails the test) if not JSON
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["msg"].get<std::string>().rfind("quote \" backslash \\ newline\n tab\t ctl\x01", 0),
            0u)
      << lines[0];
  EXPECT_EQ(lines[0].find("hunter2"), std::string::npos);
  EXPECT_EQ(j["source"].get<std::string>().rfind("logging_test.cc:", 0), 0u);
  EXPECT_EQ(j["time"].get<std::string>().size(), 27u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  LogFormat f;
  EXPECT_TRUE(ParseLogFormat("json", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("xml", &f));
}

TEST(LoggingTest, ParseLevel) {
  LogLevel l;
  EXPECT_TRUE(ParseLogLevel("debug", &l));
  EXPECT_EQ(l, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("warn", &l));
  EXPECT_EQ(l, LogLevel::kWarning);
  EXPECT_FALSE(ParseLogLevel("loud", &l));
}

}  // namespace
}  // namespace rfs::base
