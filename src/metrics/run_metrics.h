// RunMetrics: what `lorry run` knows about itself, for Prometheus (/metrics)
// and for the lorry.run_stats row behind the lorry.status view.
//
// Writers: the daemon thread (OnTick, AddApplied, OnFailure), the sampler
// thread (SetProvider, SetTables). Readers: the HTTP server's threads
// (Collect) and the sampler (Snapshot). Every member is guarded by mu_, so
// any thread may call any method; nothing here touches a database.
//
// Metric names follow Prometheus conventions: `lorry_` prefix, counters end
// in `_total`, units in the name (`_bytes`, `_seconds`). LSNs are exported as
// numbers (bytes since the start of WAL). Process metrics use the standard
// `process_*` names so that stock dashboards work.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::metrics {

// Operations counted per table, in the order of TableOpCounts.
enum class Op { kInsert = 0, kUpdate = 1, kDelete = 2, kTruncate = 3 };
inline constexpr std::array<const char*, 4> kOpNames = {"insert", "update", "delete", "truncate"};
using TableOpCounts = std::array<int64_t, 4>;

// One table as the sampler last read it from lorry.table_progress.
struct TableSample {
  std::string table;  // schema.name as displayed
  std::string state;
  int64_t rows_copied = 0;
  int64_t bytes_copied = 0;
  std::optional<int64_t> bytes_estimate;
  int64_t indexes_to_rebuild = 0;
};

// The daemon's view at its last tick (about once a second while streaming).
struct StreamPosition {
  Lsn received;   // highest WAL position the provider sent (data or keepalive)
  Lsn applied;    // everything up to here is committed on the subscriber or confirmed idle
  Lsn confirmed;  // last flush position reported to the slot
  // Provider commit time (microseconds since 2000-01-01, PostgreSQL's epoch)
  // of the oldest transaction received but not yet committed on the
  // subscriber; 0 when everything received is applied (caught up).
  int64_t oldest_pending_commit_pg_us = 0;
  int64_t xacts = 0;         // provider transactions applied (since the subscription began)
  int64_t changes = 0;       // changes applied (since the subscription began)
  int64_t missing_rows = 0;  // conflicts: UPDATE/DELETE whose row was missing (this process)
};

// The provider as the sampler last saw it.
struct ProviderSample {
  Lsn wal_lsn;  // pg_current_wal_lsn()
  bool slot_exists = false;
  bool slot_active = false;
  std::optional<Lsn> slot_confirmed_flush;
  std::optional<int64_t> slot_retained_bytes;  // wal_lsn - restart_lsn: WAL the slot keeps
};

// Everything at once, for the sampler's lorry.run_stats row and for tests.
struct Snapshot {
  bool streamed = false;  // the daemon has ticked at least once in this process
  StreamPosition position;
  std::optional<ProviderSample> provider;
  std::optional<int64_t> lag_bytes;
  double lag_seconds = 0;
  int64_t reconnects = 0;
};

class RunMetrics : public prometheus::Collectable {
 public:
  explicit RunMetrics(std::string subscription);
  RunMetrics(const RunMetrics&) = delete;
  RunMetrics& operator=(const RunMetrics&) = delete;

  // Daemon thread.
  void OnTick(const StreamPosition& p);
  void AddApplied(const std::string& table, const TableOpCounts& counts);
  // One provider transaction committed on the subscriber: `apply_seconds`
  // from its BEGIN received to its subscriber commit, `delay_seconds` from
  // its provider commit to then (commit-to-apply delay).
  void ObserveTransaction(double apply_seconds, double delay_seconds);
  // A failed attempt (the daemon retries: a reconnect follows). `kind` is a
  // short word: connection, server, apply, protocol...
  void OnFailure(const std::string& kind);

  // Sampler thread.
  void SetProvider(const ProviderSample& p);
  void SetTables(std::vector<TableSample> tables);

  Snapshot Take() const;
  // The tables as the sampler last read them.
  std::vector<TableSample> Tables() const;
  // Applied counts per table and operation (for tests and the watch view).
  std::map<std::string, TableOpCounts> Applied() const;

  // prometheus::Collectable: the current values as metric families.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // REQUIRES: mu_ held.
  Snapshot TakeLocked() const;

  const std::string subscription_;
  const double start_time_seconds_;  // process start, unix time

  mutable std::mutex mu_;
  bool streamed_ = false;
  StreamPosition position_;
  std::optional<ProviderSample> provider_;
  std::vector<TableSample> tables_;
  std::map<std::string, TableOpCounts> applied_;
  std::map<std::string, int64_t> errors_;  // by kind
  int64_t reconnects_ = 0;
  // Thread-safe on their own (not under mu_).
  prometheus::Histogram apply_seconds_;
  prometheus::Histogram delay_seconds_;
};

// Bucket bounds (seconds) of lorry_transaction_apply_seconds and
// lorry_commit_to_apply_delay_seconds.
const prometheus::Histogram::BucketBoundaries& ApplySecondsBuckets();
const prometheus::Histogram::BucketBoundaries& DelaySecondsBuckets();

// The `kind` label of lorry_errors_total for a failed attempt: "apply" when
// a change could not be applied, else the Status kind (connection, server...).
std::string FailureKind(const Status& s, bool apply_failed);

// Seconds behind: 0 when caught up, else now minus the oldest pending
// provider commit time (never negative).
double LagSeconds(int64_t oldest_pending_commit_pg_us, std::chrono::system_clock::time_point now);

}  // namespace lorry::metrics
