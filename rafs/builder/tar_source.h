// Reads an OCI layer tarball (plain, gzip or zstd; detected by magic) into
// a builder tree, streaming each regular file's data into a BlobWriter as
// the archive is read (one pass, bounded memory). Uses libarchive, which
// parses ustar, GNU and pax headers (long names, xattrs, nanosecond times).
//
// Interpretation of hostile or unusual archives (none of it ever touches
// the local filesystem: the tree lives in memory and only the blob and
// bootstrap are written):
//   - leading "/" and "./" are stripped, empty and "." components ignored;
//   - a ".." component is an error; so is a path whose parent is a symlink
//     or any other non-directory in the tree built so far;
//   - missing parent directories are created with mode 0755, uid/gid 0,
//     mtime 0 (as upstream's tar builder does);
//   - a later entry with the same path replaces the earlier one (tar
//     extraction semantics); a directory over a directory keeps the
//     children and takes the new attributes;
//   - a hard link must name an entry that appears earlier in the archive;
//     links to missing or later entries are errors. Links to regular files
//     share one inode; links to other types become copies;
//   - names are stored byte for byte (non-UTF-8 names included); names over
//     255 bytes, symlink targets over 4096 bytes and unsupported xattr
//     namespaces are errors naming the entry;
//   - truncated archives and entries whose size runs past the end of the
//     archive are kDataLoss errors;
//   - a compressed archive whose data expands more than `max_expansion`
//     times (plus slack_bytes, 64 MiB) is refused as a decompression bomb;
//   - whiteouts (.wh.NAME, .wh..wh..opq, 0/0 char devices) are kept as
//     ordinary entries for a later merge (spec 8.3).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "rafs/builder/blob_writer.h"
#include "rafs/builder/tree.h"

namespace rfs::rafs::builder {

struct TarOptions {
  uint64_t max_expansion = 1000;
  uint64_t slack_bytes = uint64_t{64} << 20;
};

// True when `path` starts with a gzip or zstd magic or a tar header.
bool LooksLikeTarball(const std::string& path);

// Fills `root` (a fresh directory node) from the archive at `path`. Nodes
// that later entries replace are moved to `retired` so that pointers held
// by the BlobWriter stay valid until the build ends.
base::Status LoadTarball(const std::string& path, const TarOptions& options, BlobWriter* writer,
                         Node* root, std::vector<std::unique_ptr<Node>>* retired);

}  // namespace rfs::rafs::builder
