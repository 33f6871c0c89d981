// Deferred indexes: record and drop before a copy, rebuild after it.
// See deferred_indexes.h for the invariants; the crash-safety argument is:
//   defer:   INSERT records, DROP            (one transaction, the copy's)
//   rebuild: lock record, CREATE, DELETE it  (one transaction per index)
// so no commit ever leaves an index neither on its table nor recorded.
#include "sync/deferred_indexes.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace lorry::sync {

namespace {

// Sets search_path for the rest of the caller's transaction and puts the old
// value back on Restore(): definitions read with an empty search_path name
// everything outside pg_catalog with its schema (as pg_dump does).
class LocalEmptySearchPath {
 public:
  explicit LocalEmptySearchPath(pg::PgConn& conn) : conn_(conn) {}
  Status Set() {
    LORRY_ASSIGN_OR_RETURN(auto old, conn_.QueryValue("SELECT pg_catalog.current_setting('search_path')"));
    old_ = old.value_or("");
    return conn_.Exec("SELECT pg_catalog.set_config('search_path', '', true)").status();
  }
  Status Restore() {
    return conn_.ExecParams("SELECT pg_catalog.set_config('search_path', $1, true)", {old_}).status();
  }

 private:
  pg::PgConn& conn_;
  std::string old_;
};

// One row per index of the table: its definitions and, when it must stay,
// why. $1 schema, $2 table.
constexpr const char* kIndexesOfTable = R"sql(
SELECT ic.relname,
       con.conname,
       con.contype,
       pg_catalog.pg_get_indexdef(i.indexrelid),
       CASE WHEN con.oid IS NOT NULL THEN pg_catalog.pg_get_constraintdef(con.oid) END,
       CASE WHEN con.condeferred THEN ' DEFERRABLE INITIALLY DEFERRED'
            WHEN con.condeferrable THEN ' DEFERRABLE' ELSE '' END,
       ts.spcname,
       CASE
         WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid)
           THEN 'it is a partition of a partitioned index'
         WHEN fk.names IS NOT NULL THEN 'foreign key ' || fk.names || ' references it'
         WHEN i.indisreplident THEN 'it is the replica identity index'
         WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.deptype = 'n'
                        AND ((d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = i.indexrelid)
                          OR (con.oid IS NOT NULL AND d.refclassid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                              AND d.refobjid = con.oid)))
           THEN 'other objects depend on it'
         WHEN NOT (i.indisvalid AND i.indisready AND i.indislive) THEN 'it is not valid'
         WHEN i.indisclustered THEN 'the table is clustered on it'
         WHEN pg_catalog.obj_description(i.indexrelid, 'pg_class') IS NOT NULL
           OR (con.oid IS NOT NULL AND pg_catalog.obj_description(con.oid, 'pg_constraint') IS NOT NULL)
           THEN 'it has a comment'
         WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = i.indexrelid AND COALESCE(a.attstattarget, -1) <> -1)
           THEN 'it has a statistics target'
         WHEN con.oid IS NOT NULL AND con.conname <> ic.relname THEN 'its constraint and index names differ'
         WHEN con.contype = 'x' AND ic.reloptions IS NOT NULL
           THEN 'it is an exclusion constraint with storage parameters'
       END
FROM pg_catalog.pg_class t
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace
LEFT JOIN pg_catalog.pg_constraint con
       ON con.conindid = i.indexrelid AND con.conrelid = t.oid AND con.contype IN ('p', 'u', 'x')
LEFT JOIN LATERAL (
       SELECT pg_catalog.string_agg(f.conrelid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(f.conname),
                                    ', ') AS names
       FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid) fk ON true
WHERE n.nspname = $1 AND t.relname = $2
ORDER BY ic.relname
)sql";

constexpr const char* kTableOid =
    "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relname = $2";

