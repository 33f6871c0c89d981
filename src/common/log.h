// Logging: spdlog, levelled key=value lines on stderr. Row data only at
// trace level; passwords never (callers pass redacted conninfo labels, and
// every line also goes through pg::RedactSecrets before it is written).
//
// Formats: "text" (`2026-11-21 20:14:27.090 info sub=main ...`) or "json",
// one object per line: {"ts":"2026-11-21T20:14:27.090Z","level":"info",
// "msg":"sub=main ..."} (ts in UTC; the key=value fields stay inside msg).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace lorry {

void SetupLogging(const std::string& level);
void SetLogLevel(const std::string& level);
// "text" or "json"; anything else is treated as text.
void SetLogFormat(const std::string& format);

// The formatter lorry's logger uses (text or JSON, secrets redacted).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json);

// The JSON line for one message, without the newline (for tests).
std::string JsonLogLine(std::chrono::system_clock::time_point ts, const std::string& level,
                        std::string_view msg);

}  // namespace lorry
