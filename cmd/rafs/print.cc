#include "cmd/rafs/print.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <sstream>

#include "rafs/format/v6.h"

namespace rfs::cmd {

using nlohmann::json;
namespace format = rafs::format;

std::string SuperFlagNames(uint64_t flags) {
  static const std::pair<uint64_t, const char*> kNames[] = {
      {format::kFlagCompressionNone, "COMPRESSION_NONE"},
      {format::kFlagCompressionLz4, "COMPRESSION_LZ4"},
      {format::kFlagHashBlake3, "HASH_BLAKE3"},
      {format::kFlagHashSha256, "HASH_SHA256"},
      {format::kFlagExplicitUidGid, "EXPLICIT_UID_GID"},
      {format::kFlagHasXattr, "HAS_XATTR"},
      {format::kFlagCompressionGzip, "COMPRESSION_GZIP"},
      {format::kFlagCompressionZstd, "COMPRESSION_ZSTD"},
      {format::kFlagInlinedChunkDigest, "INLINED_CHUNK_DIGEST"},
      {format::kFlagTarfsMode, "TARFS_MODE"},
      {format::kFlagEncryptionNone, "ENCRYPTION_NONE"},
      {format::kFlagEncryptionAes128Xts, "ENCRYPTION_AES_128_XTS"},
  };
  std::string out;
  for (auto [bit, name] : kNames) {
    if (!(flags & bit)) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  return out;
}

std::string BlobFeatureNames(uint32_t f) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {format::kBlobAligned, "ALIGNED"},
      {format::kBlobInlinedFsMeta, "INLINED_FS_META"},
      {format::kBlobChunkInfoV2, "CHUNK_INFO_V2"},
      {format::kBlobZran, "ZRAN"},
      {format::kBlobSeparate, "SEPARATE"},
      {format::kBlobInlinedChunkDigest, "INLINED_CHUNK_DIGEST"},
      {format::kBlobTarfs, "TARFS"},
      {format::kBlobBatch, "BATCH"},
      {format::kBlobEncrypted, "ENCRYPTED"},
      {format::kBlobChunkDictGenerated, "CHUNKDICT_GENERATED"},
      {format::kBlobSeparatedWithPrefetch, "SEPARATED_WITH_PREFETCH_FILES"},
      {format::kBlobExternal, "EXTERNAL"},
      {format::kBlobHasTarHeader, "HAS_TAR_HEADER"},
      {format::kBlobHasToc, "HAS_TOC"},
      {format::kBlobCapTarToc, "CAP_TAR_TOC"},
  };
  std::string out;
  for (auto [bit, name] : kNames) {
    if (!(f & bit)) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  return out;
}

std::string ModeString(uint32_t mode) {
  char s[11] = "----------";
  switch (mode & S_IFMT) {
    case S_IFDIR: s[0] = 'd'; break;
    case S_IFLNK: s[0] = 'l'; break;
    case S_IFCHR: s[0] = 'c'; break;
    case S_IFBLK: s[0] = 'b'; break;
    case S_IFIFO: s[0] = 'p'; break;
    case S_IFSOCK: s[0] = 's'; break;
    default: break;
  }
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (mode & (0400 >> i)) s[1 + i] = rwx[i];
  }
  if (mode & S_ISUID) s[3] = (mode & 0100) ? 's' : 'S';
  if (mode & S_ISGID) s[6] = (mode & 0010) ? 's' : 'S';
  if (mode & S_ISVTX) s[9] = (mode & 0001) ? 't' : 'T';
  return s;
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

namespace {

std::string FsKind(const rafs::meta::SuperInfo& sb) {
  if (sb.plain_erofs) return "erofs";
  return sb.version == 5 ? "rafs v5" : "rafs v6";
}

std::string HexStr(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// JSON strings must be valid UTF-8; image names may not be. Escape bytes
// outside printable ASCII as \xNN.
std::string JsonSafe(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7F) {
      std::string q = Quote(s);
      return q.substr(1, q.size() - 2);
    }
  }
  return s;
}

}  // namespace

json InspectJson(const rafs::meta::Metadata& m, const TreeCounts& c) {
  const auto& sb = m.super();
  json j;
  j["format"] = FsKind(sb);
  j["version"] = sb.version;
  j["bootstrap_size"] = sb.bootstrap_size;
  j["flags"] = HexStr(sb.flags);
  j["flag_names"] = SuperFlagNames(sb.flags);
  j["compressor"] = storage::CompressorName(sb.compressor);
  j["digester"] = base::DigestAlgoName(sb.digester);
  j["chunk_size"] = sb.chunk_size;
  if (sb.version == 6) j["block_size"] = sb.block_size;
  j["inodes"] = sb.inode_count;
  j["directories"] = c.directories;
  j["files"] = c.files;
  j["symlinks"] = c.symlinks;
  j["other_files"] = c.others;
  j["hardlinks"] = c.hardlinks;
  j["chunk_table_records"] = sb.chunk_table_records;
  json blobs = json::array();
  for (const auto& b : m.blobs()) {
    json jb;
    jb["index"] = b.info.blob_index;
    jb["id"] = JsonSafe(b.info.blob_id);
    if (b.stored_id != b.info.blob_id) jb["stored_id"] = JsonSafe(b.stored_id);
    jb["compressed_size"] = b.info.compressed_size;
    jb["uncompressed_size"] = b.info.uncompressed_size;
    jb["chunk_count"] = b.info.chunk_count;
    jb["compressor"] = storage::CompressorName(b.info.compressor);
    jb["digester"] = base::DigestAlgoName(b.info.digester);
    jb["features"] = HexStr(b.features);
    jb["feature_names"] = BlobFeatureNames(b.features);
    blobs.push_back(jb);
  }
  j["blobs"] = blobs;
  auto prefetch = m.PrefetchInodes();
  j["prefetch_inodes"] = prefetch.ok() ? json(*prefetch) : json::array();
  return j;
}

