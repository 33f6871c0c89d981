// pgoutput decoding: one read function per message kind, as in PostgreSQL's
// proto.c, plus the checks worker.c makes on stream blocks.
//
// Invariants: every byte is read through ByteReader (so truncated input is an
// error, never an out-of-bounds read); no allocation is sized by a count from
// the wire before that count is checked against the bytes that remain; the
// decoder's stream state changes only after a message decoded completely.
#include "protocol/pgoutput.h"

#include <type_traits>

#include <fmt/format.h>

#include "common/byte_reader.h"

namespace lorry::protocol {

namespace {

// Where a message kind may appear with respect to STREAM START ... STREAM STOP.
enum class Place { kOutsideStream, kInsideStream, kAnywhere };

struct KindRule {
  char type;
  const char* name;
  int min_version;
  Place place;
};

// Kinds marked kAnywhere other than ORIGIN carry an xid when inside a stream.
constexpr KindRule kKindRules[] = {
    {BeginMsg::kType, "BEGIN", kPgOutputMinVersion, Place::kOutsideStream},
    {CommitMsg::kType, "COMMIT", kPgOutputMinVersion, Place::kOutsideStream},
    {OriginMsg::kType, "ORIGIN", kPgOutputMinVersion, Place::kAnywhere},
    {RelationMsg::kType, "RELATION", kPgOutputMinVersion, Place::kAnywhere},
    {TypeMsg::kType, "TYPE", kPgOutputMinVersion, Place::kAnywhere},
    {InsertMsg::kType, "INSERT", kPgOutputMinVersion, Place::kAnywhere},
    {UpdateMsg::kType, "UPDATE", kPgOutputMinVersion, Place::kAnywhere},
    {DeleteMsg::kType, "DELETE", kPgOutputMinVersion, Place::kAnywhere},
    {TruncateMsg::kType, "TRUNCATE", kPgOutputMinVersion, Place::kAnywhere},
    {LogicalMessageMsg::kType, "MESSAGE", kPgOutputMinVersion, Place::kAnywhere},
    {StreamStartMsg::kType, "STREAM START", kPgOutputStreamVersion, Place::kOutsideStream},
    {StreamStopMsg::kType, "STREAM STOP", kPgOutputStreamVersion, Place::kInsideStream},
    {StreamCommitMsg::kType, "STREAM COMMIT", kPgOutputStreamVersion, Place::kOutsideStream},
    {StreamAbortMsg::kType, "STREAM ABORT", kPgOutputStreamVersion, Place::kOutsideStream},
    {BeginPrepareMsg::kType, "BEGIN PREPARE", kPgOutputTwoPhaseVersion, Place::kOutsideStream},
    {PrepareMsg::kType, "PREPARE", kPgOutputTwoPhaseVersion, Place::kOutsideStream},
    {CommitPreparedMsg::kType, "COMMIT PREPARED", kPgOutputTwoPhaseVersion, Place::kOutsideStream},
    {RollbackPreparedMsg::kType, "ROLLBACK PREPARED", kPgOutputTwoPhaseVersion,
     Place::kOutsideStream},
    {StreamPrepareMsg::kType, "STREAM PREPARE", kPgOutputTwoPhaseVersion, Place::kOutsideStream},
};

const KindRule* FindRule(char type) {
  for (const KindRule& rule : kKindRules) {
    if (rule.type == type) return &rule;
  }
  return nullptr;
}

// "'K'" for printable bytes, "0x05" for the rest.
std::string DescribeByte(uint8_t b) {
  if (b >= 0x20 && b < 0x7f) return fmt::format("'{}'", static_cast<char>(b));
  return fmt::format("0x{:02x}", b);
}

Status ReadLsn(ByteReader* r, Lsn* out, const char* what) {
  uint64_t v = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU64(&v, what));
  *out = Lsn(v);
  return Status::Ok();
}

Status ReadValidLsn(ByteReader* r, Lsn* out, const char* what) {
  LORRY_RETURN_IF_ERROR(ReadLsn(r, out, what));
  if (!out->valid()) return Status::Protocol(fmt::format("{} not set", what));
  return Status::Ok();
}

Status ReadValidXid(ByteReader* r, Xid* out, const char* what) {
  LORRY_RETURN_IF_ERROR(r->ReadU32(out, what));
  if (*out == 0) return Status::Protocol(fmt::format("{} is 0, not a valid transaction ID", what));
  return Status::Ok();
}

Status ReadValidOid(ByteReader* r, Oid* out, const char* what) {
  LORRY_RETURN_IF_ERROR(r->ReadU32(out, what));
  if (*out == 0) return Status::Protocol(fmt::format("{} is 0, not a valid OID", what));
  return Status::Ok();
}

// Flags fields PostgreSQL defines but does not use yet; anything else means
// the stream is not what we think it is.
Status ReadZeroFlags(ByteReader* r, uint8_t* out) {
  LORRY_RETURN_IF_ERROR(r->ReadU8(out, "flags"));
  if (*out != 0) return Status::Protocol(fmt::format("unrecognized flags 0x{:02x}", *out));
  return Status::Ok();
}

Status ReadFlags(ByteReader* r, uint8_t known, uint8_t* out) {
  LORRY_RETURN_IF_ERROR(r->ReadU8(out, "flags"));
  if ((*out & ~known) != 0) return Status::Protocol(fmt::format("unrecognized flags 0x{:02x}", *out));
  return Status::Ok();
}

// Inside a stream block, changes start with the (sub)transaction's xid.
Status ReadStreamXid(ByteReader* r, bool in_stream, Xid* out) {
  if (!in_stream) return Status::Ok();
  return ReadValidXid(r, out, "streamed change xid");
}

// An empty namespace stands for pg_catalog (logicalrep_read_namespace).
Status ReadNamespace(ByteReader* r, std::string* out) {
  LORRY_RETURN_IF_ERROR(r->ReadCString(out, "namespace"));
  if (out->empty()) *out = "pg_catalog";
  return Status::Ok();
}

Status ReadNonEmptyString(ByteReader* r, std::string* out, const char* what) {
  LORRY_RETURN_IF_ERROR(r->ReadCString(out, what));
  if (out->empty()) return Status::Protocol(fmt::format("empty {}", what));
  return Status::Ok();
}

// A count read from the wire, checked against the bytes left before anything
// is allocated for it: each item takes at least min_item_size bytes.
Status CheckCount(const ByteReader& r, size_t count, size_t min_item_size, const char* what) {
  if (count > r.remaining() / min_item_size) {
    return Status::Protocol(fmt::format("{} {} cannot fit in the {} bytes left", count, what,
                                        r.remaining()));
  }
  return Status::Ok();
}

Status ReadColumnValue(ByteReader* r, TupleColumn* col) {
  uint8_t kind = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU8(&kind, "column kind"));
  switch (kind) {
    case static_cast<uint8_t>(TupleColumn::Kind::kNull):
    case static_cast<uint8_t>(TupleColumn::Kind::kUnchanged):
      col->kind = static_cast<TupleColumn::Kind>(kind);
      return Status::Ok();
    case static_cast<uint8_t>(TupleColumn::Kind::kText):
    case static_cast<uint8_t>(TupleColumn::Kind::kBinary): {
      col->kind = static_cast<TupleColumn::Kind>(kind);
      int32_t len = 0;
      LORRY_RETURN_IF_ERROR(r->ReadI32(&len, "column length"));
      if (len < 0) return Status::Protocol(fmt::format("negative column length {}", len));
      return r->ReadBytes(static_cast<size_t>(len), &col->value, "column value");
    }
  }
  return Status::Protocol(fmt::format("unrecognized data representation type {}", DescribeByte(kind)));
}

