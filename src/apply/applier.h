// Applier: applies decoded pgoutput changes to the subscriber, one provider
// transaction per subscriber transaction, advancing the replication origin
// inside that same transaction (exactly once, in commit order).
//
// Invariants:
//  - A subscriber transaction is open only between a BEGIN that had at least
//    one change to apply and its COMMIT; Rollback() discards it.
//  - last_commit_end() moves when a subscriber commit carrying the origin's
//    progress (that end LSN) has returned. Commits are asynchronous (as in
//    PostgreSQL's apply worker): what may be reported to the provider as
//    flushed is what pg_replication_origin_progress(origin, true) returns.
//  - Provider transactions may be grouped into one subscriber transaction;
//    the group commits with the origin at its last transaction's end LSN,
//    so a crash loses the whole group, which is then received again.
//  - Statements are pipelined: results are read in batches and at commit,
//    never one round trip per row.
//  - Statements are prepared once per (table, operation, columns sent, NULL
//    pattern of the key), never built per row with values inlined.
//  - Changes to a table may be held back in a RowBatch (row_batch.h) and
//    sent as set-based statements: always before the group commits, before
//    a TRUNCATE, before the table's definition changes, and before any
//    change to the same table that the batch cannot merge. Batching is off
//    when replica mode could not be set (foreign keys would then see rows in
//    batch order) and in careful mode.
//  - Careful mode (set_careful_until): transactions up to that LSN are
//    applied one statement per row and committed one by one, so that a
//    change that failed in a batch fails again alone, and its error names
//    its own transaction and key.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "apply/row_batch.h"
#include "apply/statement_builder.h"
#include "catalog/catalog.h"
#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"
#include "pg/pipeline.h"
#include "pg/quote.h"
#include "protocol/pgoutput.h"

namespace lorry::apply {

struct ApplyStats {
  int64_t xacts = 0;           // provider transactions committed on the subscriber
  int64_t changes = 0;         // rows inserted, updated or deleted, and truncates
  int64_t missing_rows = 0;    // UPDATE/DELETE that found no row on the subscriber
  int64_t batched_rows = 0;    // changes sent in set-based statements (after merging)
  int64_t merged_rows = 0;     // changes merged into another change to the same key
};

class Applier {
 public:
  // Decides whether a change to `table` in the transaction whose commit
  // record starts at `final_lsn` is applied (a table still copying is not).
  using TableFilter = std::function<bool(const pg::QualifiedName& table, Lsn final_lsn)>;

  // Several small provider transactions may share one subscriber
  // transaction (a group), committed with the origin at the last one's end.
  struct GroupLimits {
    int max_changes = 10000;  // commit the group once it holds this many changes
    int max_delay_ms = 50;    // or once it is this old
  };

  // REQUIRES: conn outlives the Applier and is used by nobody else.
  // An empty `origin`: commits are not bound to a replication origin (a table
  // sync's catch-up, whose progress the commit hook records instead).
  Applier(pg::PgConn* conn, std::string origin, TableFilter filter, int statement_cache_size,
          GroupLimits limits);
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // Binds the session to the replication origin. Call once per connection.
  Status Setup();

  // Runs lorry's logical messages addressed to `subscription` (`lorry
  // execute`, captured DDL: apply/lorry_message.h); without this call, as
  // for any other message, they are ignored.
  // `skipped(final_lsn)`: the provider transaction is skipped on purpose
  // (`lorry skip`), its message too.
  void EnableLorryMessages(std::string subscription, std::function<bool(Lsn final_lsn)> skipped) {
    subscription_ = std::move(subscription);
    message_skipped_ = std::move(skipped);
  }

  // SQL run in every group's subscriber transaction just before its COMMIT,
  // given the group's end LSN (e.g. to record a table sync's position
  // atomically with the data).
  using CommitHook = std::function<std::string(Lsn group_end)>;
  void set_commit_hook(CommitHook hook) { commit_hook_ = std::move(hook); }

