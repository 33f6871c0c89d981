// `lorry compare [--rows] [--jobs N] [TABLE...]`: both sides' tables compared
// at one consistent point, inside the servers.
//
// The point: a temporary slot's exported snapshot on the provider (it sees
// exactly the transactions committed before its consistent point L), and on
// the subscriber a snapshot exported while `lorry run` holds with exactly
// those transactions applied (state/compare_hold.h). Each side's --jobs
// sessions import their side's snapshot, so all of them read the same data.
// The hold lasts only until the subscriber's snapshot is exported; the
// hashing runs after replication has gone on.
//
// Without a running `lorry run` compare refuses: the subscriber is then at
// whatever point the last run stopped, which no provider snapshot can be
// made to match without applying the changes in between (which is run's job).
//
// Tables are compared when `ready`, or `catching_up` from a copy taken
// before L (then everything up to L is in). Others are reported with their
// state, not as differences.
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <ostream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "catalog/catalog.h"
#include "pg/replication_conn.h"
#include "schema/table_hash.h"
#include "state/compare_hold.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

constexpr size_t kMaxRowsListed = 1000;

struct TableResult {
  pg::QualifiedName name;
  std::string skipped;  // a state other than compared, e.g. "copying"
  bool compared = false;
  schema::TableSum provider, subscriber;
  std::vector<std::string> notes;
  bool narrowed = false;
  bool no_key = false;
  std::vector<schema::RowDifference> rows;
  bool more_rows = false;
  Status error;

  bool differs() const { return compared && !(provider == subscriber); }
};

struct Sessions {
  std::vector<pg::PgConn> provider, subscriber;
};

Result<pg::PgConn> CompareSession(const std::string& conninfo, const char* role) {
  // Both sides print values alike: the rows' text forms are what is hashed.
  std::string options = std::string(pg::kTextSessionOptions) + " -c TimeZone=UTC";
  return pg::PgConn::Connect(conninfo, {{{"options", options}, {"application_name", "lorry_compare"}}, role});
}

Status BeginAt(pg::PgConn& conn, const std::string& snapshot) {
  LORRY_RETURN_IF_ERROR(conn.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
  return conn.Exec("SET TRANSACTION SNAPSHOT " + pg::QuoteLiteral(snapshot)).status();
}

// Takes both snapshots (see the top of the file); returns L.
Result<Lsn> TakeSnapshots(const Config& config, pg::PgConn& control, Sessions& s, int timeout_seconds) {
  auto names = SubscriptionNames::For(config.name);
  HoldRequest hold(&control, config.name);
  LORRY_ASSIGN_OR_RETURN(Lsn first, hold.HoldAt(Lsn(), std::chrono::seconds(timeout_seconds)));
  Lsn point;
  {
    LORRY_ASSIGN_OR_RETURN(auto repl, pg::ReplicationConn::Connect(config.provider, "provider"));
    LORRY_ASSIGN_OR_RETURN(auto slot, repl.CreateSlot(fmt::format("{}_compare_{}", names.slot, getpid()), true));
    point = slot.consistent_point;
    for (auto& c : s.provider) LORRY_RETURN_IF_ERROR(BeginAt(c, slot.snapshot));
  }  // the temporary slot goes with its connection
  if (point < first)
    return Status::Internal(fmt::format("compare: the slot's point {} is before what run applied ({})",
                                        point.ToString(), first.ToString()));
  LORRY_RETURN_IF_ERROR(hold.HoldAt(point, std::chrono::seconds(timeout_seconds)).status());
  LORRY_RETURN_IF_ERROR(s.subscriber[0].Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
  LORRY_ASSIGN_OR_RETURN(auto snap, s.subscriber[0].QueryValue("SELECT pg_export_snapshot()"));
  for (size_t i = 1; i < s.subscriber.size(); ++i) LORRY_RETURN_IF_ERROR(BeginAt(s.subscriber[i], snap.value_or("")));
  LORRY_RETURN_IF_ERROR(hold.Release());
  return point;
}

// The tables to compare, with the state each is in at the snapshot.
Result<std::vector<TableResult>> PlanTables(pg::PgConn& provider, pg::PgConn& subscriber, const Config& config,
                                            const std::vector<std::string>& named, Lsn point) {
  LORRY_ASSIGN_OR_RETURN(auto states, StateStore(&subscriber, config.name).ListTables());
  std::vector<TableResult> out;
  auto plan = [&](const TableState& t) {
    TableResult r;
    r.name = t.name;
    bool caught_up = t.state == TableStateKind::kCatchingUp && t.sync_lsn && *t.sync_lsn <= point;
    if (t.state != TableStateKind::kReady && !caught_up) r.skipped = TableStateName(t.state);
    out.push_back(std::move(r));
  };
  for (const auto& text : named) {
    LORRY_ASSIGN_OR_RETURN(auto name, pg::ParseQualifiedName(text));
    const TableState* found = nullptr;
    for (const auto& t : states)
      if (t.name.name == name.name && (name.schema.empty() ? !found : t.name.schema == name.schema)) found = &t;
    if (found == nullptr && name.schema.empty()) {
      LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, name));
      if (info)
        for (const auto& t : states)
          if (t.name == info->name) found = &t;
    }
    if (found == nullptr)
      return Status::Usage(fmt::format("table {} is not replicated by subscription \"{}\"", name.Display(), config.name));
    plan(*found);
  }
  if (named.empty())
    for (const auto& t : states) plan(t);
  return out;
}

