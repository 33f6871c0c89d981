// The process's own resource use, read from /proc/self (Linux), for the
// standard Prometheus `process_*` metrics.
#pragma once

#include <cstdint>
#include <optional>

namespace lorry::metrics {

struct ProcessStats {
  double cpu_seconds = 0;        // user + system
  int64_t resident_bytes = 0;
  int64_t virtual_bytes = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;
  double start_time_seconds = 0;  // unix time the process started
};

// nullopt when /proc is not readable (not Linux, or a restricted container).
std::optional<ProcessStats> ReadProcessStats();

}  // namespace lorry::metrics
