#include "cmd/rafs/build_cmd.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/rafs/exit.h"
#include "rafs/builder/builder.h"
#include "rafs/builder/merger.h"

namespace rfs::cmd {
namespace {

int Usage(const char* cmd, const std::string& msg) {
  std::fprintf(stderr, "rafs %s: %s\n", cmd, msg.c_str());
  return kExitUsage;
}

}  // namespace

bool ParseSize(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  uint64_t v = 0;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    pos = 2;
  }
  size_t digits = 0;
  for (; pos < s.size(); ++pos, ++digits) {
    char c = s[pos];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      break;
    if (v > (uint64_t{1} << 40)) return false;
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  if (digits == 0) return false;
  std::string suffix = s.substr(pos);
  if (suffix == "K" || suffix == "k" || suffix == "KiB")
    v <<= 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB")
    v <<= 20;
  else if (!suffix.empty())
    return false;
  *out = v;
  return true;
}

CLI::App* AddBuildCommand(CLI::App* app, BuildArgs* args) {
  auto* b = app->add_subcommand(
      "build", "build a RAFS v6 image (bootstrap + data blob) from a directory or a layer tarball");
  b->add_option("SOURCE", args->source,
                "source directory, or layer tarball (tar, tar.gz or tar.zst)")
      ->required();
  b->add_option("--bootstrap", args->bootstrap, "output bootstrap file")->required();
  b->add_option("--blob-dir", args->blob_dir, "directory for the data blob (named by blob id)")
      ->required();
  b->add_option("--compressor", args->compressor, "zstd, lz4_block or none")->capture_default_str();
  b->add_option("--digester", args->digester, "blake3 or sha256")->capture_default_str();
  b->add_option("--chunk-size", args->chunk_size,
                "chunk size, a power of two from 4K to 16M (bytes, or with K/M suffix)")
      ->capture_default_str();
  b->add_option("--fs-version", args->fs_version, "RAFS version (only 6)")->capture_default_str();
  b->add_flag("--aligned", args->aligned,
              "store chunks at 4 KiB-aligned blob offsets (with --compressor none the blob can "
              "serve as an EROFS extra device)");
  b->add_flag("--blob-toc", args->blob_toc,
              "add tar headers, the chunk digest array and a ToC to the blob");
  b->add_flag("--blob-inline-meta", args->blob_inline_meta,
              "also store the bootstrap inside the blob");
  b->add_option("--prefetch-files", args->prefetch_files,
                "file listing image paths to prefetch, one per line");
  b->add_option("--chunk-dict", args->chunk_dict,
                "bootstrap whose stored chunks are reused instead of stored again");
  b->add_flag("--json", args->json, "print a JSON summary");
  return b;
}

int RunBuild(const BuildArgs& args) {
  rafs::builder::BuildOptions o;
  auto comp = storage::ParseCompressor(args.compressor);
  if (!comp.ok() || *comp == storage::Compressor::kGzip) {
    return Usage("build", "bad --compressor '" + args.compressor + "' (zstd, lz4_block, none)");
  }
  o.compressor = *comp;
  auto dig = base::ParseDigestAlgo(args.digester);
  if (!dig.ok()) return Usage("build", "bad --digester '" + args.digester + "' (blake3, sha256)");
  o.digester = *dig;
  uint64_t cs = 0;
  if (!ParseSize(args.chunk_size, &cs) || !base::IsPowerOfTwo(cs) || cs < 4096 ||
      cs > (16u << 20)) {
    return Usage("build", "bad --chunk-size '" + args.chunk_size +
                              "' (a power of two from 4096 to 16777216)");
  }
  o.chunk_size = static_cast<uint32_t>(cs);
  if (args.fs_version != 6) {
    return Usage("build", "bad --fs-version " + std::to_string(args.fs_version) + " (only 6)");
  }
  o.aligned = args.aligned;
  o.blob_toc = args.blob_toc;
  o.blob_inline_meta = args.blob_inline_meta;
  o.chunk_dict = args.chunk_dict;
  if (!args.prefetch_files.empty()) {
    auto list = ReadPrefetchList(args.prefetch_files);
    if (!list.ok()) return Fail("build", list.status());
    o.prefetch_paths = std::move(*list);
  }
  struct stat st;
  if (stat(args.blob_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail("build",
                base::NotFoundError("--blob-dir ", args.blob_dir, ": not an existing directory"));
  }
  auto r = rafs::builder::BuildImage(args.source, args.bootstrap, args.blob_dir, o);
  if (!r.ok()) return Fail("build", r.status());
  if (args.json) {
    nlohmann::json j;
    j["bootstrap"] = args.bootstrap;
    j["bootstrap_size"] = r->bootstrap_size;
    j["blob_id"] = r->blob_id;
    j["blob_path"] = r->blob_path;
    j["blob_size"] = r->blob_size;
    j["entries"] = r->entries;
    j["files"] = r->files;
    j["file_bytes"] = r->file_bytes;
    j["chunks"] = r->chunks;
    j["chunks_stored"] = r->chunks_stored;
    j["chunks_from_dict"] = r->chunks_from_dict;
    j["compressor"] = std::string(storage::CompressorName(o.compressor));
    j["digester"] = std::string(base::DigestAlgoName(o.digester));
    j["chunk_size"] = o.chunk_size;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "bootstrap " << args.bootstrap << " (" << r->bootstrap_size << " bytes)\n";
    if (r->blob_id.empty()) {
      std::cout << "no blob (no file data)\n";
    } else {
      std::cout << "blob " << r->blob_id << " (" << r->blob_size << " bytes, " << r->chunks_stored
                << " of " << r->chunks << " chunks stored)\n";
    }
    std::cout << r->entries << " entries, " << r->files << " files, " << r->file_bytes
              << " bytes of file data\n";
  }
  return kExitOk;
}

base::Result<std::vector<std::string>> ReadPrefetchList(const std::string& file) {
  std::ifstream in(file);
  if (!in) return base::NotFoundError("prefetch list ", file, ": cannot open");
  std::vector<std::string> paths;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (line[0] != '/') {
      return base::InvalidArgumentError("prefetch list ", file, ": path '", line,
                                        "' is not absolute");
    }
    paths.push_back(line);
  }
  return paths;
}

CLI::App* AddMergeCommand(CLI::App* app, MergeArgs* args) {
  auto* m = app->add_subcommand(
      "merge",
      "merge per-layer bootstraps (lowest first) into one image bootstrap, applying OCI and "
      "overlayfs whiteouts");
  m->add_option("LAYER_BOOTSTRAP", args->layers, "layer bootstraps, lowest layer first")
      ->required();
  m->add_option("--bootstrap", args->bootstrap, "output bootstrap file")->required();
  m->add_option("--prefetch-files", args->prefetch_files,
                "file listing image paths to prefetch, one per line (the merged image's "
                "prefetch table)");
  m->add_flag("--json", args->json, "print a JSON summary");
  return m;
}

int RunMerge(const MergeArgs& args) {
  std::vector<std::string> prefetch;
  if (!args.prefetch_files.empty()) {
    auto list = ReadPrefetchList(args.prefetch_files);
    if (!list.ok()) return Fail("merge", list.status());
    prefetch = std::move(*list);
  }
  auto r = rafs::builder::MergeLayers(args.layers, args.bootstrap, prefetch);
  if (!r.ok()) return Fail("merge", r.status());
  if (args.json) {
    nlohmann::json j;
    j["bootstrap"] = args.bootstrap;
    j["bootstrap_size"] = r->bootstrap_size;
    j["entries"] = r->entries;
    j["blob_ids"] = r->blob_ids;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "bootstrap " << args.bootstrap << " (" << r->bootstrap_size << " bytes), "
              << r->entries << " entries, " << r->blobs << " blobs\n";
    for (const auto& id : r->blob_ids) std::cout << "blob " << id << "\n";
  }
  return kExitOk;
}

}  // namespace rfs::cmd
