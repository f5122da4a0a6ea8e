#include "cmd/rafs/cache_cmd.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/logging.h"
#include "cmd/rafs/exit.h"
#include "rafs/meta/metadata.h"
#include "storage/cache_manager.h"

namespace rfs::cmd {
namespace {

int Usage(const std::string& cmd, const std::string& msg) {
  std::fprintf(stderr, "rafs %s: %s\n", cmd.c_str(), msg.c_str());
  return kExitUsage;
}

// "30s", "15m", "1h", "2d", "0" (seconds without a unit).
bool ParseDuration(const std::string& s, std::chrono::seconds* out) {
  size_t pos = 0;
  uint64_t v = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (v > (uint64_t{1} << 40)) return false;
    v = v * 10 + static_cast<uint64_t>(s[pos++] - '0');
  }
  if (pos == 0) return false;
  const std::string unit = s.substr(pos);
  uint64_t mult;
  if (unit.empty() || unit == "s") {
    mult = 1;
  } else if (unit == "m") {
    mult = 60;
  } else if (unit == "h") {
    mult = 3600;
  } else if (unit == "d") {
    mult = 86400;
  } else {
    return false;
  }
  *out = std::chrono::seconds(static_cast<int64_t>(v * mult));
  return true;
}

std::string HumanBytes(uint64_t n) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << v << " " << kUnits[u];
  return os.str();
}

