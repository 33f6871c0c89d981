// Deferred indexes: a table's indexes and PRIMARY KEY / UNIQUE / EXCLUDE
// constraints are dropped before its initial copy (so COPY does not maintain
// them row by row) and rebuilt afterwards, in parallel.
//
// Invariants:
// - What is dropped is first recorded in lorry.deferred_indexes, in the same
//   transaction as the DROP (the caller's copy transaction). Each rebuild runs
//   in its own transaction that also deletes its record. So after a crash at
//   any moment every deferred index is either on its table or recorded, and
//   RebuildDeferredIndexes finishes the work.
// - Definitions come from pg_get_indexdef / pg_get_constraintdef read with an
//   empty search_path, and are run with an empty search_path: every name in
//   them is schema-qualified, so they mean the same thing in any session.
// - Only what can be dropped and recreated exactly is deferred. Kept (still
//   maintained during the copy):
//     * an index or constraint something else depends on, above all the
//       unique index a FOREIGN KEY references (pg_constraint.conindid,
//       pg_depend): dropping it would need CASCADE, i.e. dropping the FK;
//     * the REPLICA IDENTITY USING INDEX index (indisreplident): DROP INDEX
//       silently turns the identity into NOTHING, which a CREATE INDEX does
//       not undo, and a subscriber table that is itself published (two-way,
//       cascades, switchover) then refuses UPDATE/DELETE. It is rare (a PK,
//       the usual identity, is deferred) and costs one index during the copy;
//     * state a definition does not carry: CLUSTER ON, a COMMENT, per-column
//       statistics targets, an index not valid/ready;
//     * partitioning: indexes of a partitioned table (pg_get_indexdef says
//       ON ONLY) and partitions of a partitioned index (cannot be dropped).
// - CHECK, NOT NULL and FOREIGN KEY constraints are never touched.
//
// A table whose indexes are deferred has no unique index until its rebuild
// commits: whoever applies changes to it (UPDATE/DELETE by key, ON CONFLICT)
// should wait for CountDeferredIndexes of that table to reach zero.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::sync {

struct DeferredIndex {
  pg::QualifiedName table;
  std::string index_name;
  std::string constraint_name;  // empty for a plain index
  // The SQL that recreates it, one or more statements run in one transaction
  // with an empty search_path: `CREATE [UNIQUE] INDEX ...` for an index;
  // `CREATE UNIQUE INDEX ...; ALTER TABLE ... ADD CONSTRAINT c {PRIMARY KEY |
  // UNIQUE} USING INDEX c [DEFERRABLE ...]` for a key (so nothing that
  // pg_get_constraintdef omits, such as storage parameters, is lost);
  // `ALTER TABLE ... ADD CONSTRAINT c EXCLUDE ...` for an exclusion constraint;
  // preceded by `SET LOCAL default_tablespace = ...;` for an index outside
  // the database's default tablespace.
  std::string definition;
};

// REQUIRES: an open transaction on `subscriber` (the caller's copy
// transaction); table.schema is not empty.
// Records every deferrable index and PRIMARY KEY / UNIQUE / EXCLUDE constraint
// of `table` in lorry.deferred_indexes, then drops them. Returns what was
// deferred (what is kept, and why, is logged). A table that does not exist is
// a kPrecondition error. Records are written before the drops, so even outside
// a transaction no index can be lost (a record whose index still exists is
// simply removed by the rebuild).
Result<std::vector<DeferredIndex>> DeferIndexes(pg::PgConn& subscriber, const std::string& subscription,
                                                const pg::QualifiedName& table);

// Counts for status reporting. A caller may share one object between calls:
// each call adds the records it found to `total` and each finished one to `done`.
struct IndexProgress {
  std::atomic<int> done{0};
  std::atomic<int> total{0};
};

// Rebuilds the recorded indexes of `table` (or of every table of the
// subscription when nullopt), each in its own transaction that also deletes
// its record, with up to `jobs` builds at once, each on its own connection
// with maintenance_work_mem set for the session. Builds of one table that
// would only wait for each other (a constraint takes an ACCESS EXCLUSIVE lock)
// are not started together. Idempotent: a record whose index or constraint
// already exists, or whose table is gone, is just removed.
// A build that fails with a server error (e.g. duplicate keys) keeps its
// record and the others go on; the first such error is returned at the end.
// A lost connection stops new builds and is returned (kConnection,
// retryable). `stop` cancels the builds in progress and returns kCancelled;
// nothing recorded is lost either way.
Status RebuildDeferredIndexes(const std::string& subscriber_conninfo, const std::string& subscription,
                              const std::optional<pg::QualifiedName>& table, int jobs,
                              const std::string& maintenance_work_mem, const std::atomic<bool>& stop,
                              IndexProgress* progress = nullptr);

// How many indexes are still recorded for the subscription (or for one of its
// tables).
Result<int64_t> CountDeferredIndexes(pg::PgConn& subscriber, const std::string& subscription,
                                     const std::optional<pg::QualifiedName>& table = std::nullopt);

}  // namespace lorry::sync
