#include "rafs/builder/chunk_dict.h"

#include "rafs/format/v6.h"

namespace rfs::rafs::builder {

BlobEntry BlobEntryFromMeta(const meta::BlobEntry& b) {
  BlobEntry e;
  e.blob_id = b.info.blob_id;
  e.chunk_size = b.info.chunk_size;
  e.chunk_count = b.info.chunk_count;
  e.compression_algo = static_cast<uint32_t>(b.info.compressor);
  e.digest_algo = static_cast<uint32_t>(b.info.digester);
  e.features = b.features & ~format::kBlobInlinedFsMeta;
  e.compressed_size = b.info.compressed_size;
  e.uncompressed_size = b.info.uncompressed_size;
  e.blob_toc_size = b.toc_size;
  e.ci_compressor = b.ci_compressor;
  e.ci_offset = b.ci_offset;
  e.ci_compressed_size = b.ci_compressed_size;
  e.ci_uncompressed_size = b.ci_uncompressed_size;
  e.blob_toc_digest = b.toc_digest;
  return e;
}

base::Result<std::unique_ptr<ChunkDict>> ChunkDict::Open(const std::string& bootstrap,
                                                         uint32_t chunk_size,
                                                         base::DigestAlgo digester) {
  ASSIGN_OR_RETURN(auto m, meta::OpenMetadataFile(bootstrap));
  const meta::SuperInfo& sb = m->super();
  if (sb.version != 6 || sb.plain_erofs || (sb.flags & format::kFlagTarfsMode) != 0) {
    return base::InvalidArgumentError("chunk dict ", bootstrap, ": not a RAFS v6 bootstrap");
  }
  if (!m->blobs().empty() && sb.chunk_size != chunk_size) {
    return base::InvalidArgumentError("chunk dict ", bootstrap, ": chunk size ", sb.chunk_size,
                                      " differs from the build's ", chunk_size);
  }
  if (!m->blobs().empty() && sb.digester != digester) {
    return base::InvalidArgumentError("chunk dict ", bootstrap, ": digester ",
                                      base::DigestAlgoName(sb.digester),
                                      " differs from the build's ", base::DigestAlgoName(digester));
  }
  auto d = std::unique_ptr<ChunkDict>(new ChunkDict());
  for (const meta::BlobEntry& b : m->blobs()) d->blobs_.push_back(BlobEntryFromMeta(b));
  base::ByteSpan bytes = m->bytes();
  ASSIGN_OR_RETURN(auto ext, format::DecodeRafsV6ExtSuperBlock(bytes));
  if (ext.s_chunk_table_size == 0) return d;
  RETURN_IF_ERROR(base::CheckRange(ext.s_chunk_table_offset, ext.s_chunk_table_size, bytes.size(),
                                   "chunk dict chunk table"));
  for (uint64_t off = 0; off + format::kChunkRecordSize <= ext.s_chunk_table_size;
       off += format::kChunkRecordSize) {
    auto r = format::DecodeChunkRecord(bytes.data() + ext.s_chunk_table_offset + off);
    if (r.blob_index >= d->blobs_.size()) {
      return base::DataLossError("chunk dict ", bootstrap, ": chunk record at ",
                                 ext.s_chunk_table_offset + off, " names blob ", r.blob_index);
    }
    ChunkInfo c;
    std::copy(r.block_id, r.block_id + 32, c.digest.begin());
    c.blob_index = r.blob_index;
    c.flags = r.flags;
    c.compressed_size = r.compressed_size;
    c.uncompressed_size = r.uncompressed_size;
    c.compressed_offset = r.compressed_offset;
    c.uncompressed_offset = r.uncompressed_offset;
    c.index = r.index;
    c.crc32 = r.crc32;
    d->chunks_.emplace(c.digest, c);  // first record (lowest blob index) wins
  }
  return d;
}

std::optional<ChunkDict::Found> ChunkDict::Find(const base::Digest& digest, uint32_t size) const {
  auto it = chunks_.find(digest);
  if (it == chunks_.end() || it->second.uncompressed_size != size) return std::nullopt;
  return Found{it->second, it->second.blob_index};
}

}  // namespace rfs::rafs::builder
