#include "rafs/builder/tar_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "rafs/builder/xattr.h"

namespace rfs::rafs::builder {
namespace {

class ArchiveReader {
 public:
  ArchiveReader() : a_(archive_read_new()) {}
  ~ArchiveReader() {
    if (a_ != nullptr) archive_read_free(a_);
  }
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;
  struct archive* get() const {
    return a_;
  }

 private:
  struct archive* a_;
};

std::string ArchiveError(struct archive* a) {
  const char* e = archive_error_string(a);
  return e != nullptr ? e : "unknown libarchive error";
}

// Splits an entry path into components; kInvalidArgument for "..".
base::Result<std::vector<std::string>> SplitPath(const std::string& raw) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string::npos) slash = raw.size();
    std::string part = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return base::InvalidArgumentError("tar entry '", raw, "': '..' component not allowed");
    }
    if (part.size() > 255) {
      return base::InvalidArgumentError("tar entry '", raw.substr(0, 64), "...': name length ",
                                        part.size(), " above 255");
    }
    parts.push_back(std::move(part));
  }
  return parts;
}

// Walks to the parent directory of `parts`, creating missing directories.
base::Result<Node*> ParentDir(Node* root, const std::vector<std::string>& parts,
                              const std::string& raw) {
  Node* dir = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Node* next = dir->FindChild(parts[i]);
    if (next == nullptr) {
      auto d = std::make_unique<Node>();
      d->name = parts[i];
      d->mode = S_IFDIR | 0755;
      next = dir->AddChild(std::move(d));
    } else if (!next->is_dir()) {
      return base::InvalidArgumentError("tar entry '", raw, "': parent '", next->Path(), "' is ",
                                        next->is_symlink() ? "a symlink" : "not a directory");
    }
    dir = next;
  }
  return dir;
}

base::Result<Node*> Resolve(Node* root, const std::string& raw) {
  ASSIGN_OR_RETURN(auto parts, SplitPath(raw));
  Node* n = root;
  for (const auto& p : parts) {
    if (!n->is_dir()) return nullptr;
    n = n->FindChild(p);
    if (n == nullptr) return nullptr;
  }
  return n;
}

base::Status ReadXattrs(struct archive_entry* e, const std::string& raw, Node* n) {
  archive_entry_xattr_reset(e);
  const char* name;
  const void* value;
  size_t size;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    std::string v(static_cast<const char*>(value), size);
    RETURN_IF_ERROR(CheckXattr(name, v).WithContext("tar entry '" + raw + "'"));
    n->xattrs.push_back(Xattr{name, std::move(v)});
  }
  std::sort(n->xattrs.begin(), n->xattrs.end(),
            [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  // Duplicate names (pax and SCHILY both present): keep the last.
  for (size_t i = 1; i < n->xattrs.size();) {
    if (n->xattrs[i].name == n->xattrs[i - 1].name) {
      n->xattrs.erase(n->xattrs.begin() + static_cast<ptrdiff_t>(i - 1));
    } else {
      ++i;
    }
  }
  return base::Status::Ok();
}

}  // namespace

bool LooksLikeTarball(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t b[512] = {};
  ssize_t n = pread(fd, b, sizeof(b), 0);
  close(fd);
  if (n >= 2 && b[0] == 0x1F && b[1] == 0x8B) return true;                                  // gzip
  if (n >= 4 && b[0] == 0x28 && b[1] == 0xB5 && b[2] == 0x2F && b[3] == 0xFD) return true;  // zstd
  return n == 512 && std::memcmp(b + 257, "ustar", 5) == 0;
}

