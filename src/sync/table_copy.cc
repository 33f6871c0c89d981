#include "sync/table_copy.h"

#include <algorithm>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace lorry::sync {

namespace {

// Columns copied: the provider's non-generated columns (all must exist on the
// subscriber; `lorry add` checked, and the applier checks again).
std::string ColumnList(const catalog::TableInfo& info) {
  std::string out;
  for (const auto& c : info.columns) {
    if (c.generated) continue;
    if (!out.empty()) out += ", ";
    out += pg::QuoteIdent(c.name);
  }
  return out;
}

class Worker {
 public:
  Worker(const CopyPlan& plan, const std::atomic<bool>& stop) : plan_(plan), stop_(stop) {}

  Status Connect() {
    pg::ConnectOptions po{{{"options", pg::kTextSessionOptions}, {"application_name", "lorry_copy"}}, "provider"};
    LORRY_ASSIGN_OR_RETURN(provider_, pg::PgConn::Connect(plan_.provider_conninfo, po));
    LORRY_RETURN_IF_ERROR(provider_.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
    LORRY_RETURN_IF_ERROR(
        provider_.Exec(fmt::format("SET TRANSACTION SNAPSHOT {}", pg::QuoteLiteral(plan_.snapshot)))
            .status()
            .WithContext("importing the slot's exported snapshot"));
    pg::ConnectOptions so{{{"options", pg::kTextSessionOptions}, {"application_name", "lorry_copy"}}, "subscriber"};
    LORRY_ASSIGN_OR_RETURN(subscriber_, pg::PgConn::Connect(plan_.subscriber_conninfo, so));
    if (!subscriber_.Exec("SET session_replication_role = replica").ok())
      spdlog::warn("copy: cannot SET session_replication_role = replica; triggers and foreign keys are checked");
    return Status::Ok();
  }

  // Copies one table in one subscriber transaction that also records its new state.
  Status Copy(const CopyTask& task) {
    auto started = std::chrono::steady_clock::now();
    StateStore state(&subscriber_, plan_.subscription);
    LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider_, task.table));
    if (!info) return Status::Precondition(fmt::format("table {} no longer exists on the provider", task.table.Display()));
    std::string columns = ColumnList(*info);

    LORRY_RETURN_IF_ERROR(subscriber_.Exec("BEGIN").status());
    LORRY_ASSIGN_OR_RETURN(auto has_rows,
                           subscriber_.QueryValue(fmt::format("SELECT 1 FROM {} LIMIT 1", task.table.Quoted())));
    if (has_rows)
      return Status::Precondition(fmt::format(
          "table {} already has rows on the subscriber; lorry copies only into empty tables. Empty it "
          "(TRUNCATE {}) and lorry copies it on its next start, or `lorry remove` it",
          task.table.Display(), task.table.Quoted()));
    LORRY_RETURN_IF_ERROR(
        subscriber_.StartCopyIn(fmt::format("COPY {} ({}) FROM STDIN", task.table.Quoted(), columns)));
    LORRY_RETURN_IF_ERROR(
        provider_.StartCopyOut(fmt::format("COPY {} ({}) TO STDOUT", task.table.Quoted(), columns)));
    std::string chunk;
    int64_t rows = 0, bytes = 0;
    while (true) {
      if (stop_.load()) {
        provider_.Cancel();
        (void)subscriber_.EndCopyIn("lorry is stopping");
        return Status::Cancelled("copy stopped");
      }
      auto more = provider_.GetCopyData(&chunk);
      if (!more.ok()) {
        (void)subscriber_.EndCopyIn("provider COPY failed");
        return more.status();
      }
      if (!*more) break;
      LORRY_RETURN_IF_ERROR(subscriber_.PutCopyData(chunk));
      rows++;  // text COPY sends one row per message
      bytes += static_cast<int64_t>(chunk.size());
      if (task.progress) {
        task.progress->rows.store(rows, std::memory_order_relaxed);
        task.progress->bytes.store(bytes, std::memory_order_relaxed);
      }
    }
    LORRY_RETURN_IF_ERROR(subscriber_.EndCopyIn().status());
    LORRY_RETURN_IF_ERROR(state.SetCopyProgress(task.table, rows, bytes));
    LORRY_RETURN_IF_ERROR(state.SetState(task.table, plan_.done_state, plan_.sync_lsn));
    LORRY_RETURN_IF_ERROR(subscriber_.Exec("COMMIT").status());
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("sub={} table={} copied rows={} bytes={} seconds={:.2f} state={} sync_lsn={}", plan_.subscription,
                 task.table.Display(), rows, bytes, secs, TableStateName(plan_.done_state), plan_.sync_lsn.ToString());
    return Status::Ok();
  }

  // After a failed Copy: leave the subscriber connection usable.
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

}  // namespace

Status CopyTables(const CopyPlan& plan, std::vector<CopyTask> tasks, const std::atomic<bool>& stop) {
  std::sort(tasks.begin(), tasks.end(),
            [](const CopyTask& a, const CopyTask& b) { return a.size_estimate > b.size_estimate; });
  std::mutex mu;
  size_t next = 0;
  Status fatal;  // the first error that aborts the whole copy
  int jobs = std::max(1, std::min<int>(plan.jobs, static_cast<int>(tasks.size())));
  std::vector<std::thread> threads;
  for (int j = 0; j < jobs; ++j) {
    threads.emplace_back([&] {
      Worker w(plan, stop);
      Status s = w.Connect();
      if (!s.ok()) {
        std::lock_guard<std::mutex> l(mu);
        if (fatal.ok()) fatal = s;
        return;
      }
      while (true) {
        const CopyTask* task;
        {
          std::lock_guard<std::mutex> l(mu);
          if (!fatal.ok() || next >= tasks.size() || stop.load()) return;
          task = &tasks[next++];
        }
        s = w.Copy(*task);
        if (s.ok()) continue;
        w.Reset();
        if (s.kind() == Status::Kind::kPrecondition) {
          // This table is broken, the others may be fine: record and go on.
          std::string why = s.message();
          spdlog::error("sub={} table={} copy failed: {}", plan.subscription, task->table.Display(), why);
          StateStore state(&w.subscriber(), plan.subscription);
          Status rs = state.SetState(task->table, TableStateKind::kError, std::nullopt, "copy failed: " + why);
          if (rs.ok()) continue;
          s = rs;
        }
        std::lock_guard<std::mutex> l(mu);
        if (fatal.ok()) fatal = s;
        return;
      }
    });
  }
  for (auto& t : threads) t.join();
  if (stop.load() && fatal.ok()) return Status::Cancelled("copy stopped");
  return fatal;
}

}  // namespace lorry::sync
