#include "admin/status_check.h"

#include <gtest/gtest.h>

namespace lorry::admin {
namespace {

using nlohmann::json;

// A `status --json` report of a healthy streaming subscription.
json Healthy() {
  return json::parse(R"({
    "subscription": {"name": "main", "slot": "lorry_main", "run_active": true, "provider_reachable": true,
      "provider_error": null, "last_error": null, "paused": false, "consistent_lsn": "0/1000",
      "lag_bytes": 2048, "lag_seconds": 1.5,
      "slot_state": {"exists": true, "active": true, "confirmed_flush_lsn": "0/1000", "retained_bytes": 100}},
    "table_states": {"ready": 2},
    "tables": [{"name": "public.a", "state": "ready", "error": null},
               {"name": "public.b", "state": "ready", "error": null}]})");
}

TEST(StatusCheck, HealthyIsOkWithPerfdata) {
  auto r = CheckStatusReport(Healthy(), {.max_lag_bytes = 100000, .max_lag_seconds = 60});
  EXPECT_EQ(r.state, CheckState::kOk);
  EXPECT_EQ(r.line,
            "LORRY OK - subscription main streaming, lag 2048 B / 1.5 s, 2 of 2 tables ready | "
            "lag_bytes=2048B;;100000 lag_seconds=1.500s;;60 tables_ready=2 tables_error=0");
  EXPECT_EQ(SubscriptionState(Healthy()), "streaming");
}

TEST(StatusCheck, LagLimitsWarnThenCritical) {
  EXPECT_EQ(CheckStatusReport(Healthy(), {.warn_lag_seconds = 1}).state, CheckState::kWarning);
  auto crit = CheckStatusReport(Healthy(), {.max_lag_bytes = 1024, .warn_lag_seconds = 1});
  EXPECT_EQ(crit.state, CheckState::kCritical);
  EXPECT_NE(crit.line.find("lag bytes 2048 B > 1024 B"), std::string::npos) << crit.line;
  EXPECT_EQ(crit.line.find("lag seconds"), std::string::npos) << "no warning once critical: " << crit.line;
}

TEST(StatusCheck, WorstStateWinsAndEveryProblemIsListed) {
  json r = Healthy();
  r["subscription"]["run_active"] = false;
  r["subscription"]["last_error"] = "password authentication failed\nfor user lorry";
  r["tables"][1]["state"] = "error";
  r["tables"][1]["error"] = "subscriber table has rows | fix it";
  auto c = CheckStatusReport(r, {});
  EXPECT_EQ(c.state, CheckState::kCritical);
  EXPECT_EQ(c.line.substr(0, c.line.find(" | ")),
            "LORRY CRITICAL - subscription main: no `lorry run` is active (last error: password authentication "
            "failed for user lorry); 1 table in error (public.b: subscriber table has rows / fix it), 1 of 2 tables "
            "ready");
  EXPECT_EQ(SubscriptionState(r), "stopped");
}

TEST(StatusCheck, RetryingIsAWarningAndAnUnreachableProviderUnknown) {
  json r = Healthy();
  r["subscription"]["last_error"] = "connection lost";
  EXPECT_EQ(CheckStatusReport(r, {}).state, CheckState::kWarning);
  EXPECT_EQ(SubscriptionState(r), "retrying");
  r["subscription"]["provider_reachable"] = false;
  r["subscription"]["provider_error"] = "could not connect";
  r["subscription"].erase("slot_state");
  EXPECT_EQ(CheckStatusReport(r, {}).state, CheckState::kUnknown);
  r["subscription"]["run_active"] = false;
  EXPECT_EQ(CheckStatusReport(r, {}).state, CheckState::kCritical);
}

TEST(StatusCheck, MissingSlotAfterStreamingIsCritical) {
  json r = Healthy();
  r["subscription"]["slot_state"]["exists"] = false;
  EXPECT_EQ(CheckStatusReport(r, {}).state, CheckState::kCritical);
  r["subscription"]["consistent_lsn"] = nullptr;  // never streamed: the first run creates it
  EXPECT_EQ(CheckStatusReport(r, {}).state, CheckState::kOk);
}

TEST(StatusCheck, CopyingTablesAreOkAndCounted) {
  json r = Healthy();
  r["tables"][0]["state"] = "copying";
  r["table_states"] = {{"ready", 1}, {"copying", 1}};
  auto c = CheckStatusReport(r, {});
  EXPECT_EQ(c.state, CheckState::kOk);
  EXPECT_NE(c.line.find("1 of 2 tables ready (1 copying)"), std::string::npos) << c.line;
  EXPECT_EQ(SubscriptionState(r), "copying");
}

TEST(StatusCheck, UnknownLineIsOneLine) {
  auto c = CheckUnknown("cannot connect:\nconnection refused");
  EXPECT_EQ(c.state, CheckState::kUnknown);
  EXPECT_EQ(c.line, "LORRY UNKNOWN - cannot connect: connection refused");
}

}  // namespace
}  // namespace lorry::admin
