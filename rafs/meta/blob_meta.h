// Blob metadata kept in the data blob itself (spec 6.2 - 6.6): the
// compression-info array and header, the chunk digest array, the ToC, and a
// bootstrap inlined in the blob.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/digest.h"
#include "base/status.h"
#include "rafs/format/blob.h"
#include "rafs/meta/metadata.h"
#include "storage/blob_reader.h"

namespace rfs::rafs::meta {

struct BlobMeta {
  format::CiHeader header{};
  std::vector<format::CiEntry> entries;  // indexed by ci index
  std::vector<base::Digest> digests;     // per ci index; empty without a digest array
  std::vector<format::TocEntry> toc;     // empty without a ToC
  uint64_t blob_size = 0;
};

// Reads and validates the ci header, ci array, ToC and digest array of
// `blob` through `reader`. Every size is checked against the blob file and
// the blob table before anything is allocated.
base::Result<std::shared_ptr<const BlobMeta>> LoadBlobMeta(const BlobEntry& blob,
                                                           storage::BlobReader& reader);

// Finds and parses the ToC at the end of a blob of `blob_size` bytes. With
// toc_size > 0 the area is taken from the blob table and its digest checked
// (unless all zero); otherwise it is auto-detected from the trailing
// `rafs.blob.toc` tar header. kNotFound when the blob has no ToC.
base::Result<std::vector<format::TocEntry>> LoadToc(storage::BlobReader& reader,
                                                    uint64_t blob_size, uint32_t toc_size,
                                                    const base::Digest& toc_digest);

// Reads the payload of a ToC entry, decompresses it and checks its digest.
// `max_size` caps the uncompressed size.
base::Result<std::vector<uint8_t>> ReadTocEntry(storage::BlobReader& reader,
                                                const format::TocEntry& entry, uint64_t max_size);

// Extracts a bootstrap inlined in a data blob: the ToC entry `image.boot`, or
// (no ToC) the raw bytes before a final `image.boot` tar header.
base::Result<std::vector<uint8_t>> ExtractInlineBootstrap(storage::BlobReader& reader);

}  // namespace rfs::rafs::meta
