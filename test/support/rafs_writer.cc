// Test-only RAFS writer, written from ../shared/spec/RAFS-FORMAT.md.
//
// Pipeline: the TreeEntry list becomes a tree of names (Node) pointing at
// inodes (Inode; hardlink names share one). Names get sequence numbers
// (spec 4.8), regular files are cut into chunks which are deduplicated,
// compressed and appended to blob slots, then the bootstrap (v5 or v6) and
// the trailing blob sections (v6) are serialised.
#include "test/support/rafs_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "base/bytes.h"
#include "base/unique_fd.h"

namespace rfs::testing {
namespace {

using base::AlignUp;
using base::ByteSpan;
using base::Digest;
using base::DigestAlgo;
using base::InvalidArgumentError;
using base::Result;
using base::Status;
using base::StoreLe16;
using base::StoreLe32;
using base::StoreLe64;
using base::StrCat;
using storage::Compressor;

constexpr uint64_t kBlockSize = 4096;
constexpr uint32_t kBlockBits = 12;
constexpr int kNoIndex = -1;

// Superblock flags (spec 2.4).
constexpr uint64_t kFlagCompressNone = 0x1;
constexpr uint64_t kFlagCompressLz4 = 0x2;
constexpr uint64_t kFlagHashBlake3 = 0x4;
constexpr uint64_t kFlagHashSha256 = 0x8;
constexpr uint64_t kFlagExplicitUidGid = 0x10;
constexpr uint64_t kFlagHasXattr = 0x20;
constexpr uint64_t kFlagCompressGzip = 0x40;
constexpr uint64_t kFlagCompressZstd = 0x80;
constexpr uint64_t kFlagInlinedChunkDigest = 0x100;
constexpr uint64_t kFlagEncryptionNone = 0x01000000;

// Chunk flags (spec 2.5).
constexpr uint32_t kChunkCompressed = 0x01;
constexpr uint32_t kChunkHasCrc32 = 0x10;

// Blob features (spec 2.6).
constexpr uint32_t kFeatAligned = 0x1;
constexpr uint32_t kFeatInlinedFsMeta = 0x2;
constexpr uint32_t kFeatChunkInfoV2 = 0x4;
constexpr uint32_t kFeatInlinedChunkDigest = 0x20;
constexpr uint32_t kFeatHasTarHeader = 0x10000000;
constexpr uint32_t kFeatHasToc = 0x20000000;
constexpr uint32_t kFeatCapTarToc = 0x40000000;

// v6 data layouts (spec 4.2).
constexpr uint16_t kLayoutFlatPlain = 0;
constexpr uint16_t kLayoutFlatInline = 2;
constexpr uint16_t kLayoutChunkBased = 4;

constexpr uint32_t kCiMagic = 0xB10BB10B;
constexpr size_t kCiHeaderSize = 4096;
constexpr size_t kTarHeaderSize = 512;
constexpr size_t kTocEntrySize = 128;

uint32_t FileType(uint32_t mode) { return mode & S_IFMT; }
bool IsDir(uint32_t mode) { return FileType(mode) == S_IFDIR; }
bool IsReg(uint32_t mode) { return FileType(mode) == S_IFREG; }
bool IsLnk(uint32_t mode) { return FileType(mode) == S_IFLNK; }
bool IsDev(uint32_t mode) { return FileType(mode) == S_IFCHR || FileType(mode) == S_IFBLK; }

// Linux new_encode_dev of a glibc dev_t (spec 4.6).
uint32_t EncodeDev(uint64_t rdev) {
  uint64_t major = gnu_dev_major(rdev);
  uint64_t minor = gnu_dev_minor(rdev);
  return static_cast<uint32_t>((minor & 0xff) | (major << 8) | ((minor & ~0xffull) << 12));
}

uint8_t DirentType(uint32_t mode) {
  switch (FileType(mode)) {
    case S_IFREG:
      return 1;
    case S_IFDIR:
      return 2;
    case S_IFCHR:
      return 3;
    case S_IFBLK:
      return 4;
    case S_IFIFO:
      return 5;
    case S_IFSOCK:
      return 6;
    case S_IFLNK:
      return 7;
  }
  return 0;
}

uint64_t CompressorFlag(Compressor c) {
  switch (c) {
    case Compressor::kNone:
      return kFlagCompressNone;
    case Compressor::kLz4Block:
      return kFlagCompressLz4;
    case Compressor::kGzip:
      return kFlagCompressGzip;
    case Compressor::kZstd:
      return kFlagCompressZstd;
  }
  return 0;
}

uint64_t DigestFlag(DigestAlgo d) {
  return d == DigestAlgo::kSha256 ? kFlagHashSha256 : kFlagHashBlake3;
}

int Log2(uint64_t v) {
  int n = 0;
  while (v > 1) {
    v >>= 1;
    ++n;
  }
  return n;
}

void CopyName(uint8_t* dst, size_t cap, std::string_view name) {
  std::memcpy(dst, name.data(), std::min(cap, name.size()));
}

// ---------------------------------------------------------------------------
// Xattrs (spec 4.5 / 7.7).

struct XattrPrefix {
  std::string_view prefix;
  uint8_t index;
  bool exact;  // whole name must equal the prefix (posix ACLs)
};
constexpr XattrPrefix kXattrPrefixes[] = {
    {"user.", 1, false},
    {"system.posix_acl_access", 2, true},
    {"system.posix_acl_default", 3, true},
    {"trusted.", 4, false},
    {"security.", 6, false},
};

struct EncodedXattr {
  uint8_t index;
  std::string_view suffix;
  std::string_view value;
};

Result<std::vector<EncodedXattr>> EncodeXattrs(
    const std::vector<std::pair<std::string, std::string>>& xattrs, std::string_view path) {
  std::vector<EncodedXattr> out;
  out.reserve(xattrs.size());
  std::vector<std::string_view> names;
  for (const auto& [name, value] : xattrs) {
    const XattrPrefix* match = nullptr;
    for (const XattrPrefix& p : kXattrPrefixes) {
      if (p.exact ? name == p.prefix
                  : (name.size() > p.prefix.size() &&
                     name.compare(0, p.prefix.size(), p.prefix) == 0)) {
        match = &p;
        break;
      }
    }
    if (match == nullptr) {
      return InvalidArgumentError("xattr '", name, "' of ", path,
                                  ": name needs a user., trusted., security. or "
                                  "system.posix_acl_{access,default} prefix");
    }
    if (name.size() > 255) {
      return InvalidArgumentError("xattr name of ", path, " longer than 255 bytes");
    }
    if (value.size() > 65535) {
      return InvalidArgumentError("xattr '", name, "' of ", path,
                                  ": value longer than 65535 bytes");
    }
    names.push_back(name);
    out.push_back({match->index, std::string_view(name).substr(match->prefix.size()), value});
  }
  std::sort(names.begin(), names.end());
  if (std::adjacent_find(names.begin(), names.end()) != names.end()) {
    return InvalidArgumentError("duplicate xattr name on ", path);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tree model.

struct Node {  // one name
  std::string_view name;
  int parent = kNoIndex;
  int inode = kNoIndex;
  std::vector<int> children;  // sorted by name bytes once the tree is built
  uint32_t seq = 0;           // sequence number = v5 index (spec 4.8)
};

struct Inode {
  const TreeEntry* e = nullptr;
  bool implicit = false;
  uint32_t ino = 0;  // lowest sequence number of its names
  uint32_t nlink = 0;
  uint32_t name_count = 0;
  std::vector<EncodedXattr> xattrs;
  std::vector<uint32_t> chunks;  // stored chunk id per file chunk
  // v6 layout.
  bool placed = false;
  bool compact = false;
  uint16_t layout = kLayoutFlatPlain;
  uint32_t xattr_size = 0;  // inline xattr area bytes
  uint64_t size = 0;        // i_size
  uint64_t offset = 0;      // byte offset of the inode in the bootstrap
  uint64_t nid = 0;
  uint32_t full_blocks = 0;  // FLAT data blocks outside the inode's block
  uint32_t raw_blkaddr = 0;
};

class Tree {
 public:
  Status Build(const std::vector<TreeEntry>& entries);

  std::vector<Node> nodes;
  std::vector<Inode> inodes;
  std::vector<int> by_seq;  // node ids by sequence number (by_seq[0] = root)
  bool has_xattr = false;

  const TreeEntry& Entry(int node) const { return *inodes[nodes[node].inode].e; }
  uint32_t Mode(int node) const { return Entry(node).mode; }
  bool NodeIsDir(int node) const { return IsDir(Mode(node)); }
  int Lookup(std::string_view path) const {
    auto it = path_to_node_.find(std::string(path));
    return it == path_to_node_.end() ? kNoIndex : it->second;
  }

 private:
  Result<int> EnsureDir(std::string_view path);
  int AddNode(std::string_view name, int parent, int inode, std::string path);
  void Number(int dir, uint32_t* next);

  std::unordered_map<std::string, int> path_to_node_;
  std::deque<TreeEntry> implicit_;  // stable storage for implicit directories
  std::deque<std::string> names_;   // stable storage for implicit names
};

Status ValidatePath(std::string_view path) {
  if (path.empty() || path[0] != '/')
    return InvalidArgumentError("path '", path, "' is not absolute");
  if (path == "/") return Status::Ok();
  if (path.back() == '/') return InvalidArgumentError("path '", path, "' ends with '/'");
  size_t pos = 1;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(pos, end - pos);
    if (comp.empty() || comp == "." || comp == "..") {
      return InvalidArgumentError("path '", path, "' has an empty, '.' or '..' component");
    }
    if (comp.size() > 255) return InvalidArgumentError("path '", path, "': name over 255 bytes");
    if (comp.find('\0') != std::string_view::npos) {
      return InvalidArgumentError("path '", path, "' contains NUL");
    }
    pos = end + 1;
  }
  return Status::Ok();
}

std::pair<std::string_view, std::string_view> SplitPath(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view parent = slash == 0 ? std::string_view("/") : path.substr(0, slash);
  return {parent, path.substr(slash + 1)};
}

int Tree::AddNode(std::string_view name, int parent, int inode, std::string path) {
  int id = static_cast<int>(nodes.size());
  nodes.push_back(Node{});
  nodes[id].name = name;
  nodes[id].parent = parent;
  nodes[id].inode = inode;
  if (parent != kNoIndex) nodes[parent].children.push_back(id);
  inodes[inode].name_count++;
  path_to_node_.emplace(std::move(path), id);
  return id;
}

Result<int> Tree::EnsureDir(std::string_view path) {
  int found = Lookup(path);
  if (found != kNoIndex) {
    if (!NodeIsDir(found)) return InvalidArgumentError("parent '", path, "' is not a directory");
    return found;
  }
  int parent = kNoIndex;
  std::string_view name = "/";
  if (path != "/") {
    auto [parent_path, base_name] = SplitPath(path);
    ASSIGN_OR_RETURN(parent, EnsureDir(parent_path));
    names_.emplace_back(base_name);
    name = names_.back();
  }
  TreeEntry& e = implicit_.emplace_back();
  e.path = std::string(path);
  e.mode = S_IFDIR | 0755;
  int inode = static_cast<int>(inodes.size());
  inodes.push_back(Inode{});
  inodes[inode].e = &e;
  inodes[inode].implicit = true;
  return AddNode(name, parent, inode, std::string(path));
}

void Tree::Number(int dir, uint32_t* next) {
  for (int c : nodes[dir].children) {
    nodes[c].seq = (*next)++;
    by_seq.push_back(c);
  }
  for (int c : nodes[dir].children) {
    if (NodeIsDir(c)) Number(c, next);
  }
}

Status Tree::Build(const std::vector<TreeEntry>& entries) {
  nodes.reserve(entries.size() + 1);
  inodes.reserve(entries.size() + 1);
  path_to_node_.reserve(entries.size() + 1);
  for (const TreeEntry& e : entries) {
    RETURN_IF_ERROR(ValidatePath(e.path));
    int existing = Lookup(e.path);
    if (!e.hardlink_to.empty()) {
      if (existing != kNoIndex) return InvalidArgumentError("duplicate path ", e.path);
      int target = Lookup(e.hardlink_to);
      if (target == kNoIndex) {
        return InvalidArgumentError("hardlink ", e.path, ": target ", e.hardlink_to,
                                    " not found (must come earlier)");
      }
      if (!IsReg(Mode(target))) {
        return InvalidArgumentError("hardlink ", e.path, ": target ", e.hardlink_to,
                                    " is not a regular file");
      }
      if (e.path == "/") return InvalidArgumentError("the root cannot be a hardlink");
      auto [parent_path, name] = SplitPath(e.path);
      ASSIGN_OR_RETURN(int parent, EnsureDir(parent_path));
      AddNode(name, parent, nodes[target].inode, e.path);
      continue;
    }
    uint32_t type = FileType(e.mode);
    switch (type) {
      case S_IFREG:
      case S_IFDIR:
      case S_IFLNK:
      case S_IFCHR:
      case S_IFBLK:
      case S_IFIFO:
      case S_IFSOCK:
        break;
      default:
        return InvalidArgumentError(e.path, ": bad file type in mode ", base::Hex(e.mode));
    }
    if (e.path == "/" && type != S_IFDIR)
      return InvalidArgumentError("the root must be a directory");
    if (type != S_IFREG && !e.data.empty()) {
      return InvalidArgumentError(e.path, ": data on a non-regular file");
    }
    if (type == S_IFLNK) {
      if (e.symlink_target.empty() || e.symlink_target.size() > 4096) {
        return InvalidArgumentError(e.path, ": symlink target must be 1..4096 bytes, got ",
                                    e.symlink_target.size());
      }
    } else if (!e.symlink_target.empty()) {
      return InvalidArgumentError(e.path, ": symlink target on a non-symlink");
    }
    ASSIGN_OR_RETURN(std::vector<EncodedXattr> xattrs, EncodeXattrs(e.xattrs, e.path));
    if (!xattrs.empty()) has_xattr = true;
    if (existing != kNoIndex) {
      Inode& old = inodes[nodes[existing].inode];
      if (!old.implicit || type != S_IFDIR) return InvalidArgumentError("duplicate path ", e.path);
      old.e = &e;  // an explicit entry for a directory created implicitly
      old.implicit = false;
      old.xattrs = std::move(xattrs);
      continue;
    }
    int parent = kNoIndex;
    std::string_view name = "/";
    if (e.path != "/") {
      auto split = SplitPath(e.path);
      ASSIGN_OR_RETURN(parent, EnsureDir(split.first));
      name = split.second;
    }
    int inode = static_cast<int>(inodes.size());
    inodes.push_back(Inode{});
    inodes[inode].e = &e;
    inodes[inode].xattrs = std::move(xattrs);
    AddNode(name, parent, inode, e.path);
  }
  ASSIGN_OR_RETURN(int root, EnsureDir("/"));

  for (Node& n : nodes) {
    std::sort(n.children.begin(), n.children.end(),
              [this](int a, int b) { return nodes[a].name < nodes[b].name; });
  }
  by_seq.reserve(nodes.size());
  by_seq.push_back(root);
  nodes[root].seq = 1;
  uint32_t next = 2;
  Number(root, &next);
  if (by_seq.size() != nodes.size()) return base::InternalError("unreachable tree nodes");

  for (int id : by_seq) {
    Inode& ino = inodes[nodes[id].inode];
    if (ino.ino == 0) ino.ino = nodes[id].seq;
  }
  for (int id : by_seq) {
    Inode& ino = inodes[nodes[id].inode];
    uint32_t mode = ino.e->mode;
    if (IsDir(mode)) {
      uint32_t subdirs = 0;
      for (int c : nodes[id].children) subdirs += NodeIsDir(c) ? 1 : 0;
      ino.nlink = 2 + subdirs;
    } else if (IsReg(mode)) {
      ino.nlink = ino.name_count;
    } else {
      ino.nlink = 1;
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// CRC-32C.

// Slicing-by-8 tables: t[0] is the bytewise table of the reflected
// polynomial 0x82F63B78, t[k][i] advances t[k-1][i] by one more zero byte.
using Crc32cTables = std::array<std::array<uint32_t, 256>, 8>;
const Crc32cTables& Crc32cTable() {
  static const Crc32cTables tables = [] {
    Crc32cTables t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k) {
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    }
    return t;
  }();
  return tables;
}

// ---------------------------------------------------------------------------
// Chunks and blob data.

struct StoredChunk {
  Digest digest{};
  uint32_t usize = 0;
  uint32_t csize = 0;
  bool compressed = false;
  uint32_t crc = 0;
  bool has_crc = false;
  int slot = 0;
  uint32_t ci_index = 0;
  uint64_t coff = 0;
  uint64_t uoff = 0;
  uint64_t file_offset = 0;

  uint32_t Flags() const {
    return (compressed ? kChunkCompressed : 0) | (has_crc ? kChunkHasCrc32 : 0);
  }
};

struct BlobSlot {
  std::vector<uint8_t> data;
  std::vector<uint32_t> chunks;  // stored chunk ids in ci-index order
  uint64_t usize = 0;
  int index = kNoIndex;  // blob-table index, assigned when the first chunk lands
};

struct ChunkKey {
  Digest digest;
  uint32_t size;
  bool operator==(const ChunkKey& o) const { return size == o.size && digest == o.digest; }
};
struct ChunkKeyHash {
  size_t operator()(const ChunkKey& k) const {
    uint64_t h;
    std::memcpy(&h, k.digest.data(), sizeof(h));
    return static_cast<size_t>(h ^ (static_cast<uint64_t>(k.size) * 0x9E3779B97F4A7C15ull));
  }
};

class ChunkStore {
 public:
  ChunkStore(const WriterOptions& o, bool aligned, bool v2_limits)
      : opts_(o), aligned_(aligned), v2_limits_(v2_limits), slots_(o.blob_count) {}

  Status AddFile(Inode& inode, int slot);

  std::vector<StoredChunk> chunks;
  std::vector<int> slot_by_index;  // blob index -> slot
  std::vector<BlobSlot>& slots() { return slots_; }
  int blob_count() const { return static_cast<int>(slot_by_index.size()); }
  BlobSlot& blob(int index) { return slots_[slot_by_index[index]]; }
  int BlobIndexOf(const StoredChunk& c) const { return slots_[c.slot].index; }

 private:
  Result<uint32_t> Store(ByteSpan data, int slot);

  const WriterOptions& opts_;
  bool aligned_;
  bool v2_limits_;
  std::vector<BlobSlot> slots_;
  std::unordered_map<ChunkKey, uint32_t, ChunkKeyHash> dedup_;
  std::unordered_map<uint32_t, Digest> zero_digest_;  // by chunk length
};

bool AllZero(ByteSpan d) {
  return d.empty() || (d[0] == 0 && std::memcmp(d.data(), d.data() + 1, d.size() - 1) == 0);
}

Result<uint32_t> ChunkStore::Store(ByteSpan data, int slot) {
  uint32_t len = static_cast<uint32_t>(data.size());
  Digest digest;
  if (AllZero(data)) {
    auto it = zero_digest_.find(len);
    if (it == zero_digest_.end()) {
      it = zero_digest_.emplace(len, base::ComputeDigest(opts_.digester, data)).first;
    }
    digest = it->second;
  } else {
    digest = base::ComputeDigest(opts_.digester, data);
  }
  auto [it, inserted] = dedup_.emplace(ChunkKey{digest, len}, 0);
  if (!inserted) return it->second;

  StoredChunk c;
  c.digest = digest;
  c.usize = len;
  std::vector<uint8_t> compressed;
  if (opts_.compressor != Compressor::kNone) {
    ASSIGN_OR_RETURN(compressed, storage::Compress(opts_.compressor, data));
    c.compressed = compressed.size() < data.size();
  }
  ByteSpan stored = c.compressed ? ByteSpan(compressed) : data;
  c.csize = static_cast<uint32_t>(stored.size());
  if (v2_limits_ && c.csize > 0xFFFFFF) {
    return InvalidArgumentError("ci v2 cannot describe a stored chunk of ", c.csize,
                                " bytes (max 0xffffff); use smaller chunks or ci v1");
  }
  if (opts_.chunk_crc32) {
    c.crc = Crc32c(data);
    c.has_crc = c.crc != 0;
  }
  BlobSlot& s = slots_[slot];
  if (s.chunks.size() >= 0xFFFFFF) {
    return base::ResourceExhaustedError("blob holds more than 0xffffff chunks");
  }
  if (s.index == kNoIndex) {
    s.index = static_cast<int>(slot_by_index.size());
    slot_by_index.push_back(slot);
  }
  c.slot = slot;
  c.ci_index = static_cast<uint32_t>(s.chunks.size());
  c.coff = s.data.size();
  c.uoff = s.usize;
  if (c.coff >= (1ull << 40) || c.uoff + len > (1ull << 44)) {
    return base::ResourceExhaustedError("blob offsets beyond the ci limits (2^40 / 2^44)");
  }
  s.usize += aligned_ ? AlignUp(len, kBlockSize) : len;
  s.data.insert(s.data.end(), stored.begin(), stored.end());
  uint32_t id = static_cast<uint32_t>(chunks.size());
  s.chunks.push_back(id);
  chunks.push_back(c);
  it->second = id;
  return id;
}

Status ChunkStore::AddFile(Inode& inode, int slot) {
  const std::string& data = inode.e->data;
  ByteSpan all = base::AsBytes(data);
  for (uint64_t off = 0; off < all.size(); off += opts_.chunk_size) {
    ByteSpan piece = all.subspan(off, std::min<uint64_t>(opts_.chunk_size, all.size() - off));
    ASSIGN_OR_RETURN(uint32_t id, Store(piece, slot));
    chunks[id].file_offset = off;
    inode.chunks.push_back(id);
  }
  return Status::Ok();
}

// Regular inodes in blob-writing order: files under the prefetch paths first
// (pattern order), then all others by inode number (spec 6.1).
std::vector<int> FileOrder(const Tree& t, const std::vector<std::string>& prefetch) {
  std::vector<int> order;
  std::vector<bool> seen(t.inodes.size(), false);
  auto take = [&](int node) {
    int ino = t.nodes[node].inode;
    if (!seen[ino] && IsReg(t.inodes[ino].e->mode)) {
      seen[ino] = true;
      order.push_back(ino);
    }
  };
  for (const std::string& p : prefetch) {
    int node = t.Lookup(p);
    if (node == kNoIndex) continue;
    std::vector<int> sub;
    std::vector<int> stack{node};
    while (!stack.empty()) {
      int n = stack.back();
      stack.pop_back();
      sub.push_back(n);
      for (int c : t.nodes[n].children) stack.push_back(c);
    }
    std::sort(sub.begin(), sub.end(),
              [&](int a, int b) { return t.nodes[a].seq < t.nodes[b].seq; });
    for (int n : sub) take(n);
  }
  for (int n : t.by_seq) take(n);
  return order;
}

Status CutChunks(Tree& t, ChunkStore& store, const WriterOptions& o) {
  // Reserve blob memory up front (an upper bound per slot; pages are only
  // touched when written) so that appending never copies the data again.
  uint64_t total = 0;
  for (const Inode& i : t.inodes) {
    if (IsReg(i.e->mode)) total += i.e->data.size();
  }
  for (BlobSlot& s : store.slots()) {
    s.data.reserve(o.blob_count == 1 ? total : total / o.blob_count * 2 + o.chunk_size);
  }
  int counter = 0;
  for (int ino : FileOrder(t, o.prefetch_paths)) {
    Inode& inode = t.inodes[ino];
    if (inode.e->data.empty()) continue;
    RETURN_IF_ERROR(store.AddFile(inode, counter % o.blob_count));
    ++counter;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Tar headers and ToC (spec 6.5, 6.6).

void WriteOctal(uint8_t* p, int digits, uint64_t v) {
  for (int i = digits - 1; i >= 0; --i) {
    p[i] = static_cast<uint8_t>('0' + (v & 7));
    v >>= 3;
  }
  p[digits] = 0;
}

void AppendTarHeader(std::vector<uint8_t>& out, std::string_view name, uint64_t size) {
  uint8_t h[kTarHeaderSize] = {};
  CopyName(h, 100, name);
  if (size < (1ull << 33)) {
    WriteOctal(h + 124, 11, size);
  } else {  // GNU base-256, as the Rust tar crate writes it
    h[124] = 0x80;
    for (int i = 0; i < 8; ++i) h[128 + i] = static_cast<uint8_t>(size >> (8 * (7 - i)));
  }
  WriteOctal(h + 136, 11, 0);
  h[156] = '0';
  std::memcpy(h + 257, "ustar  ", 8);  // includes the trailing NUL
  std::memset(h + 148, ' ', 8);
  uint32_t sum = 0;
  for (uint8_t b : h) sum += b;
  WriteOctal(h + 148, 7, sum);
  out.insert(out.end(), h, h + kTarHeaderSize);
}

struct TocEntry {
  uint32_t flags;
  std::string_view name;
  Digest digest;
  uint64_t offset;
  uint64_t csize;
  uint64_t usize;
};

uint32_t TocFlags(Compressor c) {
  switch (c) {
    case Compressor::kZstd:
      return 0x2;
    case Compressor::kLz4Block:
      return 0x4;
    default:
      return 0x1;
  }
}

void AppendToc(std::vector<uint8_t>& out, const std::vector<TocEntry>& entries) {
  for (const TocEntry& e : entries) {
    uint8_t b[kTocEntrySize] = {};
    StoreLe32(b, e.flags);
    CopyName(b + 8, 16, e.name);
    std::memcpy(b + 24, e.digest.data(), 32);
    StoreLe64(b + 56, e.offset);
    StoreLe64(b + 64, e.csize);
    StoreLe64(b + 72, e.usize);
    out.insert(out.end(), b, b + kTocEntrySize);
  }
  AppendTarHeader(out, "rafs.blob.toc", kTocEntrySize * entries.size());
}

// ---------------------------------------------------------------------------
// v6 blobs (spec 6).

struct V6BlobInfo {  // one blob-table entry
  std::string id;
  uint32_t chunk_count = 0;
  uint32_t features = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint32_t toc_size = 0;
  Digest toc_digest{};
  Compressor ci_compressor = Compressor::kNone;
  uint64_t ci_offset = 0;
  uint64_t ci_csize = 0;
  uint64_t ci_usize = 0;
};

struct V6BlobBuild {
  V6BlobInfo info;
  std::vector<uint8_t> bytes;
  uint64_t digest_off = 0;  // raw digest array, excluded from the blob id
  uint64_t digest_len = 0;
  std::vector<TocEntry> toc;
};

uint32_t LayoutFeatures(BlobLayout l, bool v2) {
  uint32_t f = 0;
  switch (l) {
    case BlobLayout::kDefault:
      f = kFeatCapTarToc | kFeatAligned;
      break;
    case BlobLayout::kToc:
      f = kFeatCapTarToc | kFeatHasToc | kFeatHasTarHeader | kFeatInlinedChunkDigest | kFeatAligned;
      break;
    case BlobLayout::kInlineMetaToc:
      f = kFeatCapTarToc | kFeatHasToc | kFeatHasTarHeader | kFeatInlinedChunkDigest |
          kFeatInlinedFsMeta | kFeatAligned;
      break;
    case BlobLayout::kInlineMetaNoToc:
      f = kFeatCapTarToc | kFeatHasTarHeader | kFeatInlinedFsMeta | kFeatAligned;
      break;
  }
  return f | (v2 ? kFeatChunkInfoV2 : 0);
}

std::vector<uint8_t> EncodeCiArray(const ChunkStore& store, const BlobSlot& slot, bool v2) {
  std::vector<uint8_t> ci(slot.chunks.size() * (v2 ? 24 : 16));
  uint8_t* p = ci.data();
  for (uint32_t id : slot.chunks) {
    const StoredChunk& c = store.chunks[id];
    if (v2) {
      uint64_t flags = (c.compressed ? 0x01 : 0) | (c.has_crc ? 0x10 : 0);
      StoreLe64(
          p, (c.uoff >> kBlockBits) | (static_cast<uint64_t>(c.usize - 1) << 32) | (flags << 56));
      StoreLe64(p + 8, c.coff | (static_cast<uint64_t>(c.csize) << 40));
      StoreLe64(p + 16, c.has_crc ? c.crc : 0);
      p += 24;
    } else {
      uint64_t u = c.usize - 1;
      uint64_t s = c.csize - 1;
      StoreLe64(p, (c.uoff & 0xFFFFFFFF000ull) | (((u >> 20) & 0xF) << 8) | ((u & 0xFFFFF) << 44));
      StoreLe64(p + 8,
                (c.coff & 0xFFFFFFFFFFull) | (((s >> 20) & 0xF) << 40) | ((s & 0xFFFFF) << 44));
      p += 16;
    }
  }
  return ci;
}

// Sections 1-6 of spec 6.1 (everything before the inlined bootstrap/ToC).
Result<V6BlobBuild> BuildV6BlobHead(const ChunkStore& store, BlobSlot& slot,
                                    const WriterOptions& o) {
  V6BlobBuild b;
  V6BlobInfo& info = b.info;
  info.features = LayoutFeatures(o.layout, o.ci_v2);
  bool tar = info.features & kFeatHasTarHeader;
  bool toc = info.features & kFeatHasToc;
  info.chunk_count = static_cast<uint32_t>(slot.chunks.size());
  info.uncompressed_size = slot.usize;

  b.bytes = std::move(slot.data);
  slot.data.clear();
  std::vector<uint8_t>& out = b.bytes;
  uint64_t data_len = out.size();
  if (tar) AppendTarHeader(out, "image.blob", data_len);
  if (toc) {
    b.toc.push_back({0x1, "image.blob", base::Sha256(ByteSpan(out)), 0, data_len, data_len});
  }

  std::vector<uint8_t> ci = EncodeCiArray(store, slot, o.ci_v2);
  std::vector<uint8_t> ci_stored;
  // The ToC cannot describe a gzip payload, so with a ToC gzip ci stays raw.
  bool try_compress =
      o.compressor != Compressor::kNone && !(toc && o.compressor == Compressor::kGzip);
  if (try_compress) {
    ASSIGN_OR_RETURN(ci_stored, storage::Compress(o.compressor, ByteSpan(ci)));
    if (ci_stored.size() < ci.size()) info.ci_compressor = o.compressor;
  }
  if (info.ci_compressor == Compressor::kNone) ci_stored = ci;
  info.ci_offset = out.size();
  info.ci_csize = ci_stored.size();
  info.ci_usize = ci.size();
  out.insert(out.end(), ci_stored.begin(), ci_stored.end());

  uint8_t h[kCiHeaderSize] = {};
  StoreLe32(h, kCiMagic);
  StoreLe32(h + 4, info.features);
  StoreLe32(h + 8, static_cast<uint32_t>(info.ci_compressor));
  StoreLe32(h + 12, info.chunk_count);
  StoreLe64(h + 16, info.ci_offset);
  StoreLe64(h + 24, info.ci_csize);
  StoreLe64(h + 32, info.ci_usize);
  StoreLe32(h + 4092, kCiMagic);
  uint64_t header_off = out.size();
  out.insert(out.end(), h, h + kCiHeaderSize);
  if (tar) AppendTarHeader(out, "blob.meta", info.ci_csize + kCiHeaderSize);
  if (toc) {
    b.toc.push_back({TocFlags(info.ci_compressor), "blob.meta", base::Sha256(ByteSpan(ci)),
                     info.ci_offset, info.ci_csize, info.ci_usize});
    b.toc.push_back({0x1, "blob.meta.header", base::Sha256(ByteSpan(h, kCiHeaderSize)), header_off,
                     kCiHeaderSize, kCiHeaderSize});
  }
  if (info.features & kFeatInlinedChunkDigest) {
    b.digest_off = out.size();
    b.digest_len = 32ull * slot.chunks.size();
    for (uint32_t id : slot.chunks) {
      const Digest& d = store.chunks[id].digest;
      out.insert(out.end(), d.begin(), d.end());
    }
    ByteSpan arr(out.data() + b.digest_off, b.digest_len);
    b.toc.push_back(
        {0x1, "blob.digest", base::Sha256(arr), b.digest_off, b.digest_len, b.digest_len});
    AppendTarHeader(out, "blob.digest", b.digest_len);
  }
  info.compressed_size = out.size();
  return b;
}

// Appends the inlined bootstrap (section 7), if any, and the ToC (section 8),
// then computes the blob id (spec 6.8).
Status FinishV6Blob(V6BlobBuild& b, const std::vector<uint8_t>* bootstrap) {
  std::vector<uint8_t>& out = b.bytes;
  bool toc = b.info.features & kFeatHasToc;
  if (bootstrap != nullptr) {
    uint64_t off = out.size();
    if (toc) {
      ASSIGN_OR_RETURN(std::vector<uint8_t> z,
                       storage::Compress(Compressor::kZstd, ByteSpan(*bootstrap)));
      bool use_z = z.size() < bootstrap->size();
      const std::vector<uint8_t>& payload = use_z ? z : *bootstrap;
      out.insert(out.end(), payload.begin(), payload.end());
      b.toc.push_back({use_z ? 0x2u : 0x1u, "image.boot", base::Sha256(ByteSpan(*bootstrap)), off,
                       payload.size(), bootstrap->size()});
      AppendTarHeader(out, "image.boot", payload.size());
    } else {
      out.insert(out.end(), bootstrap->begin(), bootstrap->end());
      AppendTarHeader(out, "image.boot", bootstrap->size());
    }
  }
  if (toc) {
    uint64_t toc_off = out.size();
    AppendToc(out, b.toc);
    if (bootstrap == nullptr) {
      b.info.toc_size = static_cast<uint32_t>(out.size() - toc_off);
      b.info.toc_digest = base::Sha256(ByteSpan(out.data() + toc_off, out.size() - toc_off));
    }
  }
  if (bootstrap == nullptr) b.info.compressed_size = out.size();
  auto h = base::Hasher::Create(DigestAlgo::kSha256);
  h->Update(ByteSpan(out.data(), b.digest_off == 0 ? out.size() : b.digest_off));
  if (b.digest_off != 0) {
    uint64_t rest = b.digest_off + b.digest_len;
    h->Update(ByteSpan(out.data() + rest, out.size() - rest));
  }
  b.info.id = base::DigestHex(h->Finish());
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// v6 bootstrap (spec 3-5, 8).

struct DirEnt {
  std::string_view name;
  int node;  // node the entry names (the directory itself for ".", the parent for "..")
};

std::vector<DirEnt> DirEntries(const Tree& t, int dir) {
  const Node& n = t.nodes[dir];
  std::vector<DirEnt> ents;
  ents.reserve(n.children.size() + 2);
  for (int c : n.children) ents.push_back({t.nodes[c].name, c});
  int parent = n.parent == kNoIndex ? dir : n.parent;
  for (DirEnt dot : {DirEnt{".", dir}, DirEnt{"..", parent}}) {
    auto pos = std::lower_bound(ents.begin(), ents.end(), dot,
                                [](const DirEnt& a, const DirEnt& b) { return a.name < b.name; });
    ents.insert(pos, dot);
  }
  return ents;
}

// Packs dirents into blocks (spec 8.1); returns i_size. With `out`, writes the
// blocks there (out must hold ceil(i_size / bs) blocks of zeros).
uint64_t PackDir(const Tree& t, const std::vector<DirEnt>& ents, uint8_t* out) {
  uint64_t blocks = 0;
  size_t i = 0;
  uint64_t used = 0;
  while (i < ents.size()) {
    size_t start = i;
    used = 0;
    while (i < ents.size() && used + 12 + ents[i].name.size() <= kBlockSize) {
      used += 12 + ents[i].name.size();
      ++i;
    }
    if (out != nullptr) {
      uint8_t* blk = out + blocks * kBlockSize;
      uint64_t nameoff = 12 * (i - start);
      for (size_t j = start; j < i; ++j) {
        const Inode& ino = t.inodes[t.nodes[ents[j].node].inode];
        uint8_t* d = blk + 12 * (j - start);
        StoreLe64(d, ino.nid);
        StoreLe16(d + 8, static_cast<uint16_t>(nameoff));
        d[10] = DirentType(ino.e->mode);
        std::memcpy(blk + nameoff, ents[j].name.data(), ents[j].name.size());
        nameoff += ents[j].name.size();
      }
    }
    ++blocks;
  }
  return (blocks - 1) * kBlockSize + used;
}

class V6Writer {
 public:
  V6Writer(Tree& t, ChunkStore& s, const WriterOptions& o) : t_(t), store_(s), o_(o) {}

  // Lays out the bootstrap for `blob_count` blobs.
  Status Layout();
  // Serialises the bootstrap with the given blob-table entries.
  std::vector<uint8_t> Serialize(const std::vector<V6BlobInfo>& blobs) const;

 private:
  uint32_t InodeSize(const Inode& i) const { return i.compact ? 32 : 64; }
  Status PrepareInode(Inode& i, int node);
  void PlaceInode(Inode& i);
  void PlaceDir(int dir);
  void WriteInode(uint8_t* boot, const Inode& i, int node) const;

  Tree& t_;
  ChunkStore& store_;
  const WriterOptions& o_;

  int nblobs_ = 0;
  uint64_t meta_start_ = 0;
  uint64_t blob_table_off_ = 0;
  uint64_t prefetch_off_ = 0;
  std::vector<uint32_t> prefetch_nodes_;
  uint64_t cursor_ = 0;
  std::vector<int> placed_nodes_;  // a node per inode, in placement order
  uint64_t chunk_table_off_ = 0;
  std::vector<uint32_t> chunk_table_;  // stored chunk ids, sorted
  uint64_t file_size_ = 0;
};

Status V6Writer::PrepareInode(Inode& i, int node) {
  const TreeEntry& e = *i.e;
  uint64_t xsize = 0;
  if (!i.xattrs.empty()) {
    xsize = 12;
    for (const EncodedXattr& x : i.xattrs)
      xsize += AlignUp(4 + x.suffix.size() + x.value.size(), 4);
    if ((xsize - 12) / 4 + 1 > 0xFFFF) {
      return InvalidArgumentError(e.path, ": xattrs too large for an inline xattr area");
    }
  }
  i.xattr_size = static_cast<uint32_t>(xsize);
  if (IsReg(e.mode)) {
    i.size = e.data.size();
  } else if (IsLnk(e.mode)) {
    i.size = e.symlink_target.size();
  } else if (IsDir(e.mode)) {
    i.size = PackDir(t_, DirEntries(t_, node), nullptr);
  } else {
    i.size = 0;
  }
  uint32_t uid = o_.explicit_uid_gid ? e.uid : 0;
  uint32_t gid = o_.explicit_uid_gid ? e.gid : 0;
  i.compact = o_.compact_inodes && uid <= 0xFFFF && gid <= 0xFFFF && i.nlink <= 0xFFFF &&
              i.size <= 0xFFFFFFFFull;
  if (IsReg(e.mode)) {
    i.layout = kLayoutChunkBased;
  } else if (IsDir(e.mode) || IsLnk(e.mode)) {
    uint64_t tail = i.size % kBlockSize;
    bool inl = tail != 0 && InodeSize(i) + i.xattr_size + tail <= kBlockSize;
    i.layout = inl ? kLayoutFlatInline : kLayoutFlatPlain;
    i.full_blocks =
        static_cast<uint32_t>(inl ? i.size / kBlockSize : AlignUp(i.size, kBlockSize) / kBlockSize);
  } else {
    i.layout = kLayoutFlatPlain;
  }
  return Status::Ok();
}

void V6Writer::PlaceInode(Inode& i) {
  uint64_t isize = InodeSize(i);
  uint64_t item = isize + i.xattr_size;
  if (i.layout == kLayoutChunkBased) {
    item = AlignUp(item, 8) + 8 * i.chunks.size();
  } else if (i.layout == kLayoutFlatInline) {
    item += i.size % kBlockSize;
  }
  uint64_t pos = AlignUp(cursor_, 32);
  uint64_t in_block = pos % kBlockSize;
  // Keep small items (and always the inline tail) inside one block, and never
  // let the inode core itself straddle a block boundary.
  if ((item <= kBlockSize && in_block + item > kBlockSize) || in_block + isize > kBlockSize) {
    pos = AlignUp(pos, kBlockSize);
  }
  i.offset = pos;
  i.nid = (pos - meta_start_) / 32;
  i.placed = true;
  cursor_ = pos + item;
}

void V6Writer::PlaceDir(int dir) {
  Inode& d = t_.inodes[t_.nodes[dir].inode];
  PlaceInode(d);
  placed_nodes_.push_back(dir);
  for (int c : t_.nodes[dir].children) {
    Inode& ci = t_.inodes[t_.nodes[c].inode];
    if (!IsDir(ci.e->mode) && !ci.placed) {
      PlaceInode(ci);
      placed_nodes_.push_back(c);
    }
  }
  for (int c : t_.nodes[dir].children) {
    if (t_.NodeIsDir(c)) PlaceDir(c);
  }
}

Status V6Writer::Layout() {
  nblobs_ = store_.blob_count();
  std::vector<bool> prepared(t_.inodes.size(), false);
  for (int n : t_.by_seq) {
    int ino = t_.nodes[n].inode;
    if (prepared[ino]) continue;
    prepared[ino] = true;
    RETURN_IF_ERROR(PrepareInode(t_.inodes[ino], n));
  }

  if (nblobs_ == 0) {
    // Metadata-only bootstrap (spec 3): meta_blkaddr 0, root at 4096.
    meta_start_ = 0;
    blob_table_off_ = kBlockSize;
  } else {
    blob_table_off_ = AlignUp(1408 + 128ull * nblobs_, kBlockSize);
    uint64_t end = blob_table_off_ + 256ull * nblobs_;
    for (const std::string& p : o_.prefetch_paths) {
      int node = t_.Lookup(p);
      if (node != kNoIndex) prefetch_nodes_.push_back(node);
    }
    if (!prefetch_nodes_.empty()) {
      prefetch_off_ = end;
      end += 4 * prefetch_nodes_.size();
    }
    meta_start_ = AlignUp(end, kBlockSize);
  }
  cursor_ = meta_start_ + kBlockSize;  // root = nid 128
  PlaceDir(t_.by_seq[0]);
  if (t_.inodes[t_.nodes[t_.by_seq[0]].inode].nid != 128) {
    return base::InternalError("root not at nid 128");
  }
  // Full FLAT data blocks go after the inode area, in placement order.
  uint64_t blk = AlignUp(cursor_, kBlockSize) / kBlockSize;
  for (int n : placed_nodes_) {
    Inode& i = t_.inodes[t_.nodes[n].inode];
    if (i.full_blocks == 0) continue;
    if (blk + i.full_blocks > 0xFFFFFFFFull)
      return base::ResourceExhaustedError("bootstrap too big");
    i.raw_blkaddr = static_cast<uint32_t>(blk);
    blk += i.full_blocks;
  }
  chunk_table_off_ = blk * kBlockSize;
  chunk_table_.resize(store_.chunks.size());
  for (uint32_t k = 0; k < chunk_table_.size(); ++k) chunk_table_[k] = k;
  std::sort(chunk_table_.begin(), chunk_table_.end(), [this](uint32_t a, uint32_t b) {
    const StoredChunk& x = store_.chunks[a];
    const StoredChunk& y = store_.chunks[b];
    if (x.digest != y.digest) return x.digest < y.digest;
    return store_.BlobIndexOf(x) < store_.BlobIndexOf(y);
  });
  file_size_ = AlignUp(chunk_table_off_ + 80ull * chunk_table_.size(), kBlockSize);
  if (file_size_ < kBlockSize) file_size_ = kBlockSize;
  return Status::Ok();
}

void WriteChunkRecord(uint8_t* p, const StoredChunk& c, int blob_index, uint64_t file_offset) {
  std::memcpy(p, c.digest.data(), 32);
  StoreLe32(p + 32, static_cast<uint32_t>(blob_index));
  StoreLe32(p + 36, c.Flags());
  StoreLe32(p + 40, c.csize);
  StoreLe32(p + 44, c.usize);
  StoreLe64(p + 48, c.coff);
  StoreLe64(p + 56, c.uoff);
  StoreLe64(p + 64, file_offset);
  StoreLe32(p + 72, c.ci_index);
  StoreLe32(p + 76, c.has_crc ? c.crc : 0);
}

void V6Writer::WriteInode(uint8_t* boot, const Inode& i, int node) const {
  const TreeEntry& e = *i.e;
  uint8_t* p = boot + i.offset;
  uint32_t uid = o_.explicit_uid_gid ? e.uid : 0;
  uint32_t gid = o_.explicit_uid_gid ? e.gid : 0;
  uint32_t iu = 0;
  if (i.layout == kLayoutChunkBased) {
    iu = 0x20 | static_cast<uint32_t>(Log2(o_.chunk_size) - kBlockBits);
  } else if (IsDev(e.mode)) {
    iu = EncodeDev(e.rdev);
  } else if (i.full_blocks > 0) {
    iu = i.raw_blkaddr;
  }
  uint16_t icount = i.xattr_size == 0 ? 0 : static_cast<uint16_t>((i.xattr_size - 12) / 4 + 1);
  uint16_t format = static_cast<uint16_t>((i.compact ? 0 : 1) | (i.layout << 1));
  StoreLe16(p, format);
  StoreLe16(p + 2, icount);
  StoreLe16(p + 4, static_cast<uint16_t>(e.mode));
  if (i.compact) {
    StoreLe16(p + 6, static_cast<uint16_t>(i.nlink));
    StoreLe32(p + 8, static_cast<uint32_t>(i.size));
    StoreLe32(p + 16, iu);
    StoreLe32(p + 20, i.ino);
    StoreLe16(p + 24, static_cast<uint16_t>(uid));
    StoreLe16(p + 26, static_cast<uint16_t>(gid));
  } else {
    StoreLe64(p + 8, i.size);
    StoreLe32(p + 16, iu);
    StoreLe32(p + 20, i.ino);
    StoreLe32(p + 24, uid);
    StoreLe32(p + 28, gid);
    StoreLe64(p + 32, e.mtime);
    StoreLe32(p + 40, e.mtime_nsec);
    StoreLe32(p + 44, i.nlink);
  }
  uint8_t* x = p + InodeSize(i);
  if (i.xattr_size != 0) {
    uint8_t* q = x + 12;  // header: all zero (no shared xattrs)
    for (const EncodedXattr& a : i.xattrs) {
      q[0] = static_cast<uint8_t>(a.suffix.size());
      q[1] = a.index;
      StoreLe16(q + 2, static_cast<uint16_t>(a.value.size()));
      std::memcpy(q + 4, a.suffix.data(), a.suffix.size());
      std::memcpy(q + 4 + a.suffix.size(), a.value.data(), a.value.size());
      q += AlignUp(4 + a.suffix.size() + a.value.size(), 4);
    }
  }
  uint8_t* after = x + i.xattr_size;
  if (i.layout == kLayoutChunkBased) {
    uint8_t* idx = boot + AlignUp(i.offset + InodeSize(i) + i.xattr_size, 8);
    for (uint32_t id : i.chunks) {
      const StoredChunk& c = store_.chunks[id];
      StoreLe16(idx, static_cast<uint16_t>(c.ci_index & 0xFFFF));
      idx[2] = static_cast<uint8_t>(store_.BlobIndexOf(c) + 1);
      idx[3] = static_cast<uint8_t>(c.ci_index >> 16);
      StoreLe32(idx + 4, static_cast<uint32_t>(c.uoff / kBlockSize));
      idx += 8;
    }
    return;
  }
  if (!IsDir(e.mode) && !IsLnk(e.mode)) return;
  // FLAT data: full blocks at raw_blkaddr, an inline tail right after the xattrs.
  uint64_t nblocks = AlignUp(i.size, kBlockSize) / kBlockSize;
  std::vector<uint8_t> dirbuf;
  const uint8_t* data;
  if (IsDir(e.mode)) {
    dirbuf.assign(nblocks * kBlockSize, 0);
    PackDir(t_, DirEntries(t_, node), dirbuf.data());
    data = dirbuf.data();
  } else {
    data = reinterpret_cast<const uint8_t*>(e.symlink_target.data());
  }
  uint64_t full_bytes = std::min<uint64_t>(i.full_blocks * kBlockSize, i.size);
  if (full_bytes > 0) std::memcpy(boot + i.raw_blkaddr * kBlockSize, data, full_bytes);
  if (i.layout == kLayoutFlatInline) {
    std::memcpy(after, data + full_bytes, i.size - full_bytes);
  }
}

std::vector<uint8_t> V6Writer::Serialize(const std::vector<V6BlobInfo>& blobs) const {
  std::vector<uint8_t> boot(file_size_, 0);
  uint8_t* b = boot.data();

  uint64_t s_blocks = 0;
  for (const V6BlobInfo& bl : blobs) s_blocks += bl.uncompressed_size / kBlockSize;
  bool all_digest = true;
  for (const V6BlobInfo& bl : blobs) all_digest &= (bl.features & kFeatInlinedChunkDigest) != 0;

  // EROFS superblock (spec 3.1).
  uint8_t* sb = b + 1024;
  StoreLe32(sb, 0xE0F5E1E2);
  StoreLe32(sb + 8, 0x40000000);
  sb[12] = kBlockBits;
  StoreLe16(sb + 14, 128);
  StoreLe64(sb + 16, t_.nodes.size());
  StoreLe32(sb + 36, static_cast<uint32_t>(s_blocks));
  StoreLe32(sb + 40, static_cast<uint32_t>(meta_start_ / kBlockSize));
  StoreLe32(sb + 80, 0x0C);
  StoreLe16(sb + 86, static_cast<uint16_t>(blobs.size()));
  StoreLe16(sb + 88, 11);

  // Nydus extended superblock (spec 3.2).
  uint64_t flags = CompressorFlag(o_.compressor) | DigestFlag(o_.digester) | kFlagEncryptionNone;
  if (o_.explicit_uid_gid) flags |= kFlagExplicitUidGid;
  if (t_.has_xattr) flags |= kFlagHasXattr;
  if (all_digest) flags |= kFlagInlinedChunkDigest;
  uint8_t* ext = b + 1152;
  StoreLe64(ext, flags);
  StoreLe64(ext + 8, blob_table_off_);
  StoreLe32(ext + 16, static_cast<uint32_t>(256 * blobs.size()));
  StoreLe32(ext + 20, o_.chunk_size);
  StoreLe64(ext + 24, chunk_table_off_);
  StoreLe64(ext + 32, 80ull * chunk_table_.size());
  if (!prefetch_nodes_.empty()) {
    StoreLe64(ext + 40, prefetch_off_);
    StoreLe32(ext + 48, static_cast<uint32_t>(4 * prefetch_nodes_.size()));
  }

  // Device table (spec 3.3) and blob table (spec 3.4).
  uint64_t mapped = 0;
  uint64_t prev_end = file_size_;
  for (size_t k = 0; k < blobs.size(); ++k) {
    const V6BlobInfo& bl = blobs[k];
    uint64_t blocks = bl.uncompressed_size / kBlockSize;
    mapped = AlignUp(prev_end, 512 * 1024) / kBlockSize;
    prev_end = (mapped + blocks) * kBlockSize;
    uint8_t* slot = b + 1408 + 128 * k;
    CopyName(slot, 64, bl.id);
    StoreLe32(slot + 64, static_cast<uint32_t>(blocks));
    StoreLe32(slot + 68, static_cast<uint32_t>(mapped));

    uint8_t* e = b + blob_table_off_ + 256 * k;
    CopyName(e, 64, bl.id);
    StoreLe32(e + 64, static_cast<uint32_t>(k));
    StoreLe32(e + 68, o_.chunk_size);
    StoreLe32(e + 72, bl.chunk_count);
    StoreLe32(e + 76, static_cast<uint32_t>(o_.compressor));
    StoreLe32(e + 80, static_cast<uint32_t>(o_.digester));
    StoreLe32(e + 84, bl.features);
    StoreLe64(e + 88, bl.compressed_size);
    StoreLe64(e + 96, bl.uncompressed_size);
    StoreLe32(e + 104, bl.toc_size);
    StoreLe32(e + 108, static_cast<uint32_t>(bl.ci_compressor));
    StoreLe64(e + 112, bl.ci_offset);
    StoreLe64(e + 120, bl.ci_csize);
    StoreLe64(e + 128, bl.ci_usize);
    std::memcpy(e + 136, bl.toc_digest.data(), 32);
  }
  // Prefetch table (spec 3.5).
  for (size_t k = 0; k < prefetch_nodes_.size(); ++k) {
    const Inode& i = t_.inodes[t_.nodes[prefetch_nodes_[k]].inode];
    StoreLe32(b + prefetch_off_ + 4 * k, static_cast<uint32_t>(i.nid));
  }
  // Inodes with their xattrs, chunk indexes and data.
  for (int n : placed_nodes_) WriteInode(b, t_.inodes[t_.nodes[n].inode], n);
  // Chunk table (spec 3.6).
  uint8_t* ct = b + chunk_table_off_;
  for (uint32_t id : chunk_table_) {
    const StoredChunk& c = store_.chunks[id];
    WriteChunkRecord(ct, c, store_.BlobIndexOf(c), c.file_offset);
    ct += 80;
  }
  return boot;
}

Result<WrittenImage> WriteV6(Tree& t, const WriterOptions& o) {
  ChunkStore store(o, /*aligned=*/true, /*v2_limits=*/o.ci_v2);
  RETURN_IF_ERROR(CutChunks(t, store, o));
  V6Writer w(t, store, o);
  RETURN_IF_ERROR(w.Layout());

  std::vector<V6BlobBuild> builds;
  for (int k = 0; k < store.blob_count(); ++k) {
    ASSIGN_OR_RETURN(V6BlobBuild bb, BuildV6BlobHead(store, store.blob(k), o));
    builds.push_back(std::move(bb));
  }
  WrittenImage img;
  bool inline_meta =
      o.layout == BlobLayout::kInlineMetaToc || o.layout == BlobLayout::kInlineMetaNoToc;
  std::vector<V6BlobInfo> infos;
  if (inline_meta && !builds.empty()) {
    builds[0].info.id = std::string(64, 'x');
    std::vector<uint8_t> inner = w.Serialize({builds[0].info});
    RETURN_IF_ERROR(FinishV6Blob(builds[0], &inner));
    infos.push_back(builds[0].info);
  } else {
    for (V6BlobBuild& bb : builds) {
      RETURN_IF_ERROR(FinishV6Blob(bb, nullptr));
      infos.push_back(bb.info);
    }
  }
  img.bootstrap = w.Serialize(infos);
  for (V6BlobBuild& bb : builds) {
    img.blob_ids.push_back(bb.info.id);
    if (!img.blobs.emplace(bb.info.id, std::move(bb.bytes)).second) {
      return base::InternalError("two blobs with the same id ", bb.info.id);
    }
  }
  return img;
}

// ---------------------------------------------------------------------------
// v5 bootstrap (spec 7).

Result<WrittenImage> WriteV5(Tree& t, const WriterOptions& o) {
  ChunkStore store(o, /*aligned=*/false, /*v2_limits=*/false);
  RETURN_IF_ERROR(CutChunks(t, store, o));
  const int nblobs = store.blob_count();
  WrittenImage img;
  std::vector<uint64_t> blob_usize;
  std::vector<uint32_t> blob_chunks;
  for (int k = 0; k < nblobs; ++k) {
    BlobSlot& s = store.blob(k);
    std::string id = base::DigestHex(base::Sha256(ByteSpan(s.data)));
    blob_usize.push_back(s.usize);
    blob_chunks.push_back(static_cast<uint32_t>(s.chunks.size()));
    img.blob_ids.push_back(id);
    if (!img.blobs.emplace(id, std::move(s.data)).second) {
      return base::InternalError("two blobs with the same id ", id);
    }
  }

  // Merkle digests (spec 7.10): children have larger sequence numbers, so a
  // reverse walk sees every child before its directory.
  const size_t n = t.nodes.size();
  std::vector<Digest> digest(n);
  for (size_t k = n; k-- > 0;) {
    int node = t.by_seq[k];
    const Inode& i = t.inodes[t.nodes[node].inode];
    const TreeEntry& e = *i.e;
    std::string buf;
    if (IsReg(e.mode)) {
      for (uint32_t id : i.chunks) {
        buf.append(reinterpret_cast<const char*>(store.chunks[id].digest.data()), 32);
      }
    } else if (IsLnk(e.mode)) {
      buf = e.symlink_target;
    } else if (IsDir(e.mode)) {
      for (int c : t.nodes[node].children) {
        const Digest& d = digest[t.nodes[c].seq - 1];
        buf.append(reinterpret_cast<const char*>(d.data()), 32);
      }
    }
    digest[k] = base::ComputeDigest(o.digester, base::AsBytes(buf));
  }

  // Table sizes.
  std::vector<uint32_t> prefetch;
  for (const std::string& p : o.prefetch_paths) {
    int node = t.Lookup(p);
    if (node != kNoIndex) prefetch.push_back(t.inodes[t.nodes[node].inode].ino);
  }
  uint64_t inode_table_off = 8192;
  uint64_t inode_table_size = AlignUp(4 * n, 8);
  uint64_t prefetch_off = inode_table_off + inode_table_size;
  uint64_t prefetch_size = AlignUp(4 * prefetch.size(), 8);
  uint64_t blob_table_off = prefetch_off + prefetch_size;
  std::vector<uint8_t> blob_table;
  for (int k = 0; k < nblobs; ++k) {
    if (k > 0) blob_table.push_back(0);
    uint8_t ra[8] = {};  // readahead offset and size: none
    blob_table.insert(blob_table.end(), ra, ra + 8);
    blob_table.insert(blob_table.end(), img.blob_ids[k].begin(), img.blob_ids[k].end());
  }
  blob_table.resize(AlignUp(blob_table.size(), 8), 0);
  uint64_t ext_off = blob_table_off + blob_table.size();
  uint64_t records_off = ext_off + 64ull * nblobs;

  // Record offsets.
  std::vector<uint64_t> rec_off(n);
  std::vector<uint64_t> xsize(t.inodes.size(), 0);  // unpadded sum of (4 + pair_size)
  for (size_t ino = 0; ino < t.inodes.size(); ++ino) {
    for (const auto& [name, value] : t.inodes[ino].e->xattrs) {
      xsize[ino] += 4 + name.size() + 1 + value.size();
    }
  }
  uint64_t off = records_off;
  for (size_t k = 0; k < n; ++k) {
    int node = t.by_seq[k];
    int ino = t.nodes[node].inode;
    const TreeEntry& e = *t.inodes[ino].e;
    rec_off[k] = off;
    std::string_view name = t.nodes[node].name;
    off += 128 + AlignUp(name.size(), 8) + AlignUp(e.symlink_target.size(), 8);
    if (!t.inodes[ino].xattrs.empty()) off += 8 + AlignUp(xsize[ino], 8);
    off += 80ull * t.inodes[ino].chunks.size();
  }
  uint64_t file_size = off;
  if (file_size > (1ull << 31)) return base::ResourceExhaustedError("v5 bootstrap over 2 GiB");

  std::vector<uint8_t> boot(file_size, 0);
  uint8_t* b = boot.data();
  uint64_t flags = CompressorFlag(o.compressor) | DigestFlag(o.digester);
  if (o.explicit_uid_gid) flags |= kFlagExplicitUidGid;
  if (t.has_xattr) flags |= kFlagHasXattr;
  StoreLe32(b, 0x52414653);
  StoreLe32(b + 4, 0x500);
  StoreLe32(b + 8, 8192);
  StoreLe32(b + 12, o.chunk_size);
  StoreLe64(b + 16, flags);
  StoreLe64(b + 24, t.inodes.size());
  StoreLe64(b + 32, inode_table_off);
  StoreLe64(b + 40, prefetch_off);
  StoreLe64(b + 48, blob_table_off);
  StoreLe32(b + 56, static_cast<uint32_t>(n));
  StoreLe32(b + 60, static_cast<uint32_t>(prefetch.size()));
  StoreLe32(b + 64, static_cast<uint32_t>(blob_table.size()));
  StoreLe32(b + 68, static_cast<uint32_t>(nblobs));
  StoreLe64(b + 72, nblobs > 0 ? ext_off : 0);

  for (size_t k = 0; k < n; ++k) {
    StoreLe32(b + inode_table_off + 4 * k, static_cast<uint32_t>(rec_off[k] >> 3));
  }
  for (size_t k = 0; k < prefetch.size(); ++k) StoreLe32(b + prefetch_off + 4 * k, prefetch[k]);
  if (!blob_table.empty()) std::memcpy(b + blob_table_off, blob_table.data(), blob_table.size());
  for (int k = 0; k < nblobs; ++k) {
    uint8_t* e = b + ext_off + 64 * k;
    StoreLe32(e, blob_chunks[k]);
    StoreLe32(e + 4, 0);
    StoreLe64(e + 8, blob_usize[k]);
    StoreLe64(e + 16, img.blobs[img.blob_ids[k]].size());
  }

  for (size_t k = 0; k < n; ++k) {
    int node = t.by_seq[k];
    const Node& nd = t.nodes[node];
    int ino = nd.inode;
    const Inode& i = t.inodes[ino];
    const TreeEntry& e = *i.e;
    uint8_t* p = b + rec_off[k];
    uint64_t size = 0;
    uint32_t child_index = 0;
    uint32_t child_count = 0;
    if (IsReg(e.mode)) {
      size = e.data.size();
      child_count = static_cast<uint32_t>(i.chunks.size());
    } else if (IsLnk(e.mode)) {
      size = e.symlink_target.size();
    } else if (IsDir(e.mode)) {
      uint64_t sum = 0;
      for (int c : nd.children) sum += t.nodes[c].name.size() + 8;
      size = sum == 0 ? 4096 : AlignUp(sum, 4096);
      child_count = static_cast<uint32_t>(nd.children.size());
      if (child_count > 0) child_index = t.nodes[nd.children[0]].seq;
    }
    uint64_t x_padded = i.xattrs.empty() ? 0 : AlignUp(xsize[ino], 8);
    uint64_t iflags = 0;
    if (IsLnk(e.mode)) iflags |= 0x1;
    if (IsReg(e.mode) && i.nlink > 1) iflags |= 0x2;
    if (!i.xattrs.empty()) iflags |= 0x4;
    std::memcpy(p, digest[k].data(), 32);
    StoreLe64(p + 32, nd.parent == kNoIndex ? 0 : t.nodes[nd.parent].seq);
    StoreLe64(p + 40, i.ino);
    StoreLe32(p + 48, o.explicit_uid_gid ? e.uid : 0);
    StoreLe32(p + 52, o.explicit_uid_gid ? e.gid : 0);
    StoreLe32(p + 60, e.mode);
    StoreLe64(p + 64, size);
    StoreLe64(p + 72, (size + x_padded + 511) / 512);
    StoreLe64(p + 80, iflags);
    StoreLe32(p + 88, i.nlink);
    StoreLe32(p + 92, child_index);
    StoreLe32(p + 96, child_count);
    StoreLe16(p + 100, static_cast<uint16_t>(nd.name.size()));
    StoreLe16(p + 102, static_cast<uint16_t>(e.symlink_target.size()));
    StoreLe32(p + 104, IsDev(e.mode) ? EncodeDev(e.rdev) : 0);
    StoreLe32(p + 108, e.mtime_nsec);
    StoreLe64(p + 112, e.mtime);
    uint8_t* q = p + 128;
    std::memcpy(q, nd.name.data(), nd.name.size());
    q += AlignUp(nd.name.size(), 8);
    if (!e.symlink_target.empty()) {
      std::memcpy(q, e.symlink_target.data(), e.symlink_target.size());
      q += AlignUp(e.symlink_target.size(), 8);
    }
    if (!i.xattrs.empty()) {
      StoreLe64(q, xsize[ino]);
      uint8_t* x = q + 8;
      for (const auto& [name, value] : e.xattrs) {
        StoreLe32(x, static_cast<uint32_t>(name.size() + 1 + value.size()));
        std::memcpy(x + 4, name.data(), name.size());
        std::memcpy(x + 4 + name.size() + 1, value.data(), value.size());
        x += 4 + name.size() + 1 + value.size();
      }
      q += 8 + x_padded;
    }
    for (size_t c = 0; c < i.chunks.size(); ++c) {
      const StoredChunk& ch = store.chunks[i.chunks[c]];
      WriteChunkRecord(q, ch, store.BlobIndexOf(ch), c * o.chunk_size);
      q += 80;
    }
  }
  img.bootstrap = std::move(boot);
  return img;
}

Status ValidateOptions(const WriterOptions& o) {
  if (o.fs_version != 5 && o.fs_version != 6) {
    return InvalidArgumentError("fs_version must be 5 or 6, got ", o.fs_version);
  }
  if (!base::IsPowerOfTwo(o.chunk_size) || o.chunk_size < 4096 || o.chunk_size > (16u << 20)) {
    return InvalidArgumentError("chunk_size must be a power of two in 4 KiB..16 MiB, got ",
                                o.chunk_size);
  }
  if (o.blob_count < 1 || o.blob_count > 254) {
    return InvalidArgumentError("blob_count must be 1..254, got ", o.blob_count);
  }
  switch (o.compressor) {
    case Compressor::kNone:
    case Compressor::kLz4Block:
    case Compressor::kGzip:
    case Compressor::kZstd:
      break;
    default:
      return InvalidArgumentError("unknown compressor ", static_cast<uint32_t>(o.compressor));
  }
  if (o.digester != DigestAlgo::kBlake3 && o.digester != DigestAlgo::kSha256) {
    return InvalidArgumentError("unknown digester ", static_cast<uint32_t>(o.digester));
  }
  bool inline_meta =
      o.layout == BlobLayout::kInlineMetaToc || o.layout == BlobLayout::kInlineMetaNoToc;
  if (inline_meta && o.blob_count != 1) {
    return InvalidArgumentError("inline-meta layouts need blob_count 1");
  }
  if (o.fs_version == 5 && (o.layout != BlobLayout::kDefault || o.ci_v2 || o.compact_inodes)) {
    return InvalidArgumentError("v5 supports only the default blob layout and no v6 options");
  }
  return Status::Ok();
}

Status WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return base::ErrnoToStatus(errno, StrCat("open ", path));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return base::ErrnoToStatus(errno, StrCat("write ", path));
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd.Release()) != 0) return base::ErrnoToStatus(errno, StrCat("close ", path));
  return Status::Ok();
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return base::ErrnoToStatus(errno, StrCat("mkdir ", path));
  }
  return Status::Ok();
}

// splitmix64: deterministic on every standard library.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
  double Unit() { return static_cast<double>(Next() >> 11) / static_cast<double>(1ull << 53); }
};

}  // namespace

uint32_t Crc32c(ByteSpan data) {
  const Crc32cTables& t = Crc32cTable();
  uint32_t c = 0xFFFFFFFFu;
  const uint8_t* p = data.data();
  size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v = base::LoadLe64(p) ^ c;
    c = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
        t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return ~c;
}

Result<WrittenImage> WriteImage(const std::vector<TreeEntry>& tree, const WriterOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  Tree t;
  RETURN_IF_ERROR(t.Build(tree));
  if (options.fs_version == 5) return WriteV5(t, options);
  return WriteV6(t, options);
}

Status WriteImageToDir(const WrittenImage& image, const std::string& dir) {
  RETURN_IF_ERROR(MakeDir(dir));
  RETURN_IF_ERROR(WriteFile(dir + "/bootstrap", image.bootstrap));
  RETURN_IF_ERROR(MakeDir(dir + "/blobs"));
  for (const auto& [id, bytes] : image.blobs) {
    RETURN_IF_ERROR(WriteFile(dir + "/blobs/" + id, bytes));
  }
  return Status::Ok();
}

std::vector<TreeEntry> MakeWideTree(int entries, uint32_t seed) {
  Rng rng{0x5EED0000ull ^ seed};
  static const char* const kWords[] = {"alpha",  "beta",   "gamma",  "delta",   "config", "value",
                                       "return", "static", "const",  "include", "struct", "void",
                                       "int",    "char",   "buffer", "length",  "offset", "error",
                                       "status", "result", "the",    "of",      "and",    "to",
                                       "in",     "is",     "for",    "with",    "on",     "as"};
  constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);
  // A shared pool of pseudo text; each file takes a random window of it.
  std::string pool;
  while (pool.size() < 64 * 1024) {
    pool += kWords[rng.Below(kWordCount)];
    pool += rng.Below(12) == 0 ? '\n' : ' ';
  }

