#include "daemon/service.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"
#include "metrics/http_server.h"
#include "metrics/run_metrics.h"
#include "metrics/sampler.h"

namespace lorry::daemon {

namespace {

// Owns what a reload may replace; used by the supervisor thread only (and
// by Serve before and after it).
class Supervisor {
 public:
  Supervisor(const Config& config, const ServeOptions& options, std::shared_ptr<metrics::RunMetrics> metrics,
             LiveSettings* live)
      : current_(config), options_(options), metrics_(std::move(metrics)), live_(live) {}

  Status StartMetrics() {
    if (current_.metrics.addr.empty()) return Status::Ok();
    LORRY_ASSIGN_OR_RETURN(server_, metrics::MetricsServer::Start(current_.metrics.addr, metrics_));
    spdlog::info("sub={} serving metrics on http://{}/metrics (port {}) and /healthz", current_.name,
                 current_.metrics.addr, server_->port());
    return Status::Ok();
  }

  void Reload() {
    auto loaded = options_.load_config ? options_.load_config() : Result<Config>(Status::Usage("no config loader"));
    if (!loaded.ok()) {
      spdlog::error("sub={} reload failed, keeping the running configuration: {}", current_.name,
                    loaded.status().message());
      return;
    }
    const Config& next = *loaded;
    std::vector<std::string> changed, restart;
    if (next.log_level != current_.log_level) {
      SetLogLevel(next.log_level);
      changed.push_back(fmt::format("log_level {} -> {}", current_.log_level, next.log_level));
    }
    if (next.log_format != current_.log_format) {
      SetLogFormat(next.log_format);
      changed.push_back(fmt::format("log_format {} -> {}", current_.log_format, next.log_format));
    }
    if (next.apply.group_max_changes != current_.apply.group_max_changes) {
      live_->group_max_changes.store(next.apply.group_max_changes);
      changed.push_back(fmt::format("apply.group_max_changes {} -> {}", current_.apply.group_max_changes,
                                    next.apply.group_max_changes));
    }
    if (next.apply.group_max_delay_ms != current_.apply.group_max_delay_ms) {
      live_->group_max_delay_ms.store(next.apply.group_max_delay_ms);
      changed.push_back(fmt::format("apply.group_max_delay_ms {} -> {}", current_.apply.group_max_delay_ms,
                                    next.apply.group_max_delay_ms));
    }
    if (next.metrics.addr != current_.metrics.addr) {
      std::string old = current_.metrics.addr.empty() ? "off" : current_.metrics.addr;
      server_.reset();
      current_.metrics.addr = next.metrics.addr;
      Status s = StartMetrics();
      if (s.ok())
        changed.push_back(fmt::format("metrics.addr {} -> {}", old, next.metrics.addr.empty() ? "off" : next.metrics.addr));
      else
        spdlog::error("sub={} reload: {}; metrics are not served until the next reload", current_.name, s.message());
    }
    if (next.provider != current_.provider) restart.push_back("provider");
    if (next.subscriber != current_.subscriber) restart.push_back("subscriber");
    if (next.name != current_.name) restart.push_back("name");
    if (next.copy.jobs != current_.copy.jobs) restart.push_back("copy.jobs");
    if (next.copy.index_jobs != current_.copy.index_jobs) restart.push_back("copy.index_jobs");
    if (next.copy.split_tables_larger_than != current_.copy.split_tables_larger_than)
      restart.push_back("copy.split_tables_larger_than");
    if (next.copy.maintenance_work_mem != current_.copy.maintenance_work_mem)
      restart.push_back("copy.maintenance_work_mem");
    if (next.apply.statement_cache_size != current_.apply.statement_cache_size)
      restart.push_back("apply.statement_cache_size");

    std::string applied = changed.empty() ? "nothing that can change live" : fmt::format("{}", fmt::join(changed, ", "));
    spdlog::info("sub={} reloaded {}: applied {}", current_.name, next.source.empty() ? "configuration" : next.source,
                 applied);
    if (!restart.empty())
      spdlog::warn("sub={} reload: changed but not applied, restart `lorry run` for them: {}", current_.name,
                   fmt::join(restart, ", "));
    std::string addr = current_.metrics.addr;
    std::string name = current_.name;
    current_ = next;
    current_.metrics.addr = addr;  // what is actually served
    current_.name = name;
  }

  void StopMetrics() { server_.reset(); }

 private:
  Config current_;
  const ServeOptions& options_;
  std::shared_ptr<metrics::RunMetrics> metrics_;
  LiveSettings* live_;
  std::unique_ptr<metrics::MetricsServer> server_;
};

}  // namespace

Status Serve(const Config& config, const ServeOptions& options, const std::atomic<bool>& stop,
             std::atomic<bool>& reload) {
  auto metrics = std::make_shared<metrics::RunMetrics>(config.name);
  LiveSettings live;
  live.group_max_changes.store(config.apply.group_max_changes);
  live.group_max_delay_ms.store(config.apply.group_max_delay_ms);
  Supervisor supervisor(config, options, metrics, &live);
  LORRY_RETURN_IF_ERROR(supervisor.StartMetrics());
  metrics::Sampler sampler(config, metrics.get(), std::chrono::milliseconds(options.sample_interval_ms));
  sampler.Start();

  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load()) {
      if (reload.exchange(false)) supervisor.Reload();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  RunOptions run = options.run;
  run.metrics = metrics.get();
  run.live = &live;
  Status s = Run(config, run, stop);
  done.store(true);
  watcher.join();
  supervisor.StopMetrics();
  return s;
}

}  // namespace lorry::daemon
