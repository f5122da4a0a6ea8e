#include "rafs/builder/v6_writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "base/bytes.h"
#include "rafs/builder/xattr.h"
#include "rafs/format/v6.h"

namespace rfs::rafs::builder {
namespace {

using base::AlignUp;
using base::StoreLe16;
using base::StoreLe32;
using base::StoreLe64;

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kInodeSize = 64;

struct DirEntryRef {
  std::string_view name;
  Node* node;
};

struct Placed {
  Node* node = nullptr;
  uint16_t layout = format::kLayoutFlatPlain;
  uint32_t xattr_size = 0;
  uint64_t data_blk = 0;  // first full data block (FLAT_*)
  uint64_t size = 0;      // i_size
  // Directories: sorted entries and the index of the first entry per block.
  std::vector<DirEntryRef> entries;
  std::vector<size_t> block_starts;
};

base::Result<uint32_t> XattrAreaSize(const Node& n) {
  if (n.xattrs.empty()) return 0u;
  uint64_t size = 12;
  for (const Xattr& x : n.xattrs) {
    ASSIGN_OR_RETURN(XattrKey key, SplitXattrName(x.name));
    size += AlignUp(4 + key.suffix.size() + x.value.size(), 4);
  }
  if ((size - 12) / 4 + 1 > 0xFFFF) {
    return base::InvalidArgumentError("entry ", n.Path(), ": xattrs take ", size,
                                      " bytes, more than an inode can hold");
  }
  return static_cast<uint32_t>(size);
}

void LayoutDirectory(Placed* p) {
  Node* d = p->node;
  p->entries.push_back({".", d});
  p->entries.push_back({"..", d->parent != nullptr ? d->parent : d});
  for (auto& c : d->children) p->entries.push_back({c->name, c.get()});
  std::sort(p->entries.begin(), p->entries.end(),
            [](const DirEntryRef& a, const DirEntryRef& b) { return a.name < b.name; });
  uint64_t used = 0;
  p->block_starts.push_back(0);
  for (size_t i = 0; i < p->entries.size(); ++i) {
    uint64_t need = format::kDirentSize + p->entries[i].name.size();
    if (used + need > kBlock) {
      p->block_starts.push_back(i);
      used = 0;
    }
    used += need;
  }
  p->size = (p->block_starts.size() - 1) * kBlock + used;
}

uint8_t FileType(uint32_t mode) {
  switch (mode & S_IFMT) {
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
    default:
      return 0;
  }
}

uint32_t EncodeRdev(uint32_t major, uint32_t minor) {
  return (minor & 0xFF) | (major << 8) | ((minor & ~0xFFu) << 12);
}

uint64_t CompressionFlag(storage::Compressor c) {
  switch (c) {
    case storage::Compressor::kNone:
      return format::kFlagCompressionNone;
    case storage::Compressor::kLz4Block:
      return format::kFlagCompressionLz4;
    case storage::Compressor::kGzip:
      return format::kFlagCompressionGzip;
    case storage::Compressor::kZstd:
      return format::kFlagCompressionZstd;
  }
  return format::kFlagCompressionZstd;
}

Node* FindPath(Node* root, const std::string& path) {
  Node* n = root;
  size_t pos = 0;
  while (n != nullptr && pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (!n->is_dir()) return nullptr;
    n = n->FindChild(part);
  }
  return n;
}

}  // namespace

base::Result<std::vector<uint8_t>> WriteV6Bootstrap(Node* root, std::vector<ChunkInfo>* chunks,
                                                    const std::vector<BlobEntry>& blobs,
                                                    const V6Options& options) {
  if (!root->is_dir()) return base::InvalidArgumentError("bootstrap: root is not a directory");
  if (blobs.size() > format::kMaxV6Blobs) {
    return base::InvalidArgumentError("bootstrap: ", blobs.size(), " blobs, at most ",
                                      format::kMaxV6Blobs);
  }
  const uint64_t cs = options.chunk_size;
  const uint32_t chunk_bits = static_cast<uint32_t>(__builtin_ctzll(cs));

  // Sequence numbers (i_ino) and s_inos.
  uint64_t seq = 0;
  bool has_xattr = options.force_has_xattr;
  VisitInSequenceOrder(root, [&](Node* n) {
    ++seq;
    n->seq = n->link_to != nullptr ? n->link_to->seq : seq;
    if (!n->xattrs.empty()) has_xattr = true;
  });
  if (seq > 0xFFFFFFFFull) return base::InvalidArgumentError("bootstrap: ", seq, " entries");

  // Prefetch table entries (resolved now, nids filled after placement).
  std::vector<Node*> prefetch;
  if (!blobs.empty()) {
    for (const std::string& p : options.prefetch_paths) {
      Node* n = FindPath(root, p);
      if (n != nullptr) prefetch.push_back(n->inode());
    }
  }

  // Fixed tables.
  const uint64_t slots_end = 1408 + format::kDeviceSlotSize * blobs.size();
  const uint64_t blob_table_offset = AlignUp(slots_end, kBlock);
  const uint64_t blob_table_size = format::kV6BlobEntrySize * blobs.size();
  const uint64_t prefetch_offset = blob_table_offset + blob_table_size;
  const uint64_t prefetch_size = 4 * prefetch.size();
  const uint64_t meta_blkaddr =
      blobs.empty() ? 0 : AlignUp(prefetch_offset + prefetch_size, kBlock) / kBlock;
  const uint64_t meta_base = meta_blkaddr * kBlock;

  // Placement (spec 4.8 order).
  std::vector<Placed> placed;
  uint64_t cursor = meta_base + kBlock;
  auto place = [&](Placed* p, uint64_t same_block_bytes) {
    cursor = AlignUp(cursor, 32);
    if (same_block_bytes <= kBlock && cursor % kBlock + same_block_bytes > kBlock) {
      cursor = AlignUp(cursor, kBlock);
    }
    p->node->offset = cursor;
    p->node->nid = (cursor - meta_base) / 32;
  };
  auto place_node = [&](Node* n) -> base::Status {
    Placed p;
    p.node = n;
    ASSIGN_OR_RETURN(p.xattr_size, XattrAreaSize(*n));
    const uint64_t head = kInodeSize + p.xattr_size;
    if (n->is_reg()) {
      p.layout = format::kLayoutChunkBased;
      p.size = n->size;
      place(&p, head);
      cursor = n->offset + AlignUp(head, 8) + 8 * n->chunks.size();
    } else if (n->is_dir() || n->is_symlink()) {
      if (n->is_dir()) {
        LayoutDirectory(&p);
      } else {
        p.size = n->symlink.size();
      }
      const uint64_t tail = p.size % kBlock;
      const uint64_t nblocks = (p.size + kBlock - 1) / kBlock;
      if (tail != 0 && head + tail <= kBlock) {
        p.layout = format::kLayoutFlatInline;
        place(&p, head + tail);
        cursor = n->offset + head + tail;
        if (nblocks > 1) {
          p.data_blk = AlignUp(cursor, kBlock) / kBlock;
          cursor = (p.data_blk + nblocks - 1) * kBlock;
        }
      } else {
        p.layout = format::kLayoutFlatPlain;
        place(&p, head);
        cursor = n->offset + head;
        p.data_blk = AlignUp(cursor, kBlock) / kBlock;
        cursor = (p.data_blk + nblocks) * kBlock;
      }
    } else {
      p.layout = format::kLayoutFlatPlain;
      place(&p, head);
      cursor = n->offset + head;
    }
    if (n->nid > 0xFFFFFFFFull * 4) return base::ResourceExhaustedError("bootstrap: too large");
    placed.push_back(std::move(p));
    return base::Status::Ok();
  };
  {
    std::vector<Node*> stack{root};
    while (!stack.empty()) {
      Node* d = stack.back();
      stack.pop_back();
      RETURN_IF_ERROR(place_node(d));
      for (auto& c : d->children) {
        if (!c->is_dir() && c->link_to == nullptr) RETURN_IF_ERROR(place_node(c.get()));
      }
      for (auto it = d->children.rbegin(); it != d->children.rend(); ++it) {
        if ((*it)->is_dir()) stack.push_back(it->get());
      }
    }
  }
  // Later hard-link names share the first name's inode.
  VisitInSequenceOrder(root, [](Node* n) {
    if (n->link_to != nullptr) {
      n->nid = n->link_to->nid;
      n->offset = n->link_to->offset;
    }
  });
  if (root->nid != 128) return base::InternalError("bootstrap: root nid ", root->nid);

  // Chunk table: referenced chunks, file_offset from the last referencing file.
  std::vector<uint32_t> referenced;
  std::vector<bool> used(chunks->size(), false);
  VisitInSequenceOrder(root, [&](Node* n) {
    if (!n->is_reg() || n->link_to != nullptr) return;
    for (size_t k = 0; k < n->chunks.size(); ++k) {
      uint32_t idx = n->chunks[k];
      (*chunks)[idx].file_offset = k * cs;
      if (!used[idx]) {
        used[idx] = true;
        referenced.push_back(idx);
      }
    }
  });
  std::sort(referenced.begin(), referenced.end(), [&](uint32_t a, uint32_t b) {
    const ChunkInfo& x = (*chunks)[a];
    const ChunkInfo& y = (*chunks)[b];
    if (x.digest != y.digest) return x.digest < y.digest;
    return x.blob_index < y.blob_index;
  });
  const uint64_t chunk_table_offset = AlignUp(cursor, kBlock);
  const uint64_t chunk_table_size = format::kChunkRecordSize * referenced.size();
  const uint64_t file_size = AlignUp(chunk_table_offset + chunk_table_size, kBlock);

  std::vector<uint8_t> out(file_size, 0);
  uint8_t* b = out.data();

  // Superblocks.
  uint64_t blocks_total = 0;
  for (const BlobEntry& e : blobs) blocks_total += e.uncompressed_size / kBlock;
  if (blocks_total > 0xFFFFFFFFull) return base::InvalidArgumentError("bootstrap: blobs too large");
  uint8_t* sb = b + format::kErofsSuperOffset;
  StoreLe32(sb + 0, format::kErofsMagic);
  StoreLe32(sb + 8, format::kRafsV6CompatMarker);
  sb[12] = 12;
  StoreLe16(sb + 14, static_cast<uint16_t>(root->nid));
  StoreLe64(sb + 16, seq);
  StoreLe32(sb + 36, static_cast<uint32_t>(blocks_total));
  StoreLe32(sb + 40, static_cast<uint32_t>(meta_blkaddr));
  StoreLe32(sb + 80, format::kErofsIncompatChunkedFile | format::kErofsIncompatDeviceTable);
  StoreLe16(sb + 86, static_cast<uint16_t>(blobs.size()));
  StoreLe16(sb + 88, 11);

  uint64_t flags = CompressionFlag(options.compressor) |
                   (options.digester == base::DigestAlgo::kSha256 ? format::kFlagHashSha256
                                                                  : format::kFlagHashBlake3) |
                   format::kFlagExplicitUidGid | format::kFlagEncryptionNone;
  if (has_xattr) flags |= format::kFlagHasXattr;
  bool all_digests = true;
  for (const BlobEntry& e : blobs) {
    if ((e.features & format::kBlobInlinedChunkDigest) == 0) all_digests = false;
  }
  if (all_digests) flags |= format::kFlagInlinedChunkDigest;
  uint8_t* ext = b + format::kRafsV6ExtSuperOffset;
  StoreLe64(ext + 0, flags);
  StoreLe64(ext + 8, blob_table_offset);
  StoreLe32(ext + 16, static_cast<uint32_t>(blob_table_size));
  StoreLe32(ext + 20, options.chunk_size);
  StoreLe64(ext + 24, chunk_table_offset);
  StoreLe64(ext + 32, chunk_table_size);
  if (!prefetch.empty()) {
    StoreLe64(ext + 40, prefetch_offset);
    StoreLe32(ext + 48, static_cast<uint32_t>(prefetch_size));
  }

  // Device slots and blob table.
  uint64_t mapped = AlignUp(file_size, 512 * 1024) / kBlock;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const BlobEntry& e = blobs[i];
    if (e.blob_id.size() > 64)
      return base::InvalidArgumentError("blob id '", e.blob_id, "' too long");
    uint8_t* slot = b + 1408 + format::kDeviceSlotSize * i;
    std::memcpy(slot, e.blob_id.data(), e.blob_id.size());
    const uint64_t blocks = e.uncompressed_size / kBlock;
    if (blocks == 0) return base::InvalidArgumentError("blob ", e.blob_id, ": no chunks");
    StoreLe32(slot + 64, static_cast<uint32_t>(blocks));
    StoreLe32(slot + 68, static_cast<uint32_t>(mapped));
    mapped = AlignUp((mapped + blocks) * kBlock, 512 * 1024) / kBlock;

    uint8_t* t = b + blob_table_offset + format::kV6BlobEntrySize * i;
    std::memcpy(t, e.blob_id.data(), e.blob_id.size());
    StoreLe32(t + 64, static_cast<uint32_t>(i));
    StoreLe32(t + 68, options.chunk_size);
    StoreLe32(t + 72, e.chunk_count);
    StoreLe32(t + 76, e.compression_algo);
    StoreLe32(t + 80, e.digest_algo);
    StoreLe32(t + 84, e.features);
    StoreLe64(t + 88, e.compressed_size);
    StoreLe64(t + 96, e.uncompressed_size);
    StoreLe32(t + 104, e.blob_toc_size);
    StoreLe32(t + 108, e.ci_compressor);
    StoreLe64(t + 112, e.ci_offset);
    StoreLe64(t + 120, e.ci_compressed_size);
    StoreLe64(t + 128, e.ci_uncompressed_size);
    std::memcpy(t + 136, e.blob_toc_digest.data(), 32);
    std::memcpy(t + 168, e.blob_meta_digest.data(), 32);
    StoreLe64(t + 200, e.blob_meta_size);
    StoreLe64(t + 208, e.cipher_iv);
    StoreLe32(t + 216, e.cipher_algo);
  }
  for (size_t i = 0; i < prefetch.size(); ++i) {
    StoreLe32(b + prefetch_offset + 4 * i, static_cast<uint32_t>(prefetch[i]->nid));
  }

