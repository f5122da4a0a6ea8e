#include "storage/host_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "storage/registry_backend.h"

namespace rfs::storage {

using base::Result;
using base::Status;

namespace {

constexpr size_t kMaxFileBytes = 1u << 20;
constexpr size_t kMaxHosts = 64;

using KeyPath = std::vector<std::string>;

struct Value {
  enum class Kind { kString, kBool, kInt, kArray };
  Kind kind = Kind::kString;
  std::string s;
  bool b = false;
  int64_t i = 0;
  std::vector<Value> items;  // kArray: scalars only
  int line = 0;
};

std::string Join(const KeyPath& p) {
  std::string out;
  for (const auto& k : p) {
    if (!out.empty()) out += '.';
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    out += bare ? k : "\"" + k + "\"";
  }
  return out;
}

// The TOML subset of the header comment, into flat key paths.
class TomlReader {
 public:
  TomlReader(std::string_view text, const std::string& file) : text_(text), file_(file) {}

  Status Parse() {
    while (true) {
      SkipSpace();
      if (AtEnd()) return Status::Ok();
      const char c = Peek();
      if (c == '\n' || c == '#' || c == '\r') {
        RETURN_IF_ERROR(EndOfLine());
        continue;
      }
      if (c == '[') {
        RETURN_IF_ERROR(TableHeader());
      } else {
        RETURN_IF_ERROR(KeyValue());
      }
    }
  }

  const std::map<KeyPath, Value>& values() const { return values_; }
  // Host names (the key under "host") in order of first appearance.
  const std::vector<std::pair<std::string, int>>& host_order() const { return host_order_; }

  template <typename... Args>
  Status Error(int line, Args&&... args) const {
    return base::InvalidArgumentError(file_, ":", line, ": ", std::forward<Args>(args)...);
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
  }
  void SkipSpace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t')) ++pos_;
  }
  template <typename... Args>
  Status Err(Args&&... args) const {
    return Error(line_, std::forward<Args>(args)...);
  }

  // Optional comment, then a newline or the end of the text.
  Status EndOfLine() {
    SkipSpace();
    if (Peek() == '#') {
      while (!AtEnd() && Peek() != '\n') {
        const unsigned char c = static_cast<unsigned char>(Peek());
        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
          return Err("control character in a comment");
        }
        ++pos_;
      }
    }
    if (AtEnd()) return Status::Ok();
    if (Peek() == '\r' && Peek(1) == '\n') ++pos_;
    if (Peek() != '\n') {
      return Err("unexpected '", std::string(1, Peek()), "' after the value (one key per line)");
    }
    ++pos_;
    ++line_;
    return Status::Ok();
  }

  // Blank lines and comments inside an array.
  Status SkipArraySpace() {
    while (true) {
      SkipSpace();
      if (Peek() == '#' || Peek() == '\n' || (Peek() == '\r' && Peek(1) == '\n')) {
        if (AtEnd()) return Status::Ok();
        RETURN_IF_ERROR(EndOfLine());
        continue;
      }
      return Status::Ok();
    }
  }

