// Walsender frame parsing and the standby status update encoder.
//
// Layouts (PostgreSQL's protocol-replication docs, walsender.c):
//   'w' int64 wal_start, int64 wal_end, int64 send_time, bytes data (rest of frame)
//   'k' int64 wal_end, int64 send_time, byte reply_requested (0 or 1)
//   'r' int64 write, int64 flush, int64 apply, int64 send_time, byte reply_requested
#include "protocol/walsender.h"

#include <ctime>
#include <limits>

#include <fmt/format.h>

#include "common/byte_reader.h"

namespace lorry::protocol {

namespace {

// 2000-01-01 00:00:00 UTC as microseconds since the Unix epoch.
constexpr int64_t kPgEpochUnixMicros = INT64_C(946684800) * 1000000;

Status ReadLsn(ByteReader* r, Lsn* out, const char* what) {
  uint64_t v = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU64(&v, what));
  *out = Lsn(v);
  return Status::Ok();
}

Status ReadXLogData(ByteReader* r, XLogData* m) {
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->wal_start, "wal_start"));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->wal_end, "wal_end"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->send_time, "send_time"));
  m->data = r->ReadRest();
  return Status::Ok();
}

Status ReadKeepalive(ByteReader* r, PrimaryKeepalive* m) {
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->wal_end, "wal_end"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->send_time, "send_time"));
  uint8_t reply = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU8(&reply, "reply_requested"));
  if (reply > 1) return Status::Protocol(fmt::format("invalid reply_requested flag {}", reply));
  m->reply_requested = reply == 1;
  if (!r->empty()) return Status::Protocol(fmt::format("{} trailing bytes", r->remaining()));
  return Status::Ok();
}

}  // namespace

Result<WalSenderFrame> ParseWalSenderFrame(std::string_view frame) {
  if (frame.empty()) return Status::Protocol("empty walsender frame");
  // The reader covers the type byte too, so error offsets count from the frame start.
  ByteReader r(frame);
  uint8_t type_byte = 0;
  LORRY_RETURN_IF_ERROR(r.ReadU8(&type_byte, "message type"));
  const char type = static_cast<char>(type_byte);
  switch (type) {
    case XLogData::kType: {
      XLogData m;
      Status st = ReadXLogData(&r, &m);
      if (!st.ok()) return st.WithContext("walsender XLogData frame");
      return WalSenderFrame(m);
    }
    case PrimaryKeepalive::kType: {
      PrimaryKeepalive m;
      Status st = ReadKeepalive(&r, &m);
      if (!st.ok()) return st.WithContext("walsender keepalive frame");
      return WalSenderFrame(m);
    }
  }
  return Status::Protocol(fmt::format("unknown walsender message type 0x{:02x}{}", type_byte,
                                      type_byte >= 0x20 && type_byte < 0x7f
                                          ? fmt::format(" '{}'", type)
                                          : ""));
}

std::string BuildStandbyStatusUpdate(Lsn write, Lsn flush, Lsn apply, int64_t now_pg_micros,
                                     bool reply_requested) {
  std::string out;
  out.reserve(kStandbyStatusUpdateSize);
  PutU8(&out, 'r');
  PutU64(&out, write.value);
  PutU64(&out, flush.value);
  PutU64(&out, apply.value);
  PutI64(&out, now_pg_micros);
  PutU8(&out, reply_requested ? 1 : 0);
  return out;
}

int64_t ToPgMicros(std::chrono::system_clock::time_point t) {
  // floor, not duration_cast: a time just before a microsecond boundary belongs
  // to the earlier microsecond, also before 1970.
  const auto us = std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch());
  return us.count() - kPgEpochUnixMicros;
}

std::string FormatPgMicros(int64_t us) {
  int64_t unix_us = us + kPgEpochUnixMicros;
  int64_t secs = unix_us >= 0 ? unix_us / 1000000 : -((-unix_us + 999999) / 1000000);
  int64_t frac = unix_us - secs * 1000000;
  time_t t = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  if (frac == 0) return fmt::format("{}+00", buf);
  std::string f = fmt::format("{:06d}", frac);
  while (f.back() == '0') f.pop_back();  // as PostgreSQL prints it
  return fmt::format("{}.{}+00", buf, f);
}

std::chrono::system_clock::time_point FromPgMicros(int64_t us) {
  using Clock = std::chrono::system_clock;
  // The limits of system_clock, in PostgreSQL microseconds; checked before any
  // arithmetic that could overflow.
  const int64_t max_unix_us =
      std::chrono::floor<std::chrono::microseconds>(Clock::duration::max()).count();
  const int64_t min_unix_us =
      std::chrono::ceil<std::chrono::microseconds>(Clock::duration::min()).count();
  if (us > max_unix_us - kPgEpochUnixMicros) return Clock::time_point::max();
  if (us < min_unix_us - kPgEpochUnixMicros) return Clock::time_point::min();
  const std::chrono::microseconds since_unix(us + kPgEpochUnixMicros);
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(since_unix));
}

}  // namespace lorry::protocol
