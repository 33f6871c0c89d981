#include "daemon/service.h"

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <prometheus/text_serializer.h>

#include <fmt/format.h>

#include "admin/status_check.h"
#include "common/log.h"
#include "daemon/run_health.h"
#include "daemon/status_page.h"
#include "daemon/status_source.h"
#include "daemon/systemd_notifier.h"
#include "metrics/http_server.h"
#include "metrics/run_metrics.h"
#include "metrics/sampler.h"

namespace lorry::daemon {

namespace {

using metrics::HttpRequest;
using metrics::HttpResponse;
using nlohmann::json;

// /healthz fails when the apply loop has not gone round for this long while streaming.
constexpr auto kLivenessLimit = std::chrono::seconds(60);

HttpResponse Text(int code, const std::string& body) { return {code, "text/plain; charset=utf-8", body + "\n", {}}; }
HttpResponse Json(int code, const json& body) {
  return {code, "application/json", body.dump(2, ' ', false, json::error_handler_t::replace) + "\n", {}};
}

// /readyz's limits from its query (?max_lag_seconds=30&max_lag_bytes=...).
Result<admin::CheckLimits> LimitsFrom(const HttpRequest& req) {
  admin::CheckLimits l;
  for (const auto& [key, value] : req.params) {
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end == nullptr || *end != '\0' || !(v >= 0))
      return Status::Usage(fmt::format("{}: expected a number >= 0, got \"{}\"", key, value));
    if (key == "max_lag_bytes") l.max_lag_bytes = static_cast<int64_t>(v);
    else if (key == "max_lag_seconds") l.max_lag_seconds = v;
    else if (key == "warn_lag_bytes") l.warn_lag_bytes = static_cast<int64_t>(v);
    else if (key == "warn_lag_seconds") l.warn_lag_seconds = v;
    else
      return Status::Usage(fmt::format("unknown parameter {}: /readyz takes max_lag_bytes, max_lag_seconds, "
                                       "warn_lag_bytes, warn_lag_seconds",
                                       key));
  }
  return l;
}

// What the HTTP endpoint serves, over the run's metrics, health and status report.
class Routes {
 public:
  Routes(const Config& config, std::shared_ptr<metrics::RunMetrics> metrics, const RunHealth* health)
      : name_(config.name), metrics_(std::move(metrics)), health_(health), source_(config) {}

  std::map<std::string, metrics::HttpRoute> All() {
    return {{"/metrics", [this](const HttpRequest&) { return Metrics(); }},
            {"/healthz", [this](const HttpRequest&) { return Healthz(); }},
            {"/readyz", [this](const HttpRequest& r) { return Readyz(r); }},
            {"/status.json", [this](const HttpRequest& r) { return StatusJson(r); }},
            {"/run.json", [this](const HttpRequest&) { return Json(200, Run()); }},
            {"/", [this](const HttpRequest& r) { return Page(r); }}};
  }

 private:
  HttpResponse Metrics() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_->Collect());
    return {200, "text/plain; version=0.0.4; charset=utf-8", out.str(), {}};
  }

  // Liveness: the process serves, and its apply loop is not stuck.
  HttpResponse Healthz() {
    auto h = health_->Get();
    std::string phase = RunPhaseName(h.phase);
    if (!health_->Alive(kLivenessLimit))
      return Text(503, fmt::format("stuck: {} but the apply loop has not gone round for {:.0f} s", phase,
                                   h.since_alive_seconds));
    return Text(200, "ok: " + phase);
  }

  // Readiness: `lorry status --check`'s rules over the run's status report.
  HttpResponse Readyz(const HttpRequest& req) {
    auto limits = LimitsFrom(req);
    if (!limits.ok()) return Text(400, limits.status().message());
    auto latest = source_.Get();
    admin::CheckResult c = latest.report ? admin::CheckStatusReport(*latest.report, *limits)
                                         : admin::CheckUnknown("status report unavailable: " + latest.error);
    int code = c.state == admin::CheckState::kOk || c.state == admin::CheckState::kWarning ? 200 : 503;
    HttpResponse r = Text(code, c.line);
    r.headers.push_back({"X-Lorry-Check", std::to_string(static_cast<int>(c.state))});
    return r;
  }

  // The report as `lorry status --json` prints it (?table=NAME: only that table).
  HttpResponse StatusJson(const HttpRequest& req) {
    auto latest = source_.Get();
    if (!latest.report) return Json(503, {{"error", "status report unavailable: " + latest.error}});
    auto table = req.params.find("table");
    if (table == req.params.end()) return Json(200, *latest.report);
    auto only = OnlyTable(*latest.report, table->second);
    if (!only) return Json(404, {{"error", NoTable(*latest.report, table->second)}});
    return Json(200, *only);
  }

  json Run() {
    std::map<std::string, int64_t> errors;
    for (const auto& f : metrics_->Collect())
      if (f.name == "lorry_errors_total")
        for (const auto& m : f.metric)
          for (const auto& l : m.label)
            if (l.name == "kind") errors[l.value] = static_cast<int64_t>(m.counter.value);
    return RunJson(health_->Get(), metrics_->Take(), errors, source_.History());
  }

  HttpResponse Page(const HttpRequest& req) {
    auto latest = source_.Get();
    json run = Run();
    std::string table;
    if (auto it = req.params.find("table"); it != req.params.end()) table = it->second;
    HttpResponse r{200, "text/html; charset=utf-8", "", {}};
    // No external assets: everything is inline, and the browser is told so.
    r.headers.push_back({"Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                         "connect-src 'self'; img-src data:"});
    if (!latest.report) {
      r.code = 503;
      r.body = RenderStatusPage(nullptr, "status report unavailable: " + latest.error, run, table);
    } else if (table.empty()) {
      r.body = RenderStatusPage(&*latest.report, "", run, table);
    } else if (auto only = OnlyTable(*latest.report, table)) {
      r.body = RenderStatusPage(&*only, "", run, table);
    } else {
      r.code = 404;
      r.body = RenderStatusPage(nullptr, NoTable(*latest.report, table), run, table);
    }
    return r;
  }

  std::string NoTable(const json& report, const std::string& table) const {
    std::string names;
    for (const auto& t : report.at("tables")) names += (names.empty() ? "" : ", ") + t.value("name", "");
    return fmt::format("subscription {} replicates no table named \"{}\" ({}: {})", name_, table,
                       names.empty() ? "it has no tables" : "its tables are", names.empty() ? "add some with lorry add"
                                                                                             : names);
  }

  const std::string name_;
  std::shared_ptr<metrics::RunMetrics> metrics_;
  const RunHealth* health_;
  StatusSource source_;
};

// The password of [metrics] basic_auth_password_file: its first line.
Result<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Usage(fmt::format("metrics.basic_auth_password_file: cannot read {}", path));
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) return Status::Usage(fmt::format("metrics.basic_auth_password_file: {} is empty", path));
  return line;
}

