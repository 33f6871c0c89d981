// Tests for walsender frames: byte-level fixtures built with the Put* encoders,
// every truncation, trailing bytes, unknown types, and the PostgreSQL epoch.
#include "protocol/walsender.h"

#include <chrono>
#include <limits>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "common/byte_reader.h"

namespace lorry::protocol {
namespace {

constexpr int kXLogDataHeaderSize = 1 + 8 + 8 + 8;

std::string XLogDataFrame(uint64_t start, uint64_t end, int64_t time, std::string_view data) {
  std::string f;
  PutU8(&f, 'w');
  PutU64(&f, start);
  PutU64(&f, end);
  PutI64(&f, time);
  f.append(data);
  return f;
}

std::string KeepaliveFrame(uint64_t end, int64_t time, uint8_t reply) {
  std::string f;
  PutU8(&f, 'k');
  PutU64(&f, end);
  PutI64(&f, time);
  PutU8(&f, reply);
  return f;
}

TEST(WalSenderTest, ParsesXLogData) {
  const std::string frame = XLogDataFrame(0x16B3748, 0x16B3800, 123456789, std::string("B\0x", 3));
  auto r = ParseWalSenderFrame(frame);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto* w = std::get_if<XLogData>(&r.value());
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->wal_start, Lsn(0x16B3748));
  EXPECT_EQ(w->wal_end, Lsn(0x16B3800));
  EXPECT_EQ(w->send_time, 123456789);
  EXPECT_EQ(w->data, std::string_view("B\0x", 3));
  // The payload is a view into the frame, not a copy.
  EXPECT_EQ(w->data.data(), frame.data() + kXLogDataHeaderSize);
}

TEST(WalSenderTest, ParsesXLogDataWithEmptyPayload) {
  auto r = ParseWalSenderFrame(XLogDataFrame(1, 2, 3, ""));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::get<XLogData>(r.value()).data.empty());
}

TEST(WalSenderTest, ParsesKeepalive) {
  for (uint8_t reply : {0, 1}) {
    auto r = ParseWalSenderFrame(KeepaliveFrame(0xABCDEF0123456789ULL, -5, reply));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto& k = std::get<PrimaryKeepalive>(r.value());
    EXPECT_EQ(k.wal_end, Lsn(0xABCDEF0123456789ULL));
    EXPECT_EQ(k.send_time, -5);
    EXPECT_EQ(k.reply_requested, reply == 1);
  }
}

