#include "cmd/rafs/remote_image.h"

#include <cstdlib>

#include "base/logging.h"
#include "storage/credentials.h"
#include "storage/host_config.h"
#include "storage/image_ref.h"
#include "storage/registry_image.h"

namespace rfs::cmd {

namespace {
constexpr std::string_view kScheme = "registry://";
}  // namespace

void AddRegistryAccessOptions(CLI::App* app, RegistryAccess* access) {
  app->add_flag("--plain-http", access->plain_http, "talk to the registry over plain HTTP");
  app->add_flag("--insecure", access->insecure, "accept any TLS certificate from the registry");
  app->add_option("--ca-file", access->ca_file, "extra CA bundle for the registry");
  app->add_option("--hosts-dir", access->hosts_dir,
                  "registry mirrors: a directory in containerd's certs.d layout "
                  "(<host[:port]>/hosts.toml), e.g. /etc/containerd/certs.d");
  app->add_option("--docker-config", access->docker_config,
                  "docker config.json with registry credentials (default: "
                  "$DOCKER_CONFIG/config.json or ~/.docker/config.json)");
  app->add_option("--platform", access->platform,
                  "for registry:// images with several platforms: OS/ARCH[/VARIANT] (default " +
                      storage::HostPlatform().ToString() + ")");
}

bool IsRegistryImage(const std::string& image) { return image.rfind(kScheme, 0) == 0; }

base::Result<std::shared_ptr<storage::RegistryBackend>> MakeRegistryBackend(
    const std::string& host, const std::string& repository, const RegistryAccess& access) {
  storage::RegistryOptions o;
  o.host = host;
  o.repository = repository;
  o.plain_http = access.plain_http;
  o.skip_verify = access.insecure;
  o.ca_file = access.ca_file;
  RETURN_IF_ERROR(storage::ConfigureMirrors(access.hosts_dir, host, &o));
  std::string config = access.docker_config;
  if (config.empty()) {
    const char* dc = std::getenv("DOCKER_CONFIG");
    const char* home = std::getenv("HOME");
    if (dc != nullptr && *dc) {
      config = std::string(dc) + "/config.json";
    } else if (home != nullptr && *home) {
      config = std::string(home) + "/.docker/config.json";
    }
  }
  if (!config.empty()) {
    ASSIGN_OR_RETURN(auto creds, storage::DockerConfigCredentials::Load(config));
    o.credentials = std::move(creds);
  }
  return storage::RegistryBackend::Create(std::move(o));
}

base::Result<std::shared_ptr<storage::RegistryBackend>> RegistryBackendFor(
    const std::string& registry, const RegistryAccess& access) {
  const size_t slash = registry.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == registry.size()) {
    return base::InvalidArgumentError("--registry wants HOST[:PORT]/REPOSITORY, got '", registry,
                                      "'");
  }
  return MakeRegistryBackend(registry.substr(0, slash), registry.substr(slash + 1), access);
}

base::Result<RegistryImage> FetchRegistryImage(const std::string& image,
                                               const RegistryAccess& access) {
  auto ref = storage::ParseImageReference(std::string_view(image).substr(kScheme.size()));
  if (!ref.ok()) return ref.status();
  storage::RemoteImageOptions options;
  if (!access.platform.empty()) {
    auto p = storage::ParsePlatform(access.platform);
    if (!p.ok()) return p.status().WithContext("--platform");
    options.platform = std::move(*p);
  }
  RegistryImage out;
  ASSIGN_OR_RETURN(out.backend, MakeRegistryBackend(ref->ApiHost(), ref->repository, access));
  auto fetched =
      storage::FetchRemoteImage(out.backend, ref->Reference(), options, storage::IoContext{});
  if (!fetched.ok()) return fetched.status().WithContext("image " + ref->ToString());
  RFS_LOG(kInfo) << "image " << ref->ToString() << ": manifest " << fetched->manifest_digest
                 << ", bootstrap layer " << fetched->bootstrap_layer.digest;
  out.bootstrap = std::move(fetched->bootstrap);
  return out;
}

}  // namespace rfs::cmd
