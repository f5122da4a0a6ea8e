#include "rafs/builder/xattr.h"

namespace rfs::rafs::builder {

base::Result<XattrKey> SplitXattrName(std::string_view name) {
  struct Prefix {
    std::string_view text;
    uint8_t index;
    bool exact;
  };
  static constexpr Prefix kPrefixes[] = {
      {"user.", 1, false},
      {"system.posix_acl_access", 2, true},
      {"system.posix_acl_default", 3, true},
      {"trusted.", 4, false},
      {"security.", 6, false},
  };
  for (const Prefix& p : kPrefixes) {
    if (p.exact ? name == p.text : name.substr(0, p.text.size()) == p.text) {
      return XattrKey{p.index, name.substr(p.text.size())};
    }
  }
  return base::InvalidArgumentError("xattr '", name,
                                    "': prefix not storable in rafs (user., trusted., security., "
                                    "system.posix_acl_access/default)");
}

base::Status CheckXattr(std::string_view name, std::string_view value) {
  ASSIGN_OR_RETURN(XattrKey key, SplitXattrName(name));
  if (name.size() > 255 || key.suffix.size() > 255) {
    return base::InvalidArgumentError("xattr name length ", name.size(), " above 255");
  }
  if (value.size() > 65535) {
    return base::InvalidArgumentError("xattr '", name, "': value length ", value.size(),
                                      " above 65535");
  }
  return base::Status::Ok();
}

}  // namespace rfs::rafs::builder
