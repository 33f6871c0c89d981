#include "metrics/run_metrics.h"

#include <algorithm>

#include "metrics/process_stats.h"
#include "protocol/walsender.h"

namespace lorry::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Builds metric families one sample at a time.
class Families {
 public:
  explicit Families(std::string subscription) : sub_(std::move(subscription)) {}

  // Every sample carries the subscription label, then `labels`.
  void Add(const std::string& name, const std::string& help, MetricType type, double value,
           std::vector<ClientMetric::Label> labels = {}, bool with_subscription = true) {
    MetricFamily* f = Family(name, help, type);
    ClientMetric m;
    if (with_subscription) m.label.push_back({"subscription", sub_});
    for (auto& l : labels) m.label.push_back(std::move(l));
    if (type == MetricType::Counter)
      m.counter.value = value;
    else
      m.gauge.value = value;
    f->metric.push_back(std::move(m));
  }
  // A histogram sample (prometheus::Histogram::Collect) with the subscription label.
  void AddHistogram(const std::string& name, const std::string& help, ClientMetric m) {
    m.label.insert(m.label.begin(), {"subscription", sub_});
    Family(name, help, MetricType::Histogram)->metric.push_back(std::move(m));
  }
  // A family with no samples yet still shows HELP and TYPE.
  MetricFamily* Family(const std::string& name, const std::string& help, MetricType type) {
    for (auto& f : out_)
      if (f.name == name) return &f;
    out_.push_back({name, help, type, {}});
    return &out_.back();
  }
  std::vector<MetricFamily> Take() { return std::move(out_); }

 private:
  std::string sub_;
  std::vector<MetricFamily> out_;
};

double LsnNumber(Lsn lsn) { return static_cast<double>(lsn.value); }

}  // namespace

std::string FailureKind(const Status& s, bool apply_failed) {
  if (apply_failed) return "apply";
  switch (s.kind()) {
    case Status::Kind::kConnection: return "connection";
    case Status::Kind::kAuth: return "auth";
    case Status::Kind::kServer: return "server";
    case Status::Kind::kProtocol: return "protocol";
    case Status::Kind::kTimeout: return "timeout";
    default: return "other";
  }
}

double LagSeconds(int64_t oldest_pending_commit_pg_us, std::chrono::system_clock::time_point now) {
  if (oldest_pending_commit_pg_us == 0) return 0;
  int64_t now_us = protocol::ToPgMicros(now);
  return std::max<int64_t>(0, now_us - oldest_pending_commit_pg_us) / 1e6;
}

const prometheus::Histogram::BucketBoundaries& ApplySecondsBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                                            30,     60,    300};
  return b;
}

const prometheus::Histogram::BucketBoundaries& DelaySecondsBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                            2.5,   5,    10,    30,   60,  300,  900, 3600};
  return b;
}

RunMetrics::RunMetrics(std::string subscription)
    : subscription_(std::move(subscription)),
      start_time_seconds_(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()),
      apply_seconds_(ApplySecondsBuckets()),
      delay_seconds_(DelaySecondsBuckets()) {}

void RunMetrics::ObserveTransaction(double apply_seconds, double delay_seconds) {
  apply_seconds_.Observe(std::max(0.0, apply_seconds));
  delay_seconds_.Observe(std::max(0.0, delay_seconds));
}

void RunMetrics::OnTick(const StreamPosition& p) {
  std::lock_guard lock(mu_);
  streamed_ = true;
  position_ = p;
}

void RunMetrics::AddApplied(const std::string& table, const TableOpCounts& counts) {
  std::lock_guard lock(mu_);
  auto& total = applied_[table];
  for (size_t i = 0; i < total.size(); ++i) total[i] += counts[i];
}

void RunMetrics::OnFailure(const std::string& kind) {
  std::lock_guard lock(mu_);
  errors_[kind]++;
  reconnects_++;
}

void RunMetrics::SetProvider(const ProviderSample& p) {
  std::lock_guard lock(mu_);
  provider_ = p;
}

void RunMetrics::SetTables(std::vector<TableSample> tables) {
  std::lock_guard lock(mu_);
  tables_ = std::move(tables);
}

Snapshot RunMetrics::TakeLocked() const {
  Snapshot s;
  s.streamed = streamed_;
  s.position = position_;
  s.provider = provider_;
  s.reconnects = reconnects_;
  s.lag_seconds = LagSeconds(position_.oldest_pending_commit_pg_us, std::chrono::system_clock::now());
  if (provider_ && provider_->wal_lsn.valid() && position_.applied.valid())
    s.lag_bytes = provider_->wal_lsn > position_.applied
                      ? static_cast<int64_t>(provider_->wal_lsn.value - position_.applied.value)
                      : 0;
  return s;
}

Snapshot RunMetrics::Take() const {
  std::lock_guard lock(mu_);
  return TakeLocked();
}

std::vector<TableSample> RunMetrics::Tables() const {
  std::lock_guard lock(mu_);
  return tables_;
}

std::map<std::string, TableOpCounts> RunMetrics::Applied() const {
  std::lock_guard lock(mu_);
  return applied_;
}

