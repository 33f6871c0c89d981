// Subcommand run: the replication daemon. SIGINT/SIGTERM stop it cleanly;
// SIGHUP reloads the configuration (daemon/service.h says what changes live).
#include <csignal>
#include <iostream>

#include <fmt/format.h>

#include "admin/admin.h"
#include "cli/cli.h"
#include "common/log.h"
#include "daemon/service.h"

namespace lorry::cli {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void OnStopSignal(int) { g_stop.store(true); }
extern "C" void OnReloadSignal(int) { g_reload.store(true); }

Result<Lsn> ParseUntil(const std::string& text) {
  if (auto lsn = Lsn::Parse(text)) return *lsn;
  return Status::Usage(fmt::format("expected a provider LSN such as 0/16B3748, or now; got \"{}\"", text));
}

void Handle(int signal, void (*handler)(int), int flags) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  sigaction(signal, &sa, nullptr);
}
}  // namespace

void RegisterRun(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("run", "the replication daemon: copy, catch up, stream");
  auto opts = std::make_shared<daemon::ServeOptions>();
  cmd->add_option("--jobs,-j", opts->run.jobs, "parallel copy connections, 1..64 (default: config copy.jobs)")
      ->check(CLI::Range(1, 64));
  auto timeouts = std::make_shared<std::pair<double, double>>(0, 0);
  cmd->add_option("--takeover-timeout", timeouts->first,
                  "seconds before a standby takes over from a silent active run (default: config run.takeover_timeout)");
  cmd->add_option("--network-timeout", timeouts->second,
                  "seconds of silence before a connection counts as dead (default: config run.network_timeout)");
  auto metrics_addr = std::make_shared<std::string>();
  cmd->add_option("--metrics-addr", *metrics_addr,
                  "serve the status page (/), /metrics, /healthz, /readyz and /status.json on HOST:PORT "
                  "(default: config metrics.addr; none)");
  auto until = std::make_shared<std::string>();
  cmd->add_option("--until", *until,
                  "apply every provider transaction committed before LSN (or before the provider's position when "
                  "run starts: now), none after, then exit 0");
  cmd->callback([&, opts, timeouts, metrics_addr, until] {
    action = [&, opts, timeouts, metrics_addr, until] {
      // The file, then the flags: also what a reload (SIGHUP) reads.
      auto load = [&g, timeouts, metrics_addr]() -> Result<Config> {
        LORRY_ASSIGN_OR_RETURN(auto c, ResolveConfig(g));
        if (timeouts->first > 0) c.run.takeover_timeout = timeouts->first;
        if (timeouts->second > 0) c.run.network_timeout = timeouts->second;
        if (!metrics_addr->empty()) {
          LORRY_RETURN_IF_ERROR(CheckListenAddress(*metrics_addr, "--metrics-addr"));
          c.metrics.addr = *metrics_addr;
        }
        LORRY_RETURN_IF_ERROR(ValidateConfig(c));
        return c;
      };
      auto config = load();
      if (!config.ok()) return Finish(config.status());
      SetLogLevel(config->log_level);
      SetLogFormat(config->log_format);
      opts->load_config = load;
      if (!until->empty()) {
        auto lsn = *until == "now" ? admin::ProviderPositionNow(*config) : ParseUntil(*until);
        if (!lsn.ok()) return Finish(lsn.status().WithContext("--until"));
        opts->run.until = *lsn;
        spdlog::info("sub={} running until provider position {}", config->name, lsn->ToString());
      }
      Handle(SIGINT, OnStopSignal, 0);
      Handle(SIGTERM, OnStopSignal, 0);
      Handle(SIGHUP, OnReloadSignal, SA_RESTART);
      std::signal(SIGPIPE, SIG_IGN);
      return Finish(daemon::Serve(*config, *opts, g_stop, g_reload));
    };
  });
}

}  // namespace lorry::cli