base::Status LoadTarball(const std::string& path, const TarOptions& options, BlobWriter* writer,
                         Node* root, std::vector<std::unique_ptr<Node>>* retired) {
  ArchiveReader reader;
  struct archive* a = reader.get();
  if (a == nullptr) return base::ResourceExhaustedError("libarchive: cannot allocate a reader");
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  if (archive_read_open_filename(a, path.c_str(), 1 << 20) != ARCHIVE_OK) {
    return base::InvalidArgumentError("layer ", path, ": ", ArchiveError(a));
  }
  const bool compressed = archive_filter_count(a) > 1;
  auto check_bomb = [&]() -> base::Status {
    if (!compressed) return base::Status::Ok();
    const int64_t in = archive_filter_bytes(a, -1);
    const int64_t out = archive_filter_bytes(a, 0);
    if (in > 0 && out > 0 &&
        static_cast<uint64_t>(out) >
            static_cast<uint64_t>(in) * options.max_expansion + options.slack_bytes) {
      return base::ResourceExhaustedError("layer ", path, ": ", in, " compressed bytes expand to ",
                                          out, " (more than ", options.max_expansion,
                                          "x): refusing a likely decompression bomb");
    }
    return base::Status::Ok();
  };

  struct archive_entry* e;
  uint64_t index = 0;
  for (;;) {
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc == ARCHIVE_FATAL || rc == ARCHIVE_RETRY) {
      return base::DataLossError("layer ", path, ": entry ", index, ": ", ArchiveError(a));
    }
    ++index;
    const char* cpath = archive_entry_pathname(e);
    if (cpath == nullptr) {
      return base::InvalidArgumentError("layer ", path, ": entry ", index, ": no name");
    }
    const std::string raw = cpath;
    ASSIGN_OR_RETURN(auto parts, SplitPath(raw));
    if (parts.empty()) {
      // The root itself ("./"): take its attributes.
      if (archive_entry_filetype(e) == AE_IFDIR) {
        root->mode = archive_entry_mode(e);
        root->uid = static_cast<uint32_t>(archive_entry_uid(e));
        root->gid = static_cast<uint32_t>(archive_entry_gid(e));
        root->mtime = static_cast<uint64_t>(archive_entry_mtime(e));
        root->mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(e));
        root->xattrs.clear();
        RETURN_IF_ERROR(ReadXattrs(e, raw, root));
      }
      continue;
    }
    ASSIGN_OR_RETURN(Node * dir, ParentDir(root, parts, raw));

    auto n = std::make_unique<Node>();
    n->name = parts.back();
    n->mode = archive_entry_mode(e);
    n->uid = static_cast<uint32_t>(archive_entry_uid(e));
    n->gid = static_cast<uint32_t>(archive_entry_gid(e));
    const int64_t mtime = archive_entry_mtime(e);
    n->mtime = mtime > 0 ? static_cast<uint64_t>(mtime) : 0;
    n->mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(e));
    RETURN_IF_ERROR(ReadXattrs(e, raw, n.get()));

    const char* hardlink = archive_entry_hardlink(e);
    if (hardlink != nullptr) {
      ASSIGN_OR_RETURN(Node * target, Resolve(root, hardlink));
      if (target == nullptr) {
        return base::InvalidArgumentError("tar entry '", raw, "': hard link to '", hardlink,
                                          "', which is not an earlier entry");
      }
      if (target->is_dir()) {
        return base::InvalidArgumentError("tar entry '", raw, "': hard link to directory '",
                                          hardlink, "'");
      }
      if (target == dir->FindChild(n->name)) continue;  // link to itself
      // Same attributes and data as the target; regular files share its
      // inode through a common key.
      RETURN_IF_ERROR(writer->Flush());  // the target's chunks are final
      Node* t = target->inode();
      n->mode = t->mode;
      n->uid = t->uid;
      n->gid = t->gid;
      n->mtime = t->mtime;
      n->mtime_nsec = t->mtime_nsec;
      n->xattrs = t->xattrs;
      n->size = t->size;
      n->symlink = t->symlink;
      n->rdev_major = t->rdev_major;
      n->rdev_minor = t->rdev_minor;
      n->chunks = t->chunks;
      if (t->is_reg()) {
        if (t->link_key == 0) t->link_key = (uint64_t{1} << 62) + index;
        n->link_key = t->link_key;
      }
    } else {
      switch (archive_entry_filetype(e)) {
        case AE_IFREG: {
          if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0) {
            return base::DataLossError("tar entry '", raw, "': no size");
          }
          n->mode = S_IFREG | (n->mode & 07777);
          n->size = static_cast<uint64_t>(archive_entry_size(e));
          break;
        }
        case AE_IFDIR:
          n->mode = S_IFDIR | (n->mode & 07777);
          break;
        case AE_IFLNK: {
          const char* target = archive_entry_symlink(e);
          std::string t = target != nullptr ? target : "";
          if (t.empty() || t.size() > 4096) {
            return base::InvalidArgumentError("tar entry '", raw, "': symlink target length ",
                                              t.size(), " outside 1..4096");
          }
          n->symlink = std::move(t);
          n->size = n->symlink.size();
          break;
        }
        case AE_IFCHR:
        case AE_IFBLK:
          n->rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
          n->rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
          break;
        case AE_IFIFO:
        case AE_IFSOCK:
          break;
        default:
          return base::InvalidArgumentError("tar entry '", raw, "': unsupported type ",
                                            base::Hex(archive_entry_filetype(e)));
      }
    }

    // Replace an existing entry of the same name.
    Node* existing = dir->FindChild(n->name);
    if (existing != nullptr) {
      if (existing->is_dir() && n->is_dir()) {
        existing->mode = n->mode;
        existing->uid = n->uid;
        existing->gid = n->gid;
        existing->mtime = n->mtime;
        existing->mtime_nsec = n->mtime_nsec;
        existing->xattrs = std::move(n->xattrs);
        continue;
      }
      retired->push_back(dir->RemoveChild(n->name));
    }
    Node* added = dir->AddChild(std::move(n));
    if (added->is_reg() && hardlink == nullptr && added->size > 0) {
      const std::string& name = raw;
      ReadFn read = [a, &name, &check_bomb](base::MutableByteSpan dst) -> base::Result<size_t> {
        la_ssize_t got = archive_read_data(a, dst.data(), dst.size());
        if (got < 0) {
          return base::DataLossError("tar entry '", name, "': ", ArchiveError(a));
        }
        RETURN_IF_ERROR(check_bomb());
        return static_cast<size_t>(got);
      };
      base::Status s = writer->AddFile(added, read, /*check_eof=*/false);
      if (!s.ok()) {
        if (s.message().find("shrank") != std::string::npos) {
          return base::DataLossError("tar entry '", raw, "': archive ends inside its ", added->size,
                                     " bytes of data (truncated)");
        }
        return s;
      }
    }
    RETURN_IF_ERROR(check_bomb());
  }
  RETURN_IF_ERROR(check_bomb());
  FinalizeTree(root);
  return base::Status::Ok();
}

}  // namespace rfs::rafs::builder
