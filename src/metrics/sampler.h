// Sampler: a thread of `lorry run` that every few seconds reads what the
// daemon itself does not see and writes what SQL users read:
//
//  - from the provider: its WAL position and the slot (active, retained WAL,
//    confirmed_flush_lsn), for lag in bytes and the slot-retention alert;
//  - from the subscriber: lorry.table_progress (table states and copy
//    progress, also while the daemon is busy copying);
//  - to the subscriber: lorry.run_stats (lag, rates, slot), behind the
//    lorry.status view, once the daemon streams.
//
// It has its own connections (one per server), reconnects on its own, and
// never stops the daemon: a failure is logged at debug level (warn once per
// streak) and the next sample tries again.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "config/config.h"
#include "metrics/run_metrics.h"
#include "pg/connection.h"

namespace lorry::metrics {

class Sampler {
 public:
  // REQUIRES: metrics outlives the Sampler.
  Sampler(const Config& config, RunMetrics* metrics, std::chrono::milliseconds interval);
  ~Sampler();  // stops and joins
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void Start();

 private:
  void Loop();
  void SampleOnce();
  Status SampleProvider();
  Status SampleSubscriber();
  Status WriteRunStats(pg::PgConn& subscriber);
  void Failed(const char* side, const Status& s, bool* warned);

  const std::string name_;
  const std::string provider_conninfo_;
  const std::string subscriber_conninfo_;
  RunMetrics* metrics_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  pg::PgConn provider_;
  pg::PgConn subscriber_;
  bool provider_warned_ = false;
  bool subscriber_warned_ = false;
  // The previous lorry.run_stats sample, for rates.
  std::optional<std::chrono::steady_clock::time_point> prev_at_;
  int64_t prev_xacts_ = 0;
  int64_t prev_changes_ = 0;
};

}  // namespace lorry::metrics