Status CompareOne(pg::PgConn& provider, pg::PgConn& subscriber, bool rows, TableResult* r) {
  LORRY_ASSIGN_OR_RETURN(auto prov, catalog::LookupTable(provider, r->name));
  LORRY_ASSIGN_OR_RETURN(auto sub, catalog::LookupTable(subscriber, r->name));
  if (!prov || !sub) {
    r->skipped = !prov ? "missing on the provider" : "missing on the subscriber";
    return Status::Ok();
  }
  LORRY_ASSIGN_OR_RETURN(auto spec, schema::MakeHashSpec(provider, *prov, *sub, &r->notes));
  LORRY_ASSIGN_OR_RETURN(r->provider, schema::SumTable(provider, spec, true));
  LORRY_ASSIGN_OR_RETURN(r->subscriber, schema::SumTable(subscriber, spec, false));
  r->compared = true;
  if (!rows || !r->differs()) return Status::Ok();
  if (spec.key.empty()) {
    r->no_key = true;
    return Status::Ok();
  }
  LORRY_ASSIGN_OR_RETURN(r->rows, schema::NarrowRows(provider, subscriber, spec, kMaxRowsListed, &r->more_rows));
  r->narrowed = true;
  return Status::Ok();
}

std::string Difference(const TableResult& r) {
  if (r.provider.rows != r.subscriber.rows)
    return fmt::format("differs: {} rows on the provider, {} on the subscriber", r.provider.rows, r.subscriber.rows);
  return fmt::format("differs: same row count ({}), different content", r.provider.rows);
}

void PrintHuman(const std::vector<TableResult>& results, Lsn point, std::ostream& out) {
  for (const auto& r : results) {
    std::string line = r.name.Display() + ": ";
    if (!r.error.ok())
      line += "error: " + r.error.message();
    else if (!r.skipped.empty())
      line += r.skipped + " (not compared)";
    else if (!r.differs())
      line += fmt::format("ok ({} rows)", r.provider.rows);
    else
      line += Difference(r);
    out << line << "\n";
    for (const auto& n : r.notes) out << "  note: " << n << "\n";
    if (r.no_key) out << "  rows can't be narrowed down: the table has no primary key or replica identity index\n";
    for (const auto& d : r.rows) out << "  " << d.key << ": " << d.what << "\n";
    if (r.more_rows) out << fmt::format("  ... (only the first {} differing keys are listed)\n", r.rows.size());
  }
  out << fmt::format("compared at provider LSN {}\n", point.ToString());
}

