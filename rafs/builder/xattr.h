// Xattr name rules of RAFS v6 (spec RAFS-FORMAT 4.5): the EROFS name index
// of a full name and the checks the builder applies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace rfs::rafs::builder {

struct XattrKey {
  uint8_t name_index;
  std::string_view suffix;
};

// Splits a full name by the prefixes user., system.posix_acl_access,
// system.posix_acl_default, trusted., security. (tried in that order);
// kInvalidArgument for any other name.
base::Result<XattrKey> SplitXattrName(std::string_view name);

// kInvalidArgument unless the name has a storable prefix, is at most 255
// bytes and the value at most 65535 bytes.
base::Status CheckXattr(std::string_view name, std::string_view value);

}  // namespace rfs::rafs::builder
