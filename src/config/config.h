// The lorry.toml configuration: its structure, parsing and validation.
//
// Invariants:
// - Parsing is strict: an unknown key, a wrong type or a value out of range is
//   a kUsage error naming the key with its section ("copy.jobs") and, when
//   toml++ knows it, the file and line; a typo never silently falls back to a
//   default.
// - ValidateConfig checks the same ranges without file positions, for a Config
//   completed by command-line flags.
// - Error messages never contain a connection string's password.
//
// Example:
//   name = "main"
//   provider = "host=old.example.com dbname=app user=lorry"
//   subscriber = "postgresql://lorry@new.example.com/app"
//   log_level = "info"
//   [copy]
//   jobs = 4
//   [apply]
//   group_max_changes = 10000
//   group_max_delay_ms = 50
//   statement_cache_size = 1000
//   [run]
//   takeover_timeout = 10
//   network_timeout = 30
//   spool_dir = "/var/lib/lorry/spool"
//   spool_max_size = "10GB"
//   [metrics]
//   addr = "127.0.0.1:7187"
//   basic_auth_user = "prometheus"           # optional, with the file below
//   basic_auth_password_file = "/etc/lorry/metrics-password"
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace lorry {

struct CopyConfig {  // [copy]
  int jobs = 4;      // parallel table copies: 1..64
  int index_jobs = 2;  // parallel rebuilds of indexes deferred during copies: 1..64
  // Tables larger than this (bytes on the provider) are copied in parallel
  // ranges (by ctid, PostgreSQL 14+). Written as bytes or "512MB", "2GB".
  int64_t split_tables_larger_than = 512LL << 20;
  std::string maintenance_work_mem = "256MB";  // for index rebuilds; a PostgreSQL memory setting
};

struct ApplyConfig {                  // [apply]
  int group_max_changes = 10000;      // changes per grouped subscriber transaction: >= 1
  int group_max_delay_ms = 50;        // how long a group may wait for more: 0..60000
  int statement_cache_size = 1000;    // prepared statements kept: 1..1000000
};

struct RunConfig {                  // [run]
  // Seconds after the active `lorry run` last renewed its lease (it renews
  // every second) before a standby takes over: 1..3600, may be fractional.
  double takeover_timeout = 10;
  // Seconds without any answer from a server (replication stream, lease
  // renewal) before its connection counts as dead and is made again: 1..3600.
  double network_timeout = 30;
  // Where large in-progress transactions are spooled until their commit
  // (a private directory per process is made in it); empty: $TMPDIR or /tmp.
  std::string spool_dir;
  // Bytes the spool may hold; beyond it (or when its disk is full) such
  // transactions are asked for again after their commit. Written as bytes or "10GB".
  int64_t spool_max_size = 10LL << 30;
};

struct MetricsConfig {  // [metrics]
  // HOST:PORT where `lorry run` serves /metrics, /healthz, /readyz, the
  // status page (/) and /status.json; empty: no server.
  std::string addr;
  // HTTP basic authentication for every path but /healthz: both or neither.
  // The password is the file's first line (never in the config itself).
  std::string basic_auth_user;
  std::string basic_auth_password_file;
};

struct Config {
  std::string name = "main";      // subscription name: [a-z0-9_], 1..40 chars (part of slot/publication/origin names)
  std::string provider;           // libpq conninfo or URI
  std::string subscriber;         // libpq conninfo or URI
  std::string log_level = "info";  // trace, debug, info, warn, error
  std::string log_format = "text";  // text (key=value lines) or json (one object per line)
  CopyConfig copy;
  ApplyConfig apply;
  RunConfig run;
  MetricsConfig metrics;
  std::string source;  // where it came from (a file path), for messages; empty if built in code
  std::vector<std::string> warnings;  // worth telling, not errors (a file others may read holds a password)
};

// Parses TOML text; `source_name` (usually the file path) is used in errors
// and stored in Config::source. Values are checked as ValidateConfig does.
Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);

// Reads and parses a file. A missing or unreadable file is kUsage naming it.
// A file that group or other users may read and that holds a password (in
// a connection string) adds a warning.
Result<Config> LoadConfigFile(const std::string& path);

// Checks every value's range and syntax, and that both conninfos parse.
Status ValidateConfig(const Config& config);

// The config path to use: the flag if given, else $LORRY_CONFIG if set and
// not empty, else "./lorry.toml".
std::string ResolveConfigPath(const std::string& flag_value);

// Checks a HOST:PORT listen address ("127.0.0.1:9187", "[::1]:9187",
// ":9187" for every interface); the message names `key`.
Status CheckListenAddress(std::string_view addr, std::string_view key);

// Parses "512MB", "2 GB", "64kB" or a plain number of bytes (PostgreSQL's units:
// kB, MB, GB, TB, powers of 1024). nullopt when malformed or too large.
std::optional<int64_t> ParseByteSize(std::string_view text);

}  // namespace lorry