void PrintJson(const std::vector<TableResult>& results, Lsn point, std::ostream& out) {
  auto tables = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json j = {{"table", r.name.Display()}};
    if (!r.error.ok()) {
      j["result"] = "error";
      j["error"] = r.error.message();
    } else if (!r.skipped.empty()) {
      j["result"] = r.skipped;
    } else {
      j["result"] = r.differs() ? "differs" : "ok";
      j["provider"] = {{"rows", r.provider.rows}, {"hash", r.provider.hash}};
      j["subscriber"] = {{"rows", r.subscriber.rows}, {"hash", r.subscriber.hash}};
    }
    if (!r.notes.empty()) j["notes"] = r.notes;
    if (r.no_key) j["narrowed"] = "no key";
    if (r.narrowed) {
      auto rows = nlohmann::json::array();
      for (const auto& d : r.rows) rows.push_back({{"key", d.key}, {"difference", d.what}});
      j["rows"] = rows;
      j["rows_truncated"] = r.more_rows;
    }
    tables.push_back(j);
  }
  out << nlohmann::json{{"lsn", point.ToString()}, {"tables", tables}}.dump(2) << "\n";
}

}  // namespace

Status Compare(const Config& config, const CompareOptions& options, std::ostream& out) {
  if (options.jobs < 1 || options.jobs > 64) return Status::Usage("--jobs must be between 1 and 64");
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto control, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(bool installed, StateStore(&control, config.name).IsInstalled());
  if (!installed) return NotInitialised(config.name);
  LORRY_ASSIGN_OR_RETURN(bool running, RunIsActive(control, config.name));
  if (!running)
    return Status::Precondition(fmt::format(
        "lorry compare needs `lorry run` running for subscription \"{}\": it holds the subscriber at the provider "
        "snapshot being compared. Start `lorry run`, then compare again",
        config.name));
  LORRY_ASSIGN_OR_RETURN(auto locked, control.QueryValue("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                                         {std::to_string(kCompareLockClass), config.name}));
  if (!locked || *locked != "t")
    return Status::Precondition(fmt::format("another `lorry compare` of subscription \"{}\" is running", config.name));

  Sessions s;
  for (int i = 0; i < options.jobs; ++i) {
    LORRY_ASSIGN_OR_RETURN(auto p, CompareSession(config.provider, "provider"));
    LORRY_ASSIGN_OR_RETURN(auto q, CompareSession(config.subscriber, "subscriber"));
    s.provider.push_back(std::move(p));
    s.subscriber.push_back(std::move(q));
  }
  LORRY_ASSIGN_OR_RETURN(Lsn point, TakeSnapshots(config, control, s, options.timeout_seconds));
  LORRY_ASSIGN_OR_RETURN(auto results, PlanTables(s.provider[0], s.subscriber[0], config, options.tables, point));

  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int j = 0; j < options.jobs; ++j) {
    workers.emplace_back([&, j] {
      for (size_t i = next++; i < results.size(); i = next++) {
        if (!results[i].skipped.empty()) continue;
        results[i].error = CompareOne(s.provider[j], s.subscriber[j], options.rows, &results[i]);
        if (!results[i].error.ok()) break;  // this job's sessions are unusable now (aborted transaction)
      }
    });
  }
  for (auto& w : workers) w.join();

  if (options.json)
    PrintJson(results, point, out);
  else
    PrintHuman(results, point, out);
  int differ = 0;
  for (const auto& r : results) {
    if (!r.error.ok()) return r.error.WithContext("comparing " + r.name.Display());
    differ += r.differs();
  }
  if (differ > 0) return Status::NotTrue(fmt::format("{} table{} differ{}", differ, differ == 1 ? "" : "s",
                                                     differ == 1 ? "s" : ""));
  return Status::Ok();
}

}  // namespace lorry::admin
