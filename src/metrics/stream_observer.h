// StreamObserver: counts what the daemon applies, per table and operation,
// and tracks how far behind it is, from the decoded stream alone (it needs
// nothing of the applier's internals).
//
// A change counts once the subscriber transaction holding it is durable:
// changes are held per provider transaction until the daemon reports, with
// OnDurable(), an applied position at or past that transaction's end. A
// transaction rolled back (apply failure) never reaches it, and the observer
// belongs to one streaming session, so nothing is counted twice.
//
// Only changes the daemon's table filter lets through are counted (a table
// still copying, or a change already in a table's copy, is skipped by the
// applier and here alike).
//
// Not thread-safe: the daemon thread only. Results go to RunMetrics.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/lsn.h"
#include "metrics/run_metrics.h"
#include "pg/quote.h"
#include "protocol/pgoutput.h"

namespace lorry::metrics {

class StreamObserver {
 public:
  // Same contract as apply::Applier::TableFilter.
  using TableFilter = std::function<bool(const pg::QualifiedName& table, Lsn final_lsn)>;

  // REQUIRES: sink outlives this object.
  StreamObserver(RunMetrics* sink, TableFilter filter) : sink_(sink), filter_(std::move(filter)) {}

  void OnMessage(const protocol::PgOutputMessage& msg);

  // Everything up to `applied` is committed on the subscriber (or was
  // skipped): the counts of transactions ending there go to the sink.
  void OnDurable(Lsn applied);

  // Everything up to `committed` is committed on the subscriber (not yet
  // known durable): each provider transaction ending there is timed, from
  // its BEGIN received and from its provider commit, into the sink's
  // histograms. The daemon calls it after each message; OnDurable too.
  void OnCommitted(Lsn committed);

  // Provider commit time (PostgreSQL microseconds) of the oldest transaction
  // received and not yet durable; 0 when there is none.
  int64_t OldestPendingCommitTime() const;

 private:
  struct Relation {
    std::string display;
    pg::QualifiedName name;
    Lsn decided_for;  // the transaction final_lsn `apply` was decided for
    bool apply = false;
    TableOpCounts xact{};  // counts in the open transaction
    bool touched = false;
  };
  struct Pending {
    Lsn end;
    int64_t commit_time = 0;
    std::vector<std::pair<std::string, TableOpCounts>> counts;
  };

  // A provider transaction handled by the applier, not yet committed on the subscriber.
  struct Timing {
    Lsn end;
    std::chrono::steady_clock::time_point began;  // its BEGIN received
    int64_t commit_time = 0;                      // provider commit (PostgreSQL microseconds)
  };

  void Count(Oid relid, Op op);

  RunMetrics* sink_;
  TableFilter filter_;
  std::unordered_map<Oid, Relation> relations_;
  std::vector<Oid> touched_;  // relations with counts in the open transaction
  bool in_xact_ = false;
  Lsn xact_final_;
  int64_t xact_commit_time_ = 0;
  std::deque<Pending> pending_;  // committed on the provider, not yet durable here
  std::chrono::steady_clock::time_point xact_began_;
  std::deque<Timing> timing_;  // not yet committed here
};

}  // namespace lorry::metrics