  Status Key(KeyPath* path) {
    while (true) {
      SkipSpace();
      std::string part;
      const char c = Peek();
      if (c == '"') {
        if (Peek(1) == '"' && Peek(2) == '"') return Err("multi-line strings are not supported");
        RETURN_IF_ERROR(BasicString(&part));
      } else if (c == '\'') {
        RETURN_IF_ERROR(LiteralString(&part));
      } else {
        while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_' ||
                            Peek() == '-')) {
          part.push_back(Peek());
          ++pos_;
        }
        if (part.empty()) {
          if (AtEnd() || Peek() == '\n') return Err("expected a key");
          return Err("unexpected '", std::string(1, Peek()), "' in a key");
        }
      }
      path->push_back(std::move(part));
      if (path->size() > 8) return Err("key nested too deeply");
      SkipSpace();
      if (Peek() != '.') return Status::Ok();
      ++pos_;
    }
  }

  Status TableHeader() {
    const int line = line_;
    ++pos_;  // '['
    if (Peek() == '[') return Err("arrays of tables ([[...]]) are not supported");
    KeyPath path;
    RETURN_IF_ERROR(Key(&path));
    SkipSpace();
    if (Peek() != ']') return Err("expected ']' to close the table header");
    ++pos_;
    if (tables_.count(path) != 0) return Err("table [", Join(path), "] defined twice");
    RETURN_IF_ERROR(CheckNoConflict(path, line));
    tables_.insert(path);
    NoteHost(path, line);
    table_ = std::move(path);
    return EndOfLine();
  }

  // A table or key may not be a prefix of a value key or a value itself.
  Status CheckNoConflict(const KeyPath& path, int line) {
    for (size_t n = 1; n <= path.size(); ++n) {
      KeyPath prefix(path.begin(), path.begin() + static_cast<long>(n));
      auto it = values_.find(prefix);
      if (it != values_.end()) {
        return Error(line, "'", Join(path), "' conflicts with the value set at line ",
                     it->second.line);
      }
    }
    return Status::Ok();
  }

  Status KeyValue() {
    const int line = line_;
    KeyPath path = table_;
    KeyPath key;
    RETURN_IF_ERROR(Key(&key));
    path.insert(path.end(), key.begin(), key.end());
    SkipSpace();
    if (Peek() != '=') return Err("expected '=' after key '", Join(key), "'");
    ++pos_;
    SkipSpace();
    Value v;
    RETURN_IF_ERROR(ParseValue(&v, /*in_array=*/false));
    v.line = line;
    if (values_.count(path) != 0) {
      return Error(line, "duplicate key '", Join(path), "' (first set at line ",
                   values_[path].line, ")");
    }
    RETURN_IF_ERROR(CheckNoConflict(KeyPath(path.begin(), path.end() - 1), line));
    for (const auto& t : tables_) {
      if (t.size() >= path.size() && std::equal(path.begin(), path.end(), t.begin())) {
        return Error(line, "'", Join(path), "' is also a table");
      }
    }
    for (const auto& [k, other] : values_) {
      if (k.size() > path.size() && std::equal(path.begin(), path.end(), k.begin())) {
        return Error(line, "'", Join(path), "' is also a table (line ", other.line, ")");
      }
    }
    NoteHost(path, line);
    values_[path] = std::move(v);
    return EndOfLine();
  }

  void NoteHost(const KeyPath& path, int line) {
    if (path.size() < 2 || path[0] != "host") return;
    for (const auto& [h, l] : host_order_) {
      if (h == path[1]) return;
    }
    host_order_.emplace_back(path[1], line);
  }

  Status ParseValue(Value* v, bool in_array) {
    const char c = Peek();
    if (c == '"') {
      if (Peek(1) == '"' && Peek(2) == '"') return Err("multi-line strings are not supported");
      v->kind = Value::Kind::kString;
      return BasicString(&v->s);
    }
    if (c == '\'') {
      if (Peek(1) == '\'' && Peek(2) == '\'') return Err("multi-line strings are not supported");
      v->kind = Value::Kind::kString;
      return LiteralString(&v->s);
    }
    if (c == '[') {
      if (in_array) return Err("nested arrays are not supported");
      ++pos_;
      v->kind = Value::Kind::kArray;
      while (true) {
        RETURN_IF_ERROR(SkipArraySpace());
        if (AtEnd()) return Err("unterminated array");
        if (Peek() == ']') {
          ++pos_;
          return Status::Ok();
        }
        Value item;
        item.line = line_;
        RETURN_IF_ERROR(ParseValue(&item, /*in_array=*/true));
        if (v->items.size() >= 1024) return Err("array too long");
        v->items.push_back(std::move(item));
        RETURN_IF_ERROR(SkipArraySpace());
        if (Peek() == ',') {
          ++pos_;
        } else if (Peek() != ']') {
          return Err(AtEnd() ? "unterminated array" : "expected ',' or ']' in an array");
        }
      }
    }
    if (c == '{') return Err("inline tables are not supported; use a [table]");
    std::string word;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_' ||
                        Peek() == '-' || Peek() == '+' || Peek() == '.' || Peek() == ':')) {
      word.push_back(Peek());
      ++pos_;
    }
    if (word == "true" || word == "false") {
      v->kind = Value::Kind::kBool;
      v->b = word == "true";
      return Status::Ok();
    }
    if (word.empty()) {
      if (AtEnd() || Peek() == '\n' || Peek() == '#') return Err("expected a value");
      return Err("unexpected '", std::string(1, Peek()), "' where a value belongs");
    }
    // Integers: [+-]digits with single underscores between digits.
    size_t i = (word[0] == '+' || word[0] == '-') ? 1 : 0;
    bool ok = i < word.size();
    std::string digits;
    for (; ok && i < word.size(); ++i) {
      if (std::isdigit(static_cast<unsigned char>(word[i]))) {
        digits.push_back(word[i]);
      } else if (word[i] != '_' || i + 1 >= word.size() || digits.empty() ||
                 !std::isdigit(static_cast<unsigned char>(word[i + 1]))) {
        ok = false;
      }
    }
    if (!ok) {
      if (std::isdigit(static_cast<unsigned char>(word[0])) || word[0] == '+' ||
          word[0] == '-') {
        return Err("unsupported number '", word, "' (only integers)");
      }
      return Err("unexpected '", word, "' where a value belongs (strings need quotes)");
    }
    if (digits.size() > 18) return Err("integer '", word, "' out of range");
    v->kind = Value::Kind::kInt;
    v->i = std::stoll(digits) * (word[0] == '-' ? -1 : 1);
    return Status::Ok();
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  Status BasicString(std::string* out) {
    ++pos_;  // '"'
    while (true) {
      if (AtEnd() || Peek() == '\n' || Peek() == '\r') return Err("unterminated string");
      const unsigned char c = static_cast<unsigned char>(Peek());
      ++pos_;
      if (c == '"') return Status::Ok();
      if ((c < 0x20 && c != '\t') || c == 0x7f) return Err("control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      const char e = Peek();
      ++pos_;
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case 'b': out->push_back('\b'); break;
        case 't': out->push_back('\t'); break;
        case 'n': out->push_back('\n'); break;
        case 'f': out->push_back('\f'); break;
        case 'r': out->push_back('\r'); break;
        case 'u':
        case 'U': {
          const size_t n = e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = Peek();
            if (!std::isxdigit(static_cast<unsigned char>(h))) {
              return Err("bad \\", std::string(1, e), " escape in a string");
            }
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : std::tolower(h) - 'a' + 10);
            ++pos_;
          }
          if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return Err("escape names no unicode scalar value");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Err("unknown escape '\\", std::string(1, e == '\n' ? 'n' : e), "' in a string");
      }
    }
  }

  Status LiteralString(std::string* out) {
    ++pos_;  // '\''
    while (true) {
      if (AtEnd() || Peek() == '\n' || Peek() == '\r') return Err("unterminated string");
      const unsigned char c = static_cast<unsigned char>(Peek());
      ++pos_;
      if (c == '\'') return Status::Ok();
      if ((c < 0x20 && c != '\t') || c == 0x7f) return Err("control character in a string");
      out->push_back(static_cast<char>(c));
    }
  }

  std::string_view text_;
  const std::string& file_;
  size_t pos_ = 0;
  int line_ = 1;
  KeyPath table_;
  std::set<KeyPath> tables_;
  std::map<KeyPath, Value> values_;
  std::vector<std::pair<std::string, int>> host_order_;
};

