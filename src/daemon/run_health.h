// RunHealth: the daemon's phase and the last time its apply loop went round,
// as RunEvents tell them; read by /healthz, the status page and the
// systemd notifier. Thread-safe.
//
// Alive: while streaming, the apply loop must go round (Tick, about once a
// second) within the limit asked for; in the other phases the daemon waits
// by design (a copy, the slot's creation, a standby, a retry's backoff)
// and counts as alive.
#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "daemon/run_events.h"

namespace lorry::daemon {

class RunHealth : public RunEvents {
 public:
  using Clock = std::chrono::steady_clock;

  void OnPhase(RunPhase phase, const std::string& detail) override;
  void OnAlive() override;

  struct View {
    RunPhase phase = RunPhase::kStarting;
    std::string detail;
    double phase_seconds = 0;        // time in this phase
    double since_alive_seconds = 0;  // since the apply loop last went round (or the phase began)
    bool started = false;            // reached standby, preparing, copying, streaming or retrying once
  };
  View Get() const;

  // Whether the daemon is not stuck by `limit` (see above).
  bool Alive(std::chrono::milliseconds limit) const;

 private:
  mutable std::mutex mu_;
  RunPhase phase_ = RunPhase::kStarting;
  std::string detail_;
  Clock::time_point phase_since_ = Clock::now();
  Clock::time_point alive_at_ = Clock::now();
  bool started_ = false;
};

}  // namespace lorry::daemon