// Owns what a reload may replace; used by the supervisor thread only (and
// by Serve before and after it).
class Supervisor {
 public:
  Supervisor(const Config& config, const ServeOptions& options, std::shared_ptr<metrics::RunMetrics> metrics,
             LiveSettings* live, const RunHealth* health)
      : current_(config), options_(options), metrics_(std::move(metrics)), live_(live), health_(health) {}

  Status StartMetrics() {
    if (current_.metrics.addr.empty()) return Status::Ok();
    metrics::HttpServerOptions o;
    if (!current_.metrics.basic_auth_user.empty()) {
      o.basic_auth_user = current_.metrics.basic_auth_user;
      LORRY_ASSIGN_OR_RETURN(o.basic_auth_password, ReadPasswordFile(current_.metrics.basic_auth_password_file));
    }
    server_.reset();
    routes_ = std::make_unique<Routes>(current_, metrics_, health_);
    o.routes = routes_->All();
    LORRY_ASSIGN_OR_RETURN(server_, metrics::HttpServer::Start(current_.metrics.addr, std::move(o)));
    const std::string& addr = current_.metrics.addr;
    spdlog::info("sub={} serving metrics on http://{}/ (port {}): the status page at /, /metrics, /healthz, /readyz, "
                 "/status.json{}",
                 current_.name, addr.rfind(':', 0) == 0 ? "0.0.0.0" + addr : addr, server_->port(),
                 current_.metrics.basic_auth_user.empty() ? "" : " (basic authentication but /healthz)");
    if (!metrics::IsLoopbackAddress(addr))
      spdlog::warn("sub={} metrics.addr {} is reachable from other hosts: the status page and /status.json show "
                   "table names, positions and server errors{}. Bind 127.0.0.1, or put a TLS proxy in front "
                   "(see the README)",
                   current_.name, addr,
                   current_.metrics.basic_auth_user.empty()
                       ? " to anyone who connects (no [metrics] basic_auth_user)"
                       : ", and basic authentication sends its password in clear text without TLS");
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
    if (next.metrics.addr != current_.metrics.addr ||
        next.metrics.basic_auth_user != current_.metrics.basic_auth_user ||
        next.metrics.basic_auth_password_file != current_.metrics.basic_auth_password_file) {
      std::string old = current_.metrics.addr.empty() ? "off" : current_.metrics.addr;
      StopMetrics();
      current_.metrics = next.metrics;
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
    MetricsConfig served = current_.metrics;
    std::string name = current_.name;
    current_ = next;
    current_.metrics = served;  // what is actually served
    current_.name = name;
  }

  void StopMetrics() {
    server_.reset();
    routes_.reset();
  }

 private:
  Config current_;
  const ServeOptions& options_;
  std::shared_ptr<metrics::RunMetrics> metrics_;
  LiveSettings* live_;
  const RunHealth* health_;
  std::unique_ptr<Routes> routes_;  // outlives server_ (its routes point into it)
  std::unique_ptr<metrics::HttpServer> server_;
};

}  // namespace

Status Serve(const Config& config, const ServeOptions& options, const std::atomic<bool>& stop,
             std::atomic<bool>& reload) {
  auto metrics = std::make_shared<metrics::RunMetrics>(config.name);
  LiveSettings live;
  live.group_max_changes.store(config.apply.group_max_changes);
  live.group_max_delay_ms.store(config.apply.group_max_delay_ms);
  RunHealth health;
  Supervisor supervisor(config, options, metrics, &live, &health);
  LORRY_RETURN_IF_ERROR(supervisor.StartMetrics());
  SystemdNotifier notifier(config.name, &health, metrics.get());
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
  run.events = &health;
  Status s = Run(config, run, stop);
  done.store(true);
  watcher.join();
  supervisor.StopMetrics();
  return s;
}

}  // namespace lorry::daemon
