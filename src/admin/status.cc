// `lorry status` and `lorry tables`: what the subscription is doing, read from
// the subscriber (lorry schema, origin, run lock) and, when reachable, the
// provider (current WAL position, slot).
//
// The provider is optional: when it cannot be reached the report says so and
// shows everything else, and the command still succeeds. Servers are named by
// their connection labels, which never hold a password.
#include <algorithm>
#include <array>
#include <map>
#include <ostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "admin/status_check.h"
#include "catalog/partitions.h"
#include "pg/conninfo.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

using nlohmann::json;

json LsnJson(std::optional<Lsn> lsn) { return lsn ? json(lsn->ToString()) : json(nullptr); }
json TextJson(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
template <typename T>
json OptJson(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

std::optional<double> CopyRate(const TableState& t) {
  if (!t.copy_seconds || *t.copy_seconds <= 0 || t.bytes_copied == 0) return std::nullopt;
  return t.bytes_copied / *t.copy_seconds;
}

// Time left for a running copy, from the bytes copied so far against the
// table's size on the provider (text COPY is roughly as large as the heap).
std::optional<double> CopySecondsLeft(const TableState& t) {
  auto rate = CopyRate(t);
  if (t.state != TableStateKind::kCopying || !rate || !t.bytes_estimate) return std::nullopt;
  return std::max(0.0, (*t.bytes_estimate - t.bytes_copied) / *rate);
}

std::string HumanBytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    u++;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.1f} {}", b, units[u]);
}

// "copied 120.0 MB of ~260.0 MB (46%), 85.3 MB/s, ~2 s left; 3 indexes to rebuild"
std::string ProgressText(const TableState& t) {
  std::string out;
  if (t.state == TableStateKind::kCopying) {
    out = fmt::format("copied {}", HumanBytes(t.bytes_copied));
    if (t.bytes_estimate && *t.bytes_estimate > 0)
      out += fmt::format(" of ~{} ({:.0f}%)", HumanBytes(*t.bytes_estimate),
                         std::min(99.0, 100.0 * t.bytes_copied / *t.bytes_estimate));
    if (auto rate = CopyRate(t)) out += fmt::format(", {}/s", HumanBytes(*rate));
    if (auto left = CopySecondsLeft(t)) out += fmt::format(", ~{:.0f} s left", *left);
  }
  if (t.deferred_indexes > 0)
    out += fmt::format("{}{} index{} to rebuild", out.empty() ? "" : "; ", t.deferred_indexes,
                       t.deferred_indexes == 1 ? "" : "es");
  if (!t.index_rebuild_error.empty()) out += "; rebuild failed";
  return out;
}

json TableJson(const TableState& t) {
  return {{"name", t.name.Display()},
          {"schema", t.name.schema},
          {"table", t.name.name},
          {"state", TableStateName(t.state)},
          {"insert_only", t.insert_only},
          {"rows_copied", t.rows_copied},
          {"bytes_copied", t.bytes_copied},
          {"rows_estimate", OptJson(t.rows_estimate)},
          {"sync_lsn", LsnJson(t.sync_lsn)},
          {"error", TextJson(t.error)},
          {"state_changed_at", TextJson(t.state_changed_at)},
          {"bytes_estimate", OptJson(t.bytes_estimate)},
          {"copy_seconds", OptJson(t.copy_seconds)},
          {"copy_bytes_per_second", OptJson(CopyRate(t))},
          {"copy_seconds_left", OptJson(CopySecondsLeft(t))},
          {"indexes_to_rebuild", t.deferred_indexes},
          {"index_rebuild_error", TextJson(t.index_rebuild_error)},
          {"row_filter", TextJson(t.row_filter)},
          {"columns", TextJson(t.column_list)},
          {"ops", TextJson(t.ops)}};
}

