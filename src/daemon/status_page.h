// The live status page `lorry run` serves at / on its metrics address, and
// the JSON behind it. Pure functions (JSON in, text out), tested beside.
//
// The page is rendered on the server from the same report as `lorry status
// --json` (so it shows everything without JavaScript), then a small script
// polls /status.json (that report) and /run.json (what only the running
// process knows: its phase, conflicts and errors since it started, the lag
// history) every 2 s and redraws the same elements. No external assets:
// styles and script are inline, the chart is SVG. Elements carry data-*
// attributes with the raw values (data-state, data-lag-bytes...) for tests
// and scripts.
#pragma once

#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "daemon/run_health.h"
#include "daemon/status_source.h"
#include "metrics/run_metrics.h"

namespace lorry::daemon {

// What only the running process knows, as /run.json serves it.
nlohmann::json RunJson(const RunHealth::View& health, const metrics::Snapshot& snapshot,
                       const std::map<std::string, int64_t>& errors, const std::deque<StatusSource::LagPoint>& history);

// Keeps only the table named `table` (as displayed, or unqualified when
// unambiguous); nullopt when the report has no such table.
std::optional<nlohmann::json> OnlyTable(const nlohmann::json& report, const std::string& table);

// The whole page. `report` may be null (not available yet: `error` says
// why); `table`: the page shows only that table (/?table=NAME).
std::string RenderStatusPage(const nlohmann::json* report, const std::string& error, const nlohmann::json& run,
                             const std::string& table);

}  // namespace lorry::daemon
