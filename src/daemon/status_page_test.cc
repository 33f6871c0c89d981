#include "daemon/status_page.h"

#include <gtest/gtest.h>

#include "daemon/systemd_notifier.h"

namespace lorry::daemon {
namespace {

using nlohmann::json;

json Report() {
  return json::parse(R"json({
    "subscription": {"name": "main", "state": "copying", "run_active": true, "run_holder": "pid 7 on host h",
      "provider": "provider (host=p)", "provider_reachable": true, "subscriber": "subscriber (host=s)",
      "applied_lsn": "0/10", "provider_lsn": "0/20", "lag_bytes": 16, "lag_seconds": 0.5,
      "xacts_applied": 3, "changes_applied": 42, "last_error": null, "standby": null,
      "slot_state": {"exists": true, "active": true, "confirmed_flush_lsn": "0/10", "retained_bytes": 2048}},
    "check": {"state": "OK", "line": "LORRY OK - fine | perf"},
    "table_states": {"copying": 1, "ready": 1},
    "tables": [
      {"name": "public.big", "table": "big", "state": "copying", "rows_copied": 10, "rows_estimate": 100,
       "bytes_copied": 250, "bytes_estimate": 1000, "copy_bytes_per_second": 50, "copy_seconds_left": 15,
       "error": null},
      {"name": "public.\"<b>x</b>\"", "table": "<b>x</b>", "state": "ready", "rows_copied": 5, "rows_estimate": null,
       "bytes_copied": 5, "bytes_estimate": 5, "copy_bytes_per_second": null, "copy_seconds_left": null,
       "error": null}]})json");
}

json RunView() {
  RunHealth::View h{RunPhase::kCopying, "initial copy of 2 tables", 3, 0, true};
  std::deque<StatusSource::LagPoint> history = {{1000, 16, 0.5}, {1002, 16, 1.5}};
  return RunJson(h, metrics::Snapshot{}, {{"connection", 2}}, history);
}

TEST(StatusPage, RendersTheReportEscaped) {
  json r = Report();
  std::string html = RenderStatusPage(&r, "", RunView(), "");
  EXPECT_NE(html.find("<span id=\"state\" data-state=\"copying\">copying</span>"), std::string::npos);
  EXPECT_NE(html.find("<tr data-table=\"public.big\" data-state=\"copying\">"), std::string::npos);
  EXPECT_NE(html.find("data-fraction=\"0.2500\""), std::string::npos);
  EXPECT_NE(html.find("~15 s"), std::string::npos);
  EXPECT_NE(html.find("public.&quot;&lt;b&gt;x&lt;/b&gt;&quot;"), std::string::npos);
  EXPECT_EQ(html.find("<b>x</b>"), std::string::npos) << "a table name is text, never markup";
  EXPECT_NE(html.find("data-lag-bytes=\"16\""), std::string::npos);
  EXPECT_NE(html.find("connection: 2"), std::string::npos);
  EXPECT_NE(html.find("<polyline id=\"chart-line\" points=\"0.0,"), std::string::npos);
  EXPECT_EQ(html.find("http://"), std::string::npos) << "no external assets";
  EXPECT_EQ(html.find("https://"), std::string::npos) << "no external assets";
}

TEST(StatusPage, WithoutAReportSaysWhy) {
  std::string html = RenderStatusPage(nullptr, "status report unavailable: connection refused", RunView(), "");
  EXPECT_NE(html.find("<p id=\"problem\" class=\"err\">status report unavailable: connection refused</p>"),
            std::string::npos);
}

TEST(StatusPage, OnlyTableByQualifiedOrPlainName) {
  EXPECT_EQ(OnlyTable(Report(), "public.big")->at("tables").size(), 1u);
  EXPECT_EQ(OnlyTable(Report(), "big")->at("tables")[0]["name"], "public.big");
  EXPECT_FALSE(OnlyTable(Report(), "public.nope").has_value());
}

TEST(SystemdStatus, LineSaysPhaseLagAndTables) {
  metrics::Snapshot snap;
  snap.lag_bytes = 20480;
  snap.lag_seconds = 0.3;
  std::vector<metrics::TableSample> tables = {{"public.a", "ready"}, {"public.b", "error"}};
  EXPECT_EQ(SystemdStatusLine({RunPhase::kStreaming, "", 1, 0, true}, snap, tables),
            "streaming: lag 20.0 kB, 0.3 s; 1 of 2 tables ready, 1 in error");
  EXPECT_EQ(SystemdStatusLine({RunPhase::kStandby, "the lease is held by pid 3 on h", 1, 0, true}, snap, {}),
            "standby: the lease is held by pid 3 on h");
}

TEST(RunHealth, AliveUnlessStreamingWithoutTicks) {
  RunHealth h;
  EXPECT_TRUE(h.Alive(std::chrono::milliseconds(0)));
  EXPECT_FALSE(h.Get().started);
  h.OnPhase(RunPhase::kStreaming, "");
  EXPECT_TRUE(h.Get().started);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(h.Alive(std::chrono::milliseconds(10)));
  h.OnAlive();
  EXPECT_TRUE(h.Alive(std::chrono::milliseconds(10)));
  h.OnPhase(RunPhase::kCopying, "");
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_TRUE(h.Alive(std::chrono::milliseconds(10))) << "a copy waits by design";
}

}  // namespace
}  // namespace lorry::daemon
