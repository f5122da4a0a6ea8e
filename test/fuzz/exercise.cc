#include "test/fuzz/exercise.h"

#include <sys/stat.h>

#include <vector>

#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"

namespace rfs::testing {

namespace {
constexpr int kMaxEntries = 20000;
}  // namespace

int ExerciseBootstrap(const uint8_t* data, size_t size) {
  auto m = rafs::meta::OpenMetadata(std::vector<uint8_t>(data, data + size));
  if (!m.ok()) return 0;
  const rafs::meta::Metadata& md = **m;
  int visited = 0;
  rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const rafs::meta::WalkEntry& e) -> base::Status {
    if (++visited > kMaxEntries) return base::CancelledError("enough");
    (void)md.GetXattrs(e.ino);
    (void)md.CheckInode(e.ino);
    if (S_ISLNK(e.attr.mode)) (void)md.ReadLink(e.ino);
    if (S_ISREG(e.attr.mode)) {
      (void)md.Read(e.ino, 0, e.attr.size);
      (void)md.Read(e.ino, e.attr.size / 2, 4096);
      (void)md.Read(e.ino, e.attr.size - 1, UINT64_MAX);
    }
    if (S_ISDIR(e.attr.mode)) {
      (void)md.Lookup(e.ino, "a");
      (void)md.Lookup(e.ino, "..");
      (void)md.ReadDir(e.ino, 1, [](const auto&, uint64_t) { return true; });
      (void)md.ReadDir(e.ino, (1ull << 12) | 3, [](const auto&, uint64_t) { return true; });
    }
    if (!e.name.empty()) (void)md.Lookup(e.parent, e.name);
    return base::Status::Ok();
  };
  (void)rafs::meta::WalkTree(md, "/", cb);
  (void)md.PrefetchInodes();
  // Inode numbers that may not exist.
  for (uint64_t ino : {uint64_t{0}, uint64_t{2}, uint64_t{3}, uint64_t{128}, uint64_t{1} << 40, UINT64_MAX}) (void)md.GetAttr(ino);
  return visited;
}

}  // namespace rfs::testing
