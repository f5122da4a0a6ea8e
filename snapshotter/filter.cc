#include "snapshotter/filter.h"

#include <cctype>
#include <optional>
#include <utility>

namespace rfs::snapshotter {

using base::InvalidArgumentError;
using base::Result;
using base::Status;

namespace {

constexpr size_t kMaxFilterBytes = 64 * 1024;
constexpr size_t kMaxRegexBytes = 1024;

enum class Tok { kEof, kField, kValue, kQuoted, kSeparator, kOperator, kIllegal };

struct Token {
  Tok tok;
  size_t pos;
  std::string text;
  std::string error;  // kIllegal
};

bool IsFieldChar(unsigned char c) { return c == '_' || std::isalnum(c) != 0; }
bool IsQuoteChar(char c) { return c == '"' || c == '/' || c == '|'; }
bool IsSeparatorChar(char c) { return c == ',' || c == '.'; }
bool IsOperatorChar(char c) { return c == '=' || c == '!' || c == '~'; }
bool IsSpace(unsigned char c) { return std::isspace(c) != 0; }
// containerd: any graphic, non-space rune other than ','. Bytes >= 0x80 are
// taken as part of a UTF-8 rune.
bool IsValueChar(unsigned char c) { return c != ',' && !IsSpace(c) && (c >= 0x21); }

// The lexer of containerd's filters/scanner.go: after an operator the next
// token is scanned as a value.
class Scanner {
 public:
  explicit Scanner(const std::string& in) : in_(in) {}

  Token Peek() {
    size_t save_pos = pos_;
    bool save_value = value_;
    Token t = Scan();
    pos_ = save_pos;
    value_ = save_value;
    return t;
  }

  Token Scan() {
    while (pos_ < in_.size() && IsSpace(static_cast<unsigned char>(in_[pos_]))) ++pos_;
    size_t start = pos_;
    if (pos_ >= in_.size()) return {Tok::kEof, start, "", ""};
    char c = in_[pos_];
    if (IsQuoteChar(c)) {
      std::string error;
      if (!ScanQuoted(c, &error))
        return {Tok::kIllegal, start, in_.substr(start, pos_ - start), error};
      return {Tok::kQuoted, start, in_.substr(start, pos_ - start), ""};
    }
    if (IsSeparatorChar(c)) {
      ++pos_;
      value_ = false;
      return {Tok::kSeparator, start, std::string(1, c), ""};
    }
    if (IsOperatorChar(c)) {
      while (pos_ < in_.size() && IsOperatorChar(in_[pos_])) ++pos_;
      value_ = true;
      return {Tok::kOperator, start, in_.substr(start, pos_ - start), ""};
    }
    if (value_) {
      while (pos_ < in_.size() && IsValueChar(static_cast<unsigned char>(in_[pos_]))) ++pos_;
      value_ = false;
      if (pos_ == start) {
        ++pos_;
        return {Tok::kIllegal, start, std::string(1, c), "unexpected character"};
      }
      return {Tok::kValue, start, in_.substr(start, pos_ - start), ""};
    }
    if (IsFieldChar(static_cast<unsigned char>(c))) {
      while (pos_ < in_.size() && IsFieldChar(static_cast<unsigned char>(in_[pos_]))) ++pos_;
      return {Tok::kField, start, in_.substr(start, pos_ - start), ""};
    }
    ++pos_;
    return {Tok::kIllegal, start, std::string(1, c), "unexpected character"};
  }

 private:
  bool ScanQuoted(char quote, std::string* error) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= in_.size() || in_[pos_] == '\n') {
        *error = "quoted literal not terminated";
        return false;
      }
      char c = in_[pos_++];
      if (c == quote) return true;
      if (c == '\\') {
        if (pos_ >= in_.size()) {
          *error = "quoted literal not terminated";
          return false;
        }
        ++pos_;  // the escaped character; validated when unquoting
      }
    }
  }

  const std::string& in_;
  size_t pos_ = 0;
  bool value_ = false;
};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Removes the quotes of a quoted token and resolves Go-style escapes.
std::optional<std::string> Unquote(const std::string& s) {
  if (s.size() < 2) return std::nullopt;
  char quote = s[0];
  std::string out;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    char c = s[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i + 1 > s.size() - 1) return std::nullopt;
    char e = s[i];
    switch (e) {
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case 'x':
      case 'u':
      case 'U': {
        int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (i + n >= s.size()) return std::nullopt;
        uint32_t v = 0;
        for (int k = 1; k <= n; ++k) {
          int d = HexDigit(s[i + k]);
          if (d < 0) return std::nullopt;
          v = v * 16 + static_cast<uint32_t>(d);
        }
        i += n;
        if (e == 'x') {
          out.push_back(static_cast<char>(v));
        } else {
          if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return std::nullopt;
          AppendUtf8(v, &out);
        }
        break;
      }
      default:
        if (e == quote) {
          out.push_back(e);
        } else if (e >= '0' && e <= '7') {
          if (i + 2 >= s.size()) return std::nullopt;
          uint32_t v = 0;
          for (int k = 0; k < 3; ++k) {
            char d = s[i + k];
            if (d < '0' || d > '7') return std::nullopt;
            v = v * 8 + static_cast<uint32_t>(d - '0');
          }
          if (v > 255) return std::nullopt;
          out.push_back(static_cast<char>(v));
          i += 2;
        } else {
          return std::nullopt;
        }
    }
  }
  return out;
}

Status SyntaxError(const std::string& text, size_t pos, const std::string& what) {
  return InvalidArgumentError("filter \"", text, "\": ", what, " at offset ", pos);
}

}  // namespace

