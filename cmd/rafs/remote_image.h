// Registries for the rafs tool: the access options every registry-reading
// subcommand shares, blob backends for --registry HOST[:PORT]/REPOSITORY,
// and IMAGE arguments that name an image in a registry:
//
//   registry://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]
//
// For those the bootstrap is fetched from the image (manifest, index entry
// for --platform, bootstrap layer; see storage/registry_image.h) and the
// data blobs are read lazily from the same repository.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/registry_backend.h"

namespace rfs::cmd {

struct RegistryAccess {
  bool plain_http = false;
  bool insecure = false;
  std::string ca_file;
  std::string hosts_dir;  // certs.d directory of mirrors
  std::string docker_config;
  std::string platform;  // OS/ARCH[/VARIANT]; default: linux and this build's architecture
};

// --plain-http, --insecure, --ca-file, --hosts-dir, --docker-config, --platform.
void AddRegistryAccessOptions(CLI::App* app, RegistryAccess* access);

// IMAGE starts with registry://.
bool IsRegistryImage(const std::string& image);

// A backend for `host` and `repository` with the access options and the
// docker config credentials (--docker-config, else $DOCKER_CONFIG/config.json
// or ~/.docker/config.json).
base::Result<std::shared_ptr<storage::RegistryBackend>> MakeRegistryBackend(
    const std::string& host, const std::string& repository, const RegistryAccess& access);

// For --registry HOST[:PORT]/REPOSITORY.
base::Result<std::shared_ptr<storage::RegistryBackend>> RegistryBackendFor(
    const std::string& registry, const RegistryAccess& access);

struct RegistryImage {
  std::shared_ptr<storage::RegistryBackend> backend;  // the image's repository
  std::vector<uint8_t> bootstrap;
};

// Fetches the bootstrap of IMAGE (registry://...).
base::Result<RegistryImage> FetchRegistryImage(const std::string& image,
                                               const RegistryAccess& access);

}  // namespace rfs::cmd