std::string DirName(const std::string& file) {
  auto slash = file.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : file.substr(0, slash);
}

struct ParsedUrl {
  std::string scheme, host, path;
};

// "https://h[:port][/path]" or "h[:port][/path]" (https).
Result<ParsedUrl> ParseHostUrl(const std::string& url) {
  ParsedUrl u;
  std::string rest = url;
  if (auto p = rest.find("://"); p != std::string::npos) {
    u.scheme = rest.substr(0, p);
    std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    rest = rest.substr(p + 3);
    if (u.scheme != "http" && u.scheme != "https") {
      return base::InvalidArgumentError("'", url, "': scheme must be http or https");
    }
  } else {
    u.scheme = "https";
  }
  auto slash = rest.find('/');
  u.host = rest.substr(0, slash);
  u.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  if (u.host.empty()) return base::InvalidArgumentError("'", url, "': no host");
  for (char c : u.host) {
    const unsigned char uc = static_cast<unsigned char>(c);
    if (!(std::isalnum(uc) || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' ||
          c == ']')) {
      return base::InvalidArgumentError("'", url, "': bad character in the host");
    }
  }
  for (char c : u.path) {
    const unsigned char uc = static_cast<unsigned char>(c);
    if (uc <= 0x20 || uc >= 0x7f || c == '?' || c == '#') {
      return base::InvalidArgumentError("'", url, "': bad character in the path");
    }
  }
  return u;
}

