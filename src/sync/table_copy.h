// Table copy: COPY from the provider at an exported snapshot into the
// subscriber, streamed chunk by chunk (memory does not grow with the table).
//
// Invariant: a table's rows and its move out of `copying` (to `ready` or
// `catching_up`, with the sync LSN) commit in ONE subscriber transaction.
// If lorry dies mid-copy, that transaction rolls back: the table is empty
// again and still `copying`, which the next run treats as `pending`.
//
// Timeline for a table copied at snapshot S taken at provider LSN P:
//   transactions committed before P  -> in the copy (skipped by the stream)
//   transactions committed at/after P -> applied from the stream
// The stream is stopped while a copy runs, at a position C <= P, so no
// change after P can be skipped.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/lsn.h"
#include "common/status.h"
#include "state/state_store.h"

namespace lorry::sync {

struct CopyProgress {
  std::atomic<int64_t> rows{0};
  std::atomic<int64_t> bytes{0};
};

struct CopyTask {
  pg::QualifiedName table;
  int64_t size_estimate = 0;  // bytes, for biggest-first ordering
  CopyProgress* progress = nullptr;  // may be null
};

struct CopyPlan {
  std::string provider_conninfo;
  std::string subscriber_conninfo;
  std::string subscription;
  std::string snapshot;              // exported snapshot to import
  Lsn sync_lsn;                      // the snapshot's LSN
  TableStateKind done_state = TableStateKind::kReady;  // or kCatchingUp
  int jobs = 4;
};

// Copies every task with up to plan.jobs parallel workers, each with its own
// provider and subscriber connections. A table whose copy fails for a reason
// other than a lost connection is put in state `error` with the reason; a
// lost connection aborts the whole copy (retryable). `stop` aborts early.
Status CopyTables(const CopyPlan& plan, std::vector<CopyTask> tasks, const std::atomic<bool>& stop);

}  // namespace lorry::sync
