#include "sync/table_copy.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/fault.h"
#include "catalog/publications.h"
#include "common/log.h"
#include "sync/deferred_indexes.h"

namespace lorry::sync {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxRanges = 64;
// How long one wait for a lock on a provider table lasts before lorry says
// who holds it (and waits again).
constexpr auto kProviderLockTimeout = std::chrono::seconds(5);
constexpr auto kLockWarningEvery = std::chrono::seconds(60);
constexpr Oid kFirstNormalObjectId = 16384;

// What is known about one table while it is copied.
struct TableCopy {
  pg::QualifiedName table;
  std::string columns;        // quoted column list (the publication's column list, if it has one)
  std::string row_filter;     // the publication's row filter (SQL), or empty
  bool binary = false;        // identical built-in types on both sides
  bool freeze = false;        // one range, no foreign keys point at it: TRUNCATE + COPY FREEZE
  int64_t size_bytes = 0;
  int64_t rows_estimate = -1;
  std::vector<std::string> ranges;  // WHERE clauses; empty: the whole table in one COPY
  // A partitioned table on the provider: one unit per leaf partition (the
  // natural ranges), each read FROM ONLY the leaf; `ranges` stays empty.
  std::vector<pg::QualifiedName> leaves;
  std::string split_by;              // "ctid", the key column, or "partition"
  std::atomic<int> ranges_left{0};
  std::atomic<int64_t> rows{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<bool> active{false};
  Clock::time_point started;
  // The `begin` phase runs once, by the first worker to take a unit of the
  // table; the others wait for it. 0: not yet, 1: begun, -1: refused.
  std::mutex begin_mu;
  int begun = 0;
};

struct Unit {
  TableCopy* copy;
  int range;  // index into copy->ranges (or copy->leaves), or -1 for the whole table
  int64_t weight;
};

std::string ColumnList(const catalog::TableInfo& info) {
  std::string out;
  for (const auto& c : info.columns) {
    if (c.generated) continue;
    if (!out.empty()) out += ", ";
    out += pg::QuoteIdent(c.name);
  }
  return out;
}

// Binary COPY is faster but only safe when both sides have the same built-in
// type for every column (binary arrays and records carry type OIDs).
bool SameBuiltinTypes(const catalog::TableInfo& provider, const catalog::TableInfo& subscriber) {
  for (const auto& c : provider.columns) {
    if (c.generated) continue;
    const auto* s = subscriber.FindColumn(c.name);
    if (!s || s->type_oid != c.type_oid || c.type_oid >= kFirstNormalObjectId) return false;
  }
  return true;
}

pg::ConnectOptions CopyOptions(const char* role) {
  return {{{"options", pg::kTextSessionOptions}, {"application_name", "lorry_copy"}}, role};
}

// Before PostgreSQL 14 (no TID range scans): ranges of a one-column integer
// primary key, read through its index; other tables are not split.
Result<std::vector<std::string>> SplitByIntegerKey(pg::PgConn& provider, const catalog::TableInfo& t, int n,
                                                   std::string* split_by) {
  if (!t.has_primary_key) return std::vector<std::string>();
  const catalog::ColumnInfo* key = nullptr;
  int keys = 0;
  for (const auto& c : t.columns)
    if (c.identity_key && t.replica_identity != 'f') {
      key = &c;
      keys++;
    }
  constexpr Oid kInt2 = 21, kInt4 = 23, kInt8 = 20;
  if (keys != 1 || (key->type_oid != kInt2 && key->type_oid != kInt4 && key->type_oid != kInt8))
    return std::vector<std::string>();
  LORRY_ASSIGN_OR_RETURN(auto r, provider.Exec(fmt::format("SELECT min({0})::bigint, max({0})::bigint FROM {1}",
                                                           pg::QuoteIdent(key->name), t.name.Quoted())));
  if (r.IsNull(0, 0)) return std::vector<std::string>();
  *split_by = key->name;
  return SplitByKey(pg::QuoteIdent(key->name), r.GetInt(0, 0), r.GetInt(0, 1), n);
}

// The row filter and column list of the table's lorry publication
// (PostgreSQL 15+): the copy takes exactly the rows and columns the stream
// will send. Read from the provider's catalog, the one source of truth.
Status ReadPublicationSpec(pg::PgConn& provider, const CopyPlan& plan, const catalog::TableInfo& p, TableCopy* t) {
  if (provider.server_version() < 150000) return Status::Ok();
  LORRY_ASSIGN_OR_RETURN(auto publications,
                         catalog::ListPublications(provider, SubscriptionNames::For(plan.subscription)));
  std::string list;
  for (const auto& pub : publications) list += (list.empty() ? "" : ",") + pg::QuoteIdent(pub);
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "SELECT pg_get_expr(pr.prqual, pr.prrelid), "
                  "  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a "
                  "   WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)) "
                  "FROM pg_publication_rel pr JOIN pg_publication pub ON pub.oid = pr.prpubid "
                  "WHERE pr.prrelid = $1::oid AND pub.pubname = ANY ($2::text[])",
                  {std::to_string(p.oid), "{" + list + "}"}));
  if (r.rows() == 0) return Status::Ok();
  t->row_filter = r.Get(0, 0);
  if (!r.IsNull(0, 1)) t->columns = r.Get(0, 1);
  return Status::Ok();
}

