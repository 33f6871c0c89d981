// SystemdNotifier: `lorry run` as a systemd Type=notify service.
//
// When systemd started us (NOTIFY_SOCKET is set) a thread of its own tells
// systemd, with sd_notify(3):
//   READY=1     once start-up succeeded: this run holds the subscription's
//               lease and is connected to both servers (or stands by, or
//               retries an error that may pass). A wrong password, a
//               missing `lorry init` or a bad config exit before, so that
//               `systemctl start` fails. The initial copy, which may take
//               hours, is the service's work, not its start-up.
//   STATUS=...  the phase and lag ("streaming: lag 312 bytes, 0.3 s; 3 of 3
//               tables ready"), refreshed every 2 s;
//   WATCHDOG=1  every WatchdogSec/4 while the daemon is alive
//               (RunHealth::Alive within WatchdogSec/2): while streaming,
//               only if the apply loop went round, so a stuck apply loop
//               makes systemd restart lorry;
//   STOPPING=1  when it stops.
// Without NOTIFY_SOCKET it does nothing.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "daemon/run_health.h"
#include "metrics/run_metrics.h"

namespace lorry::daemon {

class SystemdNotifier {
 public:
  // REQUIRES: health and metrics outlive the notifier.
  SystemdNotifier(std::string subscription, const RunHealth* health, const metrics::RunMetrics* metrics);
  ~SystemdNotifier();  // STOPPING=1, then joins
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

 private:
  void Loop();
  std::string StatusLine() const;

  const std::string name_;
  const RunHealth* health_;
  const metrics::RunMetrics* metrics_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The STATUS= text for a phase, its detail and the metrics (for tests).
std::string SystemdStatusLine(const RunHealth::View& health, const metrics::Snapshot& snapshot,
                              const std::vector<metrics::TableSample>& tables);

}  // namespace lorry::daemon
