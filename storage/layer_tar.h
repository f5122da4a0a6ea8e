// Reading an image's bootstrap layer: a (gzip or zstd compressed) tar that
// holds `image/image.boot` (spec SNAPSHOTTER-BEHAVIOUR 5.3).
//
// Layers come from registries, so nothing here trusts them: sizes are
// capped before memory is spent, every header is checksummed and
// bounds-checked, and anything malformed is kDataLoss naming what and where
// (the archive offset). Names are only compared, never used as paths.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace rfs::storage {

// Decompresses a layer blob by its magic: gzip (one or more members),
// zstd, or anything else as an uncompressed tar. More than `max_bytes` of
// output is kResourceExhausted; corrupt or truncated streams are kDataLoss.
base::Result<std::vector<uint8_t>> DecompressLayer(base::ByteSpan layer, uint64_t max_bytes);

struct TarEntry {
  // Member name with pax `path` / GNU long names and the ustar prefix
  // applied, leading "./" and "/" and a trailing "/" removed.
  std::string name;
  char type = '0';      // typeflag; '\0' and '7' are reported as '0'
  uint64_t offset = 0;  // of the member's data in the archive
  uint64_t size = 0;    // bytes of data (0 for links, directories, devices)
  base::ByteSpan data;  // the member's data, inside the archive buffer
};

// Calls `visit` for each member of the ustar / pax / GNU (long names) tar
// `tar` in order, until it returns false or the archive ends (two zero
// blocks, one zero block, or the end of the buffer at a block boundary).
// Extended headers are applied, not reported.
base::Status ForEachTarEntry(base::ByteSpan tar, const std::function<bool(const TarEntry&)>& visit);

struct BootstrapLayerContents {
  std::string bootstrap_name;  // "image/image.boot" or "image.boot"
  std::vector<uint8_t> bootstrap;
  // image/<blob id>.blob.meta members by blob id (when asked for).
  std::map<std::string, std::vector<uint8_t>> blob_meta;
};

// Finds the bootstrap in an uncompressed bootstrap layer tar: the regular
// file `image/image.boot`, else `image.boot` at the top (the last one of a
// name wins, as when unpacking). kNotFound when there is none: the layer is
// not a RAFS bootstrap layer.
base::Result<BootstrapLayerContents> ReadBootstrapLayer(base::ByteSpan tar, bool keep_blob_meta);

}  // namespace rfs::storage

namespace rfs::storage {

// The bootstrap layer of spec SNAPSHOTTER-BEHAVIOUR 5.3 for `bootstrap`:
// an uncompressed ustar archive holding the directory `image/` (0755) and
// `image/image.boot` (0444), owned by 0:0 with mtime 0 and no user or group
// names, so the same bootstrap always gives the same bytes.
std::vector<uint8_t> MakeBootstrapLayerTar(base::ByteSpan bootstrap);

}  // namespace rfs::storage
