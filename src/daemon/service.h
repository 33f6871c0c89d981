// Serve: `lorry run` as a service. Around the daemon (daemon::Run) it keeps
// the Prometheus endpoint (--metrics-addr / [metrics] addr), the sampler
// behind lorry.status, and reloads the configuration when asked (SIGHUP).
//
// Reload applies live what can change live: log_level, log_format, the
// metrics address (the endpoint is restarted), [apply] group_max_changes and
// group_max_delay_ms (from the daemon's next tick). Every other change is
// logged as needing a restart and is not applied. A configuration that does
// not parse is logged and the running one kept.
#pragma once

#include <atomic>
#include <functional>

#include "common/status.h"
#include "config/config.h"
#include "daemon/daemon.h"

namespace lorry::daemon {

struct ServeOptions {
  RunOptions run;
  // Loads the configuration again (the file, then flags) for a reload.
  std::function<Result<Config>()> load_config;
  // How often the sampler reads the provider and writes lorry.run_stats.
  int sample_interval_ms = 2000;
};

// Runs until `stop` (returns Ok) or a non-retryable error. Sets `reload` back
// to false each time it reloads.
Status Serve(const Config& config, const ServeOptions& options, const std::atomic<bool>& stop,
             std::atomic<bool>& reload);

}  // namespace lorry::daemon
