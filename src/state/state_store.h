// StateStore: the `lorry` schema on the subscriber and the rows lorry keeps in it.
//
// Replication state lives in the subscriber database, never only in local
// files. A StateStore works on a connection it does not own, so that table
// state changes can be committed in the same transaction as the data they
// describe (e.g. a table's copy and its move to `ready`).
//
// Table states: pending -> copying -> catching_up -> ready; error; paused.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"
#include "state/names.h"

namespace lorry {

enum class TableStateKind { kPending, kCopying, kCatchingUp, kReady, kError, kPaused };
const char* TableStateName(TableStateKind s);
std::optional<TableStateKind> ParseTableState(std::string_view s);

struct TableState {
  pg::QualifiedName name;
  TableStateKind state = TableStateKind::kPending;
  bool insert_only = false;
  std::optional<Lsn> sync_lsn;  // copies: changes committed after this LSN are applied from the stream
  int64_t rows_copied = 0;
  int64_t bytes_copied = 0;
  std::optional<int64_t> rows_estimate;
  std::string error;
  std::string state_changed_at;  // text timestamp, for display
  std::optional<int64_t> bytes_estimate;       // provider size when the copy began
  std::optional<double> copy_seconds;          // time spent copying (so far, or in all)
  int64_t deferred_indexes = 0;                // indexes dropped for the copy, not yet rebuilt
  std::string index_rebuild_error;             // why the last rebuild of one of them failed, or ""
  // As added (`add --where/--columns/--ops`); empty: none / all.
  std::string row_filter;
  std::string column_list;
  std::string ops;
};

// A table `lorry remove`d while the stream applied it: the stream still
// applies its transactions committed before remove_lsn, then forgets it.
struct RemovedTable {
  pg::QualifiedName name;
  std::optional<Lsn> apply_from;  // it was `catching_up`: its copy holds what is before this
  Lsn remove_lsn;
};

struct SubscriptionRow {
  std::string name;
  std::optional<Lsn> consistent_lsn;   // the slot's consistent point, once run created it
  std::optional<Lsn> confirmed_lsn;    // provider position known fully applied (idle keepalives)
  std::optional<Lsn> last_commit_lsn;  // end LSN of the last applied provider commit
  std::string last_commit_time;        // provider commit time of that transaction
  std::string last_applied_at;
  int64_t xacts_applied = 0;
  int64_t changes_applied = 0;
  int proto_version = 0;
  std::string heartbeat_at;
  std::optional<double> heartbeat_age_seconds;
  std::string last_error;
  std::string last_error_at;
  bool paused = false;
};

class StateStore {
 public:
  static constexpr int kSchemaVersion = 8;

  // REQUIRES: conn outlives this object.
  StateStore(pg::PgConn* conn, std::string subscription) : conn_(conn), sub_(std::move(subscription)) {}

  // Creates or upgrades the lorry schema and the subscription's row. Idempotent.
  Status Install();
  // Whether the lorry schema and this subscription's row exist.
  Result<bool> IsInstalled();
  // Removes this subscription's rows; the schema too when no other subscription uses it.
  Status Uninstall();

  Result<SubscriptionRow> LoadSubscription();
  Result<std::vector<TableState>> ListTables();
  Result<std::optional<TableState>> GetTable(const pg::QualifiedName& name);

  Status AddTable(const pg::QualifiedName& name, bool insert_only, std::optional<int64_t> rows_estimate,
                  bool truncate_before_copy = false);
  // Marks an added table to be emptied before its copy (`add --truncate`);
  // one in state `error` goes back to `pending`.
  Status AllowTruncate(const pg::QualifiedName& name);
  Status RemoveTable(const pg::QualifiedName& name);
  // Removes the table's row; if the stream applies it (`ready`,
  // `catching_up`), records that its changes committed before `remove_lsn`
  // are still to be applied.
  Status RemoveTableAt(const pg::QualifiedName& name, Lsn remove_lsn);
  Result<std::vector<RemovedTable>> ListRemovals();
  Status ForgetRemoval(const pg::QualifiedName& name);
  // Marks a table to be emptied and copied again (`lorry resync`). A table
  // being copied is left alone unless `even_copying`; false if not marked.
  Result<bool> MarkForResync(const pg::QualifiedName& name, bool even_copying);
  Status SetState(const pg::QualifiedName& name, TableStateKind state, std::optional<Lsn> sync_lsn = std::nullopt,
                  const std::string& error = "");
  Status SetCopyProgress(const pg::QualifiedName& name, int64_t rows, int64_t bytes);

  Status SetConsistentPoint(Lsn lsn, int proto_version);
  Status SetPaused(bool paused);
  // Daemon heartbeat with apply statistics (one small UPDATE, about once a second).
  struct Progress {
    std::optional<Lsn> confirmed_lsn;
    std::optional<Lsn> last_commit_lsn;
    int64_t last_commit_time_pg_us = 0;  // 0: unknown
    int64_t xacts_applied = 0;
    int64_t changes_applied = 0;
  };
  Status Heartbeat(const Progress& p, bool running);
  Status RecordError(const std::string& error);  // empty clears

 private:
  pg::PgConn* conn_;
  std::string sub_;
};

}  // namespace lorry
