// TableSync: copies tables added while `lorry run` streams, in a thread of
// its own with its own connections, and hands them over to the main stream
// without stopping it and without losing or applying twice any change.
//
// Positions. A transaction is identified by the LSN where its commit record
// starts (pgoutput's final_lsn / commit_lsn; the slot sends every transaction
// whose commit starts at or after the position it streams from). For a
// stream, "position P" means: every transaction with final_lsn < P has been
// processed (applied or skipped), none with final_lsn >= P has. A commit's
// end LSN, and a keepalive's wal_end received between transactions, are such
// positions (the walsender sends a transaction whole, when it reads its
// commit record, before any later keepalive).
//
// The invariant, kept at every subscriber commit, for a table copied here:
//   while `copying` with copy_finished_at set, and while `catching_up`, the
//   table holds exactly the changes of the transactions with final_lsn <
//   lorry.tables.sync_lsn (none of those at or after it).
// The main stream applies a `catching_up` table's transactions with final_lsn
// >= sync_lsn and none of a `pending`/`copying` one, so as long as the main
// stream has not passed sync_lsn when it sees `catching_up`, every change is
// applied exactly once.
//
// Phases (one worker, several tables):
//   copy     - a TEMPORARY slot with an exported snapshot at S; the tables
//              are copied at it (sync/table_copy.h, `copying`, sync_lsn = S).
//              The main stream goes on with the other tables and skips these.
//   catch-up - the worker streams its temporary slot from S and applies these
//              tables' changes only, each group committed with sync_lsn = its
//              end LSN (so the invariant holds at every commit). Once it has
//              reached the main stream's published position (after 5 s: is
//              within 256 kB of WAL of it), it asks for the hand-over
//              (PostgreSQL's SYNCWAIT).
//   hand-over- the main stream, at a transaction boundary, with its group
//              committed, stops reading at its position H and tells the
//              worker (CATCHUP). The worker applies until its position W >=
//              H (it never applies a transaction with final_lsn >= H unless it
//              had already gone past H), then commits `catching_up` with
//              sync_lsn = W (SYNCDONE) and wakes the main stream, which reloads
//              the table states before it reads anything else and applies
//              these tables from W on. `ready` follows once the main stream
//              has committed past W.
//   The easy case (the main stream still at or before S when the copy ends)
//   is the same with nothing to apply: W = S.
//
// Worked timelines (S copy snapshot, H main's position at the hand-over):
//   main behind: H <= S. W = S; main applies the tables' transactions >= S.
//   main ahead:  S < H. The worker applies [S, H) from its slot; main, which
//                skipped them while `copying`, applies >= W >= H.
//   worker ahead of main (main has a backlog): W > H; main skips [H, W).
//
// Crashes and stops: the temporary slot goes with its connection. On the
// next start sync::ResetInterruptedCopies re-copies from scratch every table
// whose copy was not finished, and every finished one whose sync_lsn is below
// the position the main stream resumes from (the changes in between were
// skipped by the main stream and are gone with the temporary slot); one at or
// after it is correctly continued as `catching_up` at its sync_lsn.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "apply/applier.h"
#include "common/lsn.h"
#include "common/status.h"
#include "pg/quote.h"
#include "pg/replication_conn.h"
#include "sync/table_copy.h"

namespace lorry::sync {

struct TableSyncOptions {
  CopyPlan copy;              // connections, subscription and copy settings; snapshot and LSN are set here
  std::string slot;           // name of the temporary slot
  std::string start_options;  // START_REPLICATION options (proto_version, publication_names)
  int proto_version = 1;
  int statement_cache_size = 256;
  apply::Applier::GroupLimits limits;
  // Catch-up and hand-over commits are fenced like the copy's, by
  // copy.fence_sql (the run lease, daemon/run_lease.h).
};

class TableSync {
 public:
  // Starts the worker thread at once.
  TableSync(TableSyncOptions options, std::vector<pg::QualifiedName> tables);
  // Stops the worker (a copy or catch-up in progress is abandoned; the next
  // start repairs it, see above) and waits for it.
  ~TableSync();
  TableSync(const TableSync&) = delete;
  TableSync& operator=(const TableSync&) = delete;

  // Main stream side (one thread).
  // The main stream's current position (see above), published after every message.
  void PublishPosition(Lsn position) { main_position_.store(position.value); }
  // Whether the worker has caught up and waits for the main stream to pause.
  bool WantsHandOver();
  // REQUIRES: the main stream is between transactions at `position` with no
  // group open, and reads nothing until this returns.
  // Waits for the worker to reach `position` and commit the hand-over,
  // calling `while_waiting` (e.g. feedback on the main stream) every second.
  // true: handed over, the main stream must reload the table states before
  // it reads on. false: not within `timeout` (nothing changed; the worker
  // asks again later). An error: the worker failed; whether its hand-over
  // committed is unknown, so the main stream must not read on.
  Result<bool> HandOver(Lsn position, std::chrono::milliseconds timeout, const std::function<Status()>& while_waiting);

  bool finished();
  // The worker's outcome. REQUIRES: finished().
  Status result();
  const std::vector<pg::QualifiedName>& tables() const { return tables_; }

 private:
  void Main();
  Status Work();
  Status CatchUp(pg::ReplicationConn& repl, const std::vector<pg::QualifiedName>& copied, Lsn snapshot_lsn);
  // The (fenced) UPDATE of lorry.tables for the copied tables still `copying`.
  std::string UpdateCopied(const std::vector<pg::QualifiedName>& copied, const std::string& set) const;
  std::optional<Lsn> Target();
  // Commits the hand-over at `position` if the main stream still waits at a
  // target <= position; false if it gave up meanwhile.
  Result<bool> Finish(const std::vector<pg::QualifiedName>& copied, Lsn position, int64_t applied);

  const TableSyncOptions options_;
  const std::vector<pg::QualifiedName> tables_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> main_position_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  bool wants_ = false;           // the worker asks for the hand-over
  std::optional<Lsn> target_;    // the main stream waits at this position
  bool finishing_ = false;       // the worker commits the hand-over: the main stream may not give up
  bool done_ = false;            // the hand-over is committed
  bool finished_ = false;        // the thread is done
  Status result_;
  std::thread thread_;
};

}  // namespace lorry::sync