// Settings shared by `server` (top level) and host entries.
struct HostKeys {
  bool pull = true, resolve = true, push = true;
  bool skip_verify = false;
  bool override_path = false;
  std::vector<std::string> ca_files;
};

Status ReadHostKeys(const TomlReader& r, const std::map<KeyPath, Value>& values,
                    const KeyPath& base, const std::string& dir, HostKeys* out) {
  auto get = [&](const char* key) -> const Value* {
    KeyPath p = base;
    p.push_back(key);
    auto it = values.find(p);
    return it == values.end() ? nullptr : &it->second;
  };
  auto name = [&](const char* key) {
    KeyPath p = base;
    p.push_back(key);
    return Join(p);
  };
  if (const Value* v = get("capabilities")) {
    if (v->kind != Value::Kind::kArray) {
      return r.Error(v->line, name("capabilities"), " must be an array of strings");
    }
    out->pull = out->resolve = out->push = false;
    for (const Value& c : v->items) {
      if (c.kind != Value::Kind::kString) {
        return r.Error(c.line, name("capabilities"), " must be an array of strings");
      }
      if (c.s == "pull") {
        out->pull = true;
      } else if (c.s == "resolve") {
        out->resolve = true;
      } else if (c.s == "push") {
        out->push = true;
      } else {
        return r.Error(c.line, name("capabilities"), ": unknown capability '", c.s,
                       "' (pull, resolve, push)");
      }
    }
  }
  for (const char* key : {"skip_verify", "override_path"}) {
    if (const Value* v = get(key)) {
      if (v->kind != Value::Kind::kBool) return r.Error(v->line, name(key), " must be true or false");
      (std::string_view(key) == "skip_verify" ? out->skip_verify : out->override_path) = v->b;
    }
  }
  if (const Value* v = get("ca")) {
    std::vector<const Value*> files;
    if (v->kind == Value::Kind::kString) {
      files.push_back(v);
    } else if (v->kind == Value::Kind::kArray) {
      for (const Value& f : v->items) files.push_back(&f);
    }
    if (files.empty() && v->kind != Value::Kind::kArray) {
      return r.Error(v->line, name("ca"), " must be a file name or an array of them");
    }
    for (const Value* f : files) {
      if (f->kind != Value::Kind::kString || f->s.empty()) {
        return r.Error(f->line, name("ca"), " must be a file name or an array of them");
      }
      std::string path = f->s[0] == '/' ? f->s : dir + "/" + f->s;
      if (std::find(out->ca_files.begin(), out->ca_files.end(), path) == out->ca_files.end()) {
        out->ca_files.push_back(std::move(path));
      }
    }
  }
  return Status::Ok();
}

