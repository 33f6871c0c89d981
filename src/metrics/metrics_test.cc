// Unit tests of the metrics pieces that need no server: the stream observer
// (per-table counts only once durable, lag), the exposition, process stats.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <prometheus/text_serializer.h>

#include "metrics/process_stats.h"
#include "metrics/run_metrics.h"
#include "metrics/stream_observer.h"
#include "protocol/walsender.h"

namespace lorry::metrics {
namespace {

using namespace protocol;

std::string Exposition(const RunMetrics& m) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, m.Collect());
  return out.str();
}

TEST(StreamObserver, CountsPerTableAndOperationOnceDurable) {
  RunMetrics sink("main");
  // Table b is still copying: its changes are not applied, nor counted.
  StreamObserver obs(&sink, [](const pg::QualifiedName& t, Lsn) { return t.name != "b"; });
  obs.OnMessage(RelationMsg{0, 1, "public", "a", 'd', {}});
  obs.OnMessage(RelationMsg{0, 2, "public", "b", 'd', {}});
  obs.OnMessage(BeginMsg{Lsn(100), 1000, 7});
  obs.OnMessage(InsertMsg{0, 1, {}});
  obs.OnMessage(InsertMsg{0, 1, {}});
  obs.OnMessage(UpdateMsg{0, 1, 0, {}, {}});
  obs.OnMessage(InsertMsg{0, 2, {}});
  obs.OnMessage(CommitMsg{0, Lsn(100), Lsn(120), 1000});
  EXPECT_EQ(obs.OldestPendingCommitTime(), 1000);
  obs.OnMessage(BeginMsg{Lsn(200), 2000, 8});
  obs.OnMessage(DeleteMsg{0, 1, 'K', {}});
  obs.OnMessage(TruncateMsg{0, 0, {1, 2}});
  EXPECT_TRUE(sink.Applied().empty()) << "nothing is durable yet";

  obs.OnDurable(Lsn(120));
  auto applied = sink.Applied();
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied["public.a"], (TableOpCounts{2, 1, 0, 0}));
  EXPECT_EQ(obs.OldestPendingCommitTime(), 2000) << "the open transaction is pending";

  obs.OnMessage(CommitMsg{0, Lsn(200), Lsn(220), 2000});
  obs.OnDurable(Lsn(219));
  EXPECT_EQ(sink.Applied()["public.a"], (TableOpCounts{2, 1, 0, 0}));
  obs.OnDurable(Lsn(220));
  EXPECT_EQ(sink.Applied()["public.a"], (TableOpCounts{2, 1, 1, 1}));
  EXPECT_EQ(sink.Applied().count("public.b"), 0u);
  EXPECT_EQ(obs.OldestPendingCommitTime(), 0) << "caught up";
}

TEST(StreamObserver, FilterDecidedPerTransaction) {
  RunMetrics sink("main");
  // Catching up: only transactions committed at or after LSN 500 apply.
  StreamObserver obs(&sink, [](const pg::QualifiedName&, Lsn final_lsn) { return final_lsn >= Lsn(500); });
  obs.OnMessage(RelationMsg{0, 1, "s", "T x", 'd', {}});
  obs.OnMessage(BeginMsg{Lsn(400), 1, 1});
  obs.OnMessage(InsertMsg{0, 1, {}});
  obs.OnMessage(CommitMsg{0, Lsn(400), Lsn(410), 1});
  obs.OnMessage(BeginMsg{Lsn(500), 2, 2});
  obs.OnMessage(InsertMsg{0, 1, {}});
  obs.OnMessage(CommitMsg{0, Lsn(500), Lsn(510), 2});
  obs.OnDurable(Lsn(510));
  EXPECT_EQ(sink.Applied()["s.\"T x\""], (TableOpCounts{1, 0, 0, 0}));
}