// Plans every table: columns, format, ranges. Runs on a provider connection
// outside the snapshot (sizes only guide the split).
Result<std::vector<std::unique_ptr<TableCopy>>> Plan(const CopyPlan& plan, const std::vector<CopyTask>& tasks,
                                                     pg::PgConn& provider, pg::PgConn& subscriber) {
  std::vector<std::unique_ptr<TableCopy>> out;
  bool tid_ranges = provider.server_version() >= 140000;
  LORRY_ASSIGN_OR_RETURN(auto block_size, provider.QueryValue("SELECT current_setting('block_size')"));
  int64_t block = block_size ? std::stoll(*block_size) : 8192;
  for (const auto& task : tasks) {
    LORRY_ASSIGN_OR_RETURN(auto p, catalog::LookupTable(provider, task.table));
    if (!p) return Status::Precondition(fmt::format("table {} no longer exists on the provider", task.table.Display()));
    LORRY_ASSIGN_OR_RETURN(auto s, catalog::LookupTable(subscriber, task.table));
    if (!s) return Status::Precondition(fmt::format("table {} is missing on the subscriber", task.table.Display()));
    auto t = std::make_unique<TableCopy>();
    t->table = task.table;
    t->columns = ColumnList(*p);
    LORRY_RETURN_IF_ERROR(ReadPublicationSpec(provider, plan, *p, t.get()));
    t->binary = SameBuiltinTypes(*p, *s);
    t->size_bytes = p->bytes_estimate;
    t->rows_estimate = p->rows_estimate;
    if (p->partitioned()) {
      LORRY_ASSIGN_OR_RETURN(t->leaves, catalog::ListLeaves(provider, p->oid));
      t->split_by = "partition";
    } else if (p->bytes_estimate > plan.split_tables_larger_than) {
      int64_t n = (p->bytes_estimate + plan.split_tables_larger_than - 1) / plan.split_tables_larger_than;
      n = std::clamp<int64_t>(std::max<int64_t>(n, plan.jobs), 2, kMaxRanges);
      if (tid_ranges) {
        t->ranges = SplitByBlocks(p->heap_bytes / block, static_cast<int>(n));
        t->split_by = "ctid";
      } else {
        LORRY_ASSIGN_OR_RETURN(t->ranges, SplitByIntegerKey(provider, *p, static_cast<int>(n), &t->split_by));
      }
    }
    LORRY_ASSIGN_OR_RETURN(auto referenced,
                           subscriber.QueryValue("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' "
                                                 "AND confrelid = $1::regclass)",
                                                 {task.table.Quoted()}));
    // COPY FREEZE needs one COPY into a plain table.
    t->freeze = t->ranges.empty() && t->leaves.empty() && !s->partitioned() && referenced && *referenced == "f";
    out.push_back(std::move(t));
  }
  return out;
}