std::string UtcTime(std::chrono::system_clock::time_point t) {
  const time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm;
  if (secs <= 0 || ::gmtime_r(&secs, &tm) == nullptr) return "-";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// What is odd about an entry, or "".
std::string Note(const storage::CacheEntry& e) {
  if (!e.has_map) return "no chunk map";
  if (!e.has_data) return "no data file";
  if (!e.map_valid) return "corrupt chunk map";
  return "";
}

base::Result<std::shared_ptr<storage::CacheManager>> OpenCache(const CacheArgs& args,
                                                               std::chrono::seconds grace) {
  storage::CacheManagerOptions o;
  o.dir = args.cache_dir;
  o.stray_grace = grace;
  return storage::CacheManager::Open(std::move(o));
}

int RunLs(const CacheArgs& args) {
  auto cache = OpenCache(args, std::chrono::hours(1));
  if (!cache.ok()) return Fail("cache ls", cache.status());
  auto list = (*cache)->List();
  if (!list.ok()) return Fail("cache ls", list.status());
  uint64_t total = 0;
  for (const auto& e : *list) total += e.bytes();
  if (args.json) {
    nlohmann::json blobs = nlohmann::json::array();
    for (const auto& e : *list) {
      nlohmann::json j;
      j["blob_id"] = e.blob_id;
      j["bytes"] = e.bytes();
      j["data_bytes"] = e.data_bytes;
      j["map_bytes"] = e.map_bytes;
      j["chunks"] = e.chunk_count;
      j["ready_chunks"] = e.ready_chunks;
      j["has_data"] = e.has_data;
      j["has_map"] = e.has_map;
      j["map_valid"] = e.map_valid;
      j["last_used"] = UtcTime(e.last_used);
      j["last_used_unix"] = UnixSeconds(e.last_used);
      j["in_use"] = e.in_use;
      blobs.push_back(std::move(j));
    }
    nlohmann::json out;
    out["cache_dir"] = args.cache_dir;
    out["total_bytes"] = total;
    out["blobs"] = std::move(blobs);
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  size_t id_width = 4;
  for (const auto& e : *list) id_width = std::max(id_width, e.blob_id.size());
  std::ostringstream os;
  os << std::left << std::setw(static_cast<int>(id_width)) << "BLOB" << "  " << std::right
     << std::setw(10) << "SIZE" << "  " << std::setw(13) << "CHUNKS" << "  " << std::left
     << std::setw(20) << "LAST USED" << "  " << "IN USE\n";
  for (const auto& e : *list) {
    const std::string chunks =
        e.map_valid ? std::to_string(e.ready_chunks) + "/" + std::to_string(e.chunk_count) : "-";
    os << std::left << std::setw(static_cast<int>(id_width)) << e.blob_id << "  " << std::right
       << std::setw(10) << HumanBytes(e.bytes()) << "  " << std::setw(13) << chunks << "  "
       << std::left << std::setw(20) << UtcTime(e.last_used) << "  "
       << (e.in_use ? "yes" : "no");
    const std::string note = Note(e);
    if (!note.empty()) os << "  (" << note << ")";
    os << "\n";
  }
  os << list->size() << (list->size() == 1 ? " blob, " : " blobs, ") << HumanBytes(total) << " ("
     << total << " bytes)\n";
  std::cout << os.str();
  return kExitOk;
}

int RunGc(const CacheArgs& args) {
  std::chrono::seconds grace;
  if (!ParseDuration(args.grace, &grace)) {
    return Usage("cache gc", "bad --grace '" + args.grace + "' (e.g. 0, 30s, 15m, 1h, 2d)");
  }
  storage::CacheManager::GcOptions o;
  o.dry_run = args.dry_run;
  if (!args.max_size.empty()) {
    auto max = ParseByteSize(args.max_size);
    if (!max.ok()) return Usage("cache gc", "--max-size: " + max.status().message());
    o.max_bytes = *max;
  }
  if (!args.keep.empty()) {
    // Every bootstrap must load: a typo must not turn into "nothing is
    // referenced" and delete the cache.
    std::set<std::string> referenced;
    for (const std::string& path : args.keep) {
      auto meta = rafs::meta::OpenMetadataFile(path);
      if (!meta.ok()) return Fail("cache gc", meta.status().WithContext("--keep " + path));
      for (const auto& b : (*meta)->blobs()) referenced.insert(b.info.blob_id);
    }
    o.referenced = std::move(referenced);
  }
  auto cache = OpenCache(args, grace);
  if (!cache.ok()) return Fail("cache gc", cache.status());
  auto r = (*cache)->Gc(o);
  if (!r.ok()) return Fail("cache gc", r.status());
  if (args.json) {
    nlohmann::json removed = nlohmann::json::array();
    for (const auto& item : r->removed) {
      removed.push_back({{"name", item.name}, {"reason", item.reason}, {"bytes", item.bytes}});
    }
    nlohmann::json out;
    out["cache_dir"] = args.cache_dir;
    out["dry_run"] = args.dry_run;
    out["removed"] = std::move(removed);
    out["skipped_in_use"] = r->skipped_in_use;
    out["bytes_freed"] = r->bytes_freed;
    out["bytes_after"] = r->bytes_after;
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  const char* verb = args.dry_run ? "would remove " : "removed ";
  std::ostringstream os;
  for (const auto& item : r->removed) {
    os << verb << item.name << " (" << item.reason << ", " << HumanBytes(item.bytes) << ")\n";
  }
  for (const auto& id : r->skipped_in_use) os << "kept " << id << " (in use)\n";
  os << (args.dry_run ? "would free " : "freed ") << HumanBytes(r->bytes_freed) << " ("
     << r->bytes_freed << " bytes) in " << r->removed.size()
     << (r->removed.size() == 1 ? " item" : " items") << "; cache "
     << (args.dry_run ? "would hold " : "holds ") << HumanBytes(r->bytes_after) << "\n";
  std::cout << os.str();
  if (o.max_bytes.has_value() && r->bytes_after > *o.max_bytes) {
    std::fprintf(stderr,
                 "rafs cache gc: blobs in use keep the cache above --max-size %s\n",
                 args.max_size.c_str());
  }
  return kExitOk;
}

}  // namespace

base::Result<uint64_t> ParseByteSize(const std::string& text) {
  return base::ParseByteSize(text);
}

CLI::App* AddCacheCommand(CLI::App* app, CacheArgs* args) {
  auto* c = app->add_subcommand(
      "cache", "list a chunk cache directory, remove unreferenced blobs, cap its size");
  c->require_subcommand(1);
  args->ls = c->add_subcommand(
      "ls", "list cached blobs: size on disk, ready/total chunks, last use, whether in use");
  args->ls->add_option("--cache-dir", args->cache_dir, "the chunk cache directory")->required();
  args->ls->add_flag("--json", args->json, "JSON output");
  args->gc = c->add_subcommand(
      "gc",
      "remove blobs no --keep bootstrap references, stray files, and least recently used "
      "blobs above --max-size; never blobs a running process has open");
  args->gc->add_option("--cache-dir", args->cache_dir, "the chunk cache directory")->required();
  args->gc->add_option("--keep", args->keep,
                       "bootstrap whose blobs stay (repeatable; without it no blob is removed "
                       "for being unreferenced)");
  args->gc->add_option("--max-size", args->max_size,
                       "then evict least recently used blobs until the cache holds at most "
                       "this much (10G, 512M; 0 = every blob not in use)");
  args->gc->add_option("--grace", args->grace,
                       "leave stray files (partial blobs, temp files) younger than this "
                       "(0, 30s, 15m, 1h, 2d)")
      ->capture_default_str();
  args->gc->add_flag("--dry-run", args->dry_run, "print what would be removed, remove nothing");
  args->gc->add_flag("--json", args->json, "JSON output");
  return c;
}

int RunCache(const CacheArgs& args) {
  if (args.ls != nullptr && *args.ls) return RunLs(args);
  if (args.gc != nullptr && *args.gc) return RunGc(args);
  return kExitUsage;
}

}  // namespace rfs::cmd
