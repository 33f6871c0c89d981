// pgoutput: the logical replication message format, protocol versions 1 to 4.
//
// One struct per message kind, mirroring PostgreSQL's logicalproto.h; the
// decoder reads one XLogData payload into one of them, checking the invariants
// PostgreSQL's proto.c and worker.c check (e.g. "final_lsn not set in begin
// message"). Anything malformed is a kProtocol Status; the decoder never skips
// a message it does not understand.
//
// Versions: 1 base (PG10+), 2 adds streaming of in-progress transactions
// (PG14), 3 adds two-phase commit (PG15), 4 adds parallel streaming (PG16),
// whose only wire change is abort_lsn/abort_time in STREAM ABORT.
//
// Lifetime: every std::string_view in a decoded message (tuple column values,
// logical message content) points into the buffer given to Decode and is valid
// only while that buffer lives and is unchanged. Names are copied.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::protocol {

inline constexpr int kPgOutputMinVersion = 1;
inline constexpr int kPgOutputStreamVersion = 2;
inline constexpr int kPgOutputTwoPhaseVersion = 3;
inline constexpr int kPgOutputParallelVersion = 4;
inline constexpr int kPgOutputMaxVersion = 4;

struct TupleColumn {
  enum class Kind : char { kNull = 'n', kUnchanged = 'u', kText = 't', kBinary = 'b' };
  Kind kind = Kind::kNull;
  // Text or binary (the type's send format) value; empty for kNull and
  // kUnchanged. kUnchanged is an unchanged TOASTed value the server did not
  // send: the subscriber must keep its current value.
  std::string_view value;
};

// Columns are in the order of the last RELATION message for the relation.
struct TupleData {
  std::vector<TupleColumn> columns;
};

// xid fields that default to 0 are set only for messages inside a stream block
// (protocol >= 2); there the xid may be a subtransaction's.

struct BeginMsg {
  static constexpr char kType = 'B';
  Lsn final_lsn;  // the commit LSN of the transaction; never 0
  int64_t commit_time = 0;
  Xid xid = 0;
};

struct CommitMsg {
  static constexpr char kType = 'C';
  uint8_t flags = 0;  // always 0
  Lsn commit_lsn;
  Lsn end_lsn;
  int64_t commit_time = 0;
};

struct OriginMsg {
  static constexpr char kType = 'O';
  Lsn origin_lsn;  // the commit LSN on the origin server
  std::string name;
};

struct RelationColumn {
  uint8_t flags = 0;  // bit 0: part of the replica identity
  std::string name;
  Oid type_oid = 0;
  int32_t type_modifier = -1;
  bool is_key() const { return flags & 1; }
};

struct RelationMsg {
  static constexpr char kType = 'R';
  Xid xid = 0;
  Oid relid = 0;
  std::string nspname;  // an empty name on the wire means "pg_catalog" and is decoded as such
  std::string relname;
  char replica_identity = 'd';  // 'd' default, 'n' nothing, 'f' full, 'i' index
  std::vector<RelationColumn> columns;
};

struct TypeMsg {
  static constexpr char kType = 'Y';
  Xid xid = 0;
  Oid type_oid = 0;
  std::string nspname;  // as in RelationMsg
  std::string typname;
};

struct InsertMsg {
  static constexpr char kType = 'I';
  Xid xid = 0;
  Oid relid = 0;
  TupleData new_tuple;
};

struct UpdateMsg {
  static constexpr char kType = 'U';
  Xid xid = 0;
  Oid relid = 0;
  // 0: no old tuple (the key did not change); 'K': old_tuple holds the old key
  // columns (others null); 'O': old_tuple is the full old row (REPLICA IDENTITY FULL).
  char old_kind = 0;
  TupleData old_tuple;
  TupleData new_tuple;
};

struct DeleteMsg {
  static constexpr char kType = 'D';
  Xid xid = 0;
  Oid relid = 0;
  char old_kind = 'K';  // 'K' old key or 'O' full old row, as in UpdateMsg
  TupleData old_tuple;
};

struct TruncateMsg {
  static constexpr char kType = 'T';
  static constexpr uint8_t kCascade = 1 << 0;
  static constexpr uint8_t kRestartIdentity = 1 << 1;
  Xid xid = 0;
  uint8_t options = 0;
  std::vector<Oid> relids;
  bool cascade() const { return options & kCascade; }
  bool restart_identity() const { return options & kRestartIdentity; }
};

// pg_logical_emit_message(); sent only when the 'messages' option is on.
struct LogicalMessageMsg {
  static constexpr char kType = 'M';
  static constexpr uint8_t kTransactional = 1 << 0;
  Xid xid = 0;
  uint8_t flags = 0;
  Lsn lsn;
  std::string prefix;
  std::string_view content;  // view into the decoded buffer
  bool transactional() const { return flags & kTransactional; }
};

struct StreamStartMsg {
  static constexpr char kType = 'S';
  Xid xid = 0;  // never 0
  bool first_segment = false;
};

struct StreamStopMsg {
  static constexpr char kType = 'E';
};