std::string InspectText(const rafs::meta::Metadata& m, const TreeCounts& c) {
  const auto& sb = m.super();
  std::ostringstream os;
  os << "format:          " << FsKind(sb) << "\n";
  os << "bootstrap size:  " << sb.bootstrap_size << "\n";
  if (!sb.plain_erofs) {
    os << "flags:           " << HexStr(sb.flags) << " (" << SuperFlagNames(sb.flags) << ")\n";
    os << "compressor:      " << storage::CompressorName(sb.compressor) << "\n";
    os << "digester:        " << base::DigestAlgoName(sb.digester) << "\n";
    os << "chunk size:      " << sb.chunk_size << "\n";
  }
  if (sb.version == 6) os << "block size:      " << sb.block_size << "\n";
  os << "inodes:          " << sb.inode_count << "\n";
  os << "directories:     " << c.directories << "\n";
  os << "files:           " << c.files << " (" << c.hardlinks << " extra hard link names)\n";
  os << "symlinks:        " << c.symlinks << "\n";
  os << "other files:     " << c.others << "\n";
  os << "blobs:           " << m.blobs().size() << "\n";
  for (const auto& b : m.blobs()) {
    os << "  [" << b.info.blob_index << "] " << JsonSafe(b.info.blob_id) << "\n";
    if (b.stored_id != b.info.blob_id) os << "      stored id:    " << JsonSafe(b.stored_id) << "\n";
    os << "      size:         " << b.info.compressed_size << " compressed, "
       << b.info.uncompressed_size << " uncompressed\n";
    os << "      chunks:       " << b.info.chunk_count << " ("
       << storage::CompressorName(b.info.compressor) << ", "
       << base::DigestAlgoName(b.info.digester) << ")\n";
    os << "      features:     " << HexStr(b.features) << " (" << BlobFeatureNames(b.features)
       << ")\n";
  }
  auto prefetch = m.PrefetchInodes();
  os << "prefetch table:  " << (prefetch.ok() ? prefetch->size() : 0) << " entries\n";
  return os.str();
}

json EntryJson(const rafs::meta::WalkEntry& e, const std::string& symlink,
               const rafs::meta::Xattrs& xattrs) {
  const auto& a = e.attr;
  json j;
  j["path"] = JsonSafe(e.path);
  j["ino"] = a.ino;
  j["mode"] = HexStr(a.mode);
  j["type"] = ModeString(a.mode).substr(0, 1);
  j["perm"] = a.mode & 07777;
  j["nlink"] = a.nlink;
  j["uid"] = a.uid;
  j["gid"] = a.gid;
  j["size"] = a.size;
  j["mtime"] = a.mtime;
  j["mtime_nsec"] = a.mtime_nsec;
  if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
    j["rdev_major"] = major(a.rdev);
    j["rdev_minor"] = minor(a.rdev);
  }
  if (S_ISLNK(a.mode)) j["symlink"] = JsonSafe(symlink);
  if (!xattrs.empty()) {
    json x = json::object();
    for (const auto& [k, v] : xattrs) x[JsonSafe(k)] = JsonSafe(v);
    j["xattrs"] = x;
  }
  return j;
}

std::string EntryText(const rafs::meta::WalkEntry& e, const std::string& symlink,
                      const rafs::meta::Xattrs& xattrs) {
  const auto& a = e.attr;
  std::ostringstream os;
  char mtime[48];
  std::snprintf(mtime, sizeof(mtime), "%llu.%09u", static_cast<unsigned long long>(a.mtime),
                a.mtime_nsec);
  os << ModeString(a.mode) << ' ' << a.nlink << ' ' << a.uid << ' ' << a.gid << ' ';
  if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
    os << major(a.rdev) << ',' << minor(a.rdev);
  } else {
    os << a.size;
  }
  os << ' ' << mtime << ' ' << JsonSafe(e.path);
  if (S_ISLNK(a.mode)) os << " -> " << JsonSafe(symlink);
  os << '\n';
  for (const auto& [k, v] : xattrs) os << "    xattr " << JsonSafe(k) << '=' << Quote(v) << '\n';
  return os.str();
}

json CheckJson(const rafs::fs::CheckReport& r) {
  json j;
  j["directories"] = r.directories;
  j["files"] = r.files;
  j["symlinks"] = r.symlinks;
  j["other_files"] = r.others;
  j["hardlinks"] = r.hardlinks;
  j["file_bytes"] = r.file_bytes;
  j["chunks_verified"] = r.chunks_verified;
  j["chunk_bytes"] = r.chunk_bytes;
  j["inode_digests_verified"] = r.inode_digests;
  j["blobs_checked"] = r.blobs_checked;
  return j;
}

std::string CheckText(const rafs::fs::CheckReport& r) {
  std::ostringstream os;
  os << "ok: " << r.directories << " directories, " << r.files << " files (" << r.hardlinks
     << " hard links), " << r.symlinks << " symlinks, " << r.others << " other\n";
  os << "verified " << r.chunks_verified << " chunks (" << r.chunk_bytes << " bytes) for "
     << r.file_bytes << " bytes of file data";
  if (r.inode_digests > 0) os << ", " << r.inode_digests << " inode digests";
  if (r.blobs_checked > 0) os << ", " << r.blobs_checked << " blob ci arrays";
  os << "\n";
  return os.str();
}

}  // namespace rfs::cmd