Status ReadTuple(ByteReader* r, TupleData* tuple) {
  int16_t raw_count = 0;
  LORRY_RETURN_IF_ERROR(r->ReadI16(&raw_count, "column count"));
  const uint16_t count = static_cast<uint16_t>(raw_count);  // pq_getmsgint(in, 2) is unsigned
  LORRY_RETURN_IF_ERROR(CheckCount(*r, count, 1, "columns"));
  tuple->columns.resize(count);
  for (uint16_t i = 0; i < count; ++i) {
    Status st = ReadColumnValue(r, &tuple->columns[i]);
    if (!st.ok()) return st.WithContext(fmt::format("column {}", i + 1));
  }
  return Status::Ok();
}

Status ReadTupleAction(ByteReader* r, char* out) {
  uint8_t action = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU8(&action, "tuple action"));
  *out = static_cast<char>(action);
  return Status::Ok();
}

Status ExpectNewTupleAction(ByteReader* r) {
  char action = 0;
  LORRY_RETURN_IF_ERROR(ReadTupleAction(r, &action));
  if (action != 'N') {
    return Status::Protocol(
        fmt::format("expected new tuple 'N', got {}", DescribeByte(static_cast<uint8_t>(action))));
  }
  return Status::Ok();
}

// ---- one read function per message kind; the type byte is already consumed ----

