// Tests for the pgoutput decoder: a byte-level fixture for every message kind of
// protocol versions 1-4 (built with the Put* encoders, laid out as PostgreSQL's
// proto.c writes them), then every truncation, trailing bytes, version and
// stream-block rules, broken invariants, and a deterministic fuzz loop.
#include "protocol/pgoutput.h"

#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/byte_reader.h"

namespace lorry::protocol {
namespace {

constexpr Xid kXid = 675;
constexpr Xid kStreamXid = 1001;
constexpr Xid kSubXid = 1002;
constexpr Oid kRelid = 16384;
constexpr Oid kRelid2 = 16390;
constexpr int64_t kTime = INT64_C(771234567890123);
constexpr uint64_t kLsnA = 0x16B3748;
constexpr uint64_t kLsnB = 0x16B3800;
constexpr uint64_t kLsnC = 0x1000016B3900;

// Builds one pgoutput message byte by byte.
class Wire {
 public:
  explicit Wire(char type) { PutU8(&buf_, static_cast<uint8_t>(type)); }
  // A change-like message; xid != 0 lays it out as sent inside a stream block.
  static Wire Change(char type, Xid xid) {
    Wire w(type);
    if (xid != 0) w.U32(xid);
    return w;
  }

  Wire& U8(uint8_t v) { PutU8(&buf_, v); return *this; }
  Wire& I16(int16_t v) { PutI16(&buf_, v); return *this; }
  Wire& I32(int32_t v) { PutI32(&buf_, v); return *this; }
  Wire& U32(uint32_t v) { PutU32(&buf_, v); return *this; }
  Wire& I64(int64_t v) { PutI64(&buf_, v); return *this; }
  Wire& U64(uint64_t v) { PutU64(&buf_, v); return *this; }
  Wire& Str(std::string_view s) { PutCString(&buf_, s); return *this; }
  Wire& Raw(std::string_view s) { buf_.append(s); return *this; }

  // Tuple columns.
  Wire& Null() { return U8('n'); }
  Wire& Unchanged() { return U8('u'); }
  Wire& Text(std::string_view v) { return U8('t').I32(static_cast<int32_t>(v.size())).Raw(v); }
  Wire& Binary(std::string_view v) { return U8('b').I32(static_cast<int32_t>(v.size())).Raw(v); }

  std::string str() const { return buf_; }

