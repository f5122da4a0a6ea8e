#include "rafs/meta/blob_meta.h"

#include <algorithm>
#include <cstring>

#include "rafs/format/v6.h"
#include "storage/codec.h"

namespace rfs::rafs::meta {

using base::DataLossError;
using base::Result;
using base::Status;
using format::TocEntry;

namespace {

constexpr uint64_t kMaxTocArea = 65536;
// Upper bound on the bootstrap inlined in a blob.
constexpr uint64_t kMaxInlineBootstrap = 1ull << 31;

Result<std::vector<uint8_t>> ReadRange(storage::BlobReader& reader, uint64_t offset, uint64_t len) {
  std::vector<uint8_t> buf(len);
  RETURN_IF_ERROR(reader.ReadAt(offset, buf));
  return buf;
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace

Result<std::vector<TocEntry>> LoadToc(storage::BlobReader& reader, uint64_t blob_size,
                                      uint32_t toc_size, const base::Digest& toc_digest) {
  const std::string& id = reader.blob_id();
  uint64_t area_off, area_len;
  if (toc_size > 0) {
    if (toc_size < format::kTarHeaderSize || toc_size > kMaxTocArea || toc_size % 128 != 0 ||
        toc_size > blob_size) {
      return DataLossError("blob ", id, ": bad blob_toc_size ", toc_size);
    }
    area_len = toc_size;
    area_off = blob_size - toc_size;
  } else {
    // Auto-detect from the trailing tar header.
    if (blob_size < format::kTarHeaderSize) return base::NotFoundError("blob ", id, ": no toc");
    ASSIGN_OR_RETURN(auto hdr_bytes, ReadRange(reader, blob_size - 512, 512));
    auto hdr = format::DecodeTarHeader(hdr_bytes);
    if (!hdr.ok() || hdr->name != "rafs.blob.toc") {
      return base::NotFoundError("blob ", id, ": no toc");
    }
    if (hdr->typeflag != '0' || hdr->size == 0 || hdr->size % 128 != 0 ||
        hdr->size + 512 > kMaxTocArea || hdr->size + 512 > blob_size) {
      return DataLossError("blob ", id, ": bad toc header size ", hdr->size);
    }
    area_len = hdr->size + 512;
    area_off = blob_size - area_len;
  }
  ASSIGN_OR_RETURN(auto area, ReadRange(reader, area_off, area_len));
  if (toc_size > 0 && !AllZero(toc_digest.data(), 32)) {
    if (base::Sha256(area) != toc_digest) {
      return DataLossError("blob ", id, ": toc at offset ", area_off,
                           " does not match blob_toc_digest");
    }
  }
  ASSIGN_OR_RETURN(format::TarHeader hdr,
                   format::DecodeTarHeader(base::ByteSpan(area).subspan(area_len - 512)));
  if (hdr.name != "rafs.blob.toc" || hdr.size != area_len - 512) {
    return DataLossError("blob ", id, ": toc tar header '", hdr.name, "' of size ", hdr.size,
                         " does not match a toc of ", area_len - 512, " bytes");
  }
  std::vector<TocEntry> out;
  for (uint64_t p = 0; p + format::kTocEntrySize <= area_len - 512; p += format::kTocEntrySize) {
    out.push_back(format::DecodeTocEntry(area.data() + p));
  }
  return out;
}

Result<std::vector<uint8_t>> ReadTocEntry(storage::BlobReader& reader, const TocEntry& e,
                                          uint64_t max_size) {
  const std::string& id = reader.blob_id();
  const uint32_t kind = e.flags & 0xF;
  if ((e.flags & ~0xFu) != 0 || (kind != format::kTocNone && kind != format::kTocZstd &&
                                 kind != format::kTocLz4)) {
    return DataLossError("blob ", id, ": toc entry '", e.name, "' has bad flags ", e.flags);
  }
  if (e.uncompressed_size > max_size || e.compressed_size > max_size) {
    return DataLossError("blob ", id, ": toc entry '", e.name, "' of ", e.uncompressed_size,
                         " bytes is too large");
  }
  ASSIGN_OR_RETURN(auto stored, ReadRange(reader, e.compressed_offset, e.compressed_size));
  std::vector<uint8_t> out;
  if (kind == format::kTocNone) {
    if (e.compressed_size != e.uncompressed_size) {
      return DataLossError("blob ", id, ": toc entry '", e.name, "' stored raw with sizes ",
                           e.compressed_size, " and ", e.uncompressed_size);
    }
    out = std::move(stored);
  } else {
    out.resize(e.uncompressed_size);
    Status s = storage::Decompress(
        kind == format::kTocZstd ? storage::Compressor::kZstd : storage::Compressor::kLz4Block,
        stored, out);
    if (!s.ok()) return s.WithContext(base::StrCat("blob ", id, " toc entry '", e.name, "'"));
  }
  if (!AllZero(e.uncompressed_digest, 32)) {
    base::Digest d = base::Sha256(out);
    if (std::memcmp(d.data(), e.uncompressed_digest, 32) != 0) {
      return DataLossError("blob ", id, ": toc entry '", e.name, "' digest mismatch");
    }
  }
  return out;
}

Result<std::vector<uint8_t>> ExtractInlineBootstrap(storage::BlobReader& reader) {
  ASSIGN_OR_RETURN(uint64_t size, reader.Size());
  auto toc = LoadToc(reader, size, 0, base::Digest{});
  if (toc.ok()) {
    for (const TocEntry& e : *toc) {
      if (e.name == "image.boot") return ReadTocEntry(reader, e, kMaxInlineBootstrap);
    }
    return base::NotFoundError("blob ", reader.blob_id(), ": toc has no image.boot entry");
  }
  if (toc.status().code() != base::StatusCode::kNotFound) return toc.status();
  // No ToC: the raw bootstrap sits before a final `image.boot` tar header.
  if (size < format::kTarHeaderSize) {
    return base::NotFoundError("blob ", reader.blob_id(), ": too small to hold a bootstrap");
  }
  ASSIGN_OR_RETURN(auto hdr_bytes, ReadRange(reader, size - 512, 512));
  auto hdr = format::DecodeTarHeader(hdr_bytes);
  if (!hdr.ok() || hdr->name != "image.boot" || hdr->typeflag != '0') {
    return base::NotFoundError("blob ", reader.blob_id(),
                               ": no toc and no trailing image.boot header");
  }
  if (hdr->size > size - 512 || hdr->size > kMaxInlineBootstrap) {
    return DataLossError("blob ", reader.blob_id(), ": image.boot header size ", hdr->size,
                         " larger than the blob");
  }
  return ReadRange(reader, size - 512 - hdr->size, hdr->size);
}

Result<std::shared_ptr<const BlobMeta>> LoadBlobMeta(const BlobEntry& blob,
                                                     storage::BlobReader& reader) {
  const std::string& id = blob.info.blob_id;
  ASSIGN_OR_RETURN(uint64_t size, reader.Size());
  auto meta = std::make_shared<BlobMeta>();
  meta->blob_size = size;
  const uint32_t count = blob.info.chunk_count;
  const bool v2 = (blob.features & format::kBlobChunkInfoV2) != 0;
  const uint64_t entry_size = v2 ? format::kCiEntryV2Size : format::kCiEntryV1Size;
  // Sizes come from the (validated) blob table; check them against the file
  // before allocating.
  if (!base::RangeInside(blob.ci_offset, blob.ci_compressed_size, size) ||
      !base::RangeInside(blob.ci_offset + blob.ci_compressed_size, format::kCiHeaderSize, size)) {
    return DataLossError("blob ", id, ": ci array [", blob.ci_offset, ", +",
                         blob.ci_compressed_size, ") and header outside the blob (", size,
                         " bytes)");
  }
  if (blob.ci_uncompressed_size < uint64_t{count} * entry_size ||
      blob.ci_uncompressed_size > std::max<uint64_t>(1 << 20, 256 * blob.ci_compressed_size)) {
    return DataLossError("blob ", id, ": implausible ci_uncompressed_size ",
                         blob.ci_uncompressed_size);
  }
  ASSIGN_OR_RETURN(auto raw, ReadRange(reader, blob.ci_offset,
                                       blob.ci_compressed_size + format::kCiHeaderSize));
  ASSIGN_OR_RETURN(meta->header, format::DecodeCiHeader(base::ByteSpan(raw).subspan(
                                     blob.ci_compressed_size)));
  const format::CiHeader& h = meta->header;
  if ((!(blob.features & format::kBlobChunkDictGenerated) && h.s_ci_entries != count) ||
      h.s_ci_compressor != blob.ci_compressor || h.s_ci_offset != blob.ci_offset ||
      h.s_ci_compressed_size != blob.ci_compressed_size ||
      h.s_ci_uncompressed_size != blob.ci_uncompressed_size) {
    return DataLossError("blob ", id, ": ci header at offset ",
                         blob.ci_offset + blob.ci_compressed_size,
                         " disagrees with the blob table");
  }
  std::vector<uint8_t> ci(blob.ci_uncompressed_size);
  ASSIGN_OR_RETURN(storage::Compressor cc, storage::CompressorFromCode(blob.ci_compressor));
  Status s = storage::Decompress(
      cc, base::ByteSpan(raw).subspan(0, blob.ci_compressed_size), ci);
  if (!s.ok()) return s.WithContext(base::StrCat("blob ", id, " ci array"));
  meta->entries.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* p = ci.data() + i * entry_size;
    format::CiEntry e = v2 ? format::DecodeCiEntryV2(p) : format::DecodeCiEntryV1(p);
    if (e.uncompressed_size > blob.info.chunk_size ||
        !base::RangeInside(e.compressed_offset, e.compressed_size, size)) {
      return DataLossError("blob ", id, ": ci entry ", i, " (", e.compressed_offset, ", +",
                           e.compressed_size, " -> ", e.uncompressed_size,
                           ") does not fit the blob");
    }
    meta->entries.push_back(e);
  }

  if (blob.features & format::kBlobHasToc) {
    auto toc = LoadToc(reader, size, blob.toc_size, blob.toc_digest);
    if (!toc.ok()) return toc.status();
    meta->toc = std::move(*toc);
  }
  if (blob.features & format::kBlobInlinedChunkDigest) {
    const TocEntry* de = nullptr;
    for (const TocEntry& e : meta->toc) {
      if (e.name == "blob.digest") de = &e;
    }
    if (de == nullptr) return DataLossError("blob ", id, ": digest array missing from the toc");
    ASSIGN_OR_RETURN(auto digests, ReadTocEntry(reader, *de, uint64_t{count} * 32));
    if (digests.size() != uint64_t{count} * 32) {
      return DataLossError("blob ", id, ": digest array of ", digests.size(), " bytes for ",
                           count, " chunks");
    }
    meta->digests.resize(count);
    for (uint32_t i = 0; i < count; ++i) {
      std::memcpy(meta->digests[i].data(), digests.data() + uint64_t{i} * 32, 32);
    }
  }
  return std::shared_ptr<const BlobMeta>(std::move(meta));
}

}  // namespace rfs::rafs::meta
