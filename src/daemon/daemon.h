// The replication daemon behind `lorry run`: one subscription's lifetime.
//
// Start-up: take the subscription's run lock on the subscriber (one active
// `run` per subscription), create the slot with an exported snapshot on first
// start and copy the pending tables at it; copy tables added later at a
// snapshot of their own while the stream is stopped; then stream from the
// origin's progress and apply. Lost connections are retried with capped
// exponential backoff and jitter; SIGINT/SIGTERM (the stop flag) end it cleanly.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"
#include "config/config.h"
#include "daemon/run_events.h"

namespace lorry::metrics {
class RunMetrics;
}

namespace lorry::daemon {

// Settings that may change while the daemon runs (SIGHUP reloads them); the
// daemon reads them once a second.
struct LiveSettings {
  std::atomic<int> group_max_changes{10000};
  std::atomic<int> group_max_delay_ms{50};
};

struct RunOptions {
  int jobs = 0;  // 0: config's copy.jobs
  // Give up instead of retrying after this many consecutive failures (0: never).
  int max_retries = 0;
  // Optional: receives positions, counts and failures (metrics, lorry.status).
  metrics::RunMetrics* metrics = nullptr;
  // Optional: apply limits that override config.apply's while running.
  const LiveSettings* live = nullptr;
  // Optional: told the phase and that the apply loop is alive (systemd, /healthz).
  RunEvents* events = nullptr;
  // `lorry run --until`: stop (Run returns Ok) once every provider
  // transaction committed before this position is applied, none committed
  // at or after it; the origin is then at least at it. Invalid: run until
  // stopped.
  Lsn until;
};

// Runs until `stop` becomes true (returns Ok) or a non-retryable error.
Status Run(const Config& config, const RunOptions& options, const std::atomic<bool>& stop);

// pgoutput protocol version lorry asks for on a provider of this version:
// 1 on 12-13, 2 on 14, 3 on 15, 4 on 16 and later.
int ProtocolVersionFor(int server_version_num);

// START_REPLICATION's pgoutput options: protocol, the publications, and
// logical messages from protocol 2 (PostgreSQL 14) on.
// `stream_in_progress`: ask for large transactions while they run (protocol
// 2+); only a stream whose reader spools them (daemon.cc) may. From
// protocol 4 (PostgreSQL 16) on, origin 'any': a cascade forwards what the
// provider applied from its own provider.
std::string StreamOptions(int proto_version, const std::vector<std::string>& publications,
                          bool stream_in_progress = true);

}  // namespace lorry::daemon
