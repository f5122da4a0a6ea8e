#include "rafs/builder/builder.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <set>

#include "rafs/builder/blob_writer.h"
#include "rafs/builder/chunk_dict.h"
#include "rafs/builder/dir_source.h"
#include "rafs/builder/tar_source.h"
#include "rafs/builder/tree.h"
#include "rafs/builder/v6_writer.h"
#include "rafs/format/v6.h"

namespace rfs::rafs::builder {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Files in blob order: prefetch paths first (in their order; a directory
// means everything below it), then all others in sequence order.
std::vector<Node*> DataOrder(Node* root, const std::vector<std::string>& prefetch) {
  std::vector<Node*> order;
  std::set<Node*> taken;
  auto take = [&](Node* n) {
    if (n->is_reg() && n->link_to == nullptr && n->size > 0 && taken.insert(n).second) {
      order.push_back(n);
    }
  };
  for (const std::string& p : prefetch) {
    Node* n = root;
    size_t pos = 0;
    while (n != nullptr && pos < p.size()) {
      size_t slash = p.find('/', pos);
      if (slash == std::string::npos) slash = p.size();
      std::string part = p.substr(pos, slash - pos);
      pos = slash + 1;
      if (part.empty() || part == ".") continue;
      n = n->is_dir() ? n->FindChild(part) : nullptr;
    }
    if (n == nullptr) continue;
    if (n->is_dir()) {
      VisitInSequenceOrder(n, [&](Node* c) { take(c->inode()); });
    } else {
      take(n->inode());
    }
  }
  VisitInSequenceOrder(root, take);
  return order;
}

}  // namespace

base::Status WriteFileAtomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::string tmpl = DirOf(path) + "/.rafs-boot.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int raw = mkostemp(buf.data(), O_CLOEXEC);
  if (raw < 0) return base::ErrnoToStatus(errno, "create temporary file for " + path);
  Fd fd(raw);
  std::string tmp = buf.data();
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      base::Status s = base::ErrnoToStatus(errno, "write " + tmp);
      unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (fchmod(fd.get(), 0644) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    base::Status s = base::ErrnoToStatus(errno, "rename " + tmp + " to " + path);
    unlink(tmp.c_str());
    return s;
  }
  return base::Status::Ok();
}

namespace {

BlobOptions MakeBlobOptions(const BuildOptions& options, const std::string& blob_dir) {
  BlobOptions bo;
  bo.compressor = options.compressor;
  bo.digester = options.digester;
  bo.chunk_size = options.chunk_size;
  bo.aligned = options.aligned;
  bo.blob_toc = options.blob_toc;
  bo.inline_meta = options.blob_inline_meta;
  bo.threads = options.threads;
  bo.blob_dir = blob_dir;
  return bo;
}

// Shared state of one build: the chunk list, blob table and blob writer.
struct Build {
  std::vector<ChunkInfo> chunks;
  std::vector<BlobEntry> blobs;
  std::unique_ptr<BlobWriter> writer;
  std::optional<uint32_t> own_blob;  // index of the blob this build writes
  std::unique_ptr<ChunkDict> dict;
  std::map<uint32_t, uint32_t> dict_blob_index;       // dict blob -> our index
  std::map<base::Digest, uint32_t> dict_chunk_index;  // digest -> our chunk
  uint64_t from_dict = 0;

  base::Status Start(const BuildOptions& options, const std::string& blob_dir) {
    ChunkLookupFn lookup;
    if (!options.chunk_dict.empty()) {
      ASSIGN_OR_RETURN(dict,
                       ChunkDict::Open(options.chunk_dict, options.chunk_size, options.digester));
      lookup = [this](const base::Digest& d, uint32_t size) -> std::optional<uint32_t> {
        auto found = dict->Find(d, size);
        if (!found) return std::nullopt;
        ++from_dict;
        auto it = dict_chunk_index.find(d);
        if (it != dict_chunk_index.end()) return it->second;
        // The dictionary's blob enters the table when first used (spec 6.1).
        auto [b, inserted] =
            dict_blob_index.emplace(found->dict_blob, static_cast<uint32_t>(blobs.size()));
        if (inserted) blobs.push_back(dict->blobs()[found->dict_blob]);
        ChunkInfo c = found->chunk;
        c.blob_index = b->second;
        chunks.push_back(c);
        const uint32_t idx = static_cast<uint32_t>(chunks.size() - 1);
        dict_chunk_index.emplace(d, idx);
        return idx;
      };
    }
    ASSIGN_OR_RETURN(writer, BlobWriter::Create(
                                 MakeBlobOptions(options, blob_dir), &chunks,
                                 [this] {
                                   blobs.emplace_back();
                                   own_blob = static_cast<uint32_t>(blobs.size() - 1);
                                   return *own_blob;
                                 },
                                 std::move(lookup)));
    return base::Status::Ok();
  }

