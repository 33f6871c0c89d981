// Logging: spdlog, levelled key=value lines on stderr. Row data only at
// trace level; passwords never (callers pass redacted conninfo labels).
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace lorry {

void SetupLogging(const std::string& level);
void SetLogLevel(const std::string& level);

}  // namespace lorry