// The statements that give back index `d` exactly, run in one transaction:
// - a plain index: its pg_get_indexdef;
// - a PRIMARY KEY / UNIQUE constraint: its index (pg_get_indexdef keeps the
//   storage parameters, INCLUDE and NULLS NOT DISTINCT that
//   pg_get_constraintdef leaves out), then ADD CONSTRAINT ... USING INDEX,
//   which keeps the index name and works for every such index (plain btree
//   columns, default ordering, no predicate);
// - an EXCLUDE constraint: ADD CONSTRAINT with its pg_get_constraintdef (one
//   with storage parameters is not deferred).
// pg_get_indexdef never names the tablespace, so a SET LOCAL default_tablespace
// comes first when the index is not in the database's default one.
std::string Definition(const DeferredIndex& d, std::string_view contype, std::string_view indexdef,
                       std::string_view condef, std::string_view deferrable,
                       const std::optional<std::string>& tablespace) {
  std::string out;
  if (tablespace) out = fmt::format("SET LOCAL default_tablespace = {}; ", pg::QuoteIdent(*tablespace));
  if (contype.empty()) return out + std::string(indexdef);
  std::string add = fmt::format("ALTER TABLE {} ADD CONSTRAINT {} ", d.table.Quoted(), pg::QuoteIdent(d.constraint_name));
  if (contype == "x") return out + add + std::string(condef);
  return out + fmt::format("{}; {}{} USING INDEX {}{}", indexdef, add, contype == "p" ? "PRIMARY KEY" : "UNIQUE",
                           pg::QuoteIdent(d.index_name), deferrable);
}

std::string DropStatement(const DeferredIndex& d) {
  if (!d.constraint_name.empty())
    return fmt::format("ALTER TABLE {} DROP CONSTRAINT {}", d.table.Quoted(), pg::QuoteIdent(d.constraint_name));
  return fmt::format("DROP INDEX {}", pg::QualifiedName{d.table.schema, d.index_name}.Quoted());
}

// Shows, before anything is dropped, that lorry can give the indexes back:
// drops them and runs their definitions as the rebuild will (same session
// user, empty search_path), in a savepoint rolled back at once. The table
// is empty (a copy begins only into an empty table), so the builds cost
// nothing. A refusal (no ownership of the table, no CREATE on its schema or
// a tablespace) is returned; nothing has changed then.
Status TryRebuild(pg::PgConn& subscriber, const std::vector<DeferredIndex>& deferred) {
  LORRY_RETURN_IF_ERROR(subscriber.Exec("SAVEPOINT lorry_rebuild_check").status());
  auto tried = [&]() -> Status {
    for (const auto& d : deferred) LORRY_RETURN_IF_ERROR(subscriber.Exec(DropStatement(d)).status());
    LORRY_RETURN_IF_ERROR(subscriber.Exec("SELECT pg_catalog.set_config('search_path', '', true)").status());
    for (const auto& d : deferred) LORRY_RETURN_IF_ERROR(subscriber.Exec(d.definition).status());
    return Status::Ok();
  }();
  // Undoes the drops, the builds and the search_path alike.
  LORRY_RETURN_IF_ERROR(subscriber.Exec("ROLLBACK TO SAVEPOINT lorry_rebuild_check; "
                                        "RELEASE SAVEPOINT lorry_rebuild_check")
                            .status());
  return tried;
}