Status ReadBegin(ByteReader* r, BeginMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->final_lsn, "final_lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->commit_time, "commit_time"));
  return r->ReadU32(&m->xid, "xid");
}

Status ReadCommit(ByteReader* r, CommitMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadZeroFlags(r, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->commit_lsn, "commit_lsn"));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->end_lsn, "end_lsn"));
  return r->ReadI64(&m->commit_time, "commit_time");
}

Status ReadOrigin(ByteReader* r, OriginMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->origin_lsn, "origin_lsn"));
  return r->ReadCString(&m->name, "origin name");
}

Status ReadRelationColumn(ByteReader* r, RelationColumn* col) {
  LORRY_RETURN_IF_ERROR(ReadFlags(r, 1, &col->flags));
  LORRY_RETURN_IF_ERROR(ReadNonEmptyString(r, &col->name, "column name"));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &col->type_oid, "column type"));
  return r->ReadI32(&col->type_modifier, "column type modifier");
}

Status ReadRelation(ByteReader* r, bool in_stream, RelationMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &m->relid, "relation id"));
  LORRY_RETURN_IF_ERROR(ReadNamespace(r, &m->nspname));
  LORRY_RETURN_IF_ERROR(ReadNonEmptyString(r, &m->relname, "relation name"));
  uint8_t ident = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU8(&ident, "replica identity"));
  if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i')
    return Status::Protocol(fmt::format("unknown replica identity {}", DescribeByte(ident)));
  m->replica_identity = static_cast<char>(ident);
  int16_t raw_count = 0;
  LORRY_RETURN_IF_ERROR(r->ReadI16(&raw_count, "column count"));
  const uint16_t count = static_cast<uint16_t>(raw_count);
  // flags, a name of at least one byte and its NUL, type oid, type modifier.
  LORRY_RETURN_IF_ERROR(CheckCount(*r, count, 1 + 2 + 4 + 4, "columns"));
  m->columns.resize(count);
  for (uint16_t i = 0; i < count; ++i) {
    Status st = ReadRelationColumn(r, &m->columns[i]);
    if (!st.ok()) return st.WithContext(fmt::format("column {}", i + 1));
  }
  return Status::Ok();
}

Status ReadType(ByteReader* r, bool in_stream, TypeMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &m->type_oid, "type id"));
  LORRY_RETURN_IF_ERROR(ReadNamespace(r, &m->nspname));
  return ReadNonEmptyString(r, &m->typname, "type name");
}

Status ReadInsert(ByteReader* r, bool in_stream, InsertMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &m->relid, "relation id"));
  LORRY_RETURN_IF_ERROR(ExpectNewTupleAction(r));
  Status st = ReadTuple(r, &m->new_tuple);
  return st.ok() ? st : st.WithContext("new tuple");
}

