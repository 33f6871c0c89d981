// StatusSource: the report `lorry status --json` prints, kept fresh by
// `lorry run` for its HTTP endpoints (/status.json, /readyz, the page).
//
// A thread of its own reads the report every 2 s over its own connections
// (one per server, made again after a failure) while someone asked for it
// in the last minute, so that requests never wait on a database: they get
// the last report and its age. It also keeps the lag of the last 15
// minutes for the page's chart.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "pg/connection.h"

namespace lorry::daemon {

class StatusSource {
 public:
  using Clock = std::chrono::steady_clock;
  explicit StatusSource(const Config& config, std::chrono::milliseconds interval = std::chrono::seconds(2));
  ~StatusSource();  // stops and joins
  StatusSource(const StatusSource&) = delete;
  StatusSource& operator=(const StatusSource&) = delete;

  struct Latest {
    std::optional<nlohmann::json> report;  // none yet, or too old (see error)
    double age_seconds = 0;
    std::string error;  // why there is no fresh report
  };
  // The last report if not older than `max_age`; waits up to `wait` for
  // the first one. Marks the report as wanted.
  Latest Get(std::chrono::milliseconds max_age = std::chrono::seconds(10),
             std::chrono::milliseconds wait = std::chrono::seconds(3));

  struct LagPoint {
    double unix_seconds;
    std::optional<int64_t> lag_bytes;
    std::optional<double> lag_seconds;
  };
  std::deque<LagPoint> History() const;

 private:
  void Loop();
  void Refresh();

  const Config config_;
  const std::chrono::milliseconds interval_;
  pg::PgConn subscriber_;
  pg::PgConn provider_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<nlohmann::json> report_;
  Clock::time_point report_at_;
  std::string error_;
  std::deque<LagPoint> history_;
  Clock::time_point wanted_at_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace lorry::daemon
