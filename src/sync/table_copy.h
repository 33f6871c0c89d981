// Table copy: COPY from the provider at an exported snapshot into the
// subscriber, streamed chunk by chunk (memory does not grow with the table),
// in parallel over several connections, large tables split into ranges.
//
// Phases of one table (each a subscriber transaction of its own):
//   begin   - check the subscriber table is empty, record and drop its
//             indexes (sync/deferred_indexes.h), state `copying`;
//   ranges  - one COPY per range (the whole table, or ctid ranges of a large
//             one on PostgreSQL 14+), run by any worker;
//   finish  - all rows in: copy_finished_at and the snapshot's LSN recorded;
//   indexes - the deferred indexes are rebuilt, in parallel with other
//             tables' copies; each rebuild commits with the removal of its
//             record, so none is ever lost. Then the state moves to `ready`
//             (or `catching_up`).
// A crash before `finish` leaves a table `copying` with some ranges in it:
// the next run empties it (it was empty when the copy began) and copies it
// again. A crash after `finish` only leaves index rebuilds to do.
//
// Timeline for a table copied at snapshot S taken at provider LSN P:
//   transactions committed before P  -> in the copy (skipped by the stream)
//   transactions committed at/after P -> applied from the stream
// Either the stream is stopped while a copy runs, at a position C <= P, so no
// change after P can be skipped; or the copy runs in the background and
// hands the table over to the stream (sync/table_sync.h).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/lsn.h"
#include "common/status.h"
#include "state/state_store.h"

namespace lorry::sync {

struct CopyTask {
  pg::QualifiedName table;
};

struct CopyPlan {
  std::string provider_conninfo;
  std::string subscriber_conninfo;
  std::string subscription;
  std::string snapshot;              // exported snapshot to import
  Lsn sync_lsn;                      // the snapshot's LSN
  TableStateKind done_state = TableStateKind::kReady;  // or kCatchingUp
  int jobs = 4;
  int index_jobs = 2;
  int64_t split_tables_larger_than = 512LL << 20;
  std::string maintenance_work_mem = "256MB";
  // A SELECT run before every commit of copied rows or copy state, which
  // fails once this run may no longer write (the run lease's fencing,
  // daemon/run_lease.h); empty: none.
  std::string fence_sql;
};

// Copies every task. A table that cannot be copied for a reason of its own
// (rows already on the subscriber) is put in state `error` with the reason
// and the others go on; a lost connection aborts the copy (retryable), as
// does `stop`. Returns after every copied table's indexes are rebuilt.
Status CopyTables(const CopyPlan& plan, const std::vector<CopyTask>& tasks, const std::atomic<bool>& stop);

// Start-up repair after a crash: empties the subscriber tables left in state
// `copying` before all their rows were in, and marks them `pending` again.
// So too the tables whose rows were all in at a sync LSN below `resume_lsn`,
// the position the stream resumes from: changes between the two were skipped
// by the stream (see sync/table_sync.h). The other tables whose rows were
// all in stay `copying` until CompleteTable.
Status ResetInterruptedCopies(pg::PgConn& subscriber, const std::string& subscription, Lsn resume_lsn);

// Moves a table whose rows and indexes are all in out of `copying`.
// `plan`: its connection, subscription and fence.
Status CompleteTable(const CopyPlan& plan, const pg::QualifiedName& table, TableStateKind state);

// WHERE clauses that split a table into `n` disjoint ranges covering every
// row. By block (ctid, PostgreSQL 14+): [0, blocks) in contiguous block
// ranges, the last open-ended so that rows in pages added since the size was
// read are copied too.
std::vector<std::string> SplitByBlocks(int64_t blocks, int n);
// By an integer key (`column` already quoted) between min and max: the first
// range is open below and the last open above.
std::vector<std::string> SplitByKey(const std::string& column, int64_t min, int64_t max, int n);

}  // namespace lorry::sync
