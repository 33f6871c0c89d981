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
  cmd->callback([&, opts] {
    action = [&, opts] {
      auto config = ResolveConfig(g);
      if (!config.ok()) return Finish(config.status());
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
