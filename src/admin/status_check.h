// The health rules of `lorry status --check` and of run's /readyz: one
// function over the report `status --json` prints, so that the command, the
// HTTP probe and the status page judge alike.
//
// Nagios/Icinga plugin conventions: exit 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN, and one line of output ("LORRY WARNING - ... | perfdata").
//   CRITICAL  no run holds the subscription; a table in `error`; the slot is
//             missing or lost after streaming began; lag above --max-lag-*
//   UNKNOWN   the report cannot be made (subscriber unreachable, not
//             initialised: the caller's case) or the provider is
//             unreachable, so lag is unknown
//   WARNING   the last attempt failed and run is retrying; paused; lag above
//             --warn-lag-*
//   OK        everything else (tables still copying are OK, and said)
// The worst state found wins; the line lists every problem, worst first.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace lorry::admin {

struct CheckLimits {
  std::optional<int64_t> max_lag_bytes;      // above: CRITICAL
  std::optional<double> max_lag_seconds;     // above: CRITICAL
  std::optional<int64_t> warn_lag_bytes;     // above: WARNING
  std::optional<double> warn_lag_seconds;    // above: WARNING
};

enum class CheckState { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };
const char* CheckStateName(CheckState s);  // "OK", "WARNING", ...

struct CheckResult {
  CheckState state = CheckState::kOk;
  std::string line;  // "LORRY OK - subscription main: ... | perfdata", no newline
};

// REQUIRES: `report` has the shape of `lorry status --json`.
CheckResult CheckStatusReport(const nlohmann::json& report, const CheckLimits& limits);

// The subscription's state as the lorry.status view names it (paused,
// stopped, retrying, copying, streaming), from the report.
std::string SubscriptionState(const nlohmann::json& report);

// When there is no report at all (the subscriber unreachable, ...).
CheckResult CheckUnknown(const std::string& why);

}  // namespace lorry::admin