// Empties a subscriber table. TRUNCATE is refused for a table that foreign
// keys point at; DELETE (in replica mode, without their checks) is not.
Status EmptyTable(pg::PgConn& subscriber, const pg::QualifiedName& table) {
  LORRY_RETURN_IF_ERROR(subscriber.Exec("SAVEPOINT lorry_empty").status());
  auto truncated = subscriber.Exec(fmt::format("TRUNCATE {}", table.Quoted()));
  if (truncated.ok()) return subscriber.Exec("RELEASE SAVEPOINT lorry_empty").status();
  LORRY_RETURN_IF_ERROR(subscriber.Exec("ROLLBACK TO SAVEPOINT lorry_empty").status());
  LORRY_RETURN_IF_ERROR(subscriber.Exec("SET LOCAL session_replication_role = replica").status());
  return subscriber.Exec(fmt::format("DELETE FROM {}", table.Quoted())).status();
}

// Inside a copy transaction, before its COMMIT: fails when this run may no
// longer write (CopyPlan::fence_sql).
Status Fence(const CopyPlan& plan, pg::PgConn& subscriber) {
  if (plan.fence_sql.empty()) return Status::Ok();
  return subscriber.Exec(plan.fence_sql).status().WithContext("copy");
}

// The `begin` phase: verify the table is empty, defer its indexes, mark it
// `copying`, in one subscriber transaction.
Status BeginTable(const CopyPlan& plan, pg::PgConn& subscriber, TableCopy* t) {
  StateStore state(&subscriber, plan.subscription);
  LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
  auto body = [&]() -> Status {
    LORRY_ASSIGN_OR_RETURN(auto truncate, subscriber.QueryValue(
                                              "SELECT truncate_before_copy FROM lorry.tables WHERE subscription = $1 "
                                              "AND nspname = $2 AND relname = $3",
                                              {plan.subscription, t->table.schema, t->table.name}));
    if (truncate && *truncate == "t") LORRY_RETURN_IF_ERROR(EmptyTable(subscriber, t->table));
    LORRY_ASSIGN_OR_RETURN(auto has_rows,
                           subscriber.QueryValue(fmt::format("SELECT 1 FROM {} LIMIT 1", t->table.Quoted())));
    if (has_rows)
      return Status::Precondition(fmt::format(
          "table {} already has rows on the subscriber; lorry copies only into empty tables. To replace them "
          "with the provider's rows: `lorry add --truncate {}`; or empty it yourself (TRUNCATE {}) and lorry "
          "copies it on its next start; or `lorry remove` it",
          t->table.Display(), t->table.Display(), t->table.Quoted()));
    LORRY_ASSIGN_OR_RETURN(auto deferred, DeferIndexes(subscriber, plan.subscription, t->table));
    LORRY_RETURN_IF_ERROR(Fence(plan, subscriber));
    LORRY_RETURN_IF_ERROR(state.SetState(t->table, TableStateKind::kCopying));
    LORRY_RETURN_IF_ERROR(
        subscriber
            .ExecParams("UPDATE lorry.tables SET copy_started_at = now(), copy_finished_at = NULL, rows_copied = 0, "
                        "bytes_copied = 0, bytes_estimate = $4, rows_estimate = nullif($5::bigint, -1) "
                        "WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                        {plan.subscription, t->table.schema, t->table.name, std::to_string(t->size_bytes),
                         std::to_string(t->rows_estimate)})
            .status());
    spdlog::info("sub={} table={} copy begins size={} ranges={}{} format={} freeze={} deferred_indexes={}",
                 plan.subscription, t->table.Display(), t->size_bytes,
                 std::max<size_t>(1, t->leaves.empty() ? t->ranges.size() : t->leaves.size()),
                 t->split_by.empty() ? "" : " split_by=" + t->split_by, t->binary ? "binary" : "text", t->freeze,
                 deferred.size());
    return Status::Ok();
  };
  Status s = body();
  if (!s.ok()) {
    (void)subscriber.Exec("ROLLBACK");
    return s;
  }
  return subscriber.Exec("COMMIT").status();
}

