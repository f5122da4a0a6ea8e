// rafs: the command-line tool around RAFS images: inspect and check
// bootstraps and blobs, list, read and extract their files, mount them.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/logging.h"
#include "cmd/rafs/build_cmd.h"
#include "cmd/rafs/cache_cmd.h"
#include "cmd/rafs/convert_cmd.h"
#include "cmd/rafs/exit.h"
#include "cmd/rafs/mount_cmd.h"
#include "cmd/rafs/print.h"
#include "cmd/rafs/remote_image.h"
#include "rafs/fs/checker.h"
#include "rafs/fs/extractor.h"
#include "rafs/fs/image.h"
#include "rafs/meta/metadata.h"
#include "rafs/meta/walk.h"
#include "storage/blob_reader.h"
#include "storage/credentials.h"
#include "storage/registry_backend.h"

namespace rfs::cmd {
namespace {

const char kExitHelp[] =
    "Exit codes: 0 success; 1 error (missing file, bad argument, i/o failure); 2 bad usage; "
    "3 the image or a blob is corrupt (failed validation or a digest mismatch).";

const char kImageHelp[] =
    "bootstrap, blob, or registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]";

struct BlobArgs {
  std::string blob_dir;
  std::vector<std::string> blob_files;
  std::string registry;  // HOST[:PORT]/REPOSITORY
  RegistryAccess access;
  std::string cache_dir;
  std::string cache_max_size;
  std::string read_amplify = "0";
};

void AddBlobOptions(CLI::App* app, BlobArgs* args) {
  app->add_option("--blob-dir", args->blob_dir,
                  "directory of blob files named by blob id (default: the image's directory)");
  app->add_option("--blob", args->blob_files,
                  "a blob file, in blob table order (repeatable; overrides --blob-dir)");
  app->add_option("--registry", args->registry,
                  "read blobs lazily from a registry: HOST[:PORT]/REPOSITORY (default for a "
                  "registry:// IMAGE: its repository)");
  AddRegistryAccessOptions(app, &args->access);
  app->add_option("--cache-dir", args->cache_dir,
                  "keep verified chunks in this directory (reused by later runs)");
  app->add_option("--cache-max-size", args->cache_max_size,
                  "cap the cache directory (10G, 512M): least recently used blobs are evicted");
  app->add_option("--read-amplify", args->read_amplify,
                  "with --cache-dir: a fetch for a smaller read also brings the chunks that "
                  "follow in the blob, up to this size (0: off)")
      ->capture_default_str();
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// IMAGE is a file, or registry://... (then *registry is its repository).
base::Result<std::shared_ptr<rafs::meta::Metadata>> LoadMetadata(
    const std::string& image, const RegistryAccess& access,
    std::shared_ptr<storage::BlobBackend>* registry = nullptr) {
  if (IsRegistryImage(image)) {
    ASSIGN_OR_RETURN(RegistryImage remote, FetchRegistryImage(image, access));
    auto m = rafs::meta::OpenMetadata(std::move(remote.bootstrap));
    if (!m.ok()) return m.status().WithContext(image + ": bootstrap");
    if (registry != nullptr) *registry = std::move(remote.backend);
    return std::shared_ptr<rafs::meta::Metadata>(std::move(*m));
  }
  ASSIGN_OR_RETURN(auto m, rafs::meta::OpenMetadataFile(image));
  return std::shared_ptr<rafs::meta::Metadata>(std::move(m));
}

// Opens IMAGE with a backend for its blobs.
base::Result<std::unique_ptr<rafs::fs::Image>> OpenImage(const std::string& image,
                                                         const BlobArgs& args,
                                                         rafs::fs::FsOptions fs_options = {}) {
  std::shared_ptr<storage::BlobBackend> image_registry;
  ASSIGN_OR_RETURN(auto meta, LoadMetadata(image, args.access, &image_registry));
  std::map<std::string, std::string> files;
  const auto& blobs = meta->blobs();
  if (args.blob_files.size() > blobs.size()) {
    return base::InvalidArgumentError(args.blob_files.size(), " --blob files given but the image has ",
                                      blobs.size(), " blobs");
  }
  for (size_t i = 0; i < args.blob_files.size(); ++i) {
    files[blobs[i].info.blob_id] = args.blob_files[i];
  }
  // A blob with inlined metadata given as IMAGE serves its own chunks.
  for (const auto& b : blobs) {
    if (!files.count(b.info.blob_id) && b.stored_id != b.info.blob_id && !image_registry) {
      files[b.info.blob_id] = image;
    }
  }
  std::shared_ptr<storage::BlobBackend> backend;
  if (!args.registry.empty()) {
    ASSIGN_OR_RETURN(backend, RegistryBackendFor(args.registry, args.access));
  } else if (image_registry != nullptr && args.blob_dir.empty() && args.blob_files.empty()) {
    backend = std::move(image_registry);  // blobs from the image's repository
  } else {
    backend = std::make_shared<storage::LocalFsBackend>(
        args.blob_dir.empty() && !image_registry ? DirName(image) : args.blob_dir,
        std::move(files));
  }
  storage::DeviceOptions device;
  device.cache_dir = args.cache_dir;
  if (!args.cache_max_size.empty()) {
    if (args.cache_dir.empty()) {
      return base::InvalidArgumentError("--cache-max-size needs --cache-dir");
    }
    auto max = ParseByteSize(args.cache_max_size);
    if (!max.ok()) return max.status().WithContext("--cache-max-size");
    device.cache_max_bytes = *max;
  }
  auto amplify = ParseByteSize(args.read_amplify);
  if (!amplify.ok()) return amplify.status().WithContext("--read-amplify");
  device.amplify_bytes = *amplify;
  return rafs::fs::Image::Open(meta, backend, fs_options, std::move(device));
}

base::Status CountTree(const rafs::meta::Metadata& m, TreeCounts* c) {
  std::map<uint64_t, int> files;
  rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const rafs::meta::WalkEntry& e) {
    switch (e.attr.mode & S_IFMT) {
      case S_IFDIR: ++c->directories; break;
      case S_IFREG:
        ++c->files;
        if (files[e.ino]++ > 0) ++c->hardlinks;
        break;
      case S_IFLNK: ++c->symlinks; break;
      default: ++c->others; break;
    }
    return base::Status::Ok();
  };
  return rafs::meta::WalkTree(m, "/", cb);
}

int RunInspect(const std::string& image, const RegistryAccess& access, bool json) {
  auto meta = LoadMetadata(image, access);
  if (!meta.ok()) return Fail("inspect", meta.status());
  TreeCounts counts;
  base::Status s = CountTree(**meta, &counts);
  if (!s.ok()) return Fail("inspect", s);
  if (json) {
    std::cout << InspectJson(**meta, counts).dump(2) << "\n";
  } else {
    std::cout << InspectText(**meta, counts);
  }
  return kExitOk;
}

int RunLs(const std::string& image, const RegistryAccess& access, const std::string& path,
          bool recursive, bool json) {
  auto meta = LoadMetadata(image, access);
  if (!meta.ok()) return Fail("ls", meta.status());
  const rafs::meta::Metadata& m = **meta;
  nlohmann::json out = nlohmann::json::array();
  auto emit = [&](const rafs::meta::WalkEntry& e) -> base::Status {
    std::string target;
    if (S_ISLNK(e.attr.mode)) {
      ASSIGN_OR_RETURN(target, m.ReadLink(e.ino));
    }
    ASSIGN_OR_RETURN(rafs::meta::Xattrs xattrs, m.GetXattrs(e.ino));
    if (json) {
      out.push_back(EntryJson(e, target, xattrs));
    } else {
      std::cout << EntryText(e, target, xattrs);
    }
    return base::Status::Ok();
  };
  rafs::meta::WalkCallbacks cb;
  cb.visit = [&](const rafs::meta::WalkEntry& e) -> base::Status {
    // Without -R: the entry itself and, for a directory, its children.
    if (!recursive && e.depth > 1) return base::Status::Ok();
    if (!recursive && e.depth == 1 && !S_ISDIR(e.attr.mode)) return emit(e);
    RETURN_IF_ERROR(emit(e));
    return base::Status::Ok();
  };
  base::Status s;
  if (recursive) {
    s = rafs::meta::WalkTree(m, path, cb);
  } else {
    // List one level without walking the whole subtree.
    auto ino = rafs::meta::ResolvePath(m, path);
    if (!ino.ok()) return Fail("ls", ino.status());
    rafs::meta::WalkEntry e;
    e.path = path.empty() ? "/" : path;
    e.ino = *ino;
    auto attr = m.GetAttr(*ino);
    if (!attr.ok()) return Fail("ls", attr.status());
    e.attr = *attr;
    s = emit(e);
    if (s.ok() && S_ISDIR(e.attr.mode)) {
      std::vector<rafs::meta::DirEntry> children;
      s = m.ReadDir(*ino, 0, [&](const rafs::meta::DirEntry& d, uint64_t) {
        if (d.name != "." && d.name != "..") children.push_back(d);
        return true;
      });
      for (size_t i = 0; s.ok() && i < children.size(); ++i) {
        rafs::meta::WalkEntry c;
        c.path = (e.path == "/" ? "" : e.path) + "/" + children[i].name;
        c.name = children[i].name;
        c.ino = children[i].ino;
        c.depth = 1;
        auto ca = m.GetAttr(c.ino);
        if (!ca.ok()) {
          s = ca.status().WithContext(c.path);
          break;
        }
        c.attr = *ca;
        s = emit(c);
      }
    }
  }
  if (!s.ok()) return Fail("ls", s);
  if (json) std::cout << out.dump(2) << "\n";
  return kExitOk;
}

int RunCat(const std::string& image, const std::string& path, const BlobArgs& args) {
  auto img = OpenImage(image, args);
  if (!img.ok()) return Fail("cat", img.status());
  auto ino = rafs::meta::ResolvePath((*img)->metadata(), path);
  if (!ino.ok()) return Fail("cat", ino.status());
  auto attr = (*img)->metadata().GetAttr(*ino);
  if (!attr.ok()) return Fail("cat", attr.status());
  if (!S_ISREG(attr->mode)) {
    return Fail("cat", base::InvalidArgumentError(path, " is not a regular file"));
  }
  constexpr uint64_t kPiece = 4u << 20;
  for (uint64_t off = 0; off < attr->size; off += kPiece) {
    auto data = (*img)->ReadFile(*ino, off, kPiece);
    if (!data.ok()) return Fail("cat", data.status().WithContext(path));
    if (std::fwrite(data->data(), 1, data->size(), stdout) != data->size()) {
      return Fail("cat", base::ErrnoToStatus(errno, "write stdout"));
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

int RunCheck(const std::string& image, const BlobArgs& args, bool json, bool metadata_only) {
  auto img = OpenImage(image, args);
  if (!img.ok()) return Fail("check", img.status());
  rafs::fs::CheckOptions options;
  options.verify_data = !metadata_only;
  auto report = rafs::fs::CheckImage(**img, options);
  if (!report.ok()) return Fail("check", report.status());
  if (json) {
    std::cout << CheckJson(*report).dump(2) << "\n";
  } else {
    std::cout << CheckText(*report);
  }
  return kExitOk;
}

int RunExtract(const std::string& image, const std::string& target, const BlobArgs& args,
               bool no_owners, bool no_devices) {
  auto img = OpenImage(image, args);
  if (!img.ok()) return Fail("extract", img.status());
  rafs::fs::ExtractOptions options;
  options.preserve_owners = !no_owners;
  options.create_devices = !no_devices;
  auto r = rafs::fs::ExtractImage(**img, target, options);
  if (!r.ok()) return Fail("extract", r.status());
  std::cout << "extracted " << r->directories << " directories, " << r->files << " files ("
            << r->bytes << " bytes), " << r->hardlinks << " hard links, " << r->symlinks
            << " symlinks, " << r->specials << " special files";
  if (r->skipped_devices > 0) std::cout << "; skipped " << r->skipped_devices << " devices";
  if (r->skipped_xattrs > 0) std::cout << "; skipped " << r->skipped_xattrs << " xattrs";
  std::cout << "\n";
  return kExitOk;
}

int Main(int argc, char** argv) {
  CLI::App app{"rafs: inspect, check, list, read and extract RAFS (nydus) images.\n"
               "IMAGE is a bootstrap (v5 or v6), a plain EROFS image, a data blob with an "
               "inlined bootstrap, or an image in a registry: "
               "registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST] (bootstrap from the "
               "image, blobs read lazily from its repository)."};
  app.footer(kExitHelp);
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();

  std::string image, path = "/", target;
  bool json = false, recursive = false, metadata_only = false, no_owners = false,
       no_devices = false;
  BlobArgs blobs;

  auto* inspect = app.add_subcommand("inspect", "show superblock, blob table and counts");
  inspect->add_option("IMAGE", image, kImageHelp)->required();
  inspect->add_flag("--json", json, "JSON output");
  AddRegistryAccessOptions(inspect, &blobs.access);

  auto* ls = app.add_subcommand("ls", "list entries with attributes, symlinks and xattrs");
  ls->add_option("IMAGE", image, kImageHelp)->required();
  ls->add_option("PATH", path, "path inside the image")->capture_default_str();
  ls->add_flag("-R,--recursive", recursive, "list the whole subtree");
  ls->add_flag("--json", json, "JSON output");
  AddRegistryAccessOptions(ls, &blobs.access);

  auto* cat = app.add_subcommand("cat", "write a file's contents to stdout");
  cat->add_option("IMAGE", image, kImageHelp)->required();
  cat->add_option("PATH", path, "file inside the image")->required();
  AddBlobOptions(cat, &blobs);

  auto* check = app.add_subcommand(
      "check", "validate all metadata and verify every chunk digest (v5: inode digests too)");
  check->add_option("IMAGE", image, kImageHelp)->required();
  check->add_flag("--json", json, "JSON output");
  check->add_flag("--metadata-only", metadata_only, "do not read chunk data");
  AddBlobOptions(check, &blobs);

  auto* extract = app.add_subcommand(
      "extract", "unpack the tree into DIR (modes, owners, times, xattrs, devices, hard links)");
  extract->add_option("IMAGE", image, kImageHelp)->required();
  extract->add_option("DIR", target, "empty or new target directory")->required();
  extract->add_flag("--no-owners", no_owners, "do not set file owners");
  extract->add_flag("--no-devices", no_devices, "skip device nodes");
  AddBlobOptions(extract, &blobs);

  BuildArgs build_args;
  auto* build = AddBuildCommand(&app, &build_args);
  MergeArgs merge_args;
  auto* merge = AddMergeCommand(&app, &merge_args);
  ConvertArgs convert_args;
  CLI::App* convert = AddConvertCommand(&app, &convert_args);
  CacheArgs cache_args;
  CLI::App* cache = AddCacheCommand(&app, &cache_args);
  cache->footer(kExitHelp);

  MountArgs mount_args;
  auto* mount = app.add_subcommand(
      "mount", "serve the image read-only over FUSE at MOUNTPOINT, fetching chunks on demand");
  mount->add_option("IMAGE", mount_args.image, kImageHelp)->required();
  AddMountOptions(mount, &mount_args);
  AddBlobOptions(mount, &blobs);

  for (CLI::App* sub : {inspect, ls, cat, check, extract, build, merge, convert, mount}) {
    sub->footer(kExitHelp);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  base::LogLevel level;
  if (!base::ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "rafs: bad --log-level '%s'\n", log_level.c_str());
    return kExitUsage;
  }
  base::SetMinLogLevel(level);

  if (*inspect) return RunInspect(image, blobs.access, json);
  if (*ls) return RunLs(image, blobs.access, path, recursive, json);
  if (*cat) return RunCat(image, path, blobs);
  if (*check) return RunCheck(image, blobs, json, metadata_only);
  if (*extract) return RunExtract(image, target, blobs, no_owners, no_devices);
  if (*build) return RunBuild(build_args);
  if (*merge) return RunMerge(merge_args);
  if (*cache) return RunCache(cache_args);
  if (*convert) return RunConvert(convert_args);
  if (*mount) {
    return RunMount(mount_args, [&]() {
      rafs::fs::FsOptions fs;
      fs.default_uid = ::geteuid();
      fs.default_gid = ::getegid();
      fs.mount_time = static_cast<uint64_t>(::time(nullptr));
      return OpenImage(mount_args.image, blobs, fs);
    });
  }
  return kExitUsage;
}

}  // namespace
}  // namespace rfs::cmd

int main(int argc, char** argv) { return rfs::cmd::Main(argc, argv); }