  std::vector<TreeEntry> out;
  out.reserve(entries + 1);
  TreeEntry root;
  root.path = "/";
  root.mode = S_IFDIR | 0755;
  root.mtime = 1700000000;
  out.push_back(root);
  struct Pending {
    std::string path;
    int depth;
  };
  std::deque<Pending> queue{{"", 0}};
  int made = 1;
  int counter = 0;
  constexpr int kMaxDepth = 6;
  while (made < entries && !queue.empty()) {
    Pending dir = std::move(queue.front());
    queue.pop_front();
    int want = 10 + static_cast<int>(rng.Below(191));
    want = std::min(want, entries - made);
    for (int k = 0; k < want; ++k) {
      TreeEntry e;
      ++counter;
      uint64_t r = rng.Below(100);
      bool make_dir = dir.depth < kMaxDepth && (k == 0 || r < 10);
      e.mtime = 1700000000 + rng.Below(1000000);
      e.mtime_nsec = static_cast<uint32_t>(rng.Below(1000000000));
      e.uid = rng.Below(4) == 0 ? 1000 : 0;
      e.gid = e.uid;
      if (make_dir) {
        e.path = StrCat(dir.path, "/dir", counter);
        e.mode = S_IFDIR | 0755;
        queue.push_back({e.path, dir.depth + 1});
      } else if (r < 15) {
        e.path = StrCat(dir.path, "/link", counter);
        e.mode = S_IFLNK | 0777;
        e.symlink_target =
            rng.Below(2) == 0 ? StrCat("file", counter - 1) : StrCat("/usr/lib/target/", counter);
      } else {
        e.path = StrCat(dir.path, "/file", counter, rng.Below(3) == 0 ? ".txt" : ".so");
        e.mode = S_IFREG | (rng.Below(5) == 0 ? 0755 : 0644);
        double u = rng.Unit();
        size_t size = static_cast<size_t>(u * u * u * 8192);
        if (size > 0) {
          std::string head = StrCat(e.path, "\n");
          size_t start = rng.Below(pool.size() - 8192);
          e.data = head.substr(0, size);
          if (e.data.size() < size) e.data.append(pool, start, size - e.data.size());
        }
      }
      out.push_back(std::move(e));
      ++made;
    }
  }
  return out;
}

}  // namespace rfs::testing
