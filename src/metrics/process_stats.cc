#include "metrics/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace lorry::metrics {

namespace {

// Boot time (unix seconds) from /proc/stat's btime line.
std::optional<int64_t> BootTime() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      int64_t t = 0;
      if (in >> t) return t;
      return std::nullopt;
    }
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

}  // namespace

std::optional<ProcessStats> ReadProcessStats() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  // Fields from 3 (state) on; we need 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
  std::string field;
  int64_t values[23] = {};
  for (int i = 3; i <= 24 && rest >> field; ++i) {
    if (i >= 14) values[i - 2] = std::atoll(field.c_str());
  }
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  long page = sysconf(_SC_PAGESIZE);
  ProcessStats s;
  s.cpu_seconds = (values[12] + values[13]) / ticks;
  s.virtual_bytes = values[21];
  s.resident_bytes = values[22] * page;
  if (auto boot = BootTime()) s.start_time_seconds = *boot + values[20] / ticks;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    s.open_fds++;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) s.max_fds = static_cast<int64_t>(lim.rlim_cur);
  return s;
}

}  // namespace lorry::metrics
