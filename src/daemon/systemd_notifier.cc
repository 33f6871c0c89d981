#include "daemon/systemd_notifier.h"

#include <systemd/sd-daemon.h>

#include <chrono>
#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "admin/admin_util.h"

namespace lorry::daemon {

std::string SystemdStatusLine(const RunHealth::View& health, const metrics::Snapshot& snapshot,
                              const std::vector<metrics::TableSample>& tables) {
  std::string out = RunPhaseName(health.phase);
  if (health.phase == RunPhase::kStreaming) {
    out += ": lag ";
    out += snapshot.lag_bytes ? admin::HumanBytes(*snapshot.lag_bytes) : std::string("? bytes");
    out += fmt::format(", {:.1f} s", snapshot.lag_seconds);
  } else if (!health.detail.empty()) {
    out += ": " + health.detail.substr(0, 200);
  }
  if (!tables.empty()) {
    int ready = 0, error = 0;
    for (const auto& t : tables) {
      ready += t.state == "ready";
      error += t.state == "error";
    }
    out += fmt::format("; {} of {} tables ready", ready, tables.size());
    if (error > 0) out += fmt::format(", {} in error", error);
  }
  return out;
}

SystemdNotifier::SystemdNotifier(std::string subscription, const RunHealth* health,
                                 const metrics::RunMetrics* metrics)
    : name_(std::move(subscription)), health_(health), metrics_(metrics) {
  if (std::getenv("NOTIFY_SOCKET") == nullptr) return;
  thread_ = std::thread([this] { Loop(); });
}

SystemdNotifier::~SystemdNotifier() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

std::string SystemdNotifier::StatusLine() const {
  return SystemdStatusLine(health_->Get(), metrics_->Take(), metrics_->Tables());
}

void SystemdNotifier::Loop() {
  using Clock = std::chrono::steady_clock;
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) <= 0) watchdog_usec = 0;
  auto watchdog_every = std::chrono::microseconds(watchdog_usec / 4);
  auto alive_limit = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds(watchdog_usec / 2));
  bool ready = false, stuck_logged = false;
  std::string last_status;
  auto last_status_at = Clock::time_point(), last_watchdog = Clock::time_point();
  while (!stop_.load()) {
    auto now = Clock::now();
    if (!ready && health_->Get().started) {
      ready = true;
      last_status = StatusLine();
      last_status_at = now;
      sd_notify(0, ("READY=1\nSTATUS=" + last_status).c_str());
      spdlog::debug("sub={} told systemd READY=1 ({})", name_, last_status);
    } else if (now - last_status_at >= std::chrono::seconds(2)) {
      std::string status = StatusLine();
      if (status != last_status) sd_notify(0, ("STATUS=" + status).c_str());
      last_status = status;
      last_status_at = now;
    }
    if (watchdog_usec > 0 && now - last_watchdog >= watchdog_every) {
      if (health_->Alive(alive_limit)) {
        sd_notify(0, "WATCHDOG=1");
        last_watchdog = now;
        stuck_logged = false;
      } else if (!stuck_logged) {
        spdlog::error("sub={} the apply loop has not gone round for {:.0f} s: no longer telling systemd's watchdog "
                      "that lorry is alive (it restarts lorry after WatchdogSec)",
                      name_, health_->Get().since_alive_seconds);
        stuck_logged = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace lorry::daemon