TEST(WalSenderTest, RejectsInvalidReplyFlag) {
  auto r = ParseWalSenderFrame(KeepaliveFrame(1, 2, 2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
}

TEST(WalSenderTest, RejectsEveryTruncatedKeepalive) {
  const std::string frame = KeepaliveFrame(1, 2, 1);
  for (size_t n = 0; n < frame.size(); ++n) {
    auto r = ParseWalSenderFrame(std::string_view(frame).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix length " << n;
    EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
  }
}

TEST(WalSenderTest, RejectsEveryTruncatedXLogDataHeader) {
  // Past the header every prefix is a valid frame with a shorter payload.
  const std::string frame = XLogDataFrame(1, 2, 3, "payload");
  for (size_t n = 0; n < kXLogDataHeaderSize; ++n) {
    auto r = ParseWalSenderFrame(std::string_view(frame).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix length " << n;
    EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
  }
}

TEST(WalSenderTest, RejectsTrailingBytesAfterKeepalive) {
  auto r = ParseWalSenderFrame(KeepaliveFrame(1, 2, 0) + "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos) << r.status().message();
}

TEST(WalSenderTest, RejectsUnknownTypeNamingTheByte) {
  auto r = ParseWalSenderFrame("q0000000");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
  EXPECT_NE(r.status().message().find("'q'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("0x71"), std::string::npos) << r.status().message();

  auto nonprint = ParseWalSenderFrame(std::string("\x01", 1));
  ASSERT_FALSE(nonprint.ok());
  EXPECT_NE(nonprint.status().message().find("0x01"), std::string::npos)
      << nonprint.status().message();
}

TEST(WalSenderTest, RejectsEmptyFrame) {
  auto r = ParseWalSenderFrame("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol);
}

TEST(WalSenderTest, BuildsStandbyStatusUpdate) {
  const std::string f = BuildStandbyStatusUpdate(Lsn(0x100), Lsn(0x0F0), Lsn(0x0E0), 777, true);
  ASSERT_EQ(f.size(), kStandbyStatusUpdateSize);
  ByteReader r(f);
  uint8_t type = 0, reply = 0;
  uint64_t write = 0, flush = 0, apply = 0;
  int64_t now = 0;
  ASSERT_TRUE(r.ReadU8(&type, "type").ok());
  ASSERT_TRUE(r.ReadU64(&write, "write").ok());
  ASSERT_TRUE(r.ReadU64(&flush, "flush").ok());
  ASSERT_TRUE(r.ReadU64(&apply, "apply").ok());
  ASSERT_TRUE(r.ReadI64(&now, "now").ok());
  ASSERT_TRUE(r.ReadU8(&reply, "reply").ok());
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(type, 'r');
  EXPECT_EQ(write, 0x100u);
  EXPECT_EQ(flush, 0x0F0u);
  EXPECT_EQ(apply, 0x0E0u);
  EXPECT_EQ(now, 777);
  EXPECT_EQ(reply, 1);
  EXPECT_EQ(BuildStandbyStatusUpdate(Lsn(), Lsn(), Lsn(), 0, false).back(), '\0');
}

TEST(WalSenderTest, PgEpochIsYear2000) {
  using std::chrono::system_clock;
  const system_clock::time_point y2k = system_clock::from_time_t(946684800);
  EXPECT_EQ(ToPgMicros(y2k), 0);
  EXPECT_EQ(ToPgMicros(y2k + std::chrono::hours(24)), INT64_C(86400000000));
  EXPECT_EQ(ToPgMicros(system_clock::from_time_t(0)), -INT64_C(946684800000000));
  // Sub-microsecond parts round down, also before the epoch.
  EXPECT_EQ(ToPgMicros(y2k - std::chrono::nanoseconds(1)), -1);
  EXPECT_EQ(FromPgMicros(0), y2k);
  EXPECT_EQ(FromPgMicros(-1), y2k - std::chrono::microseconds(1));
}

TEST(WalSenderTest, PgMicrosRoundTrip) {
  const auto now = std::chrono::floor<std::chrono::microseconds>(std::chrono::system_clock::now());
  EXPECT_EQ(FromPgMicros(ToPgMicros(now)), now);
  for (int64_t us : {INT64_C(0), INT64_C(1), INT64_C(-1), INT64_C(771234567890123)}) {
    EXPECT_EQ(ToPgMicros(FromPgMicros(us)), us) << us;
  }
}

TEST(WalSenderTest, FromPgMicrosSaturatesInsteadOfOverflowing) {
  using std::chrono::system_clock;
  // PostgreSQL's 'infinity' and '-infinity' timestamps.
  EXPECT_EQ(FromPgMicros(std::numeric_limits<int64_t>::max()), system_clock::time_point::max());
  EXPECT_EQ(FromPgMicros(std::numeric_limits<int64_t>::min()), system_clock::time_point::min());
}

TEST(WalSenderTest, FuzzRandomFramesNeverCrash) {
  std::mt19937_64 rng(20240601);
  const char kTypes[] = {'w', 'k', 'r', 'x'};
  int ok = 0;
  for (int i = 0; i < 100000; ++i) {
    std::string buf(rng() % 40, '\0');
    for (char& c : buf) c = static_cast<char>(rng());
    if (!buf.empty() && rng() % 4 != 0) buf[0] = kTypes[rng() % 4];
    auto r = ParseWalSenderFrame(buf);
    if (r.ok()) {
      ++ok;
      if (const auto* w = std::get_if<XLogData>(&r.value())) {
        ASSERT_GE(w->data.data(), buf.data());
        ASSERT_LE(w->data.data() + w->data.size(), buf.data() + buf.size());
      }
    } else {
      ASSERT_EQ(r.status().kind(), Status::Kind::kProtocol);
    }
    (void)FromPgMicros(static_cast<int64_t>(rng()));
  }
  EXPECT_GT(ok, 0);  // the generator does reach valid frames
}

}  // namespace
}  // namespace lorry::protocol

namespace lorry::protocol {
namespace {

TEST(WalSenderTest, FormatsPgTimestampsLikePostgres) {
  EXPECT_EQ(FormatPgMicros(0), "2000-01-01 00:00:00+00");
  EXPECT_EQ(FormatPgMicros(1), "2000-01-01 00:00:00.000001+00");
  EXPECT_EQ(FormatPgMicros(-1), "1999-12-31 23:59:59.999999+00");
  // 2026-11-21 22:44:17.1 UTC
  int64_t us = ToPgMicros(std::chrono::system_clock::time_point(std::chrono::microseconds(1795301057100000LL)));
  EXPECT_EQ(FormatPgMicros(us), "2026-11-21 22:44:17.1+00");
}

}  // namespace
}  // namespace lorry::protocol
