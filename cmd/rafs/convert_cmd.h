// `rafs convert SRC DST`: an OCI or Docker schema 2 image (a manifest, or
// the chosen platforms of an index) in, the same image in the RAFS (nydus)
// layout of spec SNAPSHOTTER-BEHAVIOUR 5 out.
//
// Per source layer (verified against its digest): the layer tarball is
// built into a RAFS data blob and a layer bootstrap (whiteouts kept), or
// taken from the conversion cache when the same layer was converted before
// with the same options. The layer bootstraps are merged into the image
// bootstrap, wrapped in a reproducible gzip tar (image/image.boot). Pushed,
// in this order: data blobs (media type application/vnd.oci.image.layer.
// nydus.blob.v1, annotation containerd.io/snapshot/nydus-blob), the
// bootstrap layer (annotations nydus-bootstrap, nydus-fs-version,
// nydus-reference-blob-ids), the config (rootfs.diff_ids = blob digests and
// the bootstrap tar's digest; history marks layers without data as empty
// and gains the bootstrap layer's entry; everything else kept), the OCI
// manifest, and for an index source an OCI index whose entries carry
// os.features nydus.remoteimage.v1 and the nydus artifactType. The tag is
// written last, so a failure never leaves the tag pointing at a partial
// image. A layer without file data adds no blob layer (its bootstrap is
// still merged). JSON is written with sorted keys: the same source and
// options give byte-identical output.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cmd/rafs/remote_image.h"

namespace rfs::cmd {

struct ConvertArgs {
  std::string source;
  std::string destination;
  std::string compressor = "zstd";
  std::string chunk_size = "1048576";
  std::string chunk_dict;
  std::string prefetch_files;  // image paths for the merged prefetch table
  std::vector<std::string> platforms;
  bool all_platforms = false;
  std::string work_dir;
  std::string cache_dir;
  bool no_cache = false;
  int jobs = 0;
  bool quiet = false;
  RegistryAccess access;  // its --platform is replaced by ours (repeatable)
};

CLI::App* AddConvertCommand(CLI::App* app, ConvertArgs* args);
// Returns the process exit code (cmd/rafs/exit.h).
int RunConvert(const ConvertArgs& args);

}  // namespace rfs::cmd