bool IsDockerHub(const std::string& host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Result<HostConfig> ParseHostsToml(std::string_view text, const std::string& file) {
  TomlReader r(text, file);
  RETURN_IF_ERROR(r.Parse());
  const auto& values = r.values();
  const std::string dir = DirName(file);
  HostConfig config;
  config.file = file;
  if (auto it = values.find(KeyPath{"server"}); it != values.end()) {
    if (it->second.kind != Value::Kind::kString) {
      return r.Error(it->second.line, "server must be a URL string");
    }
    auto u = ParseHostUrl(it->second.s);
    if (!u.ok()) return r.Error(it->second.line, "server ", u.status().message());
    config.server_scheme = u->scheme;
    config.server_host = u->host;
  }
  HostKeys top;
  RETURN_IF_ERROR(ReadHostKeys(r, values, {}, dir, &top));
  config.server_skip_verify = top.skip_verify;
  config.server_ca_files = top.ca_files;
  if (auto it = values.find(KeyPath{"host"}); it != values.end()) {
    return r.Error(it->second.line, "host must be a table of [host.\"<url>\"] entries");
  }
  for (const auto& [url, line] : r.host_order()) {
    if (auto it = values.find(KeyPath{"host", url}); it != values.end()) {
      return r.Error(it->second.line, "host.\"", url, "\" must be a table");
    }
    if (config.hosts.size() >= kMaxHosts) return r.Error(line, "more than ", kMaxHosts, " hosts");
    auto u = ParseHostUrl(url);
    if (!u.ok()) return r.Error(line, "host ", u.status().message());
    HostKeys keys;
    RETURN_IF_ERROR(ReadHostKeys(r, values, {"host", url}, dir, &keys));
    HostEntry e;
    e.scheme = u->scheme;
    e.host = u->host;
    e.path = keys.override_path ? u->path : u->path + "/v2";
    e.pull = keys.pull;
    e.resolve = keys.resolve;
    e.push = keys.push;
    e.skip_verify = keys.skip_verify;
    e.ca_files = keys.ca_files;
    e.line = line;
    config.hosts.push_back(std::move(e));
  }
  return config;
}

Result<HostConfig> LoadHostConfig(const std::string& dir, const std::string& host) {
  if (host.empty() || host.find('/') != std::string::npos || host == "." || host == "..") {
    return base::InvalidArgumentError("bad registry host '", host, "'");
  }
  std::vector<std::string> names = {host};
  if (auto colon = host.rfind(':');
      colon != std::string::npos && host.find(']', colon) == std::string::npos) {
    names.push_back(host.substr(0, colon) + "_" + host.substr(colon + 1) + "_");
  }
  if (IsDockerHub(host)) {
    for (const char* h : {"docker.io", "index.docker.io", "registry-1.docker.io"}) {
      if (std::find(names.begin(), names.end(), h) == names.end()) names.push_back(h);
    }
  }
  names.push_back("_default");
  for (const auto& name : names) {
    const std::string file = dir + "/" + name + "/hosts.toml";
    if (!IsFile(file)) continue;
    std::ifstream in(file, std::ios::binary);
    if (!in) return base::InvalidArgumentError(file, ": cannot be read");
    std::string text;
    text.resize(kMaxFileBytes + 1);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) return base::InvalidArgumentError(file, ": cannot be read");
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxFileBytes) {
      return base::InvalidArgumentError(file, ": larger than ", kMaxFileBytes, " bytes");
    }
    ASSIGN_OR_RETURN(HostConfig c, ParseHostsToml(text, file));
    if (name == "_default") {
      c.server_scheme.clear();
      c.server_host.clear();
    }
    return c;
  }
  return HostConfig{};
}

void ApplyHostConfig(const HostConfig& config, RegistryOptions* o) {
  if (!config.server_host.empty()) {
    o->host = config.server_host;
    o->plain_http = config.server_scheme == "http";
  }
  if (config.server_skip_verify) o->skip_verify = true;
  if (!config.server_ca_files.empty()) o->ca_file = config.server_ca_files.front();
  o->mirrors.clear();
  const std::string origin = (o->plain_http ? "http://" : "https://") + o->host;
  for (const HostEntry& h : config.hosts) {
    if (!h.pull && !h.resolve) continue;  // push-only: nothing to read there
    // The origin listed among the hosts (containerd allows it): it is
    // asked last anyway.
    if (h.scheme + "://" + h.host == origin && h.path == "/v2") continue;
    RegistryMirror m;
    m.origin = h.scheme + "://" + h.host;
    m.host = h.host;
    m.path = h.path;
    m.pull = h.pull;
    m.resolve = h.resolve;
    m.skip_verify = h.skip_verify;
    m.ca_files = h.ca_files;
    o->mirrors.push_back(std::move(m));
  }
}

Status ConfigureMirrors(const std::string& dir, const std::string& registry,
                        RegistryOptions* options) {
  if (dir.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(HostConfig c, LoadHostConfig(dir, registry));
  ApplyHostConfig(c, options);
  return Status::Ok();
}

}  // namespace rfs::storage