Status ReadUpdate(ByteReader* r, bool in_stream, UpdateMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &m->relid, "relation id"));
  char action = 0;
  LORRY_RETURN_IF_ERROR(ReadTupleAction(r, &action));
  if (action == 'K' || action == 'O') {
    m->old_kind = action;
    Status st = ReadTuple(r, &m->old_tuple);
    if (!st.ok()) return st.WithContext("old tuple");
    LORRY_RETURN_IF_ERROR(ExpectNewTupleAction(r));
  } else if (action != 'N') {
    return Status::Protocol(fmt::format("expected tuple action 'N', 'O' or 'K', got {}",
                                        DescribeByte(static_cast<uint8_t>(action))));
  }
  Status st = ReadTuple(r, &m->new_tuple);
  return st.ok() ? st : st.WithContext("new tuple");
}

Status ReadDelete(ByteReader* r, bool in_stream, DeleteMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadValidOid(r, &m->relid, "relation id"));
  LORRY_RETURN_IF_ERROR(ReadTupleAction(r, &m->old_kind));
  if (m->old_kind != 'K' && m->old_kind != 'O') {
    return Status::Protocol(fmt::format("expected tuple action 'O' or 'K', got {}",
                                        DescribeByte(static_cast<uint8_t>(m->old_kind))));
  }
  Status st = ReadTuple(r, &m->old_tuple);
  return st.ok() ? st : st.WithContext("old tuple");
}

Status ReadTruncate(ByteReader* r, bool in_stream, TruncateMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  uint32_t count = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU32(&count, "relation count"));
  LORRY_RETURN_IF_ERROR(ReadFlags(r, TruncateMsg::kCascade | TruncateMsg::kRestartIdentity,
                                  &m->options));
  LORRY_RETURN_IF_ERROR(CheckCount(*r, count, 4, "relation ids"));
  m->relids.resize(count);
  for (Oid& relid : m->relids) LORRY_RETURN_IF_ERROR(ReadValidOid(r, &relid, "relation id"));
  return Status::Ok();
}

Status ReadLogicalMessage(ByteReader* r, bool in_stream, LogicalMessageMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadStreamXid(r, in_stream, &m->xid));
  LORRY_RETURN_IF_ERROR(ReadFlags(r, LogicalMessageMsg::kTransactional, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->lsn, "message lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadCString(&m->prefix, "message prefix"));
  int32_t len = 0;
  LORRY_RETURN_IF_ERROR(r->ReadI32(&len, "message length"));
  if (len < 0) return Status::Protocol(fmt::format("negative message length {}", len));
  return r->ReadBytes(static_cast<size_t>(len), &m->content, "message content");
}

Status ReadStreamStart(ByteReader* r, StreamStartMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadValidXid(r, &m->xid, "xid"));
  uint8_t first = 0;
  LORRY_RETURN_IF_ERROR(r->ReadU8(&first, "first_segment"));
  if (first > 1) return Status::Protocol(fmt::format("invalid first_segment flag {}", first));
  m->first_segment = first == 1;
  return Status::Ok();
}

Status ReadStreamCommit(ByteReader* r, StreamCommitMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadValidXid(r, &m->xid, "xid"));
  LORRY_RETURN_IF_ERROR(ReadZeroFlags(r, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->commit_lsn, "commit_lsn"));
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->end_lsn, "end_lsn"));
  return r->ReadI64(&m->commit_time, "commit_time");
}

Status ReadStreamAbort(ByteReader* r, bool with_abort_info, StreamAbortMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadValidXid(r, &m->xid, "xid"));
  LORRY_RETURN_IF_ERROR(ReadValidXid(r, &m->subxid, "subxid"));
  if (!with_abort_info) return Status::Ok();
  LORRY_RETURN_IF_ERROR(ReadLsn(r, &m->abort_lsn, "abort_lsn"));
  return r->ReadI64(&m->abort_time, "abort_time");
}

