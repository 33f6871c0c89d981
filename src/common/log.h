// Logging: spdlog, levelled key=value lines on stderr. Row data only at
// trace level; passwords never (callers pass redacted conninfo labels, and
// every line also goes through pg::RedactSecrets before it is written).
//
// Formats: "text" (`2026-11-21 20:14:27.090 info sub=main ...`) or "json",
// one object per line: {"ts":"2026-11-21T20:14:27.090Z","level":"info",
// "msg":"sub=main ..."} (ts in UTC; the key=value fields stay inside msg),
// written by nlohmann-json: bytes that are not UTF-8 (a LATIN1 server's
// message) become U+FFFD, so every line is valid JSON.
//
// Under systemd (stderr is the journal: JOURNAL_STREAM), each line starts
// with its syslog priority (<3> error, <4> warning, <6> info, <7> debug),
// which journald strips and keeps as the entry's PRIORITY, in both formats.
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
// Whether the last SetLogFormat asked for JSON (errors printed outside the
// logger, e.g. at start-up, follow it).
bool LogFormatIsJson();

// The formatter lorry's logger uses (text or JSON, secrets redacted;
// `journal`: each line behind its syslog priority prefix).
std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json, bool journal = false);

// "<3>" for error ...: the prefix journald reads a line's priority from.
std::string JournalPrefix(spdlog::level::level_enum level);
// Whether stderr is the stream systemd connected to the journal.
bool StderrIsJournal();

// The JSON line for one message, without the newline (for tests).
std::string JsonLogLine(std::chrono::system_clock::time_point ts, const std::string& level,
                        std::string_view msg);

}  // namespace lorry
