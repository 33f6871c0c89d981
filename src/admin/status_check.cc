#include "admin/status_check.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace lorry::admin {

namespace {

using nlohmann::json;

std::optional<double> Number(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string Text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool Flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// One line: no newlines, and not endless (a server message may be long).
std::string Short(std::string s, size_t max = 200) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '|', '/');  // '|' starts the perfdata
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

struct Problem {
  CheckState state;
  std::string text;
};

int Rank(CheckState s) {
  switch (s) {
    case CheckState::kOk: return 0;
    case CheckState::kWarning: return 1;
    case CheckState::kUnknown: return 2;
    case CheckState::kCritical: return 3;
  }
  return 0;
}

std::string Threshold(const std::optional<double>& v) { return v ? fmt::format("{}", *v) : ""; }

}  // namespace

const char* CheckStateName(CheckState s) {
  switch (s) {
    case CheckState::kOk: return "OK";
    case CheckState::kWarning: return "WARNING";
    case CheckState::kCritical: return "CRITICAL";
    case CheckState::kUnknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::string SubscriptionState(const json& report) {
  const json& s = report.at("subscription");
  if (Flag(s, "paused")) return "paused";
  if (!Flag(s, "run_active")) return "stopped";
  if (!Text(s, "last_error").empty()) return "retrying";
  const json counts = report.value("table_states", json::object());
  if (counts.value("copying", 0) > 0 || counts.value("pending", 0) > 0) return "copying";
  return "streaming";
}

CheckResult CheckUnknown(const std::string& why) {
  return {CheckState::kUnknown, "LORRY UNKNOWN - " + Short(why)};
}

CheckResult CheckStatusReport(const json& report, const CheckLimits& limits) {
  const json& sub = report.at("subscription");
  std::string name = Text(sub, "name");
  std::vector<Problem> problems;
  auto add = [&](CheckState s, std::string text) { problems.push_back({s, std::move(text)}); };

  std::string last_error = Text(sub, "last_error");
  if (!Flag(sub, "run_active"))
    add(CheckState::kCritical,
        "no `lorry run` is active" + (last_error.empty() ? "" : " (last error: " + Short(last_error) + ")"));
  else if (!last_error.empty())
    add(CheckState::kWarning, "run is retrying after: " + Short(last_error));

  int ready = 0, copying = 0, total = 0;
  std::vector<std::string> errors;
  for (const auto& t : report.value("tables", json::array())) {
    total++;
    std::string state = Text(t, "state");
    if (state == "ready") ready++;
    if (state == "copying" || state == "pending" || state == "catching_up") copying++;
    if (state == "error") errors.push_back(Text(t, "name") + ": " + Short(Text(t, "error"), 120));
  }
  if (!errors.empty())
    add(CheckState::kCritical, fmt::format("{} table{} in error ({})", errors.size(), errors.size() == 1 ? "" : "s",
                                           fmt::join(errors, "; ")));

  bool reachable = Flag(sub, "provider_reachable");
  auto lag_bytes = Number(sub, "lag_bytes");
  auto lag_seconds = Number(sub, "lag_seconds");
  if (!reachable) {
    add(CheckState::kUnknown, "provider unreachable, lag unknown: " + Short(Text(sub, "provider_error")));
  } else {
    const json& slot = sub.contains("slot_state") ? sub.at("slot_state") : json();
    if (slot.is_object() && !Flag(slot, "exists") && !sub.at("consistent_lsn").is_null())
      add(CheckState::kCritical, "replication slot " + Text(sub, "slot") + " is missing on the provider");
    auto over = [&](const std::optional<double>& value, auto limit, CheckState state, const char* what,
                    const char* unit) {
      if (value && limit && *value > static_cast<double>(*limit))
        add(state, fmt::format("lag {} {}{} > {}{}", what, *value, unit, static_cast<double>(*limit), unit));
    };
    if (lag_bytes || lag_seconds) {
      over(lag_bytes, limits.max_lag_bytes, CheckState::kCritical, "bytes", " B");
      over(lag_seconds, limits.max_lag_seconds, CheckState::kCritical, "seconds", " s");
      bool critical_lag = (lag_bytes && limits.max_lag_bytes && *lag_bytes > *limits.max_lag_bytes) ||
                          (lag_seconds && limits.max_lag_seconds && *lag_seconds > *limits.max_lag_seconds);
      if (!critical_lag) {
        over(lag_bytes, limits.warn_lag_bytes, CheckState::kWarning, "bytes", " B");
        over(lag_seconds, limits.warn_lag_seconds, CheckState::kWarning, "seconds", " s");
      }
    } else if (limits.max_lag_bytes || limits.max_lag_seconds || limits.warn_lag_bytes || limits.warn_lag_seconds) {
      add(CheckState::kUnknown, "lag unknown: nothing applied yet");
    }
  }
  if (Flag(sub, "paused")) add(CheckState::kWarning, "the subscription is paused");

  std::stable_sort(problems.begin(), problems.end(),
                   [](const Problem& a, const Problem& b) { return Rank(a.state) > Rank(b.state); });
  CheckState state = problems.empty() ? CheckState::kOk : problems.front().state;

  std::string summary;
  if (problems.empty()) {
    summary = fmt::format("subscription {} {}", name, SubscriptionState(report));
    if (lag_bytes || lag_seconds)
      summary += fmt::format(", lag {} B / {:.1f} s", lag_bytes ? static_cast<int64_t>(*lag_bytes) : 0,
                             lag_seconds.value_or(0));
  } else {
    std::vector<std::string> texts;
    for (const auto& p : problems) texts.push_back(p.text);
    summary = fmt::format("subscription {}: {}", name, fmt::join(texts, "; "));
  }
  summary += fmt::format(", {} of {} tables ready{}", ready, total, copying > 0 ? fmt::format(" ({} copying)", copying) : "");

  auto opt_limit = [](auto v) -> std::optional<double> {
    return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
  };
  std::string perf = fmt::format(
      "lag_bytes={}B;{};{} lag_seconds={}s;{};{} tables_ready={} tables_error={}",
      lag_bytes ? fmt::format("{}", static_cast<int64_t>(*lag_bytes)) : "U", Threshold(opt_limit(limits.warn_lag_bytes)),
      Threshold(opt_limit(limits.max_lag_bytes)), lag_seconds ? fmt::format("{:.3f}", *lag_seconds) : "U",
      Threshold(limits.warn_lag_seconds), Threshold(limits.max_lag_seconds), ready, errors.size());
  return {state, fmt::format("LORRY {} - {} | {}", CheckStateName(state), Short(summary, 600), perf)};
}

}  // namespace lorry::admin
