#include "common/fault.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>

namespace lorry {

namespace {
std::map<std::string, int, std::less<>> ParseSleeps() {
  std::map<std::string, int, std::less<>> out;
  const char* env = std::getenv("LORRY_FAULT_SLEEP");
  if (!env) return out;
  std::string_view s(env);
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    size_t colon = item.find(':');
    if (colon != std::string_view::npos)
      out[std::string(item.substr(0, colon))] = std::atoi(std::string(item.substr(colon + 1)).c_str());
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}
}  // namespace

void FaultPoint(std::string_view point) {
  static const auto sleeps = ParseSleeps();
  if (sleeps.empty()) return;
  auto it = sleeps.find(point);
  if (it != sleeps.end()) std::this_thread::sleep_for(std::chrono::milliseconds(it->second));
}

}  // namespace lorry