Status ReadBeginPrepare(ByteReader* r, BeginPrepareMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->prepare_lsn, "prepare_lsn"));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->end_lsn, "end_lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->prepare_time, "prepare_time"));
  LORRY_RETURN_IF_ERROR(r->ReadU32(&m->xid, "xid"));
  return r->ReadCString(&m->gid, "gid");
}

// PREPARE and STREAM PREPARE share a layout (logicalrep_read_prepare_common).
template <typename M>
Status ReadPrepareCommon(ByteReader* r, M* m) {
  LORRY_RETURN_IF_ERROR(ReadZeroFlags(r, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->prepare_lsn, "prepare_lsn"));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->end_lsn, "end_lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->prepare_time, "prepare_time"));
  LORRY_RETURN_IF_ERROR(ReadValidXid(r, &m->xid, "xid"));
  return r->ReadCString(&m->gid, "gid");
}

Status ReadCommitPrepared(ByteReader* r, CommitPreparedMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadZeroFlags(r, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->commit_lsn, "commit_lsn"));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->end_lsn, "end_lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->commit_time, "commit_time"));
  LORRY_RETURN_IF_ERROR(r->ReadU32(&m->xid, "xid"));
  return r->ReadCString(&m->gid, "gid");
}

Status ReadRollbackPrepared(ByteReader* r, RollbackPreparedMsg* m) {
  LORRY_RETURN_IF_ERROR(ReadZeroFlags(r, &m->flags));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->prepare_end_lsn, "prepare_end_lsn"));
  LORRY_RETURN_IF_ERROR(ReadValidLsn(r, &m->rollback_end_lsn, "rollback_end_lsn"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->prepare_time, "prepare_time"));
  LORRY_RETURN_IF_ERROR(r->ReadI64(&m->rollback_time, "rollback_time"));
  LORRY_RETURN_IF_ERROR(r->ReadU32(&m->xid, "xid"));
  return r->ReadCString(&m->gid, "gid");
}

// REQUIRES: FindRule(type) != nullptr.
Status ReadBody(char type, bool in_stream, bool with_abort_info, ByteReader* r,
                PgOutputMessage* out) {
  switch (type) {
    case BeginMsg::kType: return ReadBegin(r, &out->emplace<BeginMsg>());
    case CommitMsg::kType: return ReadCommit(r, &out->emplace<CommitMsg>());
    case OriginMsg::kType: return ReadOrigin(r, &out->emplace<OriginMsg>());
    case RelationMsg::kType: return ReadRelation(r, in_stream, &out->emplace<RelationMsg>());
    case TypeMsg::kType: return ReadType(r, in_stream, &out->emplace<TypeMsg>());
    case InsertMsg::kType: return ReadInsert(r, in_stream, &out->emplace<InsertMsg>());
    case UpdateMsg::kType: return ReadUpdate(r, in_stream, &out->emplace<UpdateMsg>());
    case DeleteMsg::kType: return ReadDelete(r, in_stream, &out->emplace<DeleteMsg>());
    case TruncateMsg::kType: return ReadTruncate(r, in_stream, &out->emplace<TruncateMsg>());
    case LogicalMessageMsg::kType:
      return ReadLogicalMessage(r, in_stream, &out->emplace<LogicalMessageMsg>());
    case StreamStartMsg::kType: return ReadStreamStart(r, &out->emplace<StreamStartMsg>());
    case StreamStopMsg::kType: out->emplace<StreamStopMsg>(); return Status::Ok();
    case StreamCommitMsg::kType: return ReadStreamCommit(r, &out->emplace<StreamCommitMsg>());
    case StreamAbortMsg::kType:
      return ReadStreamAbort(r, with_abort_info, &out->emplace<StreamAbortMsg>());
    case BeginPrepareMsg::kType: return ReadBeginPrepare(r, &out->emplace<BeginPrepareMsg>());
    case PrepareMsg::kType: return ReadPrepareCommon(r, &out->emplace<PrepareMsg>());
    case CommitPreparedMsg::kType:
      return ReadCommitPrepared(r, &out->emplace<CommitPreparedMsg>());
    case RollbackPreparedMsg::kType:
      return ReadRollbackPrepared(r, &out->emplace<RollbackPreparedMsg>());
    case StreamPrepareMsg::kType: return ReadPrepareCommon(r, &out->emplace<StreamPrepareMsg>());
  }
  return Status::Internal(fmt::format("no reader for pgoutput message type {}",
                                      DescribeByte(static_cast<uint8_t>(type))));
}

}  // namespace