// The `finish` phase: all rows are in. The table stays `copying` (with its
// copy_finished_at and sync LSN recorded) until its deferred indexes are
// rebuilt: only then does it move on, so that nothing (`wait`, the stream)
// treats a table without its keys as done.
Status FinishTable(const CopyPlan& plan, pg::PgConn& subscriber, TableCopy* t) {
  StateStore state(&subscriber, plan.subscription);
  LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
  Status s = Fence(plan, subscriber);
  if (s.ok()) s = state.SetCopyProgress(t->table, t->rows.load(), t->bytes.load());
  if (s.ok())
    s = subscriber
            .ExecParams("UPDATE lorry.tables SET copy_finished_at = now(), sync_lsn = $4 WHERE subscription = $1 "
                        "AND nspname = $2 AND relname = $3",
                        {plan.subscription, t->table.schema, t->table.name, plan.sync_lsn.ToString()})
            .status();
  if (!s.ok()) {
    (void)subscriber.Exec("ROLLBACK");
    return s;
  }
  LORRY_RETURN_IF_ERROR(subscriber.Exec("COMMIT").status());
  double secs = std::chrono::duration<double>(Clock::now() - t->started).count();
  spdlog::info("sub={} table={} copied rows={} bytes={} seconds={:.2f} sync_lsn={}", plan.subscription,
               t->table.Display(), t->rows.load(), t->bytes.load(), secs, plan.sync_lsn.ToString());
  return Status::Ok();
}

class Worker {
 public:
  Worker(const CopyPlan& plan, const std::atomic<bool>& stop) : plan_(plan), stop_(stop) {}

