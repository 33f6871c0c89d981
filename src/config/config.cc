// Parsing and validation of lorry.toml; see config.h for the contract.
//
// Each value is checked by one Check* function used both while parsing (the
// message then gets " in FILE, line N") and by ValidateConfig, so the two can
// never disagree. toml++ exceptions stay inside ParseConfig.
#include "config/config.h"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "pg/conninfo.h"

namespace lorry {

namespace {

constexpr size_t kMaxNameLength = 40;
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error"};
constexpr std::string_view kDefaultConfigPath = "./lorry.toml";

struct IntRange {
  std::string_view key;  // with its section: "copy.jobs"
  int64_t min;
  int64_t max;
};
constexpr IntRange kJobs{"copy.jobs", 1, 64};
constexpr IntRange kIndexJobs{"copy.index_jobs", 1, 64};
constexpr IntRange kGroupMaxChanges{"apply.group_max_changes", 1, INT_MAX};
constexpr IntRange kGroupMaxDelayMs{"apply.group_max_delay_ms", 0, 60000};
constexpr IntRange kStatementCacheSize{"apply.statement_cache_size", 1, 1000000};

struct SecondsRange {
  std::string_view key;
  double min;
  double max;
};
constexpr SecondsRange kTakeoverTimeout{"run.takeover_timeout", 1, 3600};
constexpr SecondsRange kNetworkTimeout{"run.network_timeout", 1, 3600};

std::string Expected(const IntRange& r) {
  if (r.max == INT_MAX) return fmt::format("an integer >= {}", r.min);
  return fmt::format("an integer {}..{}", r.min, r.max);
}

// A value as it appears in messages: strings quoted and cut short.
std::string DescribeString(std::string_view s) {
  constexpr size_t kMax = 60;
  if (s.size() > kMax) return fmt::format("\"{}...\"", s.substr(0, kMax));
  return fmt::format("\"{}\"", s);
}

std::string Describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return DescribeString(node.as_string()->get());
    case toml::node_type::integer:
      return std::to_string(node.as_integer()->get());
    case toml::node_type::floating_point: {
      std::ostringstream os;
      os << *node.as_floating_point();
      return os.str();
    }
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

Status CheckInt(const IntRange& r, int64_t value) {
  if (value >= r.min && value <= r.max) return Status::Ok();
  return Status::Usage(fmt::format("{}: expected {}, got {}", r.key, Expected(r), value));
}

Status CheckSeconds(const SecondsRange& r, double value) {
  if (value >= r.min && value <= r.max) return Status::Ok();
  return Status::Usage(fmt::format("{}: expected seconds {}..{}, got {}", r.key, r.min, r.max, value));
}

Status CheckName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxNameLength;
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  if (ok) return Status::Ok();
  return Status::Usage(fmt::format(
      "name: expected 1..{} characters from a-z, 0-9 and _ (the name is part of the slot, publication and origin "
      "names), got {}",
      kMaxNameLength, DescribeString(name)));
}

Status CheckLogFormat(std::string_view format) {
  if (format == "text" || format == "json") return Status::Ok();
  return Status::Usage(fmt::format("log_format: expected text or json, got {}", DescribeString(format)));
}

Status CheckLogLevel(std::string_view level) {
  for (std::string_view l : kLogLevels)
    if (l == level) return Status::Ok();
  return Status::Usage(
      fmt::format("log_level: expected one of trace, debug, info, warn, error, got {}", DescribeString(level)));
}

// Reads one config text into a Config, naming keys and positions in errors.
class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source.empty() ? "config" : source) {}

  Status Parse(const toml::table& root, Config* c) {
    for (auto&& [k, v] : root) {
      std::string_view key = k.str();
      if (key == "name") {
        LORRY_ASSIGN_OR_RETURN(c->name, ReadString(v, "name"));
        LORRY_RETURN_IF_ERROR(At(CheckName(c->name), v));
      } else if (key == "provider" || key == "subscriber") {
        std::string& field = key == "provider" ? c->provider : c->subscriber;
        LORRY_ASSIGN_OR_RETURN(field, ReadString(v, key));
        LORRY_RETURN_IF_ERROR(At(pg::ValidateConninfo(field, key), v));
      } else if (key == "log_level") {
        LORRY_ASSIGN_OR_RETURN(c->log_level, ReadString(v, "log_level"));
        LORRY_RETURN_IF_ERROR(At(CheckLogLevel(c->log_level), v));
      } else if (key == "log_format") {
        LORRY_ASSIGN_OR_RETURN(c->log_format, ReadString(v, "log_format"));
        LORRY_RETURN_IF_ERROR(At(CheckLogFormat(c->log_format), v));
      } else if (key == "metrics") {
        LORRY_RETURN_IF_ERROR(ParseMetrics(v, &c->metrics));
      } else if (key == "copy") {
        LORRY_RETURN_IF_ERROR(ParseCopy(v, &c->copy));
      } else if (key == "apply") {
        LORRY_RETURN_IF_ERROR(ParseApply(v, &c->apply));
      } else if (key == "run") {
        LORRY_RETURN_IF_ERROR(ParseRun(v, &c->run));
      } else {
        return Unknown(key, "", k.source(), v,
                       "name, provider, subscriber, log_level, log_format, [copy], [apply], [run], [metrics]");
      }
    }
    return Status::Ok();
  }

 private:
  Status ParseCopy(const toml::node& node, CopyConfig* copy) {
    if (!node.is_table()) return TypeError("copy", "a table ([copy])", node);
    for (auto&& [k, v] : *node.as_table()) {
      if (k.str() == "jobs") {
        LORRY_ASSIGN_OR_RETURN(copy->jobs, ReadInt(v, kJobs));
      } else if (k.str() == "index_jobs") {
        LORRY_ASSIGN_OR_RETURN(copy->index_jobs, ReadInt(v, kIndexJobs));
      } else if (k.str() == "split_tables_larger_than") {
        LORRY_ASSIGN_OR_RETURN(copy->split_tables_larger_than, ReadSize(v, "copy.split_tables_larger_than"));
      } else if (k.str() == "maintenance_work_mem") {
        if (!v.is_string() || !ParseByteSize(v.as_string()->get()))
          return TypeError("copy.maintenance_work_mem", "a memory size such as \"256MB\"", v);
        copy->maintenance_work_mem = v.as_string()->get();
      } else {
        return Unknown(k.str(), "copy", k.source(), v,
                       "jobs, index_jobs, split_tables_larger_than, maintenance_work_mem");
      }
    }
    return Status::Ok();
  }

  Status ParseMetrics(const toml::node& node, MetricsConfig* metrics) {
    if (!node.is_table()) return TypeError("metrics", "a table ([metrics])", node);
    for (auto&& [k, v] : *node.as_table()) {
      if (k.str() == "addr") {
        LORRY_ASSIGN_OR_RETURN(metrics->addr, ReadString(v, "metrics.addr"));
        LORRY_RETURN_IF_ERROR(At(CheckListenAddress(metrics->addr, "metrics.addr"), v));
      } else if (k.str() == "basic_auth_user") {
        LORRY_ASSIGN_OR_RETURN(metrics->basic_auth_user, ReadString(v, "metrics.basic_auth_user"));
      } else if (k.str() == "basic_auth_password_file") {
        LORRY_ASSIGN_OR_RETURN(metrics->basic_auth_password_file, ReadString(v, "metrics.basic_auth_password_file"));
      } else {
        return Unknown(k.str(), "metrics", k.source(), v, "addr, basic_auth_user, basic_auth_password_file");
      }
    }
    return Status::Ok();
  }

  Status ParseApply(const toml::node& node, ApplyConfig* apply) {
    if (!node.is_table()) return TypeError("apply", "a table ([apply])", node);
    for (auto&& [k, v] : *node.as_table()) {
      std::string_view key = k.str();
      if (key == "group_max_changes") {
        LORRY_ASSIGN_OR_RETURN(apply->group_max_changes, ReadInt(v, kGroupMaxChanges));
      } else if (key == "group_max_delay_ms") {
        LORRY_ASSIGN_OR_RETURN(apply->group_max_delay_ms, ReadInt(v, kGroupMaxDelayMs));
      } else if (key == "statement_cache_size") {
        LORRY_ASSIGN_OR_RETURN(apply->statement_cache_size, ReadInt(v, kStatementCacheSize));
      } else {
        return Unknown(key, "apply", k.source(), v, "group_max_changes, group_max_delay_ms, statement_cache_size");
      }
    }
    return Status::Ok();
  }

  Status ParseRun(const toml::node& node, RunConfig* run) {
    if (!node.is_table()) return TypeError("run", "a table ([run])", node);
    for (auto&& [k, v] : *node.as_table()) {
      std::string_view key = k.str();
      if (key == "takeover_timeout") {
        LORRY_ASSIGN_OR_RETURN(run->takeover_timeout, ReadSeconds(v, kTakeoverTimeout));
      } else if (key == "network_timeout") {
        LORRY_ASSIGN_OR_RETURN(run->network_timeout, ReadSeconds(v, kNetworkTimeout));
      } else if (key == "spool_dir") {
        LORRY_ASSIGN_OR_RETURN(run->spool_dir, ReadString(v, "run.spool_dir"));
      } else if (key == "spool_max_size") {
        LORRY_ASSIGN_OR_RETURN(run->spool_max_size, ReadSize(v, "run.spool_max_size"));
      } else {
        return Unknown(key, "run", k.source(), v, "takeover_timeout, network_timeout, spool_dir, spool_max_size");
      }
    }
    return Status::Ok();
  }

  // Seconds: an integer or a float.
  Result<double> ReadSeconds(const toml::node& node, const SecondsRange& r) {
    double value = 0;
    if (node.is_integer())
      value = static_cast<double>(node.as_integer()->get());
    else if (node.is_floating_point())
      value = node.as_floating_point()->get();
    else
      return TypeError(r.key, fmt::format("seconds {}..{}", r.min, r.max), node);
    LORRY_RETURN_IF_ERROR(At(CheckSeconds(r, value), node));
    return value;
  }

  Result<std::string> ReadString(const toml::node& node, std::string_view key) {
    if (!node.is_string()) return TypeError(key, "a string", node);
    return node.as_string()->get();
  }

  // A size: an integer number of bytes or a string such as "512MB".
  Result<int64_t> ReadSize(const toml::node& node, std::string_view key) {
    std::optional<int64_t> size;
    if (node.is_integer()) size = node.as_integer()->get();
    if (node.is_string()) size = ParseByteSize(node.as_string()->get());
    if (!size || *size < 1) return TypeError(key, "a size in bytes or such as \"512MB\"", node);
    return *size;
  }

  Result<int> ReadInt(const toml::node& node, const IntRange& r) {
    if (!node.is_integer()) return TypeError(r.key, Expected(r), node);
    int64_t value = node.as_integer()->get();
    LORRY_RETURN_IF_ERROR(At(CheckInt(r, value), node));
    return static_cast<int>(value);
  }

  // " in FILE, line N", or " in FILE" when toml++ has no position.
  std::string Where(const toml::source_region& region) const {
    if (region.begin.line == 0) return fmt::format(" in {}", source_);
    return fmt::format(" in {}, line {}", source_, region.begin.line);
  }

  Status At(const Status& s, const toml::node& node) const {
    if (s.ok()) return s;
    return Status::Usage(s.message() + Where(node.source()));
  }

  Status TypeError(std::string_view key, std::string_view expected, const toml::node& node) const {
    return Status::Usage(fmt::format("{}: expected {}, got {}{}", key, expected, Describe(node), Where(node.source())));
  }

  Status Unknown(std::string_view key, std::string_view section, const toml::source_region& key_region,
                 const toml::node& value, std::string_view known) const {
    std::string full = section.empty() ? std::string(key) : fmt::format("{}.{}", section, key);
    std::string where = Where(key_region.begin.line != 0 ? key_region : value.source());
    std::string scope = section.empty() ? "at the top level" : fmt::format("in [{}]", section);
    return Status::Usage(fmt::format("unknown key \"{}\"{} (known keys {}: {})", full, where, scope, known));
  }

  std::string source_;
};

}  // namespace

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    std::string where = begin.line == 0 ? "" : fmt::format(", line {}, column {}", begin.line, begin.column);
    return Status::Usage(pg::RedactSecrets(fmt::format("syntax error in {}{}: {}",
                                                       source_name.empty() ? "config" : source_name, where,
                                                       e.description())));
  }
  Config config;
  config.source = std::string(source_name);
  LORRY_RETURN_IF_ERROR(Parser(source_name).Parse(root, &config));
  return config;
}