Result<Filter::Conjunction> Filter::ParseOne(const std::string& text) {
  Scanner sc(text);
  Conjunction all;
  auto field = [&]() -> Result<std::string> {
    Token t = sc.Scan();
    if (t.tok == Tok::kField) return t.text;
    if (t.tok == Tok::kQuoted) {
      if (t.text[0] != '"') return SyntaxError(text, t.pos, "invalid quote encountered");
      std::optional<std::string> uq = Unquote(t.text);
      if (!uq) return SyntaxError(text, t.pos, "bad escape in quoted field");
      return *uq;
    }
    if (t.tok == Tok::kIllegal) return SyntaxError(text, t.pos, t.error);
    return SyntaxError(text, t.pos, "expected field or quoted");
  };
  while (true) {
    Selector sel;
    ASSIGN_OR_RETURN(std::string first, field());
    sel.fieldpath.push_back(std::move(first));
    while (sc.Peek().tok == Tok::kSeparator && sc.Peek().text == ".") {
      (void)sc.Scan();
      ASSIGN_OR_RETURN(std::string next, field());
      sel.fieldpath.push_back(std::move(next));
    }
    Token t = sc.Peek();
    if (t.tok != Tok::kEof && !(t.tok == Tok::kSeparator && t.text == ",")) {
      Token op = sc.Scan();
      if (op.tok == Tok::kIllegal) return SyntaxError(text, op.pos, op.error);
      if (op.tok != Tok::kOperator) {
        return SyntaxError(text, op.pos, "expected an operator (\"==\"|\"!=\"|\"~=\")");
      }
      if (op.text == "==") {
        sel.op = Op::kEqual;
      } else if (op.text == "!=") {
        sel.op = Op::kNotEqual;
      } else if (op.text == "~=") {
        sel.op = Op::kMatches;
      } else {
        return SyntaxError(text, op.pos, "unsupported operator \"" + op.text + "\"");
      }
      Token v = sc.Scan();
      if (v.tok == Tok::kValue || v.tok == Tok::kField) {
        sel.value = v.text;
      } else if (v.tok == Tok::kQuoted) {
        if (sel.op != Op::kMatches && v.text[0] != '"') {
          return SyntaxError(text, v.pos, "invalid quote encountered");
        }
        std::optional<std::string> uq = Unquote(v.text);
        if (!uq) return SyntaxError(text, v.pos, "bad escape in quoted value");
        sel.value = std::move(*uq);
      } else if (v.tok == Tok::kIllegal) {
        return SyntaxError(text, v.pos, v.error);
      } else {
        return SyntaxError(text, v.pos, "expected value or quoted");
      }
      if (sel.op == Op::kMatches) {
        if (sel.value.size() > kMaxRegexBytes) {
          return SyntaxError(
              text, v.pos,
              base::StrCat("regular expression longer than ", kMaxRegexBytes, " bytes"));
        }
        // std::regex reports bad patterns by throwing; caught right here.
        try {
          sel.re = std::make_shared<const std::regex>(sel.value, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return SyntaxError(text, v.pos, "bad regular expression \"" + sel.value + "\"");
        }
      }
    }
    all.push_back(std::move(sel));
    Token sep = sc.Scan();
    if (sep.tok == Tok::kEof) break;
    if (sep.tok != Tok::kSeparator || sep.text != ",") {
      return SyntaxError(text, sep.pos, "unexpected input \"" + sep.text + "\"");
    }
  }
  return all;
}

Result<Filter> Filter::Parse(const std::vector<std::string>& filters) {
  Filter f;
  for (const std::string& text : filters) {
    if (text.size() > kMaxFilterBytes) {
      return InvalidArgumentError("filter of ", text.size(), " bytes is longer than the limit of ",
                                  kMaxFilterBytes);
    }
    if (text.empty()) {
      // containerd: an empty filter string matches everything.
      f.any_.push_back({});
      continue;
    }
    ASSIGN_OR_RETURN(Conjunction c, ParseOne(text));
    f.any_.push_back(std::move(c));
  }
  return f;
}

bool Filter::MatchSelector(const Selector& s, const Info& info) {
  std::string value;
  bool present = false;
  const std::string& f0 = s.fieldpath[0];
  if (f0 == "name" && s.fieldpath.size() == 1) {
    value = info.name;
    present = true;
  } else if (f0 == "parent" && s.fieldpath.size() == 1) {
    value = info.parent;
    present = true;
  } else if (f0 == "kind" && s.fieldpath.size() == 1) {
    value = std::string(KindName(info.kind));
    present = true;
  } else if (f0 == "labels" && s.fieldpath.size() > 1) {
    std::string key = s.fieldpath[1];
    for (size_t i = 2; i < s.fieldpath.size(); ++i) key += "." + s.fieldpath[i];
    auto it = info.labels.find(key);
    if (it != info.labels.end()) {
      value = it->second;
      present = true;
    }
  }
  switch (s.op) {
    case Op::kPresent:
      return present;
    case Op::kEqual:
      return present && value == s.value;
    case Op::kNotEqual:
      return value != s.value;
    case Op::kMatches:
      // std::regex signals an over-complex match by throwing: no match then.
      try {
        return std::regex_search(value, *s.re);
      } catch (const std::regex_error&) {
        return false;
      }
  }
  return false;
}

bool Filter::Match(const Info& info) const {
  if (any_.empty()) return true;
  for (const Conjunction& c : any_) {
    bool all = true;
    for (const Selector& s : c) {
      if (!MatchSelector(s, info)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

}  // namespace rfs::snapshotter
