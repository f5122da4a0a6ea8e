// Small helpers for tests: temporary directories, file I/O, md5, the shared
// fixtures directory, running commands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rfs::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ../shared next to the repository (RFS_SHARED_DIR set by ctest).
std::string SharedDir();
std::string UpstreamFixture(const std::string& name);

std::vector<uint8_t> ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& data);
std::string Md5Hex(const std::vector<uint8_t>& data);

// Runs a shell command, returns its exit status; stdout in *out if given.
int RunCommand(const std::string& cmd, std::string* out = nullptr);
bool HaveCommand(const std::string& name);
bool IsRoot();

}  // namespace rfs::testing