 private:
  std::string buf_;
};

const std::string kBinaryValue("\x00\x00\x00\x2a\xff", 5);

// ---- fixtures, one builder per message kind; xid != 0 means "streamed" ----

std::string BeginBytes() { return Wire('B').U64(kLsnA).I64(kTime).U32(kXid).str(); }
std::string CommitBytes() { return Wire('C').U8(0).U64(kLsnA).U64(kLsnB).I64(kTime).str(); }
std::string OriginBytes() { return Wire('O').U64(kLsnC).Str("node_a").str(); }

std::string RelationBytes(Xid xid) {
  return Wire::Change('R', xid)
      .U32(kRelid).Str("public").Str("orders").U8('d').I16(3)
      .U8(1).Str("id").U32(20).I32(-1)
      .U8(0).Str("note").U32(25).I32(-1)
      .U8(0).Str("price").U32(1700).I32(655366)
      .str();
}
std::string TypeBytes(Xid xid) {
  return Wire::Change('Y', xid).U32(16500).Str("public").Str("mood").str();
}
// Five columns: text, null, unchanged TOAST, binary, empty text.
std::string InsertBytes(Xid xid) {
  return Wire::Change('I', xid)
      .U32(kRelid).U8('N').I16(5)
      .Text("42").Null().Unchanged().Binary(kBinaryValue).Text("")
      .str();
}
std::string UpdateBytes(Xid xid) {  // key unchanged: no old tuple
  return Wire::Change('U', xid).U32(kRelid).U8('N').I16(2).Text("42").Unchanged().str();
}
std::string UpdateKeyBytes(Xid xid) {  // key changed: old key columns, others null
  return Wire::Change('U', xid)
      .U32(kRelid).U8('K').I16(2).Text("41").Null()
      .U8('N').I16(2).Text("42").Text("new note")
      .str();
}
std::string UpdateOldRowBytes(Xid xid) {  // REPLICA IDENTITY FULL
  return Wire::Change('U', xid)
      .U32(kRelid).U8('O').I16(2).Text("42").Text("old note")
      .U8('N').I16(2).Text("42").Binary(kBinaryValue)
      .str();
}
std::string DeleteKeyBytes(Xid xid) {
  return Wire::Change('D', xid).U32(kRelid).U8('K').I16(2).Text("42").Null().str();
}
std::string DeleteOldRowBytes(Xid xid) {
  return Wire::Change('D', xid).U32(kRelid).U8('O').I16(2).Text("42").Text("note").str();
}
std::string TruncateBytes(Xid xid) {
  return Wire::Change('T', xid).U32(2).U8(3).U32(kRelid).U32(kRelid2).str();
}
std::string MessageBytes(Xid xid, bool transactional) {
  return Wire::Change('M', xid)
      .U8(transactional ? 1 : 0).U64(kLsnB).Str("lorry.test").I32(4).Raw(std::string("a\0b\xff", 4))
      .str();
}
std::string StreamStartBytes(Xid xid = kStreamXid, uint8_t first = 1) {
  return Wire('S').U32(xid).U8(first).str();
}
std::string StreamStopBytes() { return Wire('E').str(); }
std::string StreamCommitBytes() {
  return Wire('c').U32(kStreamXid).U8(0).U64(kLsnA).U64(kLsnB).I64(kTime).str();
}
std::string StreamAbortBytes(Xid subxid) { return Wire('A').U32(kStreamXid).U32(subxid).str(); }
std::string StreamAbortParallelBytes() {
  return Wire('A').U32(kStreamXid).U32(kSubXid).U64(kLsnC).I64(kTime).str();
}
std::string BeginPrepareBytes() {
  return Wire('b').U64(kLsnA).U64(kLsnB).I64(kTime).U32(kXid).Str("pg_gid_1").str();
}
std::string PrepareBytes(char type = 'P') {
  return Wire(type).U8(0).U64(kLsnA).U64(kLsnB).I64(kTime).U32(kXid).Str("pg_gid_1").str();
}
std::string CommitPreparedBytes() {
  return Wire('K').U8(0).U64(kLsnA).U64(kLsnB).I64(kTime).U32(kXid).Str("pg_gid_1").str();
}
std::string RollbackPreparedBytes() {
  return Wire('r').U8(0).U64(kLsnA).U64(kLsnB).I64(kTime).I64(kTime + 1).U32(kXid).Str("pg_gid_1")
      .str();
}

struct Fixture {
  std::string label;
  const char* name;  // expected MessageName
  int min_version;
  bool in_stream;  // decoded after STREAM START of kStreamXid
  bool parallel;   // needs streaming=parallel (protocol 4)
  std::string bytes;
};

std::vector<Fixture> AllFixtures() {
  std::vector<Fixture> f = {
      {"begin", "BEGIN", 1, false, false, BeginBytes()},
      {"commit", "COMMIT", 1, false, false, CommitBytes()},
      {"origin", "ORIGIN", 1, false, false, OriginBytes()},
      {"relation", "RELATION", 1, false, false, RelationBytes(0)},
      {"type", "TYPE", 1, false, false, TypeBytes(0)},
      {"insert", "INSERT", 1, false, false, InsertBytes(0)},
      {"update", "UPDATE", 1, false, false, UpdateBytes(0)},
      {"update_key", "UPDATE", 1, false, false, UpdateKeyBytes(0)},
      {"update_old_row", "UPDATE", 1, false, false, UpdateOldRowBytes(0)},
      {"delete_key", "DELETE", 1, false, false, DeleteKeyBytes(0)},
      {"delete_old_row", "DELETE", 1, false, false, DeleteOldRowBytes(0)},
      {"truncate", "TRUNCATE", 1, false, false, TruncateBytes(0)},
      {"message", "MESSAGE", 1, false, false, MessageBytes(0, false)},
      {"message_tx", "MESSAGE", 1, false, false, MessageBytes(0, true)},
      {"stream_start", "STREAM START", 2, false, false, StreamStartBytes()},
      {"stream_stop", "STREAM STOP", 2, true, false, StreamStopBytes()},
      {"stream_origin", "ORIGIN", 2, true, false, OriginBytes()},
      {"stream_relation", "RELATION", 2, true, false, RelationBytes(kStreamXid)},
      {"stream_type", "TYPE", 2, true, false, TypeBytes(kStreamXid)},
      {"stream_insert", "INSERT", 2, true, false, InsertBytes(kStreamXid)},
      {"stream_update", "UPDATE", 2, true, false, UpdateBytes(kStreamXid)},
      {"stream_update_key", "UPDATE", 2, true, false, UpdateKeyBytes(kSubXid)},
      {"stream_update_old_row", "UPDATE", 2, true, false, UpdateOldRowBytes(kStreamXid)},
      {"stream_delete_key", "DELETE", 2, true, false, DeleteKeyBytes(kStreamXid)},
      {"stream_delete_old_row", "DELETE", 2, true, false, DeleteOldRowBytes(kSubXid)},
      {"stream_truncate", "TRUNCATE", 2, true, false, TruncateBytes(kStreamXid)},
      {"stream_message", "MESSAGE", 2, true, false, MessageBytes(kStreamXid, true)},
      {"stream_commit", "STREAM COMMIT", 2, false, false, StreamCommitBytes()},
      {"stream_abort", "STREAM ABORT", 2, false, false, StreamAbortBytes(kSubXid)},
      {"stream_abort_parallel", "STREAM ABORT", 4, false, true, StreamAbortParallelBytes()},
      {"begin_prepare", "BEGIN PREPARE", 3, false, false, BeginPrepareBytes()},
      {"prepare", "PREPARE", 3, false, false, PrepareBytes()},
      {"commit_prepared", "COMMIT PREPARED", 3, false, false, CommitPreparedBytes()},
      {"rollback_prepared", "ROLLBACK PREPARED", 3, false, false, RollbackPreparedBytes()},
      {"stream_prepare", "STREAM PREPARE", 3, false, false, PrepareBytes('p')},
  };
  return f;
}

// A decoder in the state the fixture expects.
PgOutputDecoder DecoderFor(const Fixture& f, int version) {
  PgOutputDecoder d(version, f.parallel);
  if (f.in_stream) {
    auto r = d.Decode(StreamStartBytes());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }
  return d;
}

// Decodes `bytes` with a fresh decoder; in_stream puts it inside a stream block first.
Result<PgOutputMessage> DecodeOne(const std::string& bytes, int version = 4, bool in_stream = false,
                                  bool parallel = false) {
  Fixture f{"", "", version, in_stream, parallel, ""};
  PgOutputDecoder d = DecoderFor(f, version);
  return d.Decode(bytes);
}

// Views in the result point into `bytes`: pass a buffer that outlives them.
template <typename M>
M DecodeAs(const std::string& bytes, int version = 4, bool in_stream = false, bool parallel = false) {
  auto r = DecodeOne(bytes, version, in_stream, parallel);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return M{};
  const M* m = std::get_if<M>(&r.value());
  EXPECT_NE(m, nullptr) << "decoded as " << MessageName(r.value());
  return m ? *m : M{};
}

void ExpectProtocolError(const Result<PgOutputMessage>& r, std::string_view needle) {
  ASSERT_FALSE(r.ok()) << "decoded as " << MessageName(r.value());
  EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message: " << r.status().message() << "\nexpected to contain: " << needle;
}

using Kind = TupleColumn::Kind;

// ---- every fixture: decodes, and rejects every prefix and trailing bytes ----

TEST(PgOutputTest, EveryFixtureDecodesUnderEverySupportingVersion) {
  for (const Fixture& f : AllFixtures()) {
    for (int v = f.min_version; v <= kPgOutputMaxVersion; ++v) {
      PgOutputDecoder d = DecoderFor(f, v);
      auto r = d.Decode(f.bytes);
      ASSERT_TRUE(r.ok()) << f.label << " v" << v << ": " << r.status().ToString();
      EXPECT_STREQ(MessageName(r.value()), f.name) << f.label;
    }
  }
}

TEST(PgOutputTest, EveryPrefixOfEveryFixtureIsRejected) {
  for (const Fixture& f : AllFixtures()) {
    for (int v = f.min_version; v <= kPgOutputMaxVersion; ++v) {
      for (size_t n = 0; n < f.bytes.size(); ++n) {
        PgOutputDecoder d = DecoderFor(f, v);
        const bool was_in_stream = d.in_stream();
        auto r = d.Decode(std::string_view(f.bytes).substr(0, n));
        ASSERT_FALSE(r.ok()) << f.label << " v" << v << " prefix " << n << " decoded";
        EXPECT_EQ(r.status().kind(), Status::Kind::kProtocol) << r.status().ToString();
        EXPECT_EQ(d.in_stream(), was_in_stream) << "a failed decode changed the stream state";
      }
    }
  }
}

TEST(PgOutputTest, TrailingBytesAreRejected) {
  for (const Fixture& f : AllFixtures()) {
    for (std::string_view garbage : {std::string_view("x"), std::string_view("\0", 1)}) {
      PgOutputDecoder d = DecoderFor(f, kPgOutputMaxVersion);
      auto r = d.Decode(f.bytes + std::string(garbage));
      ExpectProtocolError(r, "trailing");
    }
  }
}

TEST(PgOutputTest, ErrorsNameTheMessageKind) {
  const std::string insert = InsertBytes(0);
  auto r = DecodeOne(insert.substr(0, insert.size() - 1));
  ExpectProtocolError(r, "pgoutput INSERT message");
  ExpectProtocolError(r, "column 5");
}

// ---- version rules ----

TEST(PgOutputTest, MessagesAreRefusedBelowTheirProtocolVersion) {
  int refused = 0;
  for (const Fixture& f : AllFixtures()) {
    for (int v = kPgOutputMinVersion; v < f.min_version; ++v) {
      // A fresh decoder: below version 2 there is no stream block to be in.
      // Streamed changes have another layout outside a block, and the parallel
      // STREAM ABORT is only longer; skip them here.
      if (f.parallel || (f.in_stream && f.name != std::string_view("STREAM STOP"))) continue;
      PgOutputDecoder d(v);
      ExpectProtocolError(d.Decode(f.bytes), "protocol version");
      ++refused;
    }
  }
  EXPECT_EQ(refused, 4 * 1 + 5 * 2);  // four stream kinds under v1, five two-phase under v1 and v2
}

TEST(PgOutputTest, StreamMessagesRefusedUnderProtocol1) {
  for (const std::string& bytes : {StreamStartBytes(), StreamStopBytes(), StreamCommitBytes(),
                                   StreamAbortBytes(kSubXid)}) {
    ExpectProtocolError(DecodeOne(bytes, 1), "needs protocol version 2 but version 1");
  }
}

TEST(PgOutputTest, TwoPhaseRefusedBelowProtocol3) {
  for (int v : {1, 2}) {
    for (const std::string& bytes : {BeginPrepareBytes(), PrepareBytes(), CommitPreparedBytes(),
                                     RollbackPreparedBytes(), PrepareBytes('p')}) {
      ExpectProtocolError(DecodeOne(bytes, v), "needs protocol version 3");
    }
  }
}

TEST(PgOutputTest, ParallelAbortLayoutDependsOnOption) {
  // Without streaming=parallel the abort info is not sent: 16 bytes would be trailing.
  ExpectProtocolError(DecodeOne(StreamAbortParallelBytes(), 4, false, false), "trailing");
  // With it, the short layout is truncated.
  ExpectProtocolError(DecodeOne(StreamAbortBytes(kSubXid), 4, false, true), "abort_lsn");
}

TEST(PgOutputTest, CheckOptions) {
  for (int v = 1; v <= 4; ++v) EXPECT_TRUE(PgOutputDecoder::CheckOptions(v, false).ok()) << v;
  EXPECT_TRUE(PgOutputDecoder::CheckOptions(4, true).ok());
  for (auto [v, parallel] : std::vector<std::pair<int, bool>>{{0, false}, {5, false}, {-1, false},
                                                                {3, true}, {1, true}}) {
    Status st = PgOutputDecoder::CheckOptions(v, parallel);
    EXPECT_EQ(st.kind(), Status::Kind::kUsage) << v << " " << parallel;
    PgOutputDecoder d(v, parallel);
    auto r = d.Decode(BeginBytes());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().kind(), Status::Kind::kUsage);
  }
}

// ---- unknown kinds ----

TEST(PgOutputTest, UnknownMessageTypesAreRejected) {
  const std::set<char> known = {'B', 'C', 'O', 'R', 'Y', 'I', 'U', 'D', 'T', 'M',
                                'S', 'E', 'c', 'A', 'b', 'P', 'K', 'r', 'p'};
  for (int b = 0; b < 256; ++b) {
    const char type = static_cast<char>(b);
    if (known.count(type)) {
      EXPECT_NE(MessageTypeName(type), nullptr) << b;
      continue;
    }
    EXPECT_EQ(MessageTypeName(type), nullptr) << b;
    for (int v = 1; v <= 4; ++v) {
      ExpectProtocolError(DecodeOne(std::string(1, type) + std::string(40, '\1'), v),
                          "unknown pgoutput message type");
    }
  }
  ExpectProtocolError(DecodeOne("Z"), "'Z'");
  ExpectProtocolError(DecodeOne(std::string("\x07", 1)), "0x07");
}

TEST(PgOutputTest, EmptyInputIsRejected) { ExpectProtocolError(DecodeOne(""), "empty"); }

// ---- content of each kind ----

TEST(PgOutputTest, Begin) {
  auto m = DecodeAs<BeginMsg>(BeginBytes(), 1);
  EXPECT_EQ(m.final_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.commit_time, kTime);
  EXPECT_EQ(m.xid, kXid);
}

TEST(PgOutputTest, BeginWithoutFinalLsnIsRejected) {
  ExpectProtocolError(DecodeOne(Wire('B').U64(0).I64(kTime).U32(kXid).str()),
                      "final_lsn not set");
}

TEST(PgOutputTest, Commit) {
  auto m = DecodeAs<CommitMsg>(CommitBytes(), 1);
  EXPECT_EQ(m.flags, 0);
  EXPECT_EQ(m.commit_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.end_lsn, Lsn(kLsnB));
  EXPECT_EQ(m.commit_time, kTime);
}

TEST(PgOutputTest, CommitWithFlagsIsRejected) {
  ExpectProtocolError(DecodeOne(Wire('C').U8(1).U64(kLsnA).U64(kLsnB).I64(kTime).str()),
                      "unrecognized flags");
}

TEST(PgOutputTest, Origin) {
  auto m = DecodeAs<OriginMsg>(OriginBytes(), 1);
  EXPECT_EQ(m.origin_lsn, Lsn(kLsnC));
  EXPECT_EQ(m.name, "node_a");
}

TEST(PgOutputTest, Relation) {
  auto m = DecodeAs<RelationMsg>(RelationBytes(0), 1);
  EXPECT_EQ(m.xid, 0u);
  EXPECT_EQ(m.relid, kRelid);
  EXPECT_EQ(m.nspname, "public");
  EXPECT_EQ(m.relname, "orders");
  EXPECT_EQ(m.replica_identity, 'd');
  ASSERT_EQ(m.columns.size(), 3u);
  EXPECT_TRUE(m.columns[0].is_key());
  EXPECT_EQ(m.columns[0].name, "id");
  EXPECT_EQ(m.columns[0].type_oid, 20u);
  EXPECT_EQ(m.columns[0].type_modifier, -1);
  EXPECT_FALSE(m.columns[1].is_key());
  EXPECT_EQ(m.columns[1].name, "note");
  EXPECT_EQ(m.columns[2].name, "price");
  EXPECT_EQ(m.columns[2].type_oid, 1700u);
  EXPECT_EQ(m.columns[2].type_modifier, 655366);
}

TEST(PgOutputTest, RelationReplicaIdentities) {
  for (char ident : {'d', 'n', 'f', 'i'}) {
    auto m = DecodeAs<RelationMsg>(
        Wire('R').U32(kRelid).Str("s").Str("t").U8(ident).I16(0).str());
    EXPECT_EQ(m.replica_identity, ident);
    EXPECT_TRUE(m.columns.empty());
  }
  ExpectProtocolError(DecodeOne(Wire('R').U32(kRelid).Str("s").Str("t").U8('x').I16(0).str()),
                      "unknown replica identity 'x'");
}

TEST(PgOutputTest, EmptyNamespaceMeansPgCatalog) {
  auto rel = DecodeAs<RelationMsg>(Wire('R').U32(kRelid).Str("").Str("t").U8('d').I16(0).str());
  EXPECT_EQ(rel.nspname, "pg_catalog");
  auto typ = DecodeAs<TypeMsg>(Wire('Y').U32(16500).Str("").Str("mood").str());
  EXPECT_EQ(typ.nspname, "pg_catalog");
}

TEST(PgOutputTest, RelationInvariants) {
  ExpectProtocolError(DecodeOne(Wire('R').U32(0).Str("s").Str("t").U8('d').I16(0).str()),
                      "relation id is 0");
  ExpectProtocolError(DecodeOne(Wire('R').U32(kRelid).Str("s").Str("").U8('d').I16(0).str()),
                      "empty relation name");
  ExpectProtocolError(
      DecodeOne(Wire('R').U32(kRelid).Str("s").Str("t").U8('d').I16(1).U8(2).Str("a").U32(23).I32(-1)
                    .str()),
      "unrecognized flags 0x02");
  ExpectProtocolError(
      DecodeOne(Wire('R').U32(kRelid).Str("s").Str("t").U8('d').I16(2)
                    .U8(0).Str("").U32(23).I32(-1)
                    .U8(0).Str("a_long_column_name").U32(23).I32(-1)
                    .str()),
      "column 1: empty column name");
  ExpectProtocolError(
      DecodeOne(Wire('R').U32(kRelid).Str("s").Str("t").U8('d').I16(1).U8(0).Str("a").U32(0).I32(-1)
                    .str()),
      "column type is 0");
  // A column count the remaining bytes cannot hold is rejected before allocating.
  ExpectProtocolError(DecodeOne(Wire('R').U32(kRelid).Str("s").Str("t").U8('d').I16(-1).str()),
                      "65535 columns cannot fit");
}

TEST(PgOutputTest, Type) {
  auto m = DecodeAs<TypeMsg>(TypeBytes(0), 1);
  EXPECT_EQ(m.xid, 0u);
  EXPECT_EQ(m.type_oid, 16500u);
  EXPECT_EQ(m.nspname, "public");
  EXPECT_EQ(m.typname, "mood");
}

TEST(PgOutputTest, InsertWithAllColumnKinds) {
  const std::string bytes = InsertBytes(0);
  auto r = DecodeOne(bytes, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& m = std::get<InsertMsg>(r.value());
  EXPECT_EQ(m.xid, 0u);
  EXPECT_EQ(m.relid, kRelid);
  const auto& c = m.new_tuple.columns;
  ASSERT_EQ(c.size(), 5u);
  EXPECT_EQ(c[0].kind, Kind::kText);
  EXPECT_EQ(c[0].value, "42");
  EXPECT_EQ(c[1].kind, Kind::kNull);
  EXPECT_TRUE(c[1].value.empty());
  EXPECT_EQ(c[2].kind, Kind::kUnchanged);
  EXPECT_TRUE(c[2].value.empty());
  EXPECT_EQ(c[3].kind, Kind::kBinary);
  EXPECT_EQ(c[3].value, kBinaryValue);
  EXPECT_EQ(c[4].kind, Kind::kText);
  EXPECT_EQ(c[4].value, "");
  // Values are views into the decoded buffer.
  EXPECT_GE(c[0].value.data(), bytes.data());
  EXPECT_LE(c[3].value.data() + c[3].value.size(), bytes.data() + bytes.size());
}

TEST(PgOutputTest, InsertWithZeroColumns) {
  auto m = DecodeAs<InsertMsg>(Wire('I').U32(kRelid).U8('N').I16(0).str());
  EXPECT_TRUE(m.new_tuple.columns.empty());
}

TEST(PgOutputTest, InsertInvariants) {
  ExpectProtocolError(DecodeOne(Wire('I').U32(kRelid).U8('K').I16(0).str()),
                      "expected new tuple 'N', got 'K'");
  ExpectProtocolError(DecodeOne(Wire('I').U32(0).U8('N').I16(0).str()), "relation id is 0");
  ExpectProtocolError(DecodeOne(Wire('I').U32(kRelid).U8('N').I16(1).U8('x').str()),
                      "unrecognized data representation type 'x'");
  ExpectProtocolError(DecodeOne(Wire('I').U32(kRelid).U8('N').I16(1).U8('t').I32(-1).str()),
                      "negative column length -1");
  ExpectProtocolError(DecodeOne(Wire('I').U32(kRelid).U8('N').I16(1).U8('b').I32(INT32_MAX).str()),
                      "column value");
  ExpectProtocolError(DecodeOne(Wire('I').U32(kRelid).U8('N').I16(-1).Null().Null().str()),
                      "65535 columns cannot fit in the 2 bytes left");
}

TEST(PgOutputTest, UpdateWithoutOldTuple) {
  const std::string bytes = UpdateBytes(0);  // outlives the views in m
  auto m = DecodeAs<UpdateMsg>(bytes, 1);
  EXPECT_EQ(m.relid, kRelid);
  EXPECT_EQ(m.old_kind, 0);
  EXPECT_TRUE(m.old_tuple.columns.empty());
  ASSERT_EQ(m.new_tuple.columns.size(), 2u);
  EXPECT_EQ(m.new_tuple.columns[0].value, "42");
  EXPECT_EQ(m.new_tuple.columns[1].kind, Kind::kUnchanged);
}

TEST(PgOutputTest, UpdateWithOldKey) {
  const std::string bytes = UpdateKeyBytes(0);
  auto m = DecodeAs<UpdateMsg>(bytes, 1);
  EXPECT_EQ(m.old_kind, 'K');
  ASSERT_EQ(m.old_tuple.columns.size(), 2u);
  EXPECT_EQ(m.old_tuple.columns[0].value, "41");
  EXPECT_EQ(m.old_tuple.columns[1].kind, Kind::kNull);
  ASSERT_EQ(m.new_tuple.columns.size(), 2u);
  EXPECT_EQ(m.new_tuple.columns[0].value, "42");
  EXPECT_EQ(m.new_tuple.columns[1].value, "new note");
}

TEST(PgOutputTest, UpdateWithOldRow) {
  const std::string bytes = UpdateOldRowBytes(0);
  auto m = DecodeAs<UpdateMsg>(bytes, 1);
  EXPECT_EQ(m.old_kind, 'O');
  ASSERT_EQ(m.old_tuple.columns.size(), 2u);
  EXPECT_EQ(m.old_tuple.columns[1].value, "old note");
  ASSERT_EQ(m.new_tuple.columns.size(), 2u);
  EXPECT_EQ(m.new_tuple.columns[1].kind, Kind::kBinary);
  EXPECT_EQ(m.new_tuple.columns[1].value, kBinaryValue);
}

TEST(PgOutputTest, UpdateInvariants) {
  ExpectProtocolError(DecodeOne(Wire('U').U32(kRelid).U8('X').I16(0).str()),
                      "expected tuple action 'N', 'O' or 'K', got 'X'");
  ExpectProtocolError(DecodeOne(Wire('U').U32(kRelid).U8('K').I16(0).U8('K').I16(0).str()),
                      "expected new tuple 'N', got 'K'");
  ExpectProtocolError(DecodeOne(Wire('U').U32(kRelid).U8('O').I16(1).U8('?').str()),
                      "old tuple: column 1: unrecognized data representation type '?'");
}

TEST(PgOutputTest, DeleteWithOldKeyAndOldRow) {
  const std::string key_bytes = DeleteKeyBytes(0);
  auto k = DecodeAs<DeleteMsg>(key_bytes, 1);
  EXPECT_EQ(k.relid, kRelid);
  EXPECT_EQ(k.old_kind, 'K');
  ASSERT_EQ(k.old_tuple.columns.size(), 2u);
  EXPECT_EQ(k.old_tuple.columns[0].value, "42");
  EXPECT_EQ(k.old_tuple.columns[1].kind, Kind::kNull);
  const std::string row_bytes = DeleteOldRowBytes(0);
  auto o = DecodeAs<DeleteMsg>(row_bytes, 1);
  EXPECT_EQ(o.old_kind, 'O');
  ASSERT_EQ(o.old_tuple.columns.size(), 2u);
  EXPECT_EQ(o.old_tuple.columns[1].value, "note");
}

TEST(PgOutputTest, DeleteNeedsOldTuple) {
  ExpectProtocolError(DecodeOne(Wire('D').U32(kRelid).U8('N').I16(0).str()),
                      "expected tuple action 'O' or 'K', got 'N'");
}

TEST(PgOutputTest, Truncate) {
  auto m = DecodeAs<TruncateMsg>(TruncateBytes(0), 1);
  EXPECT_EQ(m.xid, 0u);
  EXPECT_TRUE(m.cascade());
  EXPECT_TRUE(m.restart_identity());
  EXPECT_EQ(m.relids, (std::vector<Oid>{kRelid, kRelid2}));
  auto plain = DecodeAs<TruncateMsg>(Wire('T').U32(1).U8(0).U32(kRelid).str());
  EXPECT_FALSE(plain.cascade());
  EXPECT_FALSE(plain.restart_identity());
  auto cascade = DecodeAs<TruncateMsg>(Wire('T').U32(1).U8(1).U32(kRelid).str());
  EXPECT_TRUE(cascade.cascade());
  EXPECT_FALSE(cascade.restart_identity());
}

TEST(PgOutputTest, TruncateInvariants) {
  ExpectProtocolError(DecodeOne(Wire('T').U32(1).U8(4).U32(kRelid).str()), "unrecognized flags");
  ExpectProtocolError(DecodeOne(Wire('T').U32(0xFFFFFFFF).U8(0).U32(kRelid).str()),
                      "4294967295 relation ids cannot fit");
  ExpectProtocolError(DecodeOne(Wire('T').U32(1).U8(0).U32(0).str()), "relation id is 0");
}

TEST(PgOutputTest, LogicalMessages) {
  const std::string bytes = MessageBytes(0, true);
  auto r = DecodeOne(bytes, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& m = std::get<LogicalMessageMsg>(r.value());
  EXPECT_EQ(m.xid, 0u);
  EXPECT_TRUE(m.transactional());
  EXPECT_EQ(m.lsn, Lsn(kLsnB));
  EXPECT_EQ(m.prefix, "lorry.test");
  EXPECT_EQ(m.content, std::string_view("a\0b\xff", 4));
  EXPECT_EQ(m.content.data(), bytes.data() + bytes.size() - 4);
  EXPECT_FALSE(DecodeAs<LogicalMessageMsg>(MessageBytes(0, false)).transactional());
}

TEST(PgOutputTest, LogicalMessageInvariants) {
  ExpectProtocolError(DecodeOne(Wire('M').U8(2).U64(kLsnB).Str("p").I32(0).str()),
                      "unrecognized flags");
  ExpectProtocolError(DecodeOne(Wire('M').U8(0).U64(kLsnB).Str("p").I32(-4).str()),
                      "negative message length");
  ExpectProtocolError(DecodeOne(Wire('M').U8(0).U64(kLsnB).Raw("no-nul").str()),
                      "unterminated string");
}

// ---- streaming (protocol 2) ----

TEST(PgOutputTest, StreamStartAndStopTrackTheBlock) {
  PgOutputDecoder d(2);
  EXPECT_FALSE(d.in_stream());
  auto start = d.Decode(StreamStartBytes(kStreamXid, 1));
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(std::get<StreamStartMsg>(start.value()).xid, kStreamXid);
  EXPECT_TRUE(std::get<StreamStartMsg>(start.value()).first_segment);
  EXPECT_TRUE(d.in_stream());
  EXPECT_EQ(d.stream_xid(), kStreamXid);
  ASSERT_TRUE(std::holds_alternative<StreamStopMsg>(d.Decode(StreamStopBytes()).value()));
  EXPECT_FALSE(d.in_stream());
  EXPECT_EQ(d.stream_xid(), 0u);
  auto again = d.Decode(StreamStartBytes(kStreamXid, 0));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(std::get<StreamStartMsg>(again.value()).first_segment);
}

TEST(PgOutputTest, StreamedChangesCarryTheirXid) {
  PgOutputDecoder d(2);
  ASSERT_TRUE(d.Decode(StreamStartBytes()).ok());
  auto rel = d.Decode(RelationBytes(kStreamXid));
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  EXPECT_EQ(std::get<RelationMsg>(rel.value()).xid, kStreamXid);
  EXPECT_EQ(std::get<RelationMsg>(rel.value()).relname, "orders");
  auto typ = d.Decode(TypeBytes(kStreamXid));
  ASSERT_TRUE(typ.ok());
  EXPECT_EQ(std::get<TypeMsg>(typ.value()).xid, kStreamXid);
  // A subtransaction's change carries the subtransaction's xid.
  auto ins = d.Decode(InsertBytes(kSubXid));
  ASSERT_TRUE(ins.ok());
  EXPECT_EQ(std::get<InsertMsg>(ins.value()).xid, kSubXid);
  EXPECT_EQ(std::get<InsertMsg>(ins.value()).relid, kRelid);
  EXPECT_EQ(std::get<InsertMsg>(ins.value()).new_tuple.columns.size(), 5u);
  auto upd = d.Decode(UpdateKeyBytes(kStreamXid));
  ASSERT_TRUE(upd.ok());
  EXPECT_EQ(std::get<UpdateMsg>(upd.value()).xid, kStreamXid);
  EXPECT_EQ(std::get<UpdateMsg>(upd.value()).old_kind, 'K');
  auto del = d.Decode(DeleteOldRowBytes(kStreamXid));
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(std::get<DeleteMsg>(del.value()).xid, kStreamXid);
  EXPECT_EQ(std::get<DeleteMsg>(del.value()).old_kind, 'O');
  auto tru = d.Decode(TruncateBytes(kStreamXid));
  ASSERT_TRUE(tru.ok());
  EXPECT_EQ(std::get<TruncateMsg>(tru.value()).xid, kStreamXid);
  EXPECT_EQ(std::get<TruncateMsg>(tru.value()).relids.size(), 2u);
  auto msg = d.Decode(MessageBytes(kStreamXid, true));
  ASSERT_TRUE(msg.ok());
  EXPECT_EQ(std::get<LogicalMessageMsg>(msg.value()).xid, kStreamXid);
  EXPECT_EQ(std::get<LogicalMessageMsg>(msg.value()).prefix, "lorry.test");
  // ORIGIN has no xid, even inside a stream block.
  auto origin = d.Decode(OriginBytes());
  ASSERT_TRUE(origin.ok());
  EXPECT_EQ(std::get<OriginMsg>(origin.value()).name, "node_a");

  ASSERT_TRUE(d.Decode(StreamStopBytes()).ok());
  // Outside the block the same kinds have no xid again.
  auto plain = d.Decode(InsertBytes(0));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(std::get<InsertMsg>(plain.value()).xid, 0u);
}

TEST(PgOutputTest, StreamedChangeWithXidZeroIsRejected) {
  ExpectProtocolError(DecodeOne(Wire('I').U32(0).U32(kRelid).U8('N').I16(0).str(), 2, true),
                      "streamed change xid is 0");
}

TEST(PgOutputTest, StreamBlockRules) {
  ExpectProtocolError(DecodeOne(StreamStopBytes(), 2), "STREAM STOP message without STREAM START");
  // Everything that ends or begins a transaction needs the block closed first.
  for (const std::string& bytes :
       {StreamStartBytes(kStreamXid + 1), BeginBytes(), CommitBytes(), StreamCommitBytes(),
        StreamAbortBytes(kSubXid), BeginPrepareBytes(), PrepareBytes(), CommitPreparedBytes(),
        RollbackPreparedBytes(), PrepareBytes('p')}) {
    PgOutputDecoder d(4);
    ASSERT_TRUE(d.Decode(StreamStartBytes()).ok());
    ExpectProtocolError(d.Decode(bytes), "inside the stream block of transaction 1001");
    // The refused message left the block open: streamed changes still decode.
    EXPECT_TRUE(d.in_stream());
    EXPECT_TRUE(d.Decode(InsertBytes(kStreamXid)).ok());
  }
}

TEST(PgOutputTest, FailedStreamStartDoesNotOpenABlock) {
  PgOutputDecoder d(2);
  ExpectProtocolError(d.Decode(StreamStartBytes(0)), "xid is 0");
  EXPECT_FALSE(d.in_stream());
  ExpectProtocolError(d.Decode(StreamStartBytes(kStreamXid, 2)), "invalid first_segment flag 2");
  EXPECT_FALSE(d.in_stream());
  EXPECT_TRUE(d.Decode(InsertBytes(0)).ok());
}

TEST(PgOutputTest, StreamCommit) {
  auto m = DecodeAs<StreamCommitMsg>(StreamCommitBytes(), 2);
  EXPECT_EQ(m.xid, kStreamXid);
  EXPECT_EQ(m.flags, 0);
  EXPECT_EQ(m.commit_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.end_lsn, Lsn(kLsnB));
  EXPECT_EQ(m.commit_time, kTime);
  ExpectProtocolError(DecodeOne(Wire('c').U32(kStreamXid).U8(1).U64(1).U64(2).I64(3).str()),
                      "unrecognized flags");
  ExpectProtocolError(DecodeOne(Wire('c').U32(0).U8(0).U64(1).U64(2).I64(3).str()), "xid is 0");
}

TEST(PgOutputTest, StreamAbort) {
  auto top = DecodeAs<StreamAbortMsg>(StreamAbortBytes(kStreamXid), 2);
  EXPECT_EQ(top.xid, kStreamXid);
  EXPECT_EQ(top.subxid, kStreamXid);
  EXPECT_FALSE(top.abort_lsn.valid());
  EXPECT_EQ(top.abort_time, 0);
  auto sub = DecodeAs<StreamAbortMsg>(StreamAbortBytes(kSubXid), 4);
  EXPECT_EQ(sub.subxid, kSubXid);
  ExpectProtocolError(DecodeOne(StreamAbortBytes(0), 2), "subxid is 0");
}

TEST(PgOutputTest, StreamAbortWithParallelStreaming) {
  auto m = DecodeAs<StreamAbortMsg>(StreamAbortParallelBytes(), 4, false, true);
  EXPECT_EQ(m.xid, kStreamXid);
  EXPECT_EQ(m.subxid, kSubXid);
  EXPECT_EQ(m.abort_lsn, Lsn(kLsnC));
  EXPECT_EQ(m.abort_time, kTime);
}

// ---- two-phase (protocol 3) ----

TEST(PgOutputTest, BeginPrepare) {
  auto m = DecodeAs<BeginPrepareMsg>(BeginPrepareBytes(), 3);
  EXPECT_EQ(m.prepare_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.end_lsn, Lsn(kLsnB));
  EXPECT_EQ(m.prepare_time, kTime);
  EXPECT_EQ(m.xid, kXid);
  EXPECT_EQ(m.gid, "pg_gid_1");
  ExpectProtocolError(DecodeOne(Wire('b').U64(0).U64(kLsnB).I64(0).U32(kXid).Str("g").str()),
                      "prepare_lsn not set");
  ExpectProtocolError(DecodeOne(Wire('b').U64(kLsnA).U64(0).I64(0).U32(kXid).Str("g").str()),
                      "end_lsn not set");
}

TEST(PgOutputTest, PrepareAndStreamPrepare) {
  auto p = DecodeAs<PrepareMsg>(PrepareBytes('P'), 3);
  EXPECT_EQ(p.flags, 0);
  EXPECT_EQ(p.prepare_lsn, Lsn(kLsnA));
  EXPECT_EQ(p.end_lsn, Lsn(kLsnB));
  EXPECT_EQ(p.prepare_time, kTime);
  EXPECT_EQ(p.xid, kXid);
  EXPECT_EQ(p.gid, "pg_gid_1");
  auto sp = DecodeAs<StreamPrepareMsg>(PrepareBytes('p'), 3);
  EXPECT_EQ(sp.prepare_lsn, Lsn(kLsnA));
  EXPECT_EQ(sp.xid, kXid);
  EXPECT_EQ(sp.gid, "pg_gid_1");
  for (char type : {'P', 'p'}) {
    ExpectProtocolError(DecodeOne(Wire(type).U8(1).U64(1).U64(2).I64(0).U32(kXid).Str("g").str()),
                        "unrecognized flags");
    ExpectProtocolError(DecodeOne(Wire(type).U8(0).U64(1).U64(2).I64(0).U32(0).Str("g").str()),
                        "xid is 0");
    ExpectProtocolError(DecodeOne(Wire(type).U8(0).U64(0).U64(2).I64(0).U32(kXid).Str("g").str()),
                        "prepare_lsn not set");
  }
}

TEST(PgOutputTest, CommitPrepared) {
  auto m = DecodeAs<CommitPreparedMsg>(CommitPreparedBytes(), 3);
  EXPECT_EQ(m.flags, 0);
  EXPECT_EQ(m.commit_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.end_lsn, Lsn(kLsnB));
  EXPECT_EQ(m.commit_time, kTime);
  EXPECT_EQ(m.xid, kXid);
  EXPECT_EQ(m.gid, "pg_gid_1");
  ExpectProtocolError(DecodeOne(Wire('K').U8(0).U64(0).U64(2).I64(0).U32(kXid).Str("g").str()),
                      "commit_lsn not set");
}

TEST(PgOutputTest, RollbackPrepared) {
  auto m = DecodeAs<RollbackPreparedMsg>(RollbackPreparedBytes(), 3);
  EXPECT_EQ(m.flags, 0);
  EXPECT_EQ(m.prepare_end_lsn, Lsn(kLsnA));
  EXPECT_EQ(m.rollback_end_lsn, Lsn(kLsnB));
  EXPECT_EQ(m.prepare_time, kTime);
  EXPECT_EQ(m.rollback_time, kTime + 1);
  EXPECT_EQ(m.xid, kXid);
  EXPECT_EQ(m.gid, "pg_gid_1");
  ExpectProtocolError(
      DecodeOne(Wire('r').U8(0).U64(1).U64(0).I64(0).I64(0).U32(kXid).Str("g").str()),
      "rollback_end_lsn not set");
}

// MessageName of a default-constructed message of each alternative of the variant.
template <size_t... I>
std::vector<const char*> NamesOfAllAlternatives(std::index_sequence<I...>) {
  return {MessageName(PgOutputMessage(std::in_place_index<I>))...};
}

TEST(PgOutputTest, MessageNames) {
  EXPECT_STREQ(MessageName(PgOutputMessage(BeginMsg{})), "BEGIN");
  EXPECT_STREQ(MessageName(PgOutputMessage(StreamStopMsg{})), "STREAM STOP");
  EXPECT_STREQ(MessageName(PgOutputMessage(RollbackPreparedMsg{})), "ROLLBACK PREPARED");
  const std::vector<const char*> all =
      NamesOfAllAlternatives(std::make_index_sequence<std::variant_size_v<PgOutputMessage>>());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_NE(all[i], nullptr) << "alternative " << i;
  // The fixtures cover every kind (their names are checked in
  // EveryFixtureDecodesUnderEverySupportingVersion).
  std::set<std::string> names;
  for (const Fixture& f : AllFixtures()) names.insert(f.name);
  EXPECT_EQ(names.size(), std::variant_size_v<PgOutputMessage>);
}

// ---- fuzz ----

// Every view in a decoded message must lie inside the decoded buffer.
void ExpectViewsInside(const PgOutputMessage& msg, std::string_view buf) {
  auto inside = [&](std::string_view v) {
    if (v.empty()) return;
    ASSERT_GE(v.data(), buf.data());
    ASSERT_LE(v.data() + v.size(), buf.data() + buf.size());
  };
  auto tuple = [&](const TupleData& t) {
    for (const TupleColumn& c : t.columns) inside(c.value);
  };
  if (const auto* m = std::get_if<InsertMsg>(&msg)) tuple(m->new_tuple);
  if (const auto* m = std::get_if<UpdateMsg>(&msg)) {
    tuple(m->old_tuple);
    tuple(m->new_tuple);
  }
  if (const auto* m = std::get_if<DeleteMsg>(&msg)) tuple(m->old_tuple);
  if (const auto* m = std::get_if<LogicalMessageMsg>(&msg)) inside(m->content);
}

void DecodeFuzzed(PgOutputDecoder* d, const std::string& buf) {
  auto r = d->Decode(buf);
  if (r.ok()) {
    ExpectViewsInside(r.value(), buf);
  } else {
    ASSERT_EQ(r.status().kind(), Status::Kind::kProtocol) << r.status().ToString();
  }
}

TEST(PgOutputTest, FuzzRandomBuffersNeverCrash) {
  std::mt19937_64 rng(0x10771);
  const std::string kTypes = "BCORYIUDTMSEcAbPKrp";
  std::vector<PgOutputDecoder> decoders;
  for (int v = 1; v <= 4; ++v) decoders.emplace_back(v, false);
  decoders.emplace_back(4, true);
  for (int i = 0; i < 100000; ++i) {
    std::string buf(rng() % 64, '\0');
    for (char& c : buf) {
      // Small values make plausible counts and lengths; 'N', 't' etc. plausible tags.
      const uint64_t pick = rng() % 4;
      c = pick == 0 ? static_cast<char>(rng() % 4) : pick == 1 ? "NKOntub\0"[rng() % 8]
                                                               : static_cast<char>(rng());
    }
    if (!buf.empty() && rng() % 8 != 0) buf[0] = kTypes[rng() % kTypes.size()];
    DecodeFuzzed(&decoders[i % decoders.size()], buf);
  }
}

TEST(PgOutputTest, FuzzMutatedFixturesNeverCrash) {
  std::mt19937_64 rng(0xF1C57);
  const std::vector<Fixture> fixtures = AllFixtures();
  int decoded = 0;
  for (int i = 0; i < 100000; ++i) {
    const Fixture& f = fixtures[rng() % fixtures.size()];
    std::string buf = f.bytes;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (buf.size() + 1);
      switch (rng() % 4) {
        case 0: if (pos < buf.size()) buf[pos] = static_cast<char>(rng()); break;
        case 1: if (pos < buf.size()) buf[pos] ^= static_cast<char>(1 << (rng() % 8)); break;
        case 2: buf.insert(pos, 1, static_cast<char>(rng())); break;
        case 3: if (pos < buf.size()) buf.erase(pos, 1); break;
      }
    }
    PgOutputDecoder d = DecoderFor(f, kPgOutputMaxVersion);
    auto r = d.Decode(buf);
    if (r.ok()) {
      ++decoded;
      ExpectViewsInside(r.value(), buf);
    } else {
      ASSERT_EQ(r.status().kind(), Status::Kind::kProtocol) << r.status().ToString();
    }
  }
  EXPECT_GT(decoded, 0);  // some mutations keep the message valid (e.g. a changed value byte)
}

}  // namespace
}  // namespace lorry::protocol