PgOutputDecoder::PgOutputDecoder(int protocol_version, bool parallel_streaming)
    : protocol_version_(protocol_version), parallel_streaming_(parallel_streaming) {}

Status PgOutputDecoder::CheckOptions(int protocol_version, bool parallel_streaming) {
  if (protocol_version < kPgOutputMinVersion || protocol_version > kPgOutputMaxVersion) {
    return Status::Usage(fmt::format("unsupported pgoutput protocol version {} (supported: {} to {})",
                                     protocol_version, kPgOutputMinVersion, kPgOutputMaxVersion));
  }
  if (parallel_streaming && protocol_version < kPgOutputParallelVersion) {
    return Status::Usage(fmt::format("streaming=parallel needs pgoutput protocol version {}, not {}",
                                     kPgOutputParallelVersion, protocol_version));
  }
  return Status::Ok();
}

Status PgOutputDecoder::CheckAllowed(char type) const {
  const KindRule* rule = FindRule(type);
  if (rule == nullptr) {
    return Status::Protocol(fmt::format("unknown pgoutput message type {}",
                                        DescribeByte(static_cast<uint8_t>(type))));
  }
  if (protocol_version_ < rule->min_version) {
    return Status::Protocol(fmt::format("{} message needs protocol version {} but version {} is in use",
                                        rule->name, rule->min_version, protocol_version_));
  }
  if (rule->place == Place::kOutsideStream && in_stream_) {
    return Status::Protocol(fmt::format(
        "{} message inside the stream block of transaction {} (STREAM STOP missing)", rule->name,
        stream_xid_));
  }
  if (rule->place == Place::kInsideStream && !in_stream_) {
    return Status::Protocol(fmt::format("{} message without STREAM START", rule->name));
  }
  return Status::Ok();
}

Result<PgOutputMessage> PgOutputDecoder::Decode(std::string_view data) {
  LORRY_RETURN_IF_ERROR(CheckOptions(protocol_version_, parallel_streaming_));
  if (data.empty()) return Status::Protocol("empty pgoutput message");
  // The reader covers the type byte too, so error offsets count from the message start.
  ByteReader r(data);
  uint8_t type_byte = 0;
  LORRY_RETURN_IF_ERROR(r.ReadU8(&type_byte, "message type"));
  const char type = static_cast<char>(type_byte);
  LORRY_RETURN_IF_ERROR(CheckAllowed(type));

  PgOutputMessage msg;
  Status st = ReadBody(type, in_stream_, parallel_streaming_, &r, &msg);
  if (st.ok() && !r.empty()) st = Status::Protocol(fmt::format("{} trailing bytes", r.remaining()));
  if (!st.ok()) return st.WithContext(fmt::format("pgoutput {} message", MessageTypeName(type)));

  if (const auto* start = std::get_if<StreamStartMsg>(&msg)) {
    in_stream_ = true;
    stream_xid_ = start->xid;
  } else if (std::holds_alternative<StreamStopMsg>(msg)) {
    in_stream_ = false;
    stream_xid_ = 0;
  }
  return msg;
}

const char* MessageTypeName(char type) {
  const KindRule* rule = FindRule(type);
  return rule == nullptr ? nullptr : rule->name;
}

const char* MessageName(const PgOutputMessage& msg) {
  return std::visit([](const auto& m) { return MessageTypeName(std::decay_t<decltype(m)>::kType); },
                    msg);
}

}  // namespace lorry::protocol
