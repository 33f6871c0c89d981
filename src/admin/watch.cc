#include "admin/watch.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>
#include <ostream>
#include <thread>

#include <fmt/format.h>

#include "admin/admin_util.h"
#include "pg/conninfo.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

std::optional<double> OptDouble(const pg::PgResult& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return std::stod(std::string(r.Get(row, col)));
}

std::string Rate(double per_second) {
  if (per_second >= 10000) return fmt::format("{:.1f}k", per_second / 1000);
  return fmt::format("{:.1f}", per_second);
}

std::string Seconds(double s) {
  if (s < 120) return fmt::format("{:.1f} s", s);
  if (s < 7200) return fmt::format("{:.0f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

std::string Now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// One frame's text from the two views. kPrecondition when the subscription
// does not exist.
Result<std::string> Frame(pg::PgConn& db, const std::string& name, int width) {
  LORRY_ASSIGN_OR_RETURN(auto view, db.QueryValue("SELECT to_regclass('lorry.status')::text"));
  if (!view) {
    LORRY_ASSIGN_OR_RETURN(auto old, db.QueryValue("SELECT to_regclass('lorry.subscriptions')::text"));
    if (!old) return NotInitialised(name);
    return Status::Precondition(
        "the lorry schema on the subscriber predates the lorry.status view: upgrade it with `lorry init` (or by "
        "starting this version's `lorry run`)");
  }
  LORRY_ASSIGN_OR_RETURN(
      auto s, db.ExecParams("SELECT state, running, run_host, run_pid, heartbeat_age_seconds, "
                            "lag_bytes, lag_seconds, xacts_per_second, changes_per_second, xacts_applied, "
                            "changes_applied, slot_retained_bytes, tables, ready, copying, catching_up, pending, "
                            "errors, last_error, last_error_at::text, applied_lsn::text, stats_age_seconds, "
                            "standby_host, standby_pid "
                            "FROM lorry.status WHERE subscription = $1",
                            {name}));
  if (s.rows() == 0) return NotInitialised(name);
  std::string out;
  auto line = [&](const std::string& l) { out += l + "\n"; };

  std::string run = "no lorry run active";
  if (s.GetBool(0, 1))
    run = s.IsNull(0, 3) ? "lorry run active" : fmt::format("lorry run active, pid {} on {}", s.Get(0, 3), s.Get(0, 2));
  if (auto hb = OptDouble(s, 0, 4)) run += fmt::format(", heartbeat {} ago", Seconds(*hb));
  if (!s.IsNull(0, 22)) run += fmt::format("; standby pid {} on {}", s.Get(0, 23), s.Get(0, 22));
  line(fmt::format("lorry {}  {}  ({})  {}", name, s.Get(0, 0), run, Now()));

  std::string lag = "unknown (no sample from a running `lorry run`)";
  if (!s.IsNull(0, 5))
    lag = fmt::format("{}, {}", HumanBytes(s.GetInt(0, 5)), Seconds(OptDouble(s, 0, 6).value_or(0)));
  std::string rates = "-";
  if (auto x = OptDouble(s, 0, 7)) rates = fmt::format("{} xacts/s, {} changes/s", Rate(*x), Rate(OptDouble(s, 0, 8).value_or(0)));
  line(fmt::format("lag      {}   rates {}", lag, rates));
  std::string slot = s.IsNull(0, 11) ? "" : fmt::format(", slot keeps {} of WAL", HumanBytes(s.GetInt(0, 11)));
  line(fmt::format("applied  {} xacts, {} changes, up to {}{}", s.Get(0, 9), s.Get(0, 10),
                   s.IsNull(0, 20) ? "-" : std::string(s.Get(0, 20)), slot));
  std::string counts;
  const char* labels[] = {"ready", "copying", "catching_up", "pending", "error"};
  for (int i = 0; i < 5; ++i)
    if (s.GetInt(0, 13 + i) > 0) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", s.Get(0, 13 + i), labels[i]);
  line(fmt::format("tables   {}{}", s.Get(0, 12), counts.empty() ? "" : ": " + counts));
  std::string error = s.IsNull(0, 18) ? "none" : fmt::format("{} (at {})", pg::RedactSecrets(s.Get(0, 18)), s.Get(0, 19));
  line("error    " + (width > 0 ? error.substr(0, std::max(20, width - 9)) : error));

  LORRY_ASSIGN_OR_RETURN(
      auto t, db.ExecParams("SELECT table_name, state, copy_fraction, bytes_copied, bytes_estimate, "
                            "copy_bytes_per_second, copy_seconds_left, indexes_to_rebuild, index_building, "
                            "index_build_phase, index_build_fraction, rows_copied, error "
                            "FROM lorry.table_progress WHERE subscription = $1 "
                            "ORDER BY state = 'ready', nspname, relname",
                            {name}));
  if (t.rows() == 0) return out + "\nno tables\n";
  size_t name_width = 5;
  for (int i = 0; i < t.rows(); ++i) name_width = std::max(name_width, std::string(t.Get(i, 0)).size());
  name_width = std::min<size_t>(name_width, 40);
  out += "\n";
  line(fmt::format("{:<{}}  {:<11}  {}", "TABLE", name_width, "STATE", "PROGRESS"));
  for (int i = 0; i < t.rows(); ++i) {
    std::string state(t.Get(i, 1));
    std::string progress;
    if (state == "copying") {
      progress = ProgressBar(OptDouble(t, i, 2).value_or(0), 20) + " ";
      progress += t.IsNull(i, 4) ? fmt::format("{} copied", HumanBytes(t.GetInt(i, 3)))
                                 : fmt::format("{:.0f}% {} of ~{}", 100 * OptDouble(t, i, 2).value_or(0),
                                               HumanBytes(t.GetInt(i, 3)), HumanBytes(t.GetInt(i, 4)));
      if (auto r = OptDouble(t, i, 5)) progress += fmt::format(", {}/s", HumanBytes(static_cast<int64_t>(*r)));
      if (auto left = OptDouble(t, i, 6)) progress += fmt::format(", ~{} left", Seconds(*left));
    }
    if (!t.IsNull(i, 9)) {
      if (!progress.empty()) progress += "; ";
      progress += fmt::format("index {} {} {:.0f}% ({})", t.IsNull(i, 8) ? "?" : std::string(t.Get(i, 8)),
                              ProgressBar(OptDouble(t, i, 10).value_or(0), 10),
                              100 * OptDouble(t, i, 10).value_or(0), t.Get(i, 9));
    }
    if (int64_t left = t.GetInt(i, 7); left > 0)
      progress += fmt::format("{}{} index{} to rebuild", progress.empty() ? "" : "; ", left, left == 1 ? "" : "es");
    if (state == "error") progress = pg::RedactSecrets(t.Get(i, 12));
    if (state == "ready" && progress.empty()) progress = fmt::format("{} rows copied", t.Get(i, 11));
    std::string row = fmt::format("{:<{}}  {:<11}  {}", std::string(t.Get(i, 0)).substr(0, name_width), name_width,
                                  state, progress);
    if (width > 0 && static_cast<int>(row.size()) > width) row = row.substr(0, width);
    line(row);
  }
  return out;
}

}  // namespace

std::string ProgressBar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  int filled = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

Status Watch(const Config& config, const WatchOptions& options, const std::atomic<bool>& stop, std::ostream& out) {
  std::optional<pg::PgConn> db;
  for (int frame = 0; !stop.load() && (options.count == 0 || frame < options.count); ++frame) {
    auto started = std::chrono::steady_clock::now();
    std::string text;
    if (!db) {
      auto c = ConnectSubscriber(config);
      if (c.ok()) db = std::move(*c);
      else text = fmt::format("lorry {}  subscriber unreachable, retrying  {}\n{}\n", config.name, Now(),
                              pg::RedactSecrets(c.status().message()));
    }
    if (db) {
      auto f = Frame(*db, config.name, options.width);
      if (!f.ok() && f.status().kind() == Status::Kind::kPrecondition) return f.status();
      if (f.ok()) {
        text = *f;
      } else {
        text = fmt::format("lorry {}  subscriber unreachable, retrying  {}\n{}\n", config.name, Now(),
                           pg::RedactSecrets(f.status().message()));
        db.reset();
      }
    }
    if (options.terminal)
      out << "\x1b[H\x1b[2J" << text << std::flush;
    else
      out << text << "\n" << std::flush;
    if (options.count != 0 && frame + 1 >= options.count) break;
    auto until = started + std::chrono::duration<double>(options.interval_seconds);
    while (!stop.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::Ok();
}

}  // namespace lorry::admin