  // Applies one decoded message. Errors carry the table, key and LSN.
  Status Handle(const protocol::PgOutputMessage& msg);

  // Discards an open subscriber transaction (e.g. when stopping mid-stream).
  void Rollback();

  // Sends every change held back in batches (the subscriber transaction
  // stays open). Whatever must run at an exact point of the stream calls
  // this first.
  Status FlushBatches();

  // Transactions whose commit LSN is at or before `lsn` are applied without
  // batching or grouping (see the invariants above).
  void set_careful_until(Lsn lsn) { careful_until_ = lsn; }

  // Whether provider transactions are applied but not yet committed on the
  // subscriber; CommitGroup() commits them (the caller does when no more
  // data is waiting, so that a lone transaction is not delayed).
  bool group_pending() const { return in_local_xact_ && !in_remote_xact_; }
  Status CommitGroup();

  // A statement run in every subscriber transaction right before its
  // COMMIT; when it fails, nothing of the transaction is committed (the
  // daemon's lease check: a deposed run can never commit).
  void set_commit_guard(std::string sql) { commit_guard_ = std::move(sql); }

  // Between BEGIN and COMMIT of a provider transaction.
  bool in_remote_transaction() const { return in_remote_xact_; }

  // True while anything received is not durable on the subscriber.
  bool in_transaction() const { return in_remote_xact_ || in_local_xact_; }
  Lsn last_commit_end() const { return last_commit_end_; }
  // End LSN of the last group this Applier committed (skipped transactions
  // do not move it); invalid until one was.
  Lsn last_group_end() const { return last_group_end_; }
  int64_t last_commit_time() const { return last_commit_time_; }
  const ApplyStats& stats() const { return stats_; }
  void set_stats(const ApplyStats& s) { stats_ = s; }
  // Takes effect from the next transaction (a reload may change them).
  void set_group_limits(GroupLimits limits) { limits_ = limits; }

 private:
  enum class Batching { kNone, kInsertRuns, kCollapse };

  struct Relation {
    protocol::RelationMsg remote;
    std::optional<catalog::TableInfo> local;  // loaded on first applied change
    std::string display;                      // the table's name for messages
    int generation = 0;                       // bumps when a RELATION message changes it
    // Set with `local`:
    Batching batching = Batching::kNone;
    std::vector<BatchColumn> columns;  // per remote column: name, cast type, compared by text
    std::vector<size_t> key;           // indices of the remote key columns
    // Per remote column: GENERATED ALWAYS AS IDENTITY on the subscriber.
    // UPDATE may set such a column only to DEFAULT, so it is left out of
    // SET while its value is unchanged (see OnUpdate).
    std::vector<bool> always_identity;
    RowBatch batch{false};
    Lsn batch_first_lsn;               // commit LSNs of the first and last transaction in `batch`
    Lsn batch_last_lsn;
  };

  Status OnBegin(const protocol::BeginMsg& m);
  Status OnCommit(const protocol::CommitMsg& m);
  Status OnRelation(const protocol::RelationMsg& m);
  Status OnInsert(const protocol::InsertMsg& m);
  Status OnUpdate(const protocol::UpdateMsg& m);
  Status OnDelete(const protocol::DeleteMsg& m);
  Status OnTruncate(const protocol::TruncateMsg& m);
  Status OnMessage(const protocol::LogicalMessageMsg& m);