  Status Connect() {
    LORRY_ASSIGN_OR_RETURN(provider_, pg::PgConn::Connect(plan_.provider_conninfo, CopyOptions("provider")));
    LORRY_RETURN_IF_ERROR(provider_.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
    LORRY_RETURN_IF_ERROR(
        provider_.Exec(fmt::format("SET TRANSACTION SNAPSHOT {}", pg::QuoteLiteral(plan_.snapshot)))
            .status()
            .WithContext("importing the slot's exported snapshot"));
    LORRY_ASSIGN_OR_RETURN(subscriber_, pg::PgConn::Connect(plan_.subscriber_conninfo, CopyOptions("subscriber")));
    // Copy transactions need not wait for their WAL flush: the table's move
    // out of `copying` (CompleteTable, a synchronous commit that follows)
    // flushes it, and a copy lost in a crash is redone because its table is
    // still `copying`.
    LORRY_RETURN_IF_ERROR(subscriber_.Exec("SET synchronous_commit = off").status());
    if (!subscriber_.Exec("SET session_replication_role = replica").ok())
      spdlog::warn("copy: cannot SET session_replication_role = replica; triggers and foreign keys are checked");
    return Status::Ok();
  }

  // Takes the provider table's ACCESS SHARE lock (what the COPY needs) in
  // waits of kProviderLockTimeout, each in a savepoint that keeps the
  // snapshot's transaction alive: between them the stop flag is seen and
  // whoever holds or queues for a conflicting lock is named in the log. A
  // stop's cancel ends a wait at once.
  Status LockProviderTable(const pg::QualifiedName& table) {
    // Set before the savepoint: rolling back to it keeps the setting.
    LORRY_RETURN_IF_ERROR(provider_.Exec(fmt::format("SET LOCAL lock_timeout = '{}ms'; SAVEPOINT lorry_lock",
                                                     std::chrono::milliseconds(kProviderLockTimeout).count()))
                              .status());
    auto waiting_since = Clock::now();
    Clock::time_point last_warning;
    while (true) {
      if (stop_.load()) return Status::Cancelled("copy stopped");
      auto locked = provider_.ExecParams(fmt::format("LOCK TABLE ONLY {} IN ACCESS SHARE MODE", table.Quoted()), {});
      if (locked.ok()) return provider_.Exec("RELEASE SAVEPOINT lorry_lock; RESET lock_timeout").status();
      if (provider_.last_sqlstate() != "55P03") return locked.status();  // not lock_timeout
      LORRY_RETURN_IF_ERROR(provider_.Exec("ROLLBACK TO SAVEPOINT lorry_lock").status());
      if (Clock::now() - last_warning < kLockWarningEvery) continue;
      last_warning = Clock::now();
      spdlog::warn("sub={} table={} copy has waited {:.0f} s for a lock on the provider table: {}; it waits on "
                   "(SIGTERM stops lorry)",
                   plan_.subscription, table.Display(),
                   std::chrono::duration<double>(Clock::now() - waiting_since).count(), LockHolders(table));
    }
  }

  // Who holds or waits for a lock on `table` that conflicts with ACCESS SHARE.
  std::string LockHolders(const pg::QualifiedName& table) {
    auto r = provider_.ExecParams(
        "SELECT l.pid, l.granted, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''), "
        "coalesce(a.state, '?'), coalesce(left(regexp_replace(a.query, '\\s+', ' ', 'g'), 100), ''), "
        "coalesce(date_trunc('second', now() - a.xact_start)::text, '?') "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.mode = 'AccessExclusiveLock' "
        "AND l.pid <> pg_backend_pid() ORDER BY l.granted DESC, l.pid",
        {table.Quoted()});
    if (!r.ok()) return "its holder cannot be read (" + r.status().message() + ")";
    if (r->rows() == 0) return "no holder seen (it was released meanwhile)";
    std::string out;
    for (int i = 0; i < r->rows(); ++i)
      out += fmt::format("{}pid {} {} ACCESS EXCLUSIVE (user {}, application \"{}\", {} for {}, query: {})",
                         out.empty() ? "" : "; ", r->Get(i, 0), r->GetBool(i, 1) ? "holds" : "waits for",
                         r->Get(i, 2), r->Get(i, 3), r->Get(i, 4), r->Get(i, 6), r->Get(i, 5));
    return out + fmt::format(". End it with SELECT pg_terminate_backend(pid) on the provider, or let it finish");
  }

  // Copies one unit in one subscriber transaction.
  Status Copy(const Unit& u) {
    TableCopy* t = u.copy;
    FaultPoint("copy_lock");
    LORRY_RETURN_IF_ERROR(LockProviderTable(t->table).WithContext(fmt::format("copy {}", t->table.Display())));
    std::string where;
    if (!t->row_filter.empty()) where = " WHERE (" + t->row_filter + ")";
    // Rows go into the subscriber's table of the same name, which routes
    // them to its own partitions if it has any (or holds them all).
    std::string from = "ONLY " + t->table.Quoted();
    if (!t->leaves.empty()) from = "ONLY " + t->leaves.at(u.range).Quoted();
    else if (u.range >= 0) where += (where.empty() ? " WHERE " : " AND ") + t->ranges[u.range];
    std::string format = t->binary ? "FORMAT binary" : "FORMAT text";
    LORRY_RETURN_IF_ERROR(subscriber_.Exec("BEGIN").status());
    bool freeze = false;
    if (t->freeze) {
      // COPY FREEZE needs the table truncated in the same transaction; it
      // is empty (checked when its copy began), so nothing is lost.
      LORRY_RETURN_IF_ERROR(subscriber_.Exec(fmt::format("TRUNCATE {}", t->table.Quoted())).status());
      freeze = true;
    }
    LORRY_RETURN_IF_ERROR(subscriber_.StartCopyIn(fmt::format("COPY {} ({}) FROM STDIN ({}{})", t->table.Quoted(),
                                                              t->columns, format, freeze ? ", FREEZE" : "")));
    LORRY_RETURN_IF_ERROR(provider_.StartCopyOut(
        fmt::format("COPY (SELECT {} FROM {}{}) TO STDOUT ({})", t->columns, from, where, format)));
    std::string chunk;
    int64_t messages = 0;
    while (true) {
      if (stop_.load()) {
        provider_.Cancel();
        (void)subscriber_.EndCopyIn("lorry is stopping");
        return Status::Cancelled("copy stopped");
      }
      auto more = provider_.GetCopyData(&chunk);
      if (!more.ok()) {
        (void)subscriber_.EndCopyIn("provider COPY failed");
        return more.status().WithContext(fmt::format("copy {}", t->table.Display()));
      }
      if (!*more) break;
      LORRY_RETURN_IF_ERROR(subscriber_.PutCopyData(chunk));
      messages++;
      t->bytes.fetch_add(static_cast<int64_t>(chunk.size()), std::memory_order_relaxed);
      t->rows.fetch_add(1, std::memory_order_relaxed);  // one row per message (plus header/trailer in binary)
    }
    FaultPoint("copy_range");
    LORRY_ASSIGN_OR_RETURN(auto done, subscriber_.EndCopyIn());
    if (Status fenced = Fence(plan_, subscriber_); !fenced.ok()) {
      (void)subscriber_.Exec("ROLLBACK");
      return fenced;
    }
    LORRY_RETURN_IF_ERROR(subscriber_.Exec("COMMIT").status());
    // The subscriber's own count is exact (binary COPY also sends a header
    // and a trailer message).
    t->rows.fetch_add(done.AffectedRows() - messages, std::memory_order_relaxed);
    return Status::Ok();
  }

  void Reset() {
    if (subscriber_.connected()) (void)subscriber_.Exec("ROLLBACK");
  }

  pg::PgConn& subscriber() { return subscriber_; }

 private:
  const CopyPlan& plan_;
  const std::atomic<bool>& stop_;
  pg::PgConn provider_;
  pg::PgConn subscriber_;
};

// Rebuilds deferred indexes of finished tables while other tables copy, then
// moves each table out of `copying`.
class IndexBuilder {
 public:
  IndexBuilder(const CopyPlan& plan, const std::atomic<bool>& stop) : plan_(plan), stop_(stop) {
    for (int i = 0; i < std::max(1, plan.index_jobs); ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~IndexBuilder() { Finish(); }

  void Add(const pg::QualifiedName& table) {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(table);
    cv_.notify_one();
  }
  // Waits for every queued rebuild; returns the first error.
  Status Finish() {
    {
      std::lock_guard<std::mutex> l(mu_);
      closing_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    std::lock_guard<std::mutex> l(mu_);
    return error_;
  }

 private:
  void Loop() {
    while (true) {
      pg::QualifiedName table;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty()) return;
        table = queue_.front();
        queue_.pop_front();
      }
      FaultPoint("index_rebuild");
      Status s = RebuildDeferredIndexes(plan_.subscriber_conninfo, plan_.subscription, table, 1,
                                        plan_.maintenance_work_mem, stop_);
      if (s.ok()) s = CompleteTable(plan_, table, plan_.done_state);
      if (!s.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        if (error_.ok()) error_ = s;
      }
    }
  }

  const CopyPlan& plan_;
  const std::atomic<bool>& stop_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<pg::QualifiedName> queue_;
  bool closing_ = false;
  Status error_;
  std::vector<std::thread> threads_;
};

// Writes live copy progress to lorry.tables once a second and logs it every 10 s.
class ProgressReporter {
 public:
  ProgressReporter(const CopyPlan& plan, const std::vector<std::unique_ptr<TableCopy>>& tables,
                   const std::atomic<bool>& stop)
      : plan_(plan), tables_(tables), stop_(stop), thread_([this] { Loop(); }) {}
  ~ProgressReporter() {
    done_.store(true);
    thread_.join();
  }

