#include "base/mountinfo.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace rfs::base {
namespace {

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                                      (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

std::vector<MountEntry> ReadMountTable() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype ...
    std::istringstream ls(line);
    std::string id, parent, devs, root, mp;
    if (!(ls >> id >> parent >> devs >> root >> mp)) continue;
    std::string f;
    while (ls >> f && f != "-") {
    }
    MountEntry e;
    e.mountpoint = Unescape(mp);
    ls >> e.fstype;
    if (std::sscanf(devs.c_str(), "%u:%u", &e.major, &e.minor) != 2) e.major = e.minor = 0;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace rfs::base
