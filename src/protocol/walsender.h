// Walsender frames: the messages inside the COPY BOTH stream of START_REPLICATION.
//
// The server sends XLogData ('w') and primary keepalives ('k'); the client
// answers with standby status updates ('r'). Parsing is pure and goes through
// ByteReader, so a malformed frame is a kProtocol Status, never a crash.
// Timestamps on this wire are PostgreSQL's: microseconds since 2000-01-01 UTC.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::protocol {

// 'w': a chunk of WAL-derived data; for logical replication, one pgoutput message.
struct XLogData {
  static constexpr char kType = 'w';
  Lsn wal_start;
  Lsn wal_end;
  int64_t send_time = 0;  // PostgreSQL microseconds
  // Views into the frame passed to ParseWalSenderFrame: valid while that buffer lives.
  std::string_view data;
};

// 'k': the server's keepalive; reply_requested asks for an immediate status update.
struct PrimaryKeepalive {
  static constexpr char kType = 'k';
  Lsn wal_end;
  int64_t send_time = 0;  // PostgreSQL microseconds
  bool reply_requested = false;
};

using WalSenderFrame = std::variant<XLogData, PrimaryKeepalive>;

// Parses one CopyData payload from the server. An empty frame, an unknown
// first byte (named in the message), a truncated frame or trailing bytes after
// a keepalive are kProtocol errors.
Result<WalSenderFrame> ParseWalSenderFrame(std::string_view frame);

// 'r': the standby status update that reports progress to the server. Only
// `flush` lets the server recycle WAL and advance the slot, so callers must
// report as flushed only what is durably committed on the subscriber.
std::string BuildStandbyStatusUpdate(Lsn write, Lsn flush, Lsn apply, int64_t now_pg_micros,
                                     bool reply_requested);

// Size in bytes of the frame BuildStandbyStatusUpdate returns.
inline constexpr size_t kStandbyStatusUpdateSize = 1 + 8 + 8 + 8 + 8 + 1;

// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's TimestampTz epoch).
int64_t ToPgMicros(std::chrono::system_clock::time_point t);
// The inverse of ToPgMicros. Values beyond what system_clock can hold (such as
// PostgreSQL's +/-infinity) saturate at time_point::min()/max().
std::chrono::system_clock::time_point FromPgMicros(int64_t us);
// A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as text in UTC,
// as PostgreSQL prints timestamptz with TimeZone=UTC: "2026-11-21 22:44:17.101234+00".
std::string FormatPgMicros(int64_t us);

}  // namespace lorry::protocol