 private:
  void Loop() {
    auto conn = pg::PgConn::Connect(plan_.subscriber_conninfo, CopyOptions("subscriber"));
    auto started = Clock::now();
    auto last_log = started;
    while (!done_.load() && !stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (Clock::now() - last_tick_ < std::chrono::seconds(1)) continue;
      last_tick_ = Clock::now();
      int64_t rows = 0, bytes = 0, total = 0;
      int active = 0;
      for (const auto& t : tables_) {
        rows += t->rows.load();
        bytes += t->bytes.load();
        total += t->size_bytes;
        if (!t->active.load()) continue;
        active++;
        if (conn.ok())
          (void)conn->ExecParams("UPDATE lorry.tables SET rows_copied = $4, bytes_copied = $5 WHERE subscription = "
                                 "$1 AND nspname = $2 AND relname = $3 AND state = 'copying'",
                                 {plan_.subscription, t->table.schema, t->table.name, std::to_string(t->rows.load()),
                                  std::to_string(t->bytes.load())});
      }
      if (conn.ok())
        (void)conn->ExecParams("UPDATE lorry.subscriptions SET heartbeat_at = now() WHERE name = $1",
                               {plan_.subscription});
      if (Clock::now() - last_log >= std::chrono::seconds(10)) {
        last_log = Clock::now();
        double secs = std::chrono::duration<double>(Clock::now() - started).count();
        double rate = secs > 0 ? bytes / secs : 0;
        spdlog::info("sub={} copy progress rows={} bytes={} of about {} tables_active={} rate={:.1f}MB/s",
                     plan_.subscription, rows, bytes, total, active, rate / 1e6);
      }
    }
  }