// Each transaction is timed once, when the subscriber commit covering its
// end is seen: from BEGIN received, and from its provider commit time.
TEST(StreamObserver, TimesEachTransactionAtItsSubscriberCommit) {
  RunMetrics sink("main");
  StreamObserver obs(&sink, [](const pg::QualifiedName&, Lsn) { return true; });
  int64_t an_hour_ago = ToPgMicros(std::chrono::system_clock::now() - std::chrono::hours(1));
  obs.OnMessage(BeginMsg{Lsn(100), an_hour_ago, 7});
  obs.OnMessage(CommitMsg{0, Lsn(100), Lsn(120), an_hour_ago});
  obs.OnMessage(BeginMsg{Lsn(200), an_hour_ago, 8});
  obs.OnMessage(CommitMsg{0, Lsn(200), Lsn(220), an_hour_ago});
  obs.OnCommitted(Lsn(0));
  EXPECT_NE(Exposition(sink).find("lorry_transaction_apply_seconds_count{subscription=\"main\"} 0"),
            std::string::npos) << "nothing committed yet";
  obs.OnCommitted(Lsn(120));
  obs.OnCommitted(Lsn(120));  // once only
  std::string text = Exposition(sink);
  EXPECT_NE(text.find("lorry_transaction_apply_seconds_count{subscription=\"main\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("lorry_transaction_apply_seconds_bucket{subscription=\"main\",le=\"1\"} 1"),
            std::string::npos) << text;
  // An hour behind: above the 900 s bucket, within the 3600 s one (give or take a second).
  EXPECT_NE(text.find("lorry_commit_to_apply_delay_seconds_bucket{subscription=\"main\",le=\"900\"} 0"),
            std::string::npos) << text;
  obs.OnDurable(Lsn(220));
  text = Exposition(sink);
  EXPECT_NE(text.find("lorry_commit_to_apply_delay_seconds_count{subscription=\"main\"} 2"), std::string::npos)
      << text;
}

TEST(RunMetrics, LagSecondsIsZeroWhenCaughtUp) {
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(LagSeconds(0, now), 0);
  int64_t ten_seconds_ago = ToPgMicros(now) - 10'000'000;
  EXPECT_NEAR(LagSeconds(ten_seconds_ago, now), 10.0, 1e-6);
  EXPECT_EQ(LagSeconds(ToPgMicros(now) + 5'000'000, now), 0) << "clock skew never gives a negative lag";
}

TEST(RunMetrics, ExpositionHasTheMainSeries) {
  RunMetrics m("main");
  std::string before = Exposition(m);
  EXPECT_NE(before.find("lorry_streaming{subscription=\"main\"} 0"), std::string::npos) << before;
  EXPECT_EQ(before.find("lorry_apply_lag_seconds{"), std::string::npos) << "unknown before streaming";

  m.AddApplied("public.t", {3, 2, 1, 0});
  m.OnTick({Lsn(1000), Lsn(900), Lsn(900), 0, 5, 6, 1});
  m.SetProvider({Lsn(1500), true, true, Lsn(900), 4096});
  m.SetTables({{"public.t", "copying", 10, 2048, 8192, 2}});
  m.OnFailure("connection");
  m.ObserveTransaction(0.004, 0.3);
  m.ObserveTransaction(0.008, 7200);
  std::string text = Exposition(m);
  for (const char* want : {
           "lorry_changes_applied_total{subscription=\"main\",table=\"public.t\",operation=\"insert\"} 3",
           "lorry_changes_applied_total{subscription=\"main\",table=\"public.t\",operation=\"delete\"} 1",
           "lorry_transactions_applied_total{subscription=\"main\"} 5",
           "lorry_apply_lag_bytes{subscription=\"main\"} 600",
           "lorry_apply_lag_seconds{subscription=\"main\"} 0",
           "lorry_conflicts_total{subscription=\"main\",kind=\"missing_row\"} 1",
           "lorry_errors_total{subscription=\"main\",kind=\"connection\"} 1",
           "lorry_reconnects_total{subscription=\"main\"} 1",
           "lorry_confirmed_flush_lsn_bytes{subscription=\"main\"} 900",
           "lorry_slot_retained_wal_bytes{subscription=\"main\"} 4096",
           "lorry_table_state{subscription=\"main\",table=\"public.t\",state=\"copying\"} 1",
           "lorry_table_copied_bytes{subscription=\"main\",table=\"public.t\"} 2048",
           "lorry_table_size_bytes{subscription=\"main\",table=\"public.t\"} 8192",
           "# TYPE lorry_changes_applied_total counter",
           "# TYPE lorry_apply_lag_bytes gauge",
           "lorry_build_info{subscription=\"main\",version=\"" LORRY_VERSION "\"} 1",
           "# TYPE lorry_transaction_apply_seconds histogram",
           "lorry_transaction_apply_seconds_bucket{subscription=\"main\",le=\"0.005\"} 1",
           "lorry_transaction_apply_seconds_bucket{subscription=\"main\",le=\"0.01\"} 2",
           "lorry_transaction_apply_seconds_count{subscription=\"main\"} 2",
           "lorry_commit_to_apply_delay_seconds_bucket{subscription=\"main\",le=\"0.5\"} 1",
           "lorry_commit_to_apply_delay_seconds_bucket{subscription=\"main\",le=\"+Inf\"} 2",
       })
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
}

// The dashboard and alert rules in deploy/ use only metrics lorry exports.
TEST(RunMetrics, DeployFilesUseExportedNames) {
  RunMetrics m("main");
  m.AddApplied("public.t", {1, 1, 1, 1});
  m.OnTick({Lsn(1000), Lsn(900), Lsn(900), 1, 5, 6, 1});
  m.SetProvider({Lsn(1500), true, true, Lsn(900), 4096});
  m.SetTables({{"public.t", "copying", 10, 2048, 8192, 2}});
  m.OnFailure("connection");
  std::set<std::string> exported;
  for (const auto& f : m.Collect()) exported.insert(f.name);
  for (const char* file : {"deploy/grafana-dashboard.json", "deploy/prometheus-alerts.yml"}) {
    std::ifstream in(std::string(LORRY_SOURCE_DIR) + "/" + file);
    ASSERT_TRUE(in) << file;
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    std::regex name(R"(\b((lorry|process)_[a-z_]+)\b)");
    int used = 0;
    for (auto it = std::sregex_iterator(s.begin(), s.end(), name); it != std::sregex_iterator(); ++it, ++used) {
      std::string used_name = (*it)[1];
      // A histogram's series: NAME_bucket, NAME_sum, NAME_count.
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        if (used_name.ends_with(suffix) && exported.count(used_name.substr(0, used_name.size() - strlen(suffix))))
          used_name.resize(used_name.size() - strlen(suffix));
      EXPECT_TRUE(exported.count(used_name)) << file << " uses " << used_name << ", which lorry does not export";
    }
    EXPECT_GT(used, 5) << file;
  }
}

TEST(ProcessStats, ReadsThisProcess) {
  auto p = ReadProcessStats();
  ASSERT_TRUE(p.has_value());
  EXPECT_GT(p->resident_bytes, 0);
  EXPECT_GT(p->virtual_bytes, p->resident_bytes / 2);
  EXPECT_GT(p->open_fds, 2);
  auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_GT(p->start_time_seconds, now - 3600);
  EXPECT_LE(p->start_time_seconds, now + 1);
}

}  // namespace
}  // namespace lorry::metrics
