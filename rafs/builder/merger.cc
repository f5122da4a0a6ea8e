#include "rafs/builder/merger.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_map>

#include "rafs/builder/builder.h"
#include "rafs/builder/chunk_dict.h"
#include "rafs/builder/tree.h"
#include "rafs/builder/v6_writer.h"
#include "rafs/format/v6.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"

namespace rfs::rafs::builder {
namespace {

constexpr char kOciWhiteoutPrefix[] = ".wh.";
constexpr char kOciOpaque[] = ".wh..wh..opq";
constexpr char kOverlayOpaqueXattr[] = "trusted.overlay.opaque";

// Blob table and chunk list of the merged image, filled as layers load.
struct MergeState {
  std::vector<ChunkInfo> chunks;
  std::vector<BlobEntry> blobs;                                    // by merged (provisional) index
  std::map<std::string, uint32_t> blob_by_id;                      // id -> merged index
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> chunk_by_key;  // (blob, ci) -> chunk
  uint32_t chunk_size = 0;
  base::DigestAlgo digester = base::DigestAlgo::kBlake3;
  storage::Compressor compressor = storage::Compressor::kZstd;
};

// Loads one layer bootstrap into a tree whose files reference `state`'s
// chunk list. Every hard-link name carries the full inode (like tar
// builds), grouped by a per-layer key.
base::Result<std::unique_ptr<Node>> LoadLayer(const std::string& path, uint32_t layer,
                                              MergeState* state) {
  ASSIGN_OR_RETURN(auto m, meta::OpenMetadataFile(path));
  const meta::SuperInfo& sb = m->super();
  if (sb.version != 6 || sb.plain_erofs || (sb.flags & format::kFlagTarfsMode) != 0) {
    return base::InvalidArgumentError("layer ", path, ": only RAFS v6 bootstraps can be merged");
  }
  if (layer == 0 || state->chunk_size == 0) {
    state->chunk_size = sb.chunk_size;
    state->digester = sb.digester;
    state->compressor = sb.compressor;
  } else if (sb.chunk_size != state->chunk_size) {
    return base::InvalidArgumentError("layer ", path, ": chunk size ", sb.chunk_size,
                                      " differs from ", state->chunk_size, " of the layers below");
  } else if (sb.digester != state->digester) {
    return base::InvalidArgumentError("layer ", path, ": digester ",
                                      base::DigestAlgoName(sb.digester),
                                      " differs from the layers below");
  }
  // Layer blob index -> merged index.
  std::vector<uint32_t> blob_map;
  for (const meta::BlobEntry& b : m->blobs()) {
    auto [it, inserted] =
        state->blob_by_id.emplace(b.info.blob_id, static_cast<uint32_t>(state->blobs.size()));
    if (inserted) state->blobs.push_back(BlobEntryFromMeta(b));
    blob_map.push_back(it->second);
  }
  // Chunk records of the table (CRC and flags), by (blob, ci index).
  std::map<std::pair<uint32_t, uint32_t>, format::ChunkRecord> records;
  {
    base::ByteSpan bytes = m->bytes();
    ASSIGN_OR_RETURN(auto ext, format::DecodeRafsV6ExtSuperBlock(bytes));
    if (ext.s_chunk_table_size > 0 &&
        base::RangeInside(ext.s_chunk_table_offset, ext.s_chunk_table_size, bytes.size())) {
      for (uint64_t off = 0; off + format::kChunkRecordSize <= ext.s_chunk_table_size;
           off += format::kChunkRecordSize) {
        auto r = format::DecodeChunkRecord(bytes.data() + ext.s_chunk_table_offset + off);
        records[{r.blob_index, r.index}] = r;
      }
    }
  }

  auto root = std::make_unique<Node>();
  root->name = "/";
  std::vector<Node*> stack;
  meta::WalkCallbacks cb;
  base::Status status = base::Status::Ok();
  cb.visit = [&](const meta::WalkEntry& e) -> base::Status {
    Node* n;
    if (e.depth == 0) {
      n = root.get();
    } else {
      auto child = std::make_unique<Node>();
      child->name = e.name;
      if (static_cast<size_t>(e.depth) > stack.size()) {
        return base::InternalError("layer ", path, ": walk depth ", e.depth);
      }
      n = stack[static_cast<size_t>(e.depth) - 1]->AddChild(std::move(child));
    }
    const meta::Attr& a = e.attr;
    n->mode = a.mode;
    n->uid = a.uid;
    n->gid = a.gid;
    n->mtime = a.mtime;
    n->mtime_nsec = a.mtime_nsec;
    n->size = S_ISREG(a.mode) ? a.size : 0;
    if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
      n->rdev_major = static_cast<uint32_t>(major(a.rdev));
      n->rdev_minor = static_cast<uint32_t>(minor(a.rdev));
    }
    ASSIGN_OR_RETURN(auto xattrs, m->GetXattrs(e.ino));
    for (auto& [k, v] : xattrs) n->xattrs.push_back(Xattr{k, v});
    std::sort(n->xattrs.begin(), n->xattrs.end(),
              [](const Xattr& x, const Xattr& y) { return x.name < y.name; });
    if (S_ISLNK(a.mode)) {
      ASSIGN_OR_RETURN(n->symlink, m->ReadLink(e.ino));
      n->size = n->symlink.size();
    }
    if (S_ISREG(a.mode)) {
      if (a.nlink > 1) n->link_key = (uint64_t{layer + 1} << 48) ^ e.ino;
      if (a.size > 0) {
        ASSIGN_OR_RETURN(auto io, m->Read(e.ino, 0, a.size));
        for (const auto& seg : io.segments) {
          if (seg.kind != storage::IoSegment::Kind::kChunk || seg.offset_in_chunk != 0) {
            return base::DataLossError("layer ", path, ": file ", e.path,
                                       " has data outside whole chunks");
          }
          const storage::ChunkInfo& c = seg.chunk;
          if (c.blob_index >= blob_map.size()) {
            return base::DataLossError("layer ", path, ": file ", e.path, ": blob index ",
                                       c.blob_index, " out of range");
          }
          const uint32_t merged_blob = blob_map[c.blob_index];
          auto key = std::make_pair(merged_blob, c.index);
          auto it = state->chunk_by_key.find(key);
          if (it == state->chunk_by_key.end()) {
            ChunkInfo ci;
            ci.digest = c.digest;
            ci.blob_index = merged_blob;
            ci.compressed_size = c.compressed_size;
            ci.uncompressed_size = c.uncompressed_size;
            ci.compressed_offset = c.compressed_offset;
            ci.uncompressed_offset = c.uncompressed_offset;
            ci.index = c.index;
            ci.flags = c.compressed ? format::kChunkCompressed : 0;
            auto rec = records.find({c.blob_index, c.index});
            if (rec != records.end()) {
              ci.flags = rec->second.flags;
              ci.crc32 = rec->second.crc32;
            }
            it =
                state->chunk_by_key.emplace(key, static_cast<uint32_t>(state->chunks.size())).first;
            state->chunks.push_back(ci);
          }
          n->chunks.push_back(it->second);
        }
      }
    }
    if (S_ISDIR(a.mode)) {
      stack.resize(static_cast<size_t>(e.depth));
      stack.push_back(n);
    }
    return base::Status::Ok();
  };
  RETURN_IF_ERROR(meta::WalkTree(*m, "/", cb));
  return root;
}

bool IsOverlayWhiteout(const Node& n) {
  return S_ISCHR(n.mode) && n.rdev_major == 0 && n.rdev_minor == 0;
}

bool HasOpaqueXattr(const Node& n) {
  for (const Xattr& x : n.xattrs) {
    if (x.name == kOverlayOpaqueXattr && x.value == "y") return true;
  }
  return false;
}

void DropOpaqueXattr(Node* n) {
  std::erase_if(n->xattrs, [](const Xattr& x) { return x.name == kOverlayOpaqueXattr; });
}

void CopyAttrs(const Node& from, Node* to) {
  to->mode = from.mode;
  to->uid = from.uid;
  to->gid = from.gid;
  to->mtime = from.mtime;
  to->mtime_nsec = from.mtime_nsec;
  to->xattrs = from.xattrs;
}

// Applies upper directory `upper` onto lower directory `lower` (spec 8.3).
void MergeDir(Node* lower, Node* upper) {
  // Whiteouts first.
  bool opaque = HasOpaqueXattr(*upper);
  for (auto& c : upper->children) {
    if (c->name == kOciOpaque) opaque = true;
  }
  if (opaque) lower->children.clear();
  for (auto& c : upper->children) {
    const std::string& name = c->name;
    if (name == kOciOpaque) continue;
    if (name.rfind(kOciWhiteoutPrefix, 0) == 0) {
      lower->RemoveChild(name.substr(sizeof(kOciWhiteoutPrefix) - 1));
    } else if (IsOverlayWhiteout(*c)) {
      lower->RemoveChild(name);
    }
  }
  CopyAttrs(*upper, lower);
  DropOpaqueXattr(lower);
  // Then the other entries.
  for (auto& c : upper->children) {
    const std::string& name = c->name;
    if (name == kOciOpaque || name.rfind(kOciWhiteoutPrefix, 0) == 0 || IsOverlayWhiteout(*c)) {
      continue;
    }
    Node* existing = lower->FindChild(name);
    if (c->is_dir()) {
      if (existing == nullptr || !existing->is_dir()) {
        if (existing != nullptr) lower->RemoveChild(name);
        auto d = std::make_unique<Node>();
        d->name = name;
        d->mode = c->mode;
        existing = lower->AddChild(std::move(d));
      }
      MergeDir(existing, c.get());
      continue;
    }
    if (existing != nullptr) lower->RemoveChild(name);
    auto moved = std::make_unique<Node>();
    *moved = std::move(*c);  // children empty for non-directories
    lower->AddChild(std::move(moved));
  }
}

}  // namespace