  // The relation for relid if its changes are applied in this transaction,
  // nullptr if they are skipped.
  Result<Relation*> Target(Oid relid, const char* op);
  Status EnsureLocal(Relation* rel);
  Status EnsureSubscriberTransaction();
  // Prepares (once) and queues the statement in the pipeline; `on_result`
  // sees its result when the pipeline is next synced.
  Status Execute(const std::string& cache_key, const std::function<std::string()>& build,
                 const std::vector<pg::Param>& params, std::string context, pg::Pipeline::OnResult on_result);
  // Warns (and counts) when an UPDATE or DELETE found no row.
  pg::Pipeline::OnResult MissingRowCheck(const char* op, const Relation& rel, const std::string& key_shown);
  // WHERE columns and values from an old (or new) tuple.
  Status KeyFrom(const Relation& rel, const protocol::TupleData& tuple, std::vector<KeyColumn>* key,
                 std::vector<pg::Param>* params, std::string* shape, std::string* shown) const;
  std::string Where(const Relation& rel, const char* op, const std::string& key_shown) const;
  std::string InsertKeyShown(const Relation& rel, const protocol::TupleData& tuple) const;

  // Batching: whether this change to `rel` goes to its batch.
  bool Batches(const Relation& rel) const { return batching_allowed_ && !careful_ && rel.batching != Batching::kNone; }
  // A change's columns as text (binary values are never requested: a protocol error).
  static Result<std::vector<BatchValue>> Values(const protocol::TupleData& tuple);
  std::string KeyOf(const Relation& rel, const std::vector<BatchValue>& values) const;
  // Holds a change back; sends the batch first when it cannot merge.
  Status AddToBatch(Relation* rel, BatchOp op, std::vector<BatchValue> values);
  Status FlushRelation(Relation* rel);
  Status SendBatch(Relation* rel, const char* op, const std::string& cache_key,
                   const std::vector<BatchColumn>& columns, const std::vector<size_t>& column_index,
                   const std::vector<const BatchRow*>& rows, const std::function<std::string()>& build,
                   bool check_missing);

  // Results are read at most this many statements apart (and at commit).
  static constexpr size_t kMaxPipelined = 512;
  // A table's batch is sent once it holds this many rows, and every batch
  // once they hold this many bytes together.
  static constexpr size_t kMaxBatchRows = 2000;
  static constexpr size_t kMaxBatchBytes = 8 << 20;

  pg::PgConn* conn_;
  pg::Pipeline pipeline_;
  std::string origin_;
  TableFilter filter_;
  int statement_cache_size_;
  GroupLimits limits_;
  CommitHook commit_hook_;

  std::unordered_map<Oid, Relation> relations_;  // node-based: Relation* stay valid
  std::vector<Oid> batched_;    // relations with a non-empty batch, in the order they got one
  size_t batch_bytes_ = 0;      // what all batches hold (approximately)
  bool batching_allowed_ = true;  // false when session_replication_role = replica failed
  Lsn careful_until_;
  bool careful_ = false;          // the current transaction is applied carefully
  bool commit_alone_ = false;     // the current transaction commits in a group of its own (OnMessage)
  std::unordered_map<std::string, std::string> statements_;  // cache key -> prepared name
  int next_statement_ = 0;

  std::string subscription_;       // lorry messages for it are run (EnableLorryMessages)
  std::function<bool(Lsn)> message_skipped_;
  // An `execute` script ran on the subscriber: the rest of its provider
  // transaction (the script's own row changes) is not applied again.
  bool skip_rest_of_xact_ = false;
  bool in_remote_xact_ = false;   // between BEGIN and COMMIT of the stream
  bool in_local_xact_ = false;    // a subscriber transaction is open
  Lsn xact_final_lsn_;
  std::string xact_lsn_text_;  // xact_final_lsn_ printed once, for messages
  int64_t xact_commit_time_ = 0;
  Lsn last_commit_end_;
  Lsn last_group_end_;
  int64_t last_commit_time_ = 0;
  int64_t xact_changes_ = 0;
  // The open group: provider transactions applied, not yet committed.
  Lsn group_end_;
  int64_t group_commit_time_ = 0;
  int64_t group_xacts_ = 0;
  int64_t group_changes_ = 0;
  std::chrono::steady_clock::time_point group_started_;
  ApplyStats stats_;
  std::string commit_guard_;
};

}  // namespace lorry::apply
