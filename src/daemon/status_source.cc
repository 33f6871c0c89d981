#include "daemon/status_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "pg/conninfo.h"

namespace lorry::daemon {

namespace {
constexpr auto kWantedFor = std::chrono::seconds(60);
constexpr auto kHistory = std::chrono::minutes(15);
}  // namespace

StatusSource::StatusSource(const Config& config, std::chrono::milliseconds interval)
    : config_(config), interval_(interval) {
  thread_ = std::thread([this] { Loop(); });
}

StatusSource::~StatusSource() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

StatusSource::Latest StatusSource::Get(std::chrono::milliseconds max_age, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  bool idle = Clock::now() - wanted_at_ > kWantedFor;
  wanted_at_ = Clock::now();
  if (idle) cv_.notify_all();  // wake the thread: the report is wanted again
  auto fresh = [&] { return report_ && Clock::now() - report_at_ <= max_age; };
  cv_.wait_for(lock, wait, [&] { return fresh() || stop_; });
  Latest out;
  if (report_) out.age_seconds = std::chrono::duration<double>(Clock::now() - report_at_).count();
  if (fresh()) {
    out.report = report_;
  } else {
    out.error = !error_.empty() ? error_
                                : fmt::format("no status report within {} s", std::chrono::duration<double>(wait).count());
    if (report_) out.error += fmt::format(" (the last one is {:.0f} s old)", out.age_seconds);
  }
  return out;
}

std::deque<StatusSource::LagPoint> StatusSource::History() const {
  std::lock_guard lock(mu_);
  return history_;
}

void StatusSource::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (Clock::now() - wanted_at_ <= kWantedFor) {
      lock.unlock();
      Refresh();
      lock.lock();
      cv_.notify_all();
    }
    cv_.wait_for(lock, interval_, [&] { return stop_; });
    // Idle (nobody asked for a minute): sleep until asked.
    cv_.wait(lock, [&] { return stop_ || Clock::now() - wanted_at_ <= kWantedFor; });
  }
}

void StatusSource::Refresh() {
  Result<nlohmann::json> report = Status::Internal("not read");
  if (!subscriber_.connected()) {
    auto c = admin::ConnectSubscriber(config_);
    if (!c.ok()) {
      report = c.status();
    } else {
      subscriber_ = std::move(c.value());
    }
  }
  if (subscriber_.connected()) {
    if (!provider_.connected())
      if (auto c = admin::ConnectProvider(config_); c.ok()) provider_ = std::move(c.value());
    report = admin::StatusReportJson(config_, subscriber_, provider_.connected() ? &provider_ : nullptr);
    if (!report.ok()) subscriber_ = pg::PgConn();  // made again next time
    if (report.ok() && !report->at("subscription").value("provider_reachable", false)) provider_ = pg::PgConn();
  }
  std::lock_guard lock(mu_);
  if (!report.ok()) {
    error_ = pg::RedactSecrets(report.status().message());
    SPDLOG_DEBUG("sub={} status report: {}", config_.name, error_);
    return;
  }
  error_.clear();
  report_ = std::move(report.value());
  report_at_ = Clock::now();
  const auto& sub = report_->at("subscription");
  LagPoint p{std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(), {}, {}};
  if (sub.at("lag_bytes").is_number()) p.lag_bytes = sub.at("lag_bytes").get<int64_t>();
  if (sub.at("lag_seconds").is_number()) p.lag_seconds = sub.at("lag_seconds").get<double>();
  history_.push_back(p);
  while (!history_.empty() && history_.front().unix_seconds < p.unix_seconds - std::chrono::seconds(kHistory).count())
    history_.pop_front();
}

}  // namespace lorry::daemon