  // Finishes the blob, writes the bootstrap, fills the summary.
  base::Result<BuildResult> Finish(Node* root, const std::string& bootstrap_path,
                                   const BuildOptions& options) {
    BuildResult result;
    V6Options vo;
    vo.chunk_size = options.chunk_size;
    vo.compressor = options.compressor;
    vo.digester = options.digester;
    vo.prefetch_paths = options.prefetch_paths;
    ASSIGN_OR_RETURN(
        BlobEntry entry,
        writer->Finish([&](const BlobEntry& placeholder) -> base::Result<std::vector<uint8_t>> {
          std::vector<BlobEntry> inline_blobs = blobs;
          inline_blobs[*own_blob] = placeholder;
          return WriteV6Bootstrap(root, &chunks, inline_blobs, vo);
        }));
    if (entry.chunk_count > 0) {
      blobs[*own_blob] = entry;
      // The separate bootstrap names the blob by its real id. Readers replace
      // the id of an INLINED_FS_META entry with the bootstrap's file name
      // (spec 6.6), so the flag is cleared here as upstream clears it on
      // entries copied out of an inlined bootstrap.
      blobs[*own_blob].features &= ~format::kBlobInlinedFsMeta;
      result.blob_id = entry.blob_id;
      result.blob_path = writer->path();
      struct stat st;
      if (stat(result.blob_path.c_str(), &st) == 0) {
        result.blob_size = static_cast<uint64_t>(st.st_size);
      }
    }
    ASSIGN_OR_RETURN(std::vector<uint8_t> boot, WriteV6Bootstrap(root, &chunks, blobs, vo));
    RETURN_IF_ERROR(WriteFileAtomically(bootstrap_path, boot));
    result.bootstrap_size = boot.size();
    VisitInSequenceOrder(root, [&](Node* n) {
      ++result.entries;
      if (n->is_reg() && n->link_to == nullptr) {
        ++result.files;
        result.file_bytes += n->size;
      }
    });
    result.chunks = writer->stats().chunks_total;
    result.chunks_stored = writer->stats().chunks_stored;
    result.chunks_from_dict = from_dict;
    return result;
  }
};

}  // namespace

base::Result<BuildResult> BuildFromDirectory(const std::string& source_dir,
                                             const std::string& bootstrap_path,
                                             const std::string& blob_dir,
                                             const BuildOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Node> root, LoadDirectory(source_dir));
  root->mtime = 0;  // as upstream directory builds do (repeatable)
  root->mtime_nsec = 0;
  Build build;
  RETURN_IF_ERROR(build.Start(options, blob_dir));
  for (Node* f : DataOrder(root.get(), options.prefetch_paths)) {
    int raw = open(f->source_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (raw < 0) return base::ErrnoToStatus(errno, "open " + f->source_path);
    Fd fd(raw);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return base::ErrnoToStatus(errno, "fstat " + f->source_path);
    if (!S_ISREG(st.st_mode)) {
      return base::FailedPreconditionError("file ", f->source_path, ": no longer a regular file");
    }
    posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    const std::string& path = f->source_path;
    ReadFn read = [&fd, &path](base::MutableByteSpan dst) -> base::Result<size_t> {
      for (;;) {
        ssize_t n = ::read(fd.get(), dst.data(), dst.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return base::ErrnoToStatus(errno, "read " + path);
        return static_cast<size_t>(n);
      }
    };
    HoleFn hole = [&fd](uint64_t offset, uint64_t length) {
      off_t data = lseek(fd.get(), static_cast<off_t>(offset), SEEK_DATA);
      bool is_hole = (data < 0 && errno == ENXIO) ||
                     (data >= 0 && static_cast<uint64_t>(data) >= offset + length);
      // Reposition for the next read either way.
      lseek(fd.get(), static_cast<off_t>(is_hole ? offset + length : offset), SEEK_SET);
      return is_hole;
    };
    // Only files with fewer allocated blocks than their size can have holes;
    // the others skip two lseeks per chunk.
    const bool sparse = static_cast<uint64_t>(st.st_blocks) * 512 < f->size;
    RETURN_IF_ERROR(build.writer->AddFile(f, read, /*check_eof=*/true, sparse ? hole : HoleFn()));
  }
  return build.Finish(root.get(), bootstrap_path, options);
}

base::Result<BuildResult> BuildFromTarball(const std::string& tarball,
                                           const std::string& bootstrap_path,
                                           const std::string& blob_dir,
                                           const BuildOptions& options) {
  auto root = std::make_unique<Node>();
  root->name = "/";
  root->mode = S_IFDIR | 0755;
  std::vector<std::unique_ptr<Node>> retired;
  Build build;
  RETURN_IF_ERROR(build.Start(options, blob_dir));
  TarOptions to;
  to.max_expansion = options.max_tar_expansion;
  to.slack_bytes = options.tar_expansion_slack_bytes;
  RETURN_IF_ERROR(LoadTarball(tarball, to, build.writer.get(), root.get(), &retired));
  return build.Finish(root.get(), bootstrap_path, options);
}

base::Result<BuildResult> BuildImage(const std::string& source, const std::string& bootstrap_path,
                                     const std::string& blob_dir, const BuildOptions& options) {
  struct stat st;
  if (stat(source.c_str(), &st) != 0) return base::ErrnoToStatus(errno, "source " + source);
  if (S_ISDIR(st.st_mode)) return BuildFromDirectory(source, bootstrap_path, blob_dir, options);
  if (S_ISREG(st.st_mode)) {
    if (!LooksLikeTarball(source)) {
      return base::InvalidArgumentError("source ", source,
                                        ": neither a directory nor a tar, tar.gz or tar.zst file");
    }
    return BuildFromTarball(source, bootstrap_path, blob_dir, options);
  }
  return base::InvalidArgumentError("source ", source, ": not a directory or a regular file");
}

}  // namespace rfs::rafs::builder