std::vector<MetricFamily> RunMetrics::Collect() const {
  std::lock_guard lock(mu_);
  Snapshot s = TakeLocked();
  Families f(subscription_);
  f.Add("lorry_build_info", "lorry's version; always 1", MetricType::Gauge, 1, {{"version", LORRY_VERSION}});
  f.Add("lorry_streaming", "1 once the daemon streams changes (it has ticked at least once in this process)",
        MetricType::Gauge, streamed_ ? 1 : 0);

  // Lag: present once known (lag_bytes needs a provider sample and an applied position).
  if (s.lag_bytes)
    f.Add("lorry_apply_lag_bytes", "provider WAL position minus the position applied (or confirmed idle)",
          MetricType::Gauge, static_cast<double>(*s.lag_bytes));
  if (streamed_)
    f.Add("lorry_apply_lag_seconds",
          "0 when everything received is applied, else now minus the provider commit time of the oldest "
          "transaction received and not yet committed on the subscriber",
          MetricType::Gauge, s.lag_seconds);

  f.Add("lorry_transactions_applied_total", "provider transactions applied on the subscriber",
        MetricType::Counter, static_cast<double>(position_.xacts));
  f.Family("lorry_changes_applied_total", "rows inserted, updated, deleted and tables truncated, by table",
           MetricType::Counter);
  for (const auto& [table, counts] : applied_)
    for (size_t op = 0; op < counts.size(); ++op)
      f.Add("lorry_changes_applied_total", "", MetricType::Counter, static_cast<double>(counts[op]),
            {{"table", table}, {"operation", kOpNames[op]}});
  // Conflicts: the kinds lorry detects today. Later kinds (e.g. insert_exists,
  // update_differs) get their own `kind` value in this family.
  f.Add("lorry_conflicts_total", "changes that did not find the subscriber as expected, by kind",
        MetricType::Counter, static_cast<double>(position_.missing_rows), {{"kind", "missing_row"}});
  f.Add("lorry_reconnects_total", "times the daemon started over after a failure (connection lost, apply error)",
        MetricType::Counter, static_cast<double>(reconnects_));
  f.Family("lorry_errors_total", "failures that made the daemon retry, by kind", MetricType::Counter);
  for (const auto& [kind, n] : errors_)
    f.Add("lorry_errors_total", "", MetricType::Counter, static_cast<double>(n), {{"kind", kind}});

  f.AddHistogram("lorry_transaction_apply_seconds",
                 "time from a provider transaction's BEGIN received to its subscriber commit",
                 apply_seconds_.Collect());
  f.AddHistogram("lorry_commit_to_apply_delay_seconds",
                 "time from a transaction's provider commit to its subscriber commit (includes clock skew "
                 "between the provider and lorry's host)",
                 delay_seconds_.Collect());

  if (position_.received.valid())
    f.Add("lorry_received_lsn_bytes", "highest provider WAL position received (as a number)", MetricType::Gauge,
          LsnNumber(position_.received));
  if (position_.applied.valid())
    f.Add("lorry_applied_lsn_bytes", "provider WAL position applied on the subscriber or confirmed idle",
          MetricType::Gauge, LsnNumber(position_.applied));
  if (position_.confirmed.valid())
    f.Add("lorry_confirmed_flush_lsn_bytes", "flush position last reported to the replication slot",
          MetricType::Gauge, LsnNumber(position_.confirmed));

  if (provider_) {
    f.Add("lorry_provider_wal_lsn_bytes", "the provider's current WAL position (sampled)", MetricType::Gauge,
          LsnNumber(provider_->wal_lsn));
    f.Add("lorry_slot_active", "1 when the replication slot has a connected consumer", MetricType::Gauge,
          provider_->slot_active ? 1 : 0);
    if (provider_->slot_retained_bytes)
      f.Add("lorry_slot_retained_wal_bytes", "WAL the slot keeps on the provider (current position - restart_lsn)",
            MetricType::Gauge, static_cast<double>(*provider_->slot_retained_bytes));
    if (provider_->slot_confirmed_flush)
      f.Add("lorry_slot_confirmed_flush_lsn_bytes", "the slot's confirmed_flush_lsn on the provider",
            MetricType::Gauge, LsnNumber(*provider_->slot_confirmed_flush));
  }

  f.Family("lorry_table_state", "1 for each table's current state", MetricType::Gauge);
  for (const auto& t : tables_) {
    f.Add("lorry_table_state", "", MetricType::Gauge, 1, {{"table", t.table}, {"state", t.state}});
    f.Add("lorry_table_copied_bytes", "bytes copied by the table's initial copy", MetricType::Gauge,
          static_cast<double>(t.bytes_copied), {{"table", t.table}});
    f.Add("lorry_table_copied_rows", "rows copied by the table's initial copy", MetricType::Gauge,
          static_cast<double>(t.rows_copied), {{"table", t.table}});
    if (t.bytes_estimate)
      f.Add("lorry_table_size_bytes", "the table's size on the provider when its copy began", MetricType::Gauge,
            static_cast<double>(*t.bytes_estimate), {{"table", t.table}});
    f.Add("lorry_table_indexes_to_rebuild", "indexes dropped for the copy and not yet rebuilt", MetricType::Gauge,
          static_cast<double>(t.indexes_to_rebuild), {{"table", t.table}});
  }

  if (auto p = ReadProcessStats()) {
    f.Add("process_cpu_seconds_total", "user and system CPU time", MetricType::Counter, p->cpu_seconds, {}, false);
    f.Add("process_resident_memory_bytes", "resident memory", MetricType::Gauge,
          static_cast<double>(p->resident_bytes), {}, false);
    f.Add("process_virtual_memory_bytes", "virtual memory", MetricType::Gauge, static_cast<double>(p->virtual_bytes),
          {}, false);
    f.Add("process_open_fds", "open file descriptors", MetricType::Gauge, static_cast<double>(p->open_fds), {},
          false);
    f.Add("process_max_fds", "limit of open file descriptors", MetricType::Gauge, static_cast<double>(p->max_fds),
          {}, false);
    f.Add("process_start_time_seconds", "process start time, unix seconds", MetricType::Gauge,
          p->start_time_seconds > 0 ? p->start_time_seconds : start_time_seconds_, {}, false);
  }
  return f.Take();
}

}  // namespace lorry::metrics