struct StreamCommitMsg {
  static constexpr char kType = 'c';
  Xid xid = 0;  // never 0
  uint8_t flags = 0;  // always 0
  Lsn commit_lsn;
  Lsn end_lsn;
  int64_t commit_time = 0;
};

// xid == subxid aborts the whole streamed transaction, otherwise one subtransaction.
struct StreamAbortMsg {
  static constexpr char kType = 'A';
  Xid xid = 0;  // never 0
  Xid subxid = 0;  // never 0
  // Sent only when streaming=parallel was requested (protocol 4); else 0.
  Lsn abort_lsn;
  int64_t abort_time = 0;
};

struct BeginPrepareMsg {
  static constexpr char kType = 'b';
  Lsn prepare_lsn;  // never 0
  Lsn end_lsn;      // never 0
  int64_t prepare_time = 0;
  Xid xid = 0;
  std::string gid;
};

struct PrepareMsg {
  static constexpr char kType = 'P';
  uint8_t flags = 0;  // always 0
  Lsn prepare_lsn;    // never 0
  Lsn end_lsn;        // never 0
  int64_t prepare_time = 0;
  Xid xid = 0;  // never 0
  std::string gid;
};

struct CommitPreparedMsg {
  static constexpr char kType = 'K';
  uint8_t flags = 0;  // always 0
  Lsn commit_lsn;     // never 0
  Lsn end_lsn;        // never 0
  int64_t commit_time = 0;
  Xid xid = 0;
  std::string gid;
};

struct RollbackPreparedMsg {
  static constexpr char kType = 'r';
  uint8_t flags = 0;       // always 0
  Lsn prepare_end_lsn;     // never 0
  Lsn rollback_end_lsn;    // never 0
  int64_t prepare_time = 0;
  int64_t rollback_time = 0;
  Xid xid = 0;
  std::string gid;
};

// Same layout as PREPARE, for a transaction that was streamed.
struct StreamPrepareMsg {
  static constexpr char kType = 'p';
  uint8_t flags = 0;  // always 0
  Lsn prepare_lsn;    // never 0
  Lsn end_lsn;        // never 0
  int64_t prepare_time = 0;
  Xid xid = 0;  // never 0
  std::string gid;
};

using PgOutputMessage =
    std::variant<BeginMsg, CommitMsg, OriginMsg, RelationMsg, TypeMsg, InsertMsg, UpdateMsg,
                 DeleteMsg, TruncateMsg, LogicalMessageMsg, StreamStartMsg, StreamStopMsg,
                 StreamCommitMsg, StreamAbortMsg, BeginPrepareMsg, PrepareMsg, CommitPreparedMsg,
                 RollbackPreparedMsg, StreamPrepareMsg>;

// Decodes the pgoutput messages of one replication connection, in order.
//
// Stateful: it tracks STREAM START/STOP, because inside a stream block the
// change, relation, type and message kinds carry an xid. A message that fails
// to decode leaves the state unchanged; after an error the stream is not
// trustworthy anyway and the connection should be restarted with a new decoder.
class PgOutputDecoder {
 public:
  // protocol_version: the proto_version given to START_REPLICATION, 1..4.
  // parallel_streaming: whether streaming=parallel was requested (protocol 4
  // only); it adds abort_lsn/abort_time to STREAM ABORT.
  // Invalid options are reported by CheckOptions and by every Decode call.
  explicit PgOutputDecoder(int protocol_version, bool parallel_streaming = false);

  PgOutputDecoder(const PgOutputDecoder&) = delete;
  PgOutputDecoder& operator=(const PgOutputDecoder&) = delete;
  PgOutputDecoder(PgOutputDecoder&&) = default;
  PgOutputDecoder& operator=(PgOutputDecoder&&) = default;

  // kUsage if protocol_version is not 1..4 or parallel streaming is asked for
  // below protocol 4.
  static Status CheckOptions(int protocol_version, bool parallel_streaming);

  // Decodes one XLogData payload. An unknown message byte, a message the
  // protocol version does not allow, a message out of place with respect to
  // stream blocks, a broken invariant, trailing bytes or truncated input is a
  // kProtocol Status naming the message kind.
  // The result may hold views into `data`; see the lifetime note at the top.
  Result<PgOutputMessage> Decode(std::string_view data);

  int protocol_version() const { return protocol_version_; }
  bool parallel_streaming() const { return parallel_streaming_; }
  // True between STREAM START and STREAM STOP; stream_xid() is the xid of STREAM START.
  bool in_stream() const { return in_stream_; }
  Xid stream_xid() const { return stream_xid_; }

 private:
  Status CheckAllowed(char type) const;

  int protocol_version_;
  bool parallel_streaming_;
  bool in_stream_ = false;
  Xid stream_xid_ = 0;
};

// "BEGIN", "INSERT", "STREAM START", ... (the names PostgreSQL uses in its logs).
const char* MessageName(const PgOutputMessage& msg);
// The same for a message type byte; nullptr if unknown.
const char* MessageTypeName(char type);

}  // namespace lorry::protocol
