// Sequence sync: the provider's sequence values copied to the subscriber.
//
// Sequences are not in the change stream (pgoutput carries no sequence
// changes), so lorry reads them on the provider and sets them on the
// subscriber: at copy time, every few seconds while `run` streams, and once
// more at the end of `lorry wait`.
//
// Which sequences: those replicated tables use (owned by their serial and
// identity columns, or called by their column defaults; found on the
// provider each time) and those added by name (`lorry add --sequence`, and
// the free-standing ones of `add --all`, kept in lorry.sequences).
//
// Invariants:
// - A subscriber sequence never moves backwards: it is set only when the
//   provider's next value is ahead of the subscriber's (in the direction of
//   the increment). A CYCLE sequence, which may wrap around, is set whenever
//   its value differs from the provider's.
// - Syncs of one subscription are serialised (an advisory lock on the
//   subscriber): two concurrent "set only if ahead" steps could otherwise
//   move a value back.
// - Every provider value is read after the sync began, so once a sync that
//   began after time T completed, each subscriber sequence is at least where
//   the provider's was at T.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::sync {

struct SequenceSyncResult {
  int sequences = 0;  // sequences looked at
  int advanced = 0;   // set on the subscriber
  // Sequences that could not be synced (missing on the subscriber, ...),
  // each with its fix. Sequences owned by tables and missing on the
  // subscriber are not listed: the subscriber table may not use one.
  std::vector<std::string> problems;
  bool busy = false;  // another sync held the subscription's sequence lock: nothing done
};

// One sync, under the subscription's sequence lock on the subscriber.
// `wait_for_lock` false: when another sync (`lorry wait`) holds it, return
// at once with `busy` (the daemon's stream must not wait on another
// process's session). REQUIRES: no transaction open on `subscriber`.
Result<SequenceSyncResult> SyncSequences(pg::PgConn& provider, pg::PgConn& subscriber,
                                         const std::string& subscription, bool wait_for_lock = true);

// Whether a sequence at (last_value, is_called) should be set to the
// provider's (last_value, is_called): its next value would be ahead in the
// direction of `increment`.
bool SequenceAhead(int64_t sub_last, bool sub_called, int64_t prov_last, bool prov_called, int64_t increment);

// The sequences `lorry add --sequence` recorded for the subscription.
Result<std::vector<pg::QualifiedName>> ListAddedSequences(pg::PgConn& subscriber, const std::string& subscription);

}  // namespace lorry::sync
