#include "daemon/run_health.h"

namespace lorry::daemon {

void RunHealth::OnPhase(RunPhase phase, const std::string& detail) {
  std::lock_guard lock(mu_);
  auto now = Clock::now();
  if (phase != phase_) phase_since_ = now;
  phase_ = phase;
  detail_ = detail;
  alive_at_ = now;
  if (phase != RunPhase::kStarting) started_ = true;
}

void RunHealth::OnAlive() {
  std::lock_guard lock(mu_);
  alive_at_ = Clock::now();
}

RunHealth::View RunHealth::Get() const {
  std::lock_guard lock(mu_);
  auto now = Clock::now();
  return {phase_, detail_, std::chrono::duration<double>(now - phase_since_).count(),
          std::chrono::duration<double>(now - alive_at_).count(), started_};
}

bool RunHealth::Alive(std::chrono::milliseconds limit) const {
  std::lock_guard lock(mu_);
  return phase_ != RunPhase::kStreaming || Clock::now() - alive_at_ <= limit;
}

}  // namespace lorry::daemon
