#include "storage/layer_tar.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

namespace rfs::storage {

using base::ByteSpan;
using base::DataLossError;
using base::Result;
using base::Status;

namespace {

constexpr size_t kBlock = 512;
// Extended headers (pax records, GNU long names) larger than this are not
// something a layer writer produces.
constexpr uint64_t kMaxExtendedHeader = 1u << 20;
constexpr size_t kMaxName = 64u << 10;

// Grows `out` for more output, never past `max_bytes`; false when full.
bool Grow(std::vector<uint8_t>* out, size_t used, uint64_t max_bytes) {
  if (used < out->size()) return true;
  if (used >= max_bytes) return false;
  uint64_t next = std::max<uint64_t>(64u << 10, static_cast<uint64_t>(out->size()) * 2);
  out->resize(static_cast<size_t>(std::min(next, max_bytes)));
  return true;
}

Status TooLarge(const char* what, uint64_t max_bytes) {
  return base::ResourceExhaustedError(what, ": layer expands past the limit of ", max_bytes,
                                      " bytes");
}

Result<std::vector<uint8_t>> Gunzip(ByteSpan in, uint64_t max_bytes) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return base::ResourceExhaustedError("gzip: cannot initialise inflate");
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> end(&zs, inflateEnd);
  std::vector<uint8_t> out;
  size_t used = 0;
  size_t pos = 0;  // input consumed
  for (;;) {
    if (!Grow(&out, used, max_bytes)) return TooLarge("gzip", max_bytes);
    zs.next_in = const_cast<Bytef*>(in.data() + pos);
    zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size() - pos, UINT_MAX));
    zs.next_out = out.data() + used;
    zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - used, UINT_MAX));
    const uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
    int r = inflate(&zs, Z_NO_FLUSH);
    pos += avail_in - zs.avail_in;
    used += avail_out - zs.avail_out;
    if (r == Z_STREAM_END) {
      if (pos == in.size()) break;
      // Another member follows (concatenated gzip), or padding.
      if (in.size() - pos >= 2 && in[pos] == 0x1f && in[pos + 1] == 0x8b) {
        if (inflateReset(&zs) != Z_OK) return DataLossError("gzip: cannot reset inflate");
        continue;
      }
      if (std::all_of(in.begin() + static_cast<ptrdiff_t>(pos), in.end(),
                      [](uint8_t b) { return b == 0; })) {
        break;
      }
      return DataLossError("gzip: ", in.size() - pos, " bytes of garbage after the stream at ",
                           pos);
    }
    if (r == Z_OK) continue;
    if (r == Z_BUF_ERROR && zs.avail_out == 0) continue;  // output full: grow
    if (r == Z_BUF_ERROR) {
      return DataLossError("gzip: stream truncated after ", pos, " bytes (", used,
                           " bytes out)");
    }
    return DataLossError("gzip: corrupt stream at input byte ", pos, ": ",
                         zs.msg != nullptr ? zs.msg : "inflate error");
  }
  out.resize(used);
  return out;
}

Result<std::vector<uint8_t>> Unzstd(ByteSpan in, uint64_t max_bytes) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (d == nullptr) return base::ResourceExhaustedError("zstd: cannot create a context");
  std::vector<uint8_t> out;
  size_t used = 0;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  size_t last = 1;
  while (ib.pos < ib.size || last != 0) {
    if (!Grow(&out, used, max_bytes)) return TooLarge("zstd", max_bytes);
    ZSTD_outBuffer ob{out.data() + used, out.size() - used, 0};
    const size_t before = ib.pos;
    last = ZSTD_decompressStream(d.get(), &ob, &ib);
    if (ZSTD_isError(last)) {
      return DataLossError("zstd: corrupt stream at input byte ", before, ": ",
                           ZSTD_getErrorName(last));
    }
    used += ob.pos;
    if (ib.pos == ib.size && last != 0 && ob.pos < ob.size) {
      return DataLossError("zstd: stream truncated after ", ib.pos, " bytes");
    }
  }
  out.resize(used);
  return out;
}

// A NUL-terminated string field.
std::string Field(const uint8_t* h, size_t off, size_t len) {
  const auto* p = reinterpret_cast<const char*>(h + off);
  return std::string(p, strnlen(p, len));
}

// A numeric field: octal digits (leading spaces or NULs, ended by a space
// or NUL), or GNU base-256 (first byte 0x80).
std::optional<uint64_t> Number(const uint8_t* h, size_t off, size_t len) {
  const uint8_t* p = h + off;
  if (p[0] == 0x80) {
    uint64_t v = 0;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return std::nullopt;
      v = (v << 8) | p[i];
    }
    return v;
  }
  if (p[0] & 0x80) return std::nullopt;  // negative base-256
  size_t i = 0;
  while (i < len && (p[i] == ' ' || p[i] == 0)) ++i;
  if (i == len) return 0;
  uint64_t v = 0;
  size_t digits = 0;
  for (; i < len && p[i] >= '0' && p[i] <= '7'; ++i, ++digits) {
    if (v >> 60) return std::nullopt;
    v = v * 8 + static_cast<uint64_t>(p[i] - '0');
  }
  if (digits == 0) return std::nullopt;
  for (; i < len; ++i) {
    if (p[i] != ' ' && p[i] != 0) return std::nullopt;
  }
  return v;
}