// What is replicated of the table: "all" rows, columns and operations, or
// what `add --insert-only/--ops/--where/--columns` narrowed it to.
std::string ModeText(const TableState& t) {
  std::vector<std::string> parts;
  if (t.insert_only) parts.push_back("insert-only");
  if (!t.ops.empty()) parts.push_back(t.ops);
  if (!t.row_filter.empty()) parts.push_back("where " + t.row_filter);
  if (!t.column_list.empty()) parts.push_back("columns " + t.column_list);
  if (parts.empty()) return "all";
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

std::string RowsText(const TableState& t) {
  if (t.rows_estimate && (t.state == TableStateKind::kPending || t.state == TableStateKind::kCopying))
    return fmt::format("{}/~{}", t.rows_copied, *t.rows_estimate);
  return std::to_string(t.rows_copied);
}

void PrintTables(const std::vector<TableState>& tables, std::ostream& out) {
  if (tables.empty()) {
    out << "no tables: add some with `lorry add TABLE...` or `lorry add --all`\n";
    return;
  }
  std::vector<std::array<std::string, 7>> rows;
  rows.push_back({"TABLE", "STATE", "MODE", "ROWS", "SYNC LSN", "PROGRESS", "ERROR"});
  for (const auto& t : tables)
    rows.push_back({t.name.Display(), TableStateName(t.state), ModeText(t),
                    RowsText(t), t.sync_lsn ? t.sync_lsn->ToString() : "-", ProgressText(t),
                    t.error.empty() ? "" : t.error});
  std::array<size_t, 7> width{};
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      if (i + 1 == r.size())
        line += r[i];
      else
        line += fmt::format("{:<{}}  ", r[i], width[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

// A lorry subscription feeding the provider database: a cascade A -> B -> C
// seen from C, whose provider B is itself a lorry subscriber (of A).
struct Upstream {
  std::string name;
  std::string state;  // as lorry.status says it on the provider
  std::optional<double> lag_seconds;
  std::optional<int64_t> lag_bytes;
};

struct Report {
  SubscriptionNames names;
  SubscriptionRow sub;
  std::vector<TableState> tables;
  std::string subscriber_label;
  std::string provider_label;
  std::string provider_error;  // non-empty: provider unreachable
  bool run_active = false;
  std::string run_holder;
  std::optional<Lsn> applied_lsn;  // origin progress, else last_commit_lsn
  std::optional<Lsn> provider_lsn;
  std::optional<int64_t> lag_bytes;
  std::optional<double> lag_seconds;
  std::optional<double> last_commit_age_seconds;
  bool slot_exists = false;
  bool slot_active = false;
  std::optional<Lsn> slot_confirmed_flush;
  std::optional<int64_t> slot_retained_bytes;
  // The run lease and a standby run (daemon/run_lease.h).
  std::string lease_owner;
  std::string lease_since;
  std::optional<double> lease_expires_in_seconds;
  int64_t takeovers = 0;
  std::string standby_host;  // empty: no standby seen in the last 5 s
  std::string standby_pid;
  std::string standby_since;
  std::vector<std::string> skips_pending;  // `lorry skip --lsn` requests run has not met yet
  int provider_version_num = 0;
  std::optional<bool> slot_failover;       // PostgreSQL 17+: whether the slot is a failover slot
  std::vector<Upstream> upstream;          // the provider's own lorry subscriptions (a cascade)
  std::string upstream_error;              // they exist but cannot be read
  std::optional<double> end_to_end_lag_seconds;  // this lag plus the largest upstream one
  // While the stream is held by an error: the partitions of replicated
  // tables that the subscriber lacks (catalog/partitions.h), the usual cause
  // once partitions are created on the provider.
  std::vector<catalog::PartitionGap> partition_gaps;
};

// A cascade: the provider's database has lorry subscriptions of its own
// (their state and lag, from its lorry.status).
void ReadUpstream(pg::PgConn& provider, Report* r) {
  auto has = provider.QueryValue("SELECT to_regclass('lorry.status') IS NOT NULL");
  if (!has.ok() || has->value_or("f") != "t") return;
  auto res = provider.Exec("SELECT subscription, state, lag_seconds, lag_bytes FROM lorry.status ORDER BY 1");
  if (!res.ok()) {
    r->upstream_error = pg::RedactSecrets(res.status().message());
    return;
  }
  for (int i = 0; i < res->rows(); ++i) {
    Upstream u{std::string(res->Get(i, 0)), std::string(res->Get(i, 1)), std::nullopt, std::nullopt};
    if (!res->IsNull(i, 2)) u.lag_seconds = std::stod(std::string(res->Get(i, 2)));
    if (!res->IsNull(i, 3)) u.lag_bytes = res->GetInt(i, 3);
    r->upstream.push_back(std::move(u));
  }
}

// Fills r->partition_gaps when the stream reports an error (only then: it
// reads each replicated table's partition tree on both sides).
void ReadPartitionGaps(pg::PgConn& provider, pg::PgConn& subscriber, Report* r) {
  if (r->sub.last_error.empty()) return;
  std::vector<pg::QualifiedName> names;
  for (const auto& t : r->tables) names.push_back(t.name);
  auto gaps = catalog::MissingPartitions(provider, subscriber, names);
  if (gaps.ok()) r->partition_gaps = std::move(gaps).value();  // else: the report goes without them
}

// The lease and a live standby, from lorry.subscriptions.
Status ReadLease(pg::PgConn& subscriber, const std::string& name, Report* r) {
  LORRY_ASSIGN_OR_RETURN(
      auto res, subscriber.ExecParams(
                    "SELECT lease_owner, lease_since::text, "
                    "  extract(epoch FROM lease_expires_at - clock_timestamp())::float8, takeovers, "
                    "  standby_host, standby_pid, standby_since::text, "
                    "  standby_seen_at > clock_timestamp() - interval '5 s' "
                    "FROM lorry.subscriptions WHERE name = $1",
                    {name}));
  if (res.rows() == 0) return Status::Ok();
  r->lease_owner = res.Get(0, 0);
  r->lease_since = res.Get(0, 1);
  if (!res.IsNull(0, 2)) r->lease_expires_in_seconds = std::stod(std::string(res.Get(0, 2)));
  r->takeovers = res.GetInt(0, 3);
  auto skips = subscriber.ExecParams("SELECT commit_lsn::text FROM lorry.skips WHERE subscription = $1 "
                                    "AND skipped_at IS NULL ORDER BY commit_lsn",
                                    {name});
  if (skips.ok())
    for (int i = 0; i < skips->rows(); ++i) r->skips_pending.emplace_back(skips->Get(i, 0));
  if (res.GetBool(0, 7)) {
    r->standby_host = res.Get(0, 4);
    r->standby_pid = res.Get(0, 5);
    r->standby_since = res.Get(0, 6);
  }
  return Status::Ok();
}

// Reads the provider's side of the report: current WAL position and slot.
Status ReadProvider(pg::PgConn& provider, Report* r) {
  r->provider_label = provider.label();
  LORRY_ASSIGN_OR_RETURN(
      auto res, provider.ExecParams(
                    "WITH pos AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                    "             ELSE pg_current_wal_lsn() END AS lsn) "
                    "SELECT pos.lsn::text, s.slot_name IS NOT NULL, coalesce(s.active, false), "
                    "  s.confirmed_flush_lsn::text, (pos.lsn - s.restart_lsn)::bigint, "
                    "  to_jsonb(s)->>'failover' "  // PostgreSQL 17+
                    "FROM pos LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
                    {r->names.slot}));
  r->provider_lsn = Lsn::Parse(res.Get(0, 0));
  r->slot_exists = res.GetBool(0, 1);
  r->slot_active = res.GetBool(0, 2);
  if (!res.IsNull(0, 3)) r->slot_confirmed_flush = Lsn::Parse(res.Get(0, 3));
  if (!res.IsNull(0, 4)) r->slot_retained_bytes = res.GetInt(0, 4);
  if (!res.IsNull(0, 5)) r->slot_failover = res.Get(0, 5) == "true";
  r->provider_version_num = provider.server_version();
  ReadUpstream(provider, r);
  return Status::Ok();
}

Result<Report> BuildReport(const Config& config, pg::PgConn& subscriber, bool with_provider,
                           pg::PgConn* provider = nullptr) {
  Report r;
  r.names = SubscriptionNames::For(config.name);
  r.subscriber_label = subscriber.label();
  StateStore store(&subscriber, config.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(config.name);
  LORRY_ASSIGN_OR_RETURN(r.sub, store.LoadSubscription());
  LORRY_ASSIGN_OR_RETURN(r.tables, store.ListTables());
  if (!with_provider) return r;

  LORRY_ASSIGN_OR_RETURN(r.run_active, RunIsActive(subscriber, config.name));
  if (r.run_active) r.run_holder = RunHolder(subscriber, config.name);
  (void)ReadLease(subscriber, config.name, &r);  // absent until a run of this version migrated the schema
  r.applied_lsn = OriginProgress(subscriber, r.names.origin, false);
  if (!r.applied_lsn) r.applied_lsn = r.sub.last_commit_lsn;
  LORRY_ASSIGN_OR_RETURN(auto age, subscriber.QueryValue("SELECT extract(epoch FROM clock_timestamp() - "
                                                         "last_commit_time)::float8 FROM lorry.subscriptions "
                                                         "WHERE name = $1",
                                                         {config.name}));
  if (age) r.last_commit_age_seconds = std::stod(*age);

  pg::PgConn own;
  if (provider == nullptr) {
    auto c = ConnectProvider(config);
    if (!c.ok()) {
      r.provider_error = pg::RedactSecrets(c.status().message());
      return r;
    }
    own = std::move(c).value();
    provider = &own;
  }
  Status ps = ReadProvider(*provider, &r);
  if (!ps.ok()) {
    r.provider_error = pg::RedactSecrets(ps.message());
    return r;
  }
  ReadPartitionGaps(*provider, subscriber, &r);
  std::optional<Lsn> done = r.applied_lsn;
  if (r.sub.confirmed_lsn && (!done || *r.sub.confirmed_lsn > *done)) done = r.sub.confirmed_lsn;
  if (r.provider_lsn && done) {
    r.lag_bytes = r.provider_lsn->value > done->value ? static_cast<int64_t>(r.provider_lsn->value - done->value) : 0;
    if (*r.lag_bytes == 0)
      r.lag_seconds = 0.0;
    else if (r.last_commit_age_seconds)
      r.lag_seconds = std::max(0.0, *r.last_commit_age_seconds);
  }
  if (!r.upstream.empty() && r.lag_seconds) {
    r.end_to_end_lag_seconds = *r.lag_seconds;
    for (const auto& u : r.upstream) {
      if (!u.lag_seconds) {
        r.end_to_end_lag_seconds.reset();  // an upstream run is not running: unknown
        break;
      }
      r.end_to_end_lag_seconds = std::max(*r.end_to_end_lag_seconds, *r.lag_seconds + *u.lag_seconds);
    }
  }
  return r;
}

std::map<std::string, int> StateCounts(const std::vector<TableState>& tables) {
  std::map<std::string, int> counts;
  for (const auto& t : tables) ++counts[TableStateName(t.state)];
  return counts;
}

json PartitionGapsJson(const std::vector<catalog::PartitionGap>& gaps) {
  json a = json::array();
  for (const auto& g : gaps)
    a.push_back({{"partition", g.partition.Display()}, {"parent", g.parent.Display()}, {"fix", g.fix}});
  return a;
}

json ReportJson(const Report& r) {
  json sub = {
      {"name", r.names.name},
      {"slot", r.names.slot},
      {"publication", r.names.publication},
      {"insert_only_publication", r.names.insert_only_publication},
      {"origin", r.names.origin},
      {"subscriber", r.subscriber_label},
      {"provider", TextJson(r.provider_label)},
      {"provider_reachable", r.provider_error.empty()},
      {"provider_error", TextJson(r.provider_error)},
      {"run_active", r.run_active},
      {"run_holder", TextJson(r.run_holder)},
      {"heartbeat_at", TextJson(r.sub.heartbeat_at)},
      {"heartbeat_age_seconds", OptJson(r.sub.heartbeat_age_seconds)},
      {"paused", r.sub.paused},
      {"consistent_lsn", LsnJson(r.sub.consistent_lsn)},
      {"applied_lsn", LsnJson(r.applied_lsn)},
      {"confirmed_lsn", LsnJson(r.sub.confirmed_lsn)},
      {"last_commit_lsn", LsnJson(r.sub.last_commit_lsn)},
      {"last_commit_time", TextJson(r.sub.last_commit_time)},
      {"provider_lsn", LsnJson(r.provider_lsn)},
      {"lag_bytes", OptJson(r.lag_bytes)},
      {"lag_seconds", OptJson(r.lag_seconds)},
      {"xacts_applied", r.sub.xacts_applied},
      {"changes_applied", r.sub.changes_applied},
      {"proto_version", r.sub.proto_version},
      {"last_error", TextJson(r.sub.last_error)},
      {"missing_partitions", PartitionGapsJson(r.partition_gaps)},
      {"last_error_at", TextJson(r.sub.last_error_at)},
      {"lease",
       {{"owner", TextJson(r.lease_owner)},
        {"since", TextJson(r.lease_since)},
        {"expires_in_seconds", OptJson(r.lease_expires_in_seconds)},
        {"takeovers", r.takeovers}}},
      {"skips_pending", r.skips_pending},
      {"standby", r.standby_host.empty() ? json(nullptr)
                                         : json{{"host", r.standby_host},
                                                {"pid", std::stoll(r.standby_pid)},
                                                {"since", r.standby_since}}},
  };
  json upstream = json::array();
  for (const auto& u : r.upstream)
    upstream.push_back({{"subscription", u.name},
                        {"state", u.state},
                        {"lag_seconds", OptJson(u.lag_seconds)},
                        {"lag_bytes", OptJson(u.lag_bytes)}});
  sub["upstream"] = upstream;
  if (r.provider_error.empty())
    sub["failover"] = {{"failover_slot", OptJson(r.slot_failover)},
                       {"resync_after_failover", r.provider_version_num < 170000}};
  else
    sub["failover"] = nullptr;
  sub["upstream_error"] = TextJson(r.upstream_error);
  sub["end_to_end_lag_seconds"] = OptJson(r.end_to_end_lag_seconds);
  if (r.provider_error.empty()) {
    sub["slot_state"] = {{"exists", r.slot_exists},
                         {"active", r.slot_active},
                         {"confirmed_flush_lsn", LsnJson(r.slot_confirmed_flush)},
                         {"retained_bytes", OptJson(r.slot_retained_bytes)}};
  } else {
    sub["slot_state"] = nullptr;
  }
  json tables = json::array();
  for (const auto& t : r.tables) tables.push_back(TableJson(t));
  json report = {{"subscription", sub}, {"table_states", StateCounts(r.tables)}, {"tables", tables}};
  // As lorry.status shows it, and what `status --check` says without lag limits.
  report["subscription"]["state"] = SubscriptionState(report);
  CheckResult check = CheckStatusReport(report, {});
  report["check"] = {{"state", CheckStateName(check.state)}, {"line", check.line}};
  return report;
}

// What a failover of the provider would cost (README: Provider failover).
std::string FailoverText(const Report& r) {
  if (r.provider_version_num < 170000)
    return fmt::format("PostgreSQL {} has no failover slots: after a failover of the provider, "
                       "`lorry resync --all` copies every table again",
                       r.provider_version_num / 10000);
  if (!r.slot_exists) return "the slot will be a failover slot (PostgreSQL 17+)";
  if (r.slot_failover.value_or(false))
    return "failover slot: a standby with sync_replication_slots = on keeps it, a promotion needs no re-copy";
  return "the slot is not a failover slot yet: the next `lorry run` makes it one";
}

void PrintReport(const Report& r, std::ostream& out) {
  auto line = [&](const char* key, const std::string& value) { out << fmt::format("{:<13} {}", key, value) << "\n"; };
  line("subscription", r.names.name + (r.sub.paused ? " (paused)" : ""));
  // What `status --check` would say (without lag limits), minus its perfdata.
  std::string health = ReportJson(r)["check"]["line"].get<std::string>();
  health = health.substr(0, health.find(" | "));
  if (health.rfind("LORRY ", 0) == 0) health = health.substr(6);
  line("health", health);
  line("subscriber", r.subscriber_label);
  if (!r.provider_error.empty())
    line("provider", "provider unreachable: " + r.provider_error);
  else
    line("provider", r.provider_label);

  if (r.run_active) {
    std::string hb = r.sub.heartbeat_age_seconds ? fmt::format(", heartbeat {:.1f} s ago", *r.sub.heartbeat_age_seconds)
                                                 : "";
    line("run", fmt::format("active{}{}", r.run_holder.empty() ? "" : " (" + r.run_holder + ")", hb));
  } else {
    line("run", "not running");
  }
  if (!r.lease_owner.empty())
    line("lease", fmt::format("held by {} since {}{}{}", r.lease_owner, r.lease_since,
                              r.lease_expires_in_seconds
                                  ? fmt::format(", expires in {:.1f} s unless renewed", *r.lease_expires_in_seconds)
                                  : "",
                              r.takeovers > 0 ? fmt::format(" ({} takeover{})", r.takeovers, r.takeovers == 1 ? "" : "s")
                                              : ""));
  line("standby", r.standby_host.empty() ? "none"
                                         : fmt::format("pid {} on host {}, waiting since {}", r.standby_pid,
                                                       r.standby_host, r.standby_since));

  if (r.provider_error.empty()) {
    if (!r.slot_exists)
      line("slot", r.names.slot + ": not created yet (the first `lorry run` creates it)");
    else
      line("slot", fmt::format("{}: {}{}", r.names.slot, r.slot_active ? "active" : "inactive",
                               r.slot_retained_bytes
                                   ? fmt::format(", keeps {} of WAL on the provider", HumanBytes(*r.slot_retained_bytes))
                                   : ""));
  }

  if (r.provider_error.empty()) line("failover", FailoverText(r));

  std::string applied = r.applied_lsn ? r.applied_lsn->ToString() : "nothing yet";
  if (r.sub.confirmed_lsn) applied += fmt::format(" (confirmed up to {})", r.sub.confirmed_lsn->ToString());
  line("applied LSN", applied);
  if (!r.provider_error.empty()) {
    line("lag", "unknown (provider unreachable)");
  } else if (r.lag_bytes) {
    std::string secs = r.lag_seconds ? fmt::format("{:.1f} s", *r.lag_seconds) : "? s";
    std::string bytes = HumanBytes(*r.lag_bytes);
    if (bytes.find("bytes") == std::string::npos) bytes += fmt::format(" ({} bytes)", *r.lag_bytes);
    line("lag", fmt::format("{}, {}", bytes, secs));
  } else {
    line("lag", fmt::format("unknown: nothing applied yet (provider at {})",
                            r.provider_lsn ? r.provider_lsn->ToString() : "?"));
  }
  for (const auto& u : r.upstream)
    line("upstream", fmt::format("the provider is fed by lorry subscription \"{}\" ({}, lag {})", u.name, u.state,
                                 u.lag_seconds ? fmt::format("{:.1f} s", *u.lag_seconds) : "unknown"));
  if (!r.upstream_error.empty())
    line("upstream", "the provider has lorry subscriptions, unreadable here: " + r.upstream_error);
  if (!r.upstream.empty())
    line("end to end", r.end_to_end_lag_seconds ? fmt::format("lag {:.1f} s", *r.end_to_end_lag_seconds)
                                                : std::string("lag unknown (an upstream run is not running)"));
  std::string applied_counts = fmt::format("{} transactions, {} changes", r.sub.xacts_applied, r.sub.changes_applied);
  if (!r.sub.last_commit_time.empty()) applied_counts += ", last provider commit at " + r.sub.last_commit_time;
  line("applied", applied_counts);
  if (!r.skips_pending.empty()) {
    std::string lsns;
    for (const auto& l : r.skips_pending) lsns += (lsns.empty() ? "" : ", ") + l;
    line("skip", fmt::format("requested, not yet skipped by run: {}", lsns));
  }
  line("last error", r.sub.last_error.empty() ? "none" : r.sub.last_error + " (at " + r.sub.last_error_at + ")");
  for (const auto& g : r.partition_gaps) line("fix", catalog::DescribeGap(g));

  std::string counts;
  for (const auto& [state, n] : StateCounts(r.tables)) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, state);
  line("tables", fmt::format("{}{}", r.tables.size(), counts.empty() ? "" : ": " + counts));
  // Copy progress over every table being copied, and index rebuilds left.
  int64_t copied = 0, total = 0, indexes = 0;
  double rate = 0, left = 0;
  int copying = 0;
  for (const auto& t : r.tables) {
    indexes += t.deferred_indexes;
    if (t.state != TableStateKind::kCopying) continue;
    copying++;
    copied += t.bytes_copied;
    total += t.bytes_estimate.value_or(0);
    rate += CopyRate(t).value_or(0);
    left = std::max(left, CopySecondsLeft(t).value_or(0));
  }
  if (copying > 0)
    line("copy", fmt::format("{} table{} copying: {} of ~{}, {}/s, ~{:.0f} s left", copying, copying == 1 ? "" : "s",
                             HumanBytes(copied), HumanBytes(total), HumanBytes(rate), left));
  if (indexes > 0) line("indexes", fmt::format("{} deferred by copies, not yet rebuilt", indexes));
  // Until the rebuild succeeds: a table without its keys is worth seeing.
  for (const auto& t : r.tables)
    if (!t.index_rebuild_error.empty())
      line("index rebuild failed", fmt::format("table {}, {}", t.name.Display(), t.index_rebuild_error));
  out << "\n";
  PrintTables(r.tables, out);
}

}  // namespace

Status ShowStatus(const Config& config, bool json_output, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(auto report, BuildReport(config, subscriber, true));
  if (json_output)
    out << ReportJson(report).dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  else
    PrintReport(report, out);
  return Status::Ok();
}

Result<nlohmann::json> StatusReportJson(const Config& config, pg::PgConn& subscriber, pg::PgConn* provider) {
  LORRY_ASSIGN_OR_RETURN(auto report, BuildReport(config, subscriber, true, provider));
  return ReportJson(report);
}

CheckResult CheckStatus(const Config& config, const CheckLimits& limits) {
  auto subscriber = ConnectSubscriber(config);
  if (!subscriber.ok()) return CheckUnknown(pg::RedactSecrets(subscriber.status().message()));
  auto report = BuildReport(config, *subscriber, true);
  if (!report.ok()) return CheckUnknown(pg::RedactSecrets(report.status().message()));
  return CheckStatusReport(ReportJson(*report), limits);
}

Status ShowTables(const Config& config, bool json_output, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(auto report, BuildReport(config, subscriber, false));
  if (json_output) {
    json tables = json::array();
    for (const auto& t : report.tables) tables.push_back(TableJson(t));
    out << json{{"subscription", report.names.name}, {"tables", tables}}.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    PrintTables(report.tables, out);
    if (!report.sub.last_error.empty()) {
      out << "\nthe stream is held by an error: " << report.sub.last_error << "\n";
      auto provider = ConnectProvider(config);
      if (provider.ok()) ReadPartitionGaps(*provider, subscriber, &report);
      for (const auto& g : report.partition_gaps) out << "fix: " << catalog::DescribeGap(g) << "\n";
    }
  }
  return Status::Ok();
}

}  // namespace lorry::admin
