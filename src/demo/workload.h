// The demo's data: a pgbench-like schema, its initial data, a tpcb-like write
// workload, and the list of tables the demo replicates and verifies.
//
// Invariants:
// - SchemaSql() is created identically on both servers; LoadSql() runs on the
//   provider only (the subscriber gets its rows from lorry's copy).
// - pgbench_history has no key: lorry adds it insert-only, so the workload
//   only ever INSERTs into it.
// - Every workload transaction is one simple-query round trip, hence one
//   implicit transaction: a failed one leaves nothing open behind it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "pg/quote.h"

namespace lorry::demo {

struct DataShape {
  int branches = 10;
  int tellers = 100;      // 10 per branch
  int accounts = 100000;  // 10 000 per branch
  int events = 1000;      // rows of the "Order Events" table with the interesting types
};

// CREATE TABLE statements of every demo table.
std::string SchemaSql();
// INSERT ... generate_series for every table but pgbench_history, then ANALYZE.
std::string LoadSql(const DataShape& shape);

// Every demo table, in display order.
std::vector<pg::QualifiedName> DemoTables();
// The table without a key, added with --insert-only.
pg::QualifiedName HistoryTable();

struct WorkloadCounters {
  std::atomic<int64_t> transactions{0};  // committed on the provider
  std::atomic<int64_t> event_changes{0};  // inserts, updates and deletes of "Order Events"
};

// One client: connects to `conninfo` and commits tpcb-like transactions
// (accounts, tellers, branches, history), with an insert, update or delete of
// "Order Events" every few transactions, until `stop` is set; at most `rate`
// transactions per second on average when rate > 0 (as pgbench -R). Returns
// the first error, or Ok once stopped.
Status RunClient(const std::string& conninfo, int client, const DataShape& shape, double rate,
                 const std::atomic<bool>& stop, WorkloadCounters* counters);

}  // namespace lorry::demo
