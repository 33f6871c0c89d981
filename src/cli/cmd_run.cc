// Subcommand run: the replication daemon. SIGINT/SIGTERM stop it cleanly.
#include <csignal>
#include <iostream>

#include "cli/cli.h"
#include "common/log.h"
#include "daemon/daemon.h"

namespace lorry::cli {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void OnStopSignal(int) { g_stop.store(true); }
}  // namespace

void RegisterRun(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("run", "the replication daemon: copy, catch up, stream");
  auto opts = std::make_shared<daemon::RunOptions>();
  cmd->add_option("--jobs,-j", opts->jobs, "parallel copy connections (default: config copy.jobs)");
  auto timeouts = std::make_shared<std::pair<double, double>>(0, 0);
  cmd->add_option("--takeover-timeout", timeouts->first,
                  "seconds before a standby takes over from a silent active run (default: config run.takeover_timeout)");
  cmd->add_option("--network-timeout", timeouts->second,
                  "seconds of silence before a connection counts as dead (default: config run.network_timeout)");
  cmd->callback([&, opts, timeouts] {
    action = [&, opts, timeouts] {
      auto config = ResolveConfig(g);
      if (!config.ok()) return Finish(config.status());
      if (timeouts->first > 0) config->run.takeover_timeout = timeouts->first;
      if (timeouts->second > 0) config->run.network_timeout = timeouts->second;
      if (Status v = ValidateConfig(*config); !v.ok()) return Finish(v);
      SetLogLevel(config->log_level);
      struct sigaction sa {};
      sa.sa_handler = OnStopSignal;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);
      std::signal(SIGPIPE, SIG_IGN);
      return Finish(daemon::Run(*config, *opts, g_stop));
    };
  });
}

}  // namespace lorry::cli