pg::Param OptionalParam(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace

Result<std::vector<DeferredIndex>> DeferIndexes(pg::PgConn& subscriber, const std::string& subscription,
                                                const pg::QualifiedName& table) {
  if (table.schema.empty())
    return Status::Internal(fmt::format("DeferIndexes needs a schema-qualified table, got {}", table.Display()));
  auto context = [&](const Status& s) { return s.WithContext(fmt::format("deferring indexes of {}", table.Display())); };

  LORRY_ASSIGN_OR_RETURN(auto t, subscriber.ExecParams(kTableOid, {table.schema, table.name}));
  if (t.rows() == 0)
    return Status::Precondition(fmt::format("table {} does not exist on the subscriber", table.Display()));
  if (t.Get(0, 1) == "p") {
    spdlog::info("sub={} table={} indexes kept reason=\"the table is partitioned\"", subscription, table.Display());
    return std::vector<DeferredIndex>{};
  }

  LocalEmptySearchPath search_path(subscriber);
  if (Status s = search_path.Set(); !s.ok()) return context(s);
  auto rows = subscriber.ExecParams(kIndexesOfTable, {table.schema, table.name});
  if (!rows.ok()) return context(rows.status());
  if (Status s = search_path.Restore(); !s.ok()) return context(s);

  std::vector<DeferredIndex> deferred;
  for (int r = 0; r < rows->rows(); ++r) {
    std::string index_name(rows->Get(r, 0));
    if (!rows->IsNull(r, 7)) {
      spdlog::info("sub={} table={} index={} kept reason=\"{}\"", subscription, table.Display(),
                   pg::QuoteIdentIfNeeded(index_name), rows->Get(r, 7));
      continue;
    }
    DeferredIndex d{table, index_name, std::string(rows->Get(r, 1)), ""};
    d.definition = Definition(d, rows->Get(r, 2), rows->Get(r, 3), rows->Get(r, 4), rows->Get(r, 5),
                              rows->GetOptional(r, 6));
    deferred.push_back(std::move(d));
  }

  if (!deferred.empty()) {
    if (Status can = TryRebuild(subscriber, deferred); !can.ok()) {
      if (can.kind() == Status::Kind::kConnection) return context(can);
      auto user = subscriber.QueryValue("SELECT current_user");
      std::string who = user.ok() && user->has_value() ? pg::QuoteIdent(**user) : "<lorry's user>";
      spdlog::warn("sub={} table={} indexes kept during the copy (slower): lorry could not create them again "
                   "afterwards: {}. Fix: let lorry's subscriber user own the table and create in its schema: "
                   "ALTER TABLE {} OWNER TO {}; GRANT CREATE ON SCHEMA {} TO {};",
                   subscription, table.Display(), can.message(), table.Quoted(), who, pg::QuoteIdent(table.schema),
                   who);
      return std::vector<DeferredIndex>{};
    }
  }

  // Records first: whatever happens next, a dropped index is recorded.
  for (const auto& d : deferred) {
    auto ins = subscriber.ExecParams(
        "INSERT INTO lorry.deferred_indexes (subscription, nspname, relname, index_name, constraint_name, definition) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subscription, nspname, relname, index_name) "
        "DO UPDATE SET constraint_name = EXCLUDED.constraint_name, definition = EXCLUDED.definition, "
        "deferred_at = EXCLUDED.deferred_at",
        {subscription, table.schema, table.name, d.index_name, OptionalParam(d.constraint_name), d.definition});
    if (!ins.ok()) return context(ins.status());
  }
  for (const auto& d : deferred) {
    if (auto r = subscriber.Exec(DropStatement(d)); !r.ok()) return context(r.status());
    spdlog::info("sub={} table={} index={} deferred", subscription, table.Display(),
                 pg::QuoteIdentIfNeeded(d.index_name));
  }
  return deferred;
}

Result<int64_t> CountDeferredIndexes(pg::PgConn& subscriber, const std::string& subscription,
                                     const std::optional<pg::QualifiedName>& table) {
  pg::Param schema, name;
  if (table) {
    schema = table->schema;
    name = table->name;
  }
  LORRY_ASSIGN_OR_RETURN(auto v, subscriber.QueryValue(
                                     "SELECT count(*) FROM lorry.deferred_indexes WHERE subscription = $1 "
                                     "AND ($2::text IS NULL OR (nspname = $2 AND relname = $3))",
                                     {subscription, schema, name}));
  return v ? std::stoll(*v) : 0;
}

namespace {

// Records to rebuild: biggest tables first (they take longest), and within a
// table the constraints first (they lock the table exclusively).
Result<std::vector<DeferredIndex>> LoadRecords(pg::PgConn& conn, const std::string& subscription,
                                               const std::optional<pg::QualifiedName>& table) {
  pg::Param schema, name;
  if (table) {
    schema = table->schema;
    name = table->name;
  }
  LORRY_ASSIGN_OR_RETURN(auto r, conn.ExecParams(R"sql(
SELECT d.nspname, d.relname, d.index_name, COALESCE(d.constraint_name, ''), d.definition
FROM lorry.deferred_indexes d
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = d.nspname
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = d.relname
WHERE d.subscription = $1 AND ($2::text IS NULL OR (d.nspname = $2 AND d.relname = $3))
ORDER BY COALESCE(pg_catalog.pg_relation_size(c.oid), 0) DESC, d.nspname, d.relname,
         d.constraint_name IS NULL, d.index_name
)sql",
                                                 {subscription, schema, name}));
  std::vector<DeferredIndex> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))},
                   std::string(r.Get(i, 2)),
                   std::string(r.Get(i, 3)),
                   std::string(r.Get(i, 4))});
  return out;
}