Result<Config> LoadConfigFile(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    return Status::Usage(fmt::format("config file {} not found (name another with -c/--config or $LORRY_CONFIG)", path));
  if (std::filesystem::is_directory(status)) return Status::Usage(fmt::format("config file {} is a directory", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Usage(fmt::format("cannot read config file {}: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Usage(fmt::format("cannot read config file {}: {}", path, std::strerror(errno)));
  LORRY_ASSIGN_OR_RETURN(auto config, ParseConfig(text.str(), path));
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0 &&
      (pg::ConninfoHasPassword(config.provider) || pg::ConninfoHasPassword(config.subscriber)))
    config.warnings.push_back(fmt::format(
        "config file {} holds a password and other users may read it (mode {:o}): chmod 600 {}, or keep the "
        "password in ~/.pgpass, a service file (pg_service.conf) or PGPASSWORD instead",
        path, st.st_mode & 0777, path));
  return config;
}

Status ValidateConfig(const Config& c) {
  LORRY_RETURN_IF_ERROR(CheckName(c.name));
  LORRY_RETURN_IF_ERROR(CheckLogLevel(c.log_level));
  LORRY_RETURN_IF_ERROR(CheckLogFormat(c.log_format));
  if (!c.metrics.addr.empty()) LORRY_RETURN_IF_ERROR(CheckListenAddress(c.metrics.addr, "metrics.addr"));
  if (c.metrics.basic_auth_user.empty() != c.metrics.basic_auth_password_file.empty())
    return Status::Usage("[metrics] basic_auth_user and basic_auth_password_file go together: set both or neither");
  if (c.metrics.basic_auth_user.find(':') != std::string::npos)
    return Status::Usage("metrics.basic_auth_user: a user name cannot contain ':' (HTTP basic authentication)");
  LORRY_RETURN_IF_ERROR(CheckInt(kJobs, c.copy.jobs));
  LORRY_RETURN_IF_ERROR(CheckInt(kIndexJobs, c.copy.index_jobs));
  if (c.copy.split_tables_larger_than < 1)
    return Status::Usage("copy.split_tables_larger_than: expected a size of at least 1 byte");
  if (!ParseByteSize(c.copy.maintenance_work_mem))
    return Status::Usage(fmt::format("copy.maintenance_work_mem: expected a memory size such as \"256MB\", got {}",
                                     DescribeString(c.copy.maintenance_work_mem)));
  LORRY_RETURN_IF_ERROR(CheckInt(kGroupMaxChanges, c.apply.group_max_changes));
  LORRY_RETURN_IF_ERROR(CheckInt(kGroupMaxDelayMs, c.apply.group_max_delay_ms));
  LORRY_RETURN_IF_ERROR(CheckInt(kStatementCacheSize, c.apply.statement_cache_size));
  LORRY_RETURN_IF_ERROR(CheckSeconds(kTakeoverTimeout, c.run.takeover_timeout));
  LORRY_RETURN_IF_ERROR(CheckSeconds(kNetworkTimeout, c.run.network_timeout));
  if (c.run.spool_max_size < 1) return Status::Usage("run.spool_max_size: expected a size of at least 1 byte");
  LORRY_RETURN_IF_ERROR(pg::ValidateConninfo(c.provider, "provider"));
  LORRY_RETURN_IF_ERROR(pg::ValidateConninfo(c.subscriber, "subscriber"));
  return Status::Ok();
}

Status CheckListenAddress(std::string_view addr, std::string_view key) {
  size_t colon = addr.rfind(':');
  bool ok = colon != std::string_view::npos;
  std::string_view host = ok ? addr.substr(0, colon) : "";
  std::string_view port = ok ? addr.substr(colon + 1) : "";
  int64_t number = 0;
  ok = ok && !port.empty() && port.size() <= 5;
  for (char c : port) {
    ok = ok && c >= '0' && c <= '9';
    number = number * 10 + (c - '0');
  }
  ok = ok && number <= 65535;  // 0: a free port, picked when binding
  if (ok && host.find(':') != std::string_view::npos)  // IPv6 must be bracketed
    ok = host.size() > 2 && host.front() == '[' && host.back() == ']';
  for (char c : host) ok = ok && c != ' ' && c != '/';
  if (ok) return Status::Ok();
  return Status::Usage(fmt::format(
      "{}: expected HOST:PORT such as \"127.0.0.1:7187\", \"[::1]:7187\" or \":7187\" (every interface), got {}",
      key, DescribeString(addr)));
}

std::optional<int64_t> ParseByteSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  size_t digits = i;
  int64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (value > (INT64_MAX - 9) / 10) return std::nullopt;
    value = value * 10 + (text[i++] - '0');
  }
  if (i == digits) return std::nullopt;
  while (i < text.size() && text[i] == ' ') ++i;
  std::string_view unit = text.substr(i);
  while (!unit.empty() && unit.back() == ' ') unit.remove_suffix(1);
  int shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "kB") shift = 10;
  else if (unit == "MB") shift = 20;
  else if (unit == "GB") shift = 30;
  else if (unit == "TB") shift = 40;
  else return std::nullopt;
  if (value > (INT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::string ResolveConfigPath(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv("LORRY_CONFIG");
  if (env != nullptr && *env != '\0') return env;
  return std::string(kDefaultConfigPath);
}

}  // namespace lorry