  const CopyPlan& plan_;
  const std::vector<std::unique_ptr<TableCopy>>& tables_;
  const std::atomic<bool>& stop_;
  std::atomic<bool> done_{false};
  Clock::time_point last_tick_;
  std::thread thread_;
};

}  // namespace

Status CompleteTable(const CopyPlan& plan, const pg::QualifiedName& table, TableStateKind state) {
  LORRY_ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(plan.subscriber_conninfo, CopyOptions("subscriber")));
  const std::string& subscription = plan.subscription;
  LORRY_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
  Status s = Fence(plan, conn);
  if (s.ok()) s = StateStore(&conn, subscription).SetState(table, state);
  if (!s.ok()) {
    (void)conn.Exec("ROLLBACK");
    return s;
  }
  LORRY_RETURN_IF_ERROR(conn.Exec("COMMIT").status());
  spdlog::info("sub={} table={} copy complete with its indexes: {}", subscription, table.Display(),
               TableStateName(state));
  return Status::Ok();
}

std::vector<std::string> SplitByBlocks(int64_t blocks, int n) {
  n = std::max(1, n);
  if (blocks < n) n = static_cast<int>(std::max<int64_t>(1, blocks));
  std::vector<std::string> out;
  int64_t begin = 0;
  for (int i = 0; i < n; ++i) {
    if (i == n - 1) {
      out.push_back(fmt::format("ctid >= '({},0)'::tid", begin));
      break;
    }
    int64_t end = blocks * (i + 1) / n;
    out.push_back(fmt::format("ctid >= '({},0)'::tid AND ctid < '({},0)'::tid", begin, end));
    begin = end;
  }
  return out;
}

std::vector<std::string> SplitByKey(const std::string& column, int64_t min, int64_t max, int n) {
  n = std::max(1, n);
  // Width in unsigned arithmetic: max - min can overflow int64.
  uint64_t width = static_cast<uint64_t>(max) - static_cast<uint64_t>(min);
  if (width < static_cast<uint64_t>(n)) n = static_cast<int>(std::max<uint64_t>(1, width));
  std::vector<std::string> out;
  if (n == 1) return {"true"};
  int64_t prev = 0;
  for (int i = 1; i <= n; ++i) {
    if (i == n) {
      out.push_back(fmt::format("{} >= {}", column, prev));
      break;
    }
    int64_t bound = static_cast<int64_t>(static_cast<uint64_t>(min) + width / n * i);
    out.push_back(i == 1 ? fmt::format("{} < {}", column, bound)
                         : fmt::format("{} >= {} AND {} < {}", column, prev, column, bound));
    prev = bound;
  }
  return out;
}

Status ResetInterruptedCopies(pg::PgConn& subscriber, const std::string& subscription, Lsn resume_lsn) {
  // Tables whose rows are all in (copy_finished_at) at a sync LSN the stream
  // has not passed keep them: only their index rebuild or catch-up was
  // interrupted, and the daemon finishes it.
  constexpr const char* kRedo =
      "subscription = $1 AND state = 'copying' AND (copy_finished_at IS NULL OR sync_lsn IS NULL "
      "OR sync_lsn < $2::pg_lsn)";
  LORRY_ASSIGN_OR_RETURN(auto r, subscriber.ExecParams(fmt::format("SELECT nspname, relname, copy_finished_at IS "
                                                                   "NOT NULL FROM lorry.tables WHERE {}",
                                                                   kRedo),
                                                       {subscription, resume_lsn.ToString()}));
  for (int i = 0; i < r.rows(); ++i) {
    pg::QualifiedName t{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))};
    // Empty when its copy began; only lorry's copy wrote to it since.
    LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
    Status s = EmptyTable(subscriber, t);
    LORRY_RETURN_IF_ERROR(subscriber.Exec(s.ok() ? "COMMIT" : "ROLLBACK").status());
    LORRY_RETURN_IF_ERROR(s);
    if (r.GetBool(i, 2))
      spdlog::info("sub={} table={} catch-up was interrupted and the stream is past its position {}: emptied, "
                   "copying it again",
                   subscription, t.Display(), resume_lsn.ToString());
    else
      spdlog::info("sub={} table={} copy was interrupted: emptied, copying it again", subscription, t.Display());
  }
  return subscriber
      .ExecParams(fmt::format("UPDATE lorry.tables SET state = 'pending', error = NULL, copy_finished_at = NULL, "
                              "state_changed_at = now() WHERE state = 'error' AND subscription = $1 OR {}",
                              kRedo),
                  {subscription, resume_lsn.ToString()})
      .status();
}