enum class BuildOutcome { kRebuilt, kAlreadyPresent, kTableGone, kRecordGone };

// Runs the rebuilds of a list of records on `jobs` threads. Builds on one
// table are scheduled so that they never wait for each other's locks: a
// constraint (ACCESS EXCLUSIVE) runs alone on its table, plain indexes
// (SHARE) run together.
class Rebuilder {
 public:
  Rebuilder(const std::string& conninfo, const std::string& subscription, const std::string& maintenance_work_mem,
            const std::atomic<bool>& stop, IndexProgress* progress, std::vector<DeferredIndex> items)
      : conninfo_(conninfo),
        subscription_(subscription),
        maintenance_work_mem_(maintenance_work_mem),
        stop_(stop),
        progress_(progress),
        items_(std::move(items)),
        taken_(items_.size(), false) {}

  Status Run(int jobs) {
    int n = std::max(1, std::min<int>(jobs, static_cast<int>(items_.size())));
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> l(mu_);
      workers_running_ = n;
    }
    for (int j = 0; j < n; ++j) threads.emplace_back([this] { WorkerMain(); });
    // Watches `stop` and cancels the builds in progress; a cancel that
    // arrives between two statements is ignored by the server, so repeat it.
    {
      std::unique_lock<std::mutex> l(mu_);
      while (workers_running_ > 0) {
        cv_.wait_for(l, std::chrono::milliseconds(100));
        if (stop_.load())
          for (pg::PgConn* c : active_) c->Cancel();
      }
    }
    for (auto& t : threads) t.join();
    size_t left = items_.size() - finished_;
    if (!fatal_.ok()) return fatal_.WithContext(fmt::format("{} deferred indexes not rebuilt", left));
    if (!first_error_.ok()) return first_error_.WithContext(fmt::format("{} deferred indexes not rebuilt", left));
    if (left > 0) return Status::Cancelled(fmt::format("index rebuild stopped; {} deferred indexes left", left));
    return Status::Ok();
  }

 private:
  struct TableBuilds {
    int indexes = 0;
    bool constraint = false;
  };

  void WorkerMain() {
    pg::PgConn conn;
    Status s = Connect(&conn);
    if (s.ok()) {
      {
        std::lock_guard<std::mutex> l(mu_);
        active_.push_back(&conn);
      }
      while (auto i = TakeNext()) Finish(*i, Build(conn, items_[*i]));
    }
    std::lock_guard<std::mutex> l(mu_);
    if (!s.ok() && fatal_.ok()) fatal_ = s;
    std::erase(active_, &conn);
    workers_running_--;
    cv_.notify_all();
  }

  Status Connect(pg::PgConn* conn) {
    LORRY_ASSIGN_OR_RETURN(*conn, pg::PgConn::Connect(conninfo_, {{{"application_name", "lorry_index_build"}},
                                                                  "subscriber"}));
    // Definitions were read with an empty search_path; they are run with one too.
    return conn
        ->ExecParams("SELECT pg_catalog.set_config('maintenance_work_mem', $1, false), "
                     "pg_catalog.set_config('search_path', '', false), "
                     "pg_catalog.set_config('statement_timeout', '0', false)",
                     {maintenance_work_mem_})
        .status()
        .WithContext(fmt::format("setting maintenance_work_mem = '{}' for index builds", maintenance_work_mem_));
  }

  // The next record whose build can start now; nullopt when there is no more
  // work (all taken, stop requested or a connection lost).
  std::optional<size_t> TakeNext() {
    std::unique_lock<std::mutex> l(mu_);
    while (true) {
      if (stop_.load() || !fatal_.ok()) return std::nullopt;
      bool any_left = false;
      for (size_t i = 0; i < items_.size(); ++i) {
        if (taken_[i]) continue;
        any_left = true;
        TableBuilds& tb = running_[items_[i].table];
        bool is_constraint = !items_[i].constraint_name.empty();
        if (tb.constraint || (is_constraint && tb.indexes > 0)) continue;
        taken_[i] = true;
        if (is_constraint) tb.constraint = true;
        else tb.indexes++;
        return i;
      }
      if (!any_left) return std::nullopt;
      cv_.wait_for(l, std::chrono::milliseconds(100));
    }
  }

  void Finish(size_t i, Result<BuildOutcome> outcome) {
    std::lock_guard<std::mutex> l(mu_);
    const DeferredIndex& d = items_[i];
    TableBuilds& tb = running_[d.table];
    if (d.constraint_name.empty()) tb.indexes--;
    else tb.constraint = false;
    cv_.notify_all();
    if (outcome.ok()) {
      finished_++;
      if (progress_) progress_->done.fetch_add(1);
      return;
    }
    Status s = outcome.status();
    if (stop_.load()) return;  // cancelled on request: the record stays for the next run
    if (s.kind() == Status::Kind::kConnection) {
      if (fatal_.ok()) fatal_ = s;
      return;
    }
    spdlog::error("sub={} table={} index={} rebuild failed (its record is kept): {}", subscription_,
                  d.table.Display(), pg::QuoteIdentIfNeeded(d.index_name), s.message());
    if (first_error_.ok()) first_error_ = s;
  }

  // One record in one transaction: lock the record, create, delete the record.
  Result<BuildOutcome> Build(pg::PgConn& conn, const DeferredIndex& d) {
    auto started = std::chrono::steady_clock::now();
    auto result = BuildInTransaction(conn, d);
    if (!result.ok()) {
      std::string sqlstate = conn.last_sqlstate();
      // Best effort: a lost connection is retried anyway.
      if (conn.Exec("ROLLBACK").ok() && !stop_.load() && result.status().kind() != Status::Kind::kConnection)
        RecordFailure(conn, d, result.status(), sqlstate);
      return result.status().WithContext(
          fmt::format("rebuilding index {} of {}", pg::QuoteIdentIfNeeded(d.index_name), d.table.Display()));
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::string sub_table_index = fmt::format("sub={} table={} index={}", subscription_, d.table.Display(),
                                              pg::QuoteIdentIfNeeded(d.index_name));
    switch (*result) {
      case BuildOutcome::kRebuilt:
        spdlog::info("{} rebuilt seconds={:.2f}", sub_table_index, secs);
        break;
      case BuildOutcome::kAlreadyPresent:
        spdlog::info("{} already present; record removed", sub_table_index);
        break;
      case BuildOutcome::kTableGone:
        spdlog::warn("{} table no longer exists; record removed", sub_table_index);
        break;
      case BuildOutcome::kRecordGone:
        spdlog::info("{} rebuilt by another session", sub_table_index);
        break;
    }
    return result;
  }

  // Kept on the record until a rebuild succeeds (the record goes then), so
  // that `lorry status` shows it between the retries, with the fix.
  void RecordFailure(pg::PgConn& conn, const DeferredIndex& d, const Status& failure, const std::string& sqlstate) {
    std::string text = failure.message();
    if (sqlstate == "42501") {  // insufficient_privilege
      auto user = conn.QueryValue("SELECT current_user");
      std::string who = user.ok() && user->has_value() ? pg::QuoteIdent(**user) : "<lorry's user>";
      text += fmt::format(". Fix: ALTER TABLE {} OWNER TO {}; GRANT CREATE ON SCHEMA {} TO {}; (lorry retries)",
                          d.table.Quoted(), who, pg::QuoteIdent(d.table.schema), who);
    }
    auto r = conn.ExecParams("UPDATE lorry.deferred_indexes SET last_error = $5, failed_at = now() "
                             "WHERE subscription = $1 AND nspname = $2 AND relname = $3 AND index_name = $4",
                             {subscription_, d.table.schema, d.table.name, d.index_name, text});
    if (!r.ok()) spdlog::warn("sub={} cannot record the failed rebuild: {}", subscription_, r.status().message());
  }

  Result<BuildOutcome> BuildInTransaction(pg::PgConn& conn, const DeferredIndex& d) {
    std::vector<pg::Param> key{subscription_, d.table.schema, d.table.name, d.index_name};
    LORRY_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
    // The row lock makes concurrent rebuilders (two lorry processes) take
    // turns; the second finds the record gone.
    LORRY_ASSIGN_OR_RETURN(auto definition,
                           conn.QueryValue("SELECT definition FROM lorry.deferred_indexes WHERE subscription = $1 "
                                           "AND nspname = $2 AND relname = $3 AND index_name = $4 FOR UPDATE",
                                           key));
    if (!definition) {
      LORRY_RETURN_IF_ERROR(conn.Exec("COMMIT").status());
      return BuildOutcome::kRecordGone;
    }
    LORRY_ASSIGN_OR_RETURN(auto table, conn.ExecParams(kTableOid, {d.table.schema, d.table.name}));
    BuildOutcome outcome = BuildOutcome::kRebuilt;
    if (table.rows() == 0) {
      outcome = BuildOutcome::kTableGone;
    } else {
      std::string oid(table.Get(0, 0));
      LORRY_ASSIGN_OR_RETURN(
          auto present,
          d.constraint_name.empty()
              ? conn.QueryValue("SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                                "WHERE i.indrelid = $1::pg_catalog.oid AND c.relname = $2",
                                {oid, d.index_name})
              : conn.QueryValue("SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = $1::pg_catalog.oid "
                                "AND conname = $2",
                                {oid, d.constraint_name}));
      if (present) outcome = BuildOutcome::kAlreadyPresent;
    }
    if (outcome == BuildOutcome::kRebuilt) LORRY_RETURN_IF_ERROR(conn.Exec(*definition).status());
    LORRY_RETURN_IF_ERROR(conn.ExecParams("DELETE FROM lorry.deferred_indexes WHERE subscription = $1 "
                                          "AND nspname = $2 AND relname = $3 AND index_name = $4",
                                          key)
                              .status());
    LORRY_RETURN_IF_ERROR(conn.Exec("COMMIT").status());
    return outcome;
  }

  const std::string& conninfo_;
  const std::string& subscription_;
  const std::string& maintenance_work_mem_;
  const std::atomic<bool>& stop_;
  IndexProgress* progress_;
  const std::vector<DeferredIndex> items_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> taken_;                         // guarded by mu_
  std::map<pg::QualifiedName, TableBuilds> running_;  // guarded by mu_
  std::vector<pg::PgConn*> active_;                 // connections that may be cancelled; guarded by mu_
  int workers_running_ = 0;                         // guarded by mu_
  size_t finished_ = 0;                             // guarded by mu_
  Status fatal_;        // a lost connection: no new builds; guarded by mu_
  Status first_error_;  // a build failed, the others go on; guarded by mu_
};

}  // namespace

Status RebuildDeferredIndexes(const std::string& subscriber_conninfo, const std::string& subscription,
                              const std::optional<pg::QualifiedName>& table, int jobs,
                              const std::string& maintenance_work_mem, const std::atomic<bool>& stop,
                              IndexProgress* progress) {
  std::vector<DeferredIndex> items;
  {
    LORRY_ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(subscriber_conninfo,
                                                          {{{"application_name", "lorry_index_build"}}, "subscriber"}));
    LORRY_ASSIGN_OR_RETURN(items, LoadRecords(conn, subscription, table));
  }
  if (progress) progress->total.fetch_add(static_cast<int>(items.size()));
  if (items.empty()) return Status::Ok();
  spdlog::info("sub={} rebuilding deferred indexes count={} jobs={} maintenance_work_mem={}", subscription,
               items.size(), std::max(1, std::min<int>(jobs, static_cast<int>(items.size()))), maintenance_work_mem);
  return Rebuilder(subscriber_conninfo, subscription, maintenance_work_mem, stop, progress, std::move(items))
      .Run(jobs);
}

}  // namespace lorry::sync