base::Result<MergeResult> MergeLayers(const std::vector<std::string>& layers,
                                      const std::string& output,
                                      const std::vector<std::string>& prefetch_paths) {
  if (layers.empty()) return base::InvalidArgumentError("merge: no layer bootstraps given");
  MergeState state;
  auto merged = std::make_unique<Node>();
  merged->name = "/";
  merged->mode = S_IFDIR | 0755;
  for (size_t i = 0; i < layers.size(); ++i) {
    ASSIGN_OR_RETURN(auto upper, LoadLayer(layers[i], static_cast<uint32_t>(i), &state));
    MergeDir(merged.get(), upper.get());
  }
  FinalizeTree(merged.get());

  // Blob table: blobs in the order the merged tree first references them.
  std::vector<int64_t> new_index(state.blobs.size(), -1);
  std::vector<BlobEntry> blobs;
  VisitInSequenceOrder(merged.get(), [&](Node* n) {
    if (!n->is_reg() || n->link_to != nullptr) return;
    for (uint32_t idx : n->chunks) {
      uint32_t old = state.chunks[idx].blob_index;
      if (new_index[old] < 0) {
        new_index[old] = static_cast<int64_t>(blobs.size());
        blobs.push_back(state.blobs[old]);
      }
    }
  });
  if (blobs.size() > format::kMaxV6Blobs) {
    return base::InvalidArgumentError("merge: ", blobs.size(), " blobs referenced, at most ",
                                      format::kMaxV6Blobs);
  }
  for (ChunkInfo& c : state.chunks) {
    if (new_index[c.blob_index] >= 0) c.blob_index = static_cast<uint32_t>(new_index[c.blob_index]);
  }
  V6Options vo;
  vo.chunk_size = state.chunk_size != 0 ? state.chunk_size : (1u << 20);
  vo.digester = state.digester;
  vo.compressor = blobs.empty() ? state.compressor
                                : static_cast<storage::Compressor>(blobs[0].compression_algo);
  vo.force_has_xattr = true;  // as upstream merge
  vo.prefetch_paths = prefetch_paths;
  ASSIGN_OR_RETURN(std::vector<uint8_t> boot,
                   WriteV6Bootstrap(merged.get(), &state.chunks, blobs, vo));
  RETURN_IF_ERROR(WriteFileAtomically(output, boot));
  MergeResult r;
  r.bootstrap_size = boot.size();
  r.blobs = blobs.size();
  for (const auto& b : blobs) r.blob_ids.push_back(b.blob_id);
  VisitInSequenceOrder(merged.get(), [&](Node*) { ++r.entries; });
  return r;
}

}  // namespace rfs::rafs::builder
