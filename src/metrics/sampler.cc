#include "metrics/sampler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pg/conninfo.h"
#include "state/names.h"

namespace lorry::metrics {

namespace {
pg::ConnectOptions SamplerOptions(const char* role) { return {{{"application_name", "lorry_sampler"}}, role}; }

std::optional<std::string> LsnText(Lsn lsn) {
  if (!lsn.valid()) return std::nullopt;
  return lsn.ToString();
}
}  // namespace

Sampler::Sampler(const Config& config, RunMetrics* metrics, std::chrono::milliseconds interval)
    : name_(config.name),
      provider_conninfo_(config.provider),
      subscriber_conninfo_(config.subscriber),
      metrics_(metrics),
      interval_(interval) {}

Sampler::~Sampler() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Sampler::Start() { thread_ = std::thread([this] { Loop(); }); }

void Sampler::Loop() {
  while (!stop_.load()) {
    auto next = std::chrono::steady_clock::now() + interval_;
    SampleOnce();
    while (!stop_.load() && std::chrono::steady_clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void Sampler::Failed(const char* side, const Status& s, bool* warned) {
  std::string msg = pg::RedactSecrets(s.message());
  if (!*warned)
    spdlog::warn("sub={} sampler: {} not sampled (metrics and lorry.status miss it until it is): {}", name_, side,
                 msg);
  else
    spdlog::debug("sub={} sampler: {} not sampled: {}", name_, side, msg);
  *warned = true;
}

void Sampler::SampleOnce() {
  Status p = SampleProvider();
  if (!p.ok()) {
    provider_ = pg::PgConn();
    Failed("provider", p, &provider_warned_);
  } else {
    provider_warned_ = false;
  }
  Status s = SampleSubscriber();
  if (!s.ok()) {
    subscriber_ = pg::PgConn();
    Failed("subscriber", s, &subscriber_warned_);
  } else {
    subscriber_warned_ = false;
  }
}

Status Sampler::SampleProvider() {
  if (!provider_.connected()) {
    LORRY_ASSIGN_OR_RETURN(provider_, pg::PgConn::Connect(provider_conninfo_, SamplerOptions("provider")));
  }
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider_.ExecParams(
                  "WITH pos AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                  "             ELSE pg_current_wal_lsn() END AS lsn) "
                  "SELECT pos.lsn::text, s.slot_name IS NOT NULL, coalesce(s.active, false), "
                  "  s.confirmed_flush_lsn::text, (pos.lsn - s.restart_lsn)::bigint "
                  "FROM pos LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
                  {SubscriptionNames::For(name_).slot}));
  ProviderSample p;
  p.wal_lsn = Lsn::Parse(r.Get(0, 0)).value_or(Lsn());
  p.slot_exists = r.GetBool(0, 1);
  p.slot_active = r.GetBool(0, 2);
  if (!r.IsNull(0, 3)) p.slot_confirmed_flush = Lsn::Parse(r.Get(0, 3));
  if (!r.IsNull(0, 4)) p.slot_retained_bytes = r.GetInt(0, 4);
  metrics_->SetProvider(p);
  return Status::Ok();
}

Status Sampler::SampleSubscriber() {
  if (!subscriber_.connected()) {
    LORRY_ASSIGN_OR_RETURN(subscriber_, pg::PgConn::Connect(subscriber_conninfo_, SamplerOptions("subscriber")));
  }
  // The view exists once the daemon has brought the lorry schema up to date.
  LORRY_ASSIGN_OR_RETURN(auto has_view, subscriber_.QueryValue("SELECT to_regclass('lorry.table_progress')::text"));
  if (!has_view) return Status::Ok();
  LORRY_ASSIGN_OR_RETURN(auto r, subscriber_.ExecParams(
                                     "SELECT table_name, state, rows_copied, bytes_copied, bytes_estimate, "
                                     "indexes_to_rebuild FROM lorry.table_progress WHERE subscription = $1 "
                                     "ORDER BY nspname, relname",
                                     {name_}));
  std::vector<TableSample> tables;
  for (int i = 0; i < r.rows(); ++i) {
    TableSample t;
    t.table = r.Get(i, 0);
    t.state = r.Get(i, 1);
    t.rows_copied = r.GetInt(i, 2);
    t.bytes_copied = r.GetInt(i, 3);
    if (!r.IsNull(i, 4)) t.bytes_estimate = r.GetInt(i, 4);
    t.indexes_to_rebuild = r.GetInt(i, 5);
    tables.push_back(std::move(t));
  }
  metrics_->SetTables(std::move(tables));
  return WriteRunStats(subscriber_);
}

Status Sampler::WriteRunStats(pg::PgConn& subscriber) {
  Snapshot s = metrics_->Take();
  spdlog::debug("sub={} sample provider_lsn={} applied={} lag_bytes={} lag_seconds={:.3f} slot_retained_bytes={}",
                name_, s.provider ? s.provider->wal_lsn.ToString() : "?", s.position.applied.ToString(),
                s.lag_bytes ? std::to_string(*s.lag_bytes) : "?", s.lag_seconds,
                s.provider && s.provider->slot_retained_bytes ? std::to_string(*s.provider->slot_retained_bytes)
                                                               : "?");
  if (!s.streamed) return Status::Ok();  // not (yet) the active run: nothing of ours to show
  auto now = std::chrono::steady_clock::now();
  std::optional<std::string> xps, cps;
  if (prev_at_) {
    double dt = std::chrono::duration<double>(now - *prev_at_).count();
    if (dt > 0) {
      xps = fmt::format("{:.3f}", std::max<int64_t>(0, s.position.xacts - prev_xacts_) / dt);
      cps = fmt::format("{:.3f}", std::max<int64_t>(0, s.position.changes - prev_changes_) / dt);
    }
  }
  prev_at_ = now;
  prev_xacts_ = s.position.xacts;
  prev_changes_ = s.position.changes;
  auto opt = [](const auto& v) -> std::optional<std::string> {
    if (!v) return std::nullopt;
    return std::to_string(*v);
  };
  std::optional<std::string> provider_lsn, slot_active, retained;
  if (s.provider) {
    provider_lsn = LsnText(s.provider->wal_lsn);
    slot_active = s.provider->slot_active ? "t" : "f";
    retained = opt(s.provider->slot_retained_bytes);
  }
  return subscriber
      .ExecParams(
          "INSERT INTO lorry.run_stats AS r (subscription, sampled_at, provider_lsn, received_lsn, applied_lsn, "
          "  lag_bytes, lag_seconds, xacts_per_second, changes_per_second, slot_active, slot_retained_bytes, "
          "  reconnects) "
          "VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
          "ON CONFLICT (subscription) DO UPDATE SET sampled_at = excluded.sampled_at, "
          "  provider_lsn = excluded.provider_lsn, received_lsn = excluded.received_lsn, "
          "  applied_lsn = excluded.applied_lsn, lag_bytes = excluded.lag_bytes, "
          "  lag_seconds = excluded.lag_seconds, "
          "  xacts_per_second = coalesce(excluded.xacts_per_second, r.xacts_per_second), "
          "  changes_per_second = coalesce(excluded.changes_per_second, r.changes_per_second), "
          "  slot_active = excluded.slot_active, slot_retained_bytes = excluded.slot_retained_bytes, "
          "  reconnects = excluded.reconnects",
          {name_, provider_lsn, LsnText(s.position.received), LsnText(s.position.applied), opt(s.lag_bytes),
           fmt::format("{:.3f}", s.lag_seconds), xps, cps, slot_active, retained, std::to_string(s.reconnects)})
      .status();
}

}  // namespace lorry::metrics