bool ChecksumOk(const uint8_t* h) {
  auto stored = Number(h, 148, 8);
  if (!stored) return false;
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const uint8_t b = (i >= 148 && i < 156) ? ' ' : h[i];
    unsigned_sum += b;
    signed_sum += static_cast<int8_t>(b);
  }
  // Some old writers summed signed chars.
  return *stored == unsigned_sum || static_cast<int64_t>(*stored) == signed_sum;
}

std::string Normalize(std::string name) {
  for (;;) {
    if (name.rfind("./", 0) == 0) {
      name.erase(0, 2);
    } else if (!name.empty() && name[0] == '/') {
      name.erase(0, 1);
    } else {
      break;
    }
  }
  while (!name.empty() && name.back() == '/') name.pop_back();
  return name;
}

// pax records "<len> <key>=<value>\n"; takes `path` and `size`.
Status ParsePax(ByteSpan data, uint64_t at, std::optional<std::string>* path,
                std::optional<uint64_t>* size) {
  size_t i = 0;
  while (i < data.size()) {
    if (data[i] == 0) break;  // NUL padding after the last record
    size_t len = 0, j = i;
    while (j < data.size() && data[j] >= '0' && data[j] <= '9' && j - i < 12) {
      len = len * 10 + (data[j] - '0');
      ++j;
    }
    if (j == i || j >= data.size() || data[j] != ' ' || len <= j - i + 1 ||
        len > data.size() - i || data[i + len - 1] != '\n') {
      return DataLossError("tar: malformed pax record at offset ", at + i);
    }
    std::string_view rec(reinterpret_cast<const char*>(data.data()) + j + 1, len - (j - i) - 2);
    const size_t eq = rec.find('=');
    if (eq == std::string_view::npos) {
      return DataLossError("tar: pax record without '=' at offset ", at + i);
    }
    std::string_view key = rec.substr(0, eq), value = rec.substr(eq + 1);
    if (key == "path") {
      if (value.size() > kMaxName) return DataLossError("tar: pax path too long at ", at + i);
      *path = std::string(value);
    } else if (key == "size") {
      uint64_t v = 0;
      if (value.empty() || value.size() > 19) {
        return DataLossError("tar: bad pax size at offset ", at + i);
      }
      for (char c : value) {
        if (c < '0' || c > '9') return DataLossError("tar: bad pax size at offset ", at + i);
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      *size = v;
    }
    i += len;
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<uint8_t>> DecompressLayer(ByteSpan layer, uint64_t max_bytes) {
  if (layer.size() >= 2 && layer[0] == 0x1f && layer[1] == 0x8b) return Gunzip(layer, max_bytes);
  if (layer.size() >= 4 && layer[0] == 0x28 && layer[1] == 0xb5 && layer[2] == 0x2f &&
      layer[3] == 0xfd) {
    return Unzstd(layer, max_bytes);
  }
  if (layer.size() > max_bytes) return TooLarge("tar", max_bytes);
  return std::vector<uint8_t>(layer.begin(), layer.end());
}

Status ForEachTarEntry(ByteSpan tar, const std::function<bool(const TarEntry&)>& visit) {
  std::optional<std::string> long_name;  // from pax `path` or GNU 'L'
  // pax `size` for the next member (a plain pair: gcc 12 sees a
  // std::optional here as maybe uninitialised).
  bool have_pax_size = false;
  uint64_t pax_size = 0;
  uint64_t pos = 0;
  bool pending_extension = false;
  while (pos < tar.size()) {
    if (tar.size() - pos < kBlock) {
      return DataLossError("tar: truncated header at offset ", pos, " (", tar.size() - pos,
                           " bytes left)");
    }
    const uint8_t* h = tar.data() + pos;
    if (std::all_of(h, h + kBlock, [](uint8_t b) { return b == 0; })) {
      if (pending_extension) {
        return DataLossError("tar: extended header without a member before offset ", pos);
      }
      return Status::Ok();  // end of archive
    }
    if (!ChecksumOk(h)) return DataLossError("tar: bad header checksum at offset ", pos);
    const char type = static_cast<char>(h[156]);
    auto header_size = Number(h, 124, 12);
    if (!header_size) return DataLossError("tar: bad size field in the header at offset ", pos);
    const uint64_t data_at = pos + kBlock;
    // Links, devices, directories and fifos carry no data whatever the size
    // field says.
    const bool has_data = !(type >= '1' && type <= '6');
    uint64_t size = has_data ? *header_size : 0;
    if (has_data && type != 'x' && type != 'g' && type != 'L' && type != 'K' && have_pax_size) {
      size = pax_size;
    }
    if (size > tar.size() - data_at) {
      return DataLossError("tar: member at offset ", pos, " has ", size,
                           " bytes of data but the archive ends ", tar.size() - data_at,
                           " bytes later");
    }
    const uint64_t padded = base::AlignUp(size, kBlock);
    if (padded > tar.size() - data_at) {
      return DataLossError("tar: archive truncated in the padding of the member at offset ", pos);
    }
    ByteSpan data(tar.data() + data_at, static_cast<size_t>(size));
    switch (type) {
      case 'x':
      case 'g': {
        if (size > kMaxExtendedHeader) {
          return DataLossError("tar: pax header of ", size, " bytes at offset ", pos);
        }
        std::optional<std::string> path;
        std::optional<uint64_t> psize;
        RETURN_IF_ERROR(ParsePax(data, data_at, &path, &psize));
        if (type == 'x') {  // global headers name no member: ignored
          if (path) long_name = std::move(path);
          if (psize) {
            have_pax_size = true;
            pax_size = *psize;
          }
          pending_extension = true;
        }
        break;
      }
      case 'L': {
        if (size > kMaxName) {
          return DataLossError("tar: long name of ", size, " bytes at offset ", pos);
        }
        const auto* p = reinterpret_cast<const char*>(data.data());
        long_name = std::string(p, strnlen(p, data.size()));
        pending_extension = true;
        break;
      }
      case 'K':  // GNU long link name: not needed
        if (size > kMaxName) {
          return DataLossError("tar: long link name of ", size, " bytes at offset ", pos);
        }
        pending_extension = true;
        break;
      default: {
        TarEntry e;
        if (long_name) {
          e.name = std::move(*long_name);
        } else {
          e.name = Field(h, 0, 100);
          // POSIX ustar splits long names into prefix and name; GNU tar
          // uses that area for other fields ("ustar  \0" magic).
          if (std::memcmp(h + 257, "ustar\0", 6) == 0) {
            std::string prefix = Field(h, 345, 155);
            if (!prefix.empty()) e.name = prefix + "/" + e.name;
          }
        }
        e.name = Normalize(std::move(e.name));
        e.type = (type == '\0' || type == '7') ? '0' : type;
        e.offset = data_at;
        e.size = size;
        e.data = data;
        long_name.reset();
        have_pax_size = false;
        pending_extension = false;
        if (!visit(e)) return Status::Ok();
        break;
      }
    }
    pos = data_at + padded;
  }
  if (pending_extension) return DataLossError("tar: extended header at the end of the archive");
  return Status::Ok();
}

Result<BootstrapLayerContents> ReadBootstrapLayer(ByteSpan tar, bool keep_blob_meta) {
  std::optional<TarEntry> nested, top;
  bool odd_type = false;
  BootstrapLayerContents out;
  RETURN_IF_ERROR(ForEachTarEntry(tar, [&](const TarEntry& e) {
    if (e.name == "image/image.boot" || e.name == "image.boot") {
      if (e.type != '0') {
        odd_type = true;
      } else {
        (e.name == "image.boot" ? top : nested) = e;
      }
      return true;
    }
    constexpr std::string_view kSuffix = ".blob.meta";
    if (keep_blob_meta && e.type == '0' && e.name.rfind("image/", 0) == 0 &&
        e.name.size() == 6 + 64 + kSuffix.size() && e.name.substr(70) == kSuffix) {
      std::string id = e.name.substr(6, 64);
      if (std::all_of(id.begin(), id.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
          })) {
        out.blob_meta[id].assign(e.data.begin(), e.data.end());
      }
    }
    return true;
  }));
  const std::optional<TarEntry>& pick = nested ? nested : top;
  if (!pick) {
    if (odd_type) {
      return DataLossError("bootstrap layer: image/image.boot is not a regular file");
    }
    return base::NotFoundError(
        "bootstrap layer holds no image/image.boot (not a RAFS bootstrap layer)");
  }
  if (pick->size == 0) return DataLossError("bootstrap layer: ", pick->name, " is empty");
  out.bootstrap_name = pick->name;
  out.bootstrap.assign(pick->data.begin(), pick->data.end());
  return out;
}

}  // namespace rfs::storage

namespace rfs::storage {

namespace {

// A ustar header with fixed owner, time and no names beyond `name`.
void AppendUstarHeader(std::vector<uint8_t>* out, const std::string& name, char type,
                       uint32_t mode, uint64_t size) {
  uint8_t h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", mode);
  std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011llo",
                static_cast<unsigned long long>(size));
  std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
  h[156] = static_cast<uint8_t>(type);
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (uint8_t b : h) sum += b;
  std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
  h[155] = ' ';
  out->insert(out->end(), h, h + 512);
}

}  // namespace

std::vector<uint8_t> MakeBootstrapLayerTar(base::ByteSpan bootstrap) {
  std::vector<uint8_t> out;
  out.reserve(bootstrap.size() + 4096);
  AppendUstarHeader(&out, "image/", '5', 0755, 0);
  AppendUstarHeader(&out, "image/image.boot", '0', 0444, bootstrap.size());
  out.insert(out.end(), bootstrap.begin(), bootstrap.end());
  out.resize((out.size() + 511) / 512 * 512, 0);
  out.resize(out.size() + 1024, 0);  // two zero end blocks
  return out;
}

}  // namespace rfs::storage
