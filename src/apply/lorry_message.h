// lorry's logical messages: SQL that the subscriber runs at an exact point
// of the change stream (`lorry execute`, and DDL captured by the provider's
// event trigger of `lorry init --capture-ddl`).
//
// On the provider, a message is emitted with
//   pg_logical_emit_message(true, 'lorry', <payload>)
// inside the transaction that runs the SQL, so it is decoded at that point
// of that transaction (pgoutput `messages` option, PostgreSQL 14+). The
// payload is JSON:
//   {"lorry": 1,                 payload version
//    "kind": "execute" | "ddl",
//    "for": ["main", ...],       the subscriptions that run it (several may
//                                stream from one provider database; the
//                                others ignore it)
//    "sql": "...",               run as one simple query (several statements allowed)
//    "search_path": "...",       the provider session's, set while it runs
//    "add": [["public", "t"]]}   execute --add: tables to add once it ran
// Messages that are not transactional, carry another prefix, or are not for
// this subscription are ignored.
//
// Kinds: "execute" is emitted *before* the script runs on the provider; the
// subscriber runs the whole script there, so the row changes the script
// made on the provider (the rest of that provider transaction) are not
// applied again. "ddl" is one captured command: the changes after it in the
// transaction are applied as usual.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::apply {

inline constexpr const char* kLorryMessagePrefix = "lorry";

struct LorryMessage {
  enum class Kind { kExecute, kDdl };
  Kind kind = Kind::kExecute;
  std::vector<std::string> for_subscriptions;
  std::string sql;
  std::string search_path;
  std::vector<pg::QualifiedName> add;

  bool IsFor(const std::string& subscription) const;
  // The rest of the provider transaction is skipped once it ran (execute).
  bool skips_rest_of_transaction() const { return kind == Kind::kExecute; }
};

std::string EncodeLorryMessage(const LorryMessage& m);
// A protocol error names what is wrong (e.g. a payload of a newer lorry).
Result<LorryMessage> DecodeLorryMessage(std::string_view payload);

// Cascades (A -> B -> C): the lorry subscriptions whose provider is the
// database `conn` is in (each has its two publications there), by name.
// Empty: nobody replicates from it with lorry.
Result<std::vector<std::string>> DownstreamSubscriptions(pg::PgConn& conn);

// Forwards `m` to `downstream` (DownstreamSubscriptions): emits it again in
// the open transaction, at this point, for them. Called before the SQL runs
// here, as `lorry execute` emits it before the script: the subscribers
// downstream run the SQL before any change after it and, for an execute
// script, skip the row changes that running it here makes.
// REQUIRES: a transaction is open on conn and nothing is pipelined.
Status ForwardLorryMessage(pg::PgConn& conn, const LorryMessage& m, const std::vector<std::string>& downstream);

// After the SQL ran here: the tables of m.add join the publication of each
// downstream subscription, as `execute --add` does on the first provider.
Status PublishAddedForDownstream(pg::PgConn& conn, const LorryMessage& m, const std::vector<std::string>& downstream);

// Whether captured DDL creates, attaches or detaches a partition (CREATE
// TABLE ... PARTITION OF, ATTACH PARTITION, DETACH PARTITION).
bool IsPartitionDdl(std::string_view sql);

// Runs the message's SQL on `conn` inside its open transaction, with the
// provider's search_path (captured partition DDL that the subscriber's
// table refuses as not partitioned is skipped with a warning), then records the tables of `add` in lorry.tables
// (state `pending`, emptied before their copy: the script created them).
// REQUIRES: a transaction is open on conn and nothing is pipelined.
Status RunLorryMessage(pg::PgConn& conn, const std::string& subscription, const LorryMessage& m);

// `lorry execute` needs PostgreSQL 14+ on the provider (pgoutput carries
// logical messages from 14 on): a precondition error otherwise.
Status RequireMessageSupport(int provider_version_num, std::string_view what);

}  // namespace lorry::apply
