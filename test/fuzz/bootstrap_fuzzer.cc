// libFuzzer target: any byte string as a bootstrap. Opens it, walks the
// whole tree and exercises every metadata operation on every entry. The
// contract: a result or an error, never a crash, hang or unbounded
// allocation.
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"

namespace {

constexpr int kMaxEntries = 20000;

void Exercise(const rfs::rafs::meta::Metadata& m) {
  using rfs::rafs::meta::WalkEntry;
  int visited = 0;
  rfs::rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const WalkEntry& e) -> rfs::base::Status {
    if (++visited > kMaxEntries) return rfs::base::CancelledError("enough");
    (void)m.GetXattrs(e.ino);
    (void)m.CheckInode(e.ino);
    if (S_ISLNK(e.attr.mode)) (void)m.ReadLink(e.ino);
    if (S_ISREG(e.attr.mode)) {
      (void)m.Read(e.ino, 0, e.attr.size);
      (void)m.Read(e.ino, e.attr.size / 2, 4096);
    }
    if (S_ISDIR(e.attr.mode)) {
      (void)m.Lookup(e.ino, "a");
      (void)m.Lookup(e.ino, "..");
      (void)m.ReadDir(e.ino, 1, [](const auto&, uint64_t) { return true; });
    }
    if (!e.name.empty()) (void)m.Lookup(e.parent, e.name);
    return rfs::base::Status::Ok();
  };
  (void)rfs::rafs::meta::WalkTree(m, "/", cb);
  (void)m.PrefetchInodes();
  // Inode numbers that may not exist.
  for (uint64_t ino : {0ull, 2ull, 3ull, 128ull, 1ull << 40}) (void)m.GetAttr(ino);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  auto m = rfs::rafs::meta::OpenMetadata(std::move(bytes));
  if (m.ok()) Exercise(**m);
  return 0;
}
