// Filters on snapshot Info in containerd's filter grammar (containerd
// filters package), as clients pass them to List:
//
//   filter    := selector ("," selector)*        all selectors must hold
//   selector  := fieldpath [("==" | "!=" | "~=") value]   bare fieldpath: present
//   fieldpath := field ("." field)*             field: [A-Za-z0-9_]+ or "quoted"
//   value     := "quoted" | unquoted run up to "," or whitespace
//                (after "~=" also /quoted/ and |quoted|; Go-style escapes)
//
// Several filter strings are OR-ed; no filter strings match everything.
// Fields: name, parent, kind (active|view|committed), labels.<key> (the parts
// after "labels" re-joined with "."). name and parent are always present; an
// unknown field is never present. "~=" is an unanchored regular-expression
// search (ECMAScript syntax here; containerd uses RE2 - the common subset
// behaves the same).
#pragma once

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshotter/snapshot.h"

namespace rfs::snapshotter {

class Filter {
 public:
  // InvalidArgument naming the filter and the offset of a syntax error.
  static base::Result<Filter> Parse(const std::vector<std::string>& filters);

  // A filter that matches everything.
  Filter() = default;

  bool Match(const Info& info) const;

 private:
  enum class Op { kPresent, kEqual, kNotEqual, kMatches };
  struct Selector {
    std::vector<std::string> fieldpath;
    Op op = Op::kPresent;
    std::string value;
    std::shared_ptr<const std::regex> re;  // kMatches only
  };
  using Conjunction = std::vector<Selector>;

  static base::Result<Conjunction> ParseOne(const std::string& text);
  static bool MatchSelector(const Selector& s, const Info& info);

  std::vector<Conjunction> any_;  // empty: match everything
};

}  // namespace rfs::snapshotter