Status CopyTables(const CopyPlan& plan, const std::vector<CopyTask>& tasks, const std::atomic<bool>& stop) {
  if (tasks.empty()) return Status::Ok();
  LORRY_ASSIGN_OR_RETURN(auto provider, pg::PgConn::Connect(plan.provider_conninfo, CopyOptions("provider")));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, pg::PgConn::Connect(plan.subscriber_conninfo, CopyOptions("subscriber")));
  LORRY_ASSIGN_OR_RETURN(auto tables, Plan(plan, tasks, provider, subscriber));
  provider = pg::PgConn();
  subscriber = pg::PgConn();

  // Every unit of work: whole tables, or the ranges of split ones.
  std::vector<Unit> units;
  for (auto& t : tables) {
    int n = static_cast<int>(t->leaves.empty() ? t->ranges.size() : t->leaves.size());
    if (n == 0) {
      t->ranges_left = 1;
      units.push_back({t.get(), -1, t->size_bytes});
    } else {
      t->ranges_left = n;
      for (int i = 0; i < n; ++i) units.push_back({t.get(), i, t->size_bytes / n});
    }
  }
  // Biggest work first, so that the last minutes are not one big table alone.
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.weight > b.weight; });

  std::mutex mu;
  size_t next = 0;
  Status fatal;
  IndexBuilder indexes(plan, stop);
  ProgressReporter reporter(plan, tables, stop);
  int jobs = std::max(1, std::min<int>(plan.jobs, static_cast<int>(units.size())));
  std::vector<std::thread> threads;
  for (int j = 0; j < jobs && !units.empty(); ++j) {
    threads.emplace_back([&] {
      Worker w(plan, stop);
      Status s = w.Connect();
      while (s.ok()) {
        const Unit* u;
        {
          std::lock_guard<std::mutex> l(mu);
          if (!fatal.ok() || next >= units.size() || stop.load()) return;
          u = &units[next++];
        }
        TableCopy* t = u->copy;
        {
          // Tables begin in the workers, in parallel; one that cannot be
          // copied (rows on the subscriber) goes to `error`, the rest go on.
          std::lock_guard<std::mutex> l(t->begin_mu);
          if (t->begun == 0) {
            s = BeginTable(plan, w.subscriber(), t);
            t->begun = s.ok() ? 1 : -1;
            if (s.kind() == Status::Kind::kPrecondition) {
              spdlog::error("sub={} table={} copy refused: {}", plan.subscription, t->table.Display(), s.message());
              s = StateStore(&w.subscriber(), plan.subscription)
                      .SetState(t->table, TableStateKind::kError, std::nullopt, s.message());
            }
            if (!s.ok()) break;
          }
          if (t->begun < 0) continue;
        }
        if (!t->active.exchange(true)) t->started = Clock::now();
        s = w.Copy(*u);
        if (s.ok() && --t->ranges_left == 0) {
          s = FinishTable(plan, w.subscriber(), t);
          t->active = false;
          if (s.ok()) indexes.Add(t->table);
        }
      }
      w.Reset();
      std::lock_guard<std::mutex> l(mu);
      if (fatal.ok()) fatal = s;
    });
  }
  for (auto& t : threads) t.join();
  Status index_status = indexes.Finish();
  if (stop.load() && fatal.ok()) return Status::Cancelled("copy stopped");
  LORRY_RETURN_IF_ERROR(fatal);
  return index_status;
}

}  // namespace lorry::sync