  // Inodes and their data.
  for (Placed& p : placed) {
    Node* n = p.node;
    uint8_t* in = b + n->offset;
    const uint64_t head = kInodeSize + p.xattr_size;
    StoreLe16(in + 0, static_cast<uint16_t>(1 | (p.layout << 1)));
    StoreLe16(in + 2, static_cast<uint16_t>(p.xattr_size == 0 ? 0 : (p.xattr_size - 12) / 4 + 1));
    StoreLe16(in + 4, static_cast<uint16_t>(n->mode));
    StoreLe64(in + 8, p.size);
    uint32_t i_u = 0;
    uint32_t nlink = 1;
    if (n->is_reg()) {
      i_u = 0x20 | (chunk_bits - 12);
      nlink = n->link_count;
    } else if (n->is_dir()) {
      i_u = static_cast<uint32_t>(p.data_blk);
      nlink = 2;
      for (auto& c : n->children) nlink += c->is_dir() ? 1 : 0;
    } else if (n->is_symlink()) {
      i_u = static_cast<uint32_t>(p.data_blk);
    } else if (S_ISCHR(n->mode) || S_ISBLK(n->mode)) {
      i_u = EncodeRdev(n->rdev_major, n->rdev_minor);
    }
    StoreLe32(in + 16, i_u);
    StoreLe32(in + 20, static_cast<uint32_t>(n->seq));
    StoreLe32(in + 24, n->uid);
    StoreLe32(in + 28, n->gid);
    StoreLe64(in + 32, n->mtime);
    StoreLe32(in + 40, n->mtime_nsec);
    StoreLe32(in + 44, nlink);

    if (p.xattr_size != 0) {
      uint8_t* x = in + kInodeSize + 12;
      for (const Xattr& xa : n->xattrs) {
        ASSIGN_OR_RETURN(XattrKey key, SplitXattrName(xa.name));
        x[0] = static_cast<uint8_t>(key.suffix.size());
        x[1] = key.name_index;
        StoreLe16(x + 2, static_cast<uint16_t>(xa.value.size()));
        std::memcpy(x + 4, key.suffix.data(), key.suffix.size());
        std::memcpy(x + 4 + key.suffix.size(), xa.value.data(), xa.value.size());
        x += AlignUp(4 + key.suffix.size() + xa.value.size(), 4);
      }
    }

    if (n->is_reg()) {
      uint8_t* idx = in + AlignUp(head, 8);
      for (size_t k = 0; k < n->chunks.size(); ++k) {
        const ChunkInfo& c = (*chunks)[n->chunks[k]];
        StoreLe16(idx + 8 * k, static_cast<uint16_t>(c.index & 0xFFFF));
        idx[8 * k + 2] = static_cast<uint8_t>(c.blob_index + 1);
        idx[8 * k + 3] = static_cast<uint8_t>(c.index >> 16);
        StoreLe32(idx + 8 * k + 4, static_cast<uint32_t>(c.uncompressed_offset / kBlock));
      }
      continue;
    }
    if (!n->is_dir() && !n->is_symlink()) continue;
    // Data block i of the FLAT layout.
    const uint64_t nblocks = (p.size + kBlock - 1) / kBlock;
    auto block_ptr = [&](uint64_t i) -> uint8_t* {
      if (p.layout == format::kLayoutFlatInline && i == nblocks - 1) return in + head;
      return b + (p.data_blk + i) * kBlock;
    };
    if (n->is_symlink()) {
      for (uint64_t i = 0; i < nblocks; ++i) {
        uint64_t len = std::min<uint64_t>(kBlock, p.size - i * kBlock);
        std::memcpy(block_ptr(i), n->symlink.data() + i * kBlock, len);
      }
      continue;
    }
    for (size_t blk = 0; blk < p.block_starts.size(); ++blk) {
      const size_t start = p.block_starts[blk];
      const size_t end =
          blk + 1 < p.block_starts.size() ? p.block_starts[blk + 1] : p.entries.size();
      uint8_t* d = block_ptr(blk);
      uint64_t nameoff = format::kDirentSize * (end - start);
      for (size_t i = start; i < end; ++i) {
        const DirEntryRef& e = p.entries[i];
        uint8_t* de = d + format::kDirentSize * (i - start);
        StoreLe64(de, e.node->nid);
        StoreLe16(de + 8, static_cast<uint16_t>(nameoff));
        de[10] = FileType(e.node->inode()->mode);
        std::memcpy(d + nameoff, e.name.data(), e.name.size());
        nameoff += e.name.size();
      }
    }
  }

  // Chunk table.
  for (size_t i = 0; i < referenced.size(); ++i) {
    const ChunkInfo& c = (*chunks)[referenced[i]];
    uint8_t* r = b + chunk_table_offset + format::kChunkRecordSize * i;
    std::memcpy(r, c.digest.data(), 32);
    StoreLe32(r + 32, c.blob_index);
    StoreLe32(r + 36, c.flags);
    StoreLe32(r + 40, c.compressed_size);
    StoreLe32(r + 44, c.uncompressed_size);
    StoreLe64(r + 48, c.compressed_offset);
    StoreLe64(r + 56, c.uncompressed_offset);
    StoreLe64(r + 64, c.file_offset);
    StoreLe32(r + 72, c.index);
    StoreLe32(r + 76, c.crc32);
  }
  return out;
}

}  // namespace rfs::rafs::builder
