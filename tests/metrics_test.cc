// Observability of `lorry run` against real clusters: the Prometheus
// endpoint (scraped and parsed while changes are applied), /healthz, the
// lorry.status and lorry.table_progress views, `status --watch` (plain and
// under a pseudo-terminal), --log-format json and reload on SIGHUP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "fixture.h"
#include "http_client.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Prometheus text format: "name{labels} value" per sample, keyed by what is
// before the value; comments (HELP, TYPE) are checked to be well-formed.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  static const std::regex sample(R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (\S+)$)re");
  static const std::regex comment(R"re(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)re");
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, sample)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    out[m[1]] = std::stod(m[3]);
  }
  return out;
}

class Metrics : public TwoClusters {
 protected:
  void InitAndAdd(const std::vector<std::string>& tables) {
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    std::vector<std::string> a{"add"};
    a.insert(a.end(), tables.begin(), tables.end());
    auto add = RunLorry(Args(a));
    ASSERT_EQ(add.exit_code, 0) << add.all();
  }

  void Wait(LorryProcess* run) {
    auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << run->Log();
  }

  std::string WriteConfig(const std::string& extra) const {
    std::string path = fmt::format("/tmp/lorry_metrics_test_{}_{}.toml", getpid(), dbname_);
    std::ofstream(path) << fmt::format("name = \"main\"\nprovider = \"{}\"\nsubscriber = \"{}\"\n{}", Provider(),
                                       Subscriber(), extra);
    return path;
  }
};

TEST_F(Metrics, ScrapeDuringReplication) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE u (id int PRIMARY KEY)");
  ProviderSql("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g");
  InitAndAdd({"t", "u"});
  LorryProcess run(Args({"run", "--metrics-addr", "127.0.0.1:0"}));
  int port = MetricsPort(&run);
  ASSERT_GT(port, 0) << run.Log();
  auto health = HttpGet(port, "/healthz");
  EXPECT_EQ(health.code, 200);
  EXPECT_EQ(health.body.rfind("ok: ", 0), 0u) << health.body;  // "ok: copying", "ok: streaming"...
  Wait(&run);

  ProviderSql("INSERT INTO t SELECT g, 'new' FROM generate_series(101, 110) g");
  ProviderSql("UPDATE t SET v = 'upd' WHERE id <= 4");
  ProviderSql("DELETE FROM t WHERE id = 5");
  ProviderSql("INSERT INTO u VALUES (1), (2)");
  ProviderSql("TRUNCATE u");
  // A conflict: the row is gone on the subscriber when its UPDATE arrives.
  Wait(&run);
  SubscriberSql("DELETE FROM t WHERE id = 50");
  ProviderSql("UPDATE t SET v = 'gone' WHERE id = 50");
  Wait(&run);

  const std::string t = "subscription=\"main\",table=\"public.t\"";
  std::map<std::string, double> m;
  bool ok = Eventually([&] {
    auto r = HttpGet(port, "/metrics");
    if (r.code != 200) return false;
    m = ParseExposition(r.body);
    return m["lorry_changes_applied_total{" + t + ",operation=\"update\"}"] == 5 &&
           m.count("lorry_slot_retained_wal_bytes{subscription=\"main\"}") &&
           m.count("lorry_apply_lag_bytes{subscription=\"main\"}") &&
           m["lorry_table_state{" + t + ",state=\"ready\"}"] == 1 &&
           m["lorry_conflicts_total{subscription=\"main\",kind=\"missing_row\"}"] == 1;
  }, 30);
  std::string shown;
  for (const auto& [k, v] : m) shown += fmt::format("{} {}\n", k, v);
  ASSERT_TRUE(ok) << shown << "\n--- log:\n" << run.Log();
  EXPECT_EQ(m["lorry_changes_applied_total{" + t + ",operation=\"insert\"}"], 10) << shown;
  EXPECT_EQ(m["lorry_changes_applied_total{" + t + ",operation=\"delete\"}"], 1) << shown;
  EXPECT_EQ(m["lorry_changes_applied_total{subscription=\"main\",table=\"public.u\",operation=\"insert\"}"], 2);
  EXPECT_EQ(m["lorry_changes_applied_total{subscription=\"main\",table=\"public.u\",operation=\"truncate\"}"], 1);
  EXPECT_GE(m["lorry_transactions_applied_total{subscription=\"main\"}"], 6);
  EXPECT_EQ(m["lorry_streaming{subscription=\"main\"}"], 1);
  EXPECT_EQ(m["lorry_apply_lag_seconds{subscription=\"main\"}"], 0) << "caught up: " << shown;
  EXPECT_GE(m["lorry_apply_lag_bytes{subscription=\"main\"}"], 0);
  EXPECT_GT(m["lorry_confirmed_flush_lsn_bytes{subscription=\"main\"}"], 0);
  EXPECT_GT(m["lorry_provider_wal_lsn_bytes{subscription=\"main\"}"], 0);
  EXPECT_EQ(m["lorry_slot_active{subscription=\"main\"}"], 1);
  EXPECT_GT(m["lorry_table_copied_bytes{" + t + "}"], 0);
  EXPECT_EQ(m["lorry_table_copied_rows{" + t + "}"], 100);
  EXPECT_GT(m["process_resident_memory_bytes"], 0);
  EXPECT_EQ(m.count("process_cpu_seconds_total"), 1u);
  EXPECT_EQ(m.count("lorry_reconnects_total{subscription=\"main\"}"), 1u);

  // The views, as SQL users read them.
  ok = Eventually([&] {
    return SubscriberValue("SELECT state || ' ' || running || ' ' || (lag_bytes IS NOT NULL) || ' ' || "
                           "(changes_per_second IS NOT NULL) || ' ' || tables || ' ' || ready "
                           "FROM lorry.status") == "streaming true true true 2 2" &&
           SubscriberValue("SELECT lag_seconds FROM lorry.status") == "0";
  }, 20);
  EXPECT_TRUE(ok) << SubscriberValue("SELECT row_to_json(s)::text FROM lorry.status s");
  EXPECT_EQ(SubscriberValue("SELECT string_agg(table_name || ':' || state || ':' || copy_fraction || ':' || "
                            "rows_copied || ':' || indexes_to_rebuild, ',' ORDER BY table_name) "
                            "FROM lorry.table_progress"),
            "public.t:ready:1:100:0,public.u:ready:1:0:0");

  // An apply failure is counted as an error and a reconnect.
  ProviderSql("ALTER TABLE t ADD COLUMN extra int");
  ProviderSql("INSERT INTO t VALUES (1000, 'x', 1)");
  ok = Eventually([&] {
    m = ParseExposition(HttpGet(port, "/metrics").body);
    return m["lorry_errors_total{subscription=\"main\",kind=\"apply\"}"] >= 1 &&
           m["lorry_reconnects_total{subscription=\"main\"}"] >= 1;
  });
  EXPECT_TRUE(ok) << run.Log();
  // Each retry clears the error when it starts streaming and records it again when it fails.
  std::string retrying;
  EXPECT_TRUE(Eventually([&] {
    retrying = SubscriberValue("SELECT state || ' ' || coalesce(last_error, '') FROM lorry.status");
    return retrying.find("retrying") == 0 && retrying.find("extra") != std::string::npos;
  })) << retrying;
  SubscriberSql("ALTER TABLE t ADD COLUMN extra int");
  Wait(&run);
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  EXPECT_EQ(SubscriberValue("SELECT state || ' ' || running || ' ' || (lag_bytes IS NULL) FROM lorry.status"),
            "stopped false true");
  EXPECT_EQ(HttpGet(port, "/healthz").code, 0) << "the endpoint stops with the daemon";
}

// Transactions the provider streams while they run (PostgreSQL 14+, past
// logical_decoding_work_mem) count per table and operation when they are
// applied at their STREAM COMMIT: not while spooled, and never what was
// rolled back (a whole transaction, or a subtransaction inside one).
TEST_F(Metrics, StreamedTransactionsCountWhenCommitted) {
  if (provider_cluster()->major_version() < 14) GTEST_SKIP() << "streaming needs PostgreSQL 14 on the provider";
  ProviderSql(fmt::format("ALTER DATABASE \"{}\" SET logical_decoding_work_mem = '64kB'", dbname_));
  BothSql("CREATE TABLE big (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO big SELECT g, 'initial' FROM generate_series(1, 1000) g");
  InitAndAdd({"big"});
  LorryProcess run(Args({"run", "--metrics-addr", "127.0.0.1:0"}));
  int port = MetricsPort(&run);
  ASSERT_GT(port, 0) << run.Log();
  Wait(&run);
  const std::string big = "lorry_changes_applied_total{subscription=\"main\",table=\"public.big\",operation=";
  auto scrape = [&] { return ParseExposition(HttpGet(port, "/metrics").body); };

  // Spooled, not applied: not counted; then rolled back: never counted.
  auto open = ConnectProvider();
  ASSERT_TRUE(open.Exec("BEGIN").ok());
  ASSERT_TRUE(open.Exec("INSERT INTO big SELECT g, repeat('a', 50) FROM generate_series(100000, 119999) g").ok());
  ASSERT_TRUE(Eventually([&] { return !SpoolDirWithData(run.pid()).empty(); }, 30)) << "nothing spooled\n" << run.Log();
  EXPECT_EQ(scrape()[big + "\"insert\"}"], 0);
  ASSERT_TRUE(open.Exec("ROLLBACK").ok());

  ProviderSql("BEGIN;"
              "INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(2000, 21999) g;"
              "SAVEPOINT a; INSERT INTO big SELECT g, 'rolled back' FROM generate_series(30000, 34999) g;"
              "  UPDATE big SET v = 'rolled back' WHERE id <= 1000; ROLLBACK TO SAVEPOINT a;"
              "UPDATE big SET v = 'kept' WHERE id BETWEEN 2000 AND 2499;"
              "DELETE FROM big WHERE id BETWEEN 1 AND 100;"
              "COMMIT");
  Wait(&run);
  EXPECT_THAT(run.Log(), HasSubstr("streamed transaction xid="));
  std::map<std::string, double> m;
  bool ok = Eventually([&] {
    m = scrape();
    return m[big + "\"insert\"}"] == 20000;
  }, 30);
  std::string shown;
  for (const auto& [k, v] : m) shown += fmt::format("{} {}\n", k, v);
  EXPECT_TRUE(ok) << shown << "\n--- log:\n" << run.Log();
  EXPECT_EQ(m[big + "\"update\"}"], 500) << shown;
  EXPECT_EQ(m[big + "\"delete\"}"], 100) << shown;
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

TEST_F(Metrics, StatusNeedsOnlyTheSubscriberAndWatchRedraws) {
  BothSql("CREATE TABLE a (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE b (id int PRIMARY KEY, v text)");
  BothSql("CREATE INDEX b_v ON b (v)");
  ProviderSql("INSERT INTO a SELECT g, 'a' FROM generate_series(1, 10) g");
  ProviderSql("INSERT INTO b SELECT g, repeat('b', 100) FROM generate_series(1, 20000) g");
  InitAndAdd({"a", "b"});
  // Each copy holds before its commit, and each index rebuild before it
  // starts, so the watch sees tables copying and indexes waiting.
  setenv("LORRY_FAULT_SLEEP", "copy_range:4000,index_rebuild:3000", 1);
  LorryProcess run(Args({"run", "--jobs", "2"}));
  unsetenv("LORRY_FAULT_SLEEP");
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT count(*) FROM lorry.table_progress WHERE state = 'copying'") == "2";
  })) << run.Log();

  auto w = RunLorry(Args({"status", "--watch", "--count", "3", "--interval", "0.3"}));
  ASSERT_EQ(w.exit_code, 0) << w.all();
  EXPECT_EQ(w.out.find("\x1b["), std::string::npos) << "no escape codes when not a terminal";
  std::vector<std::string> frames;
  for (size_t pos = 0; (pos = w.out.find("lorry main  ", pos)) != std::string::npos; ++pos) frames.push_back("");
  EXPECT_EQ(frames.size(), 3u) << w.out;
  EXPECT_THAT(w.out, HasSubstr("lorry main  copying  (lorry run active"));
  EXPECT_TRUE(std::regex_search(w.out, std::regex(R"(public\.b\s+copying\s+\[#*\.*\] )"))) << w.out;
  EXPECT_THAT(w.out, HasSubstr("tables   2: 2 copying"));
  EXPECT_TRUE(std::regex_search(w.out, std::regex(R"(\d+ index(es)? to rebuild)"))) << w.out;

  // Under a pseudo-terminal each frame redraws the screen in place.
  std::vector<std::string> args = Args({"status", "--watch", "--count", "2", "--interval", "0.2"});
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>(LORRY_BINARY)};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(LORRY_BINARY, argv.data());
    _exit(127);
  }
  std::string tty;
  char buf[4096];
  ssize_t n;
  while ((n = read(master, buf, sizeof(buf))) > 0) tty.append(buf, static_cast<size_t>(n));
  close(master);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << tty;
  size_t clears = 0;
  for (size_t pos = 0; (pos = tty.find("\x1b[H\x1b[2J", pos)) != std::string::npos; ++pos) clears++;
  EXPECT_EQ(clears, 2u) << tty;
  EXPECT_THAT(tty, HasSubstr("lorry main  "));

  Wait(&run);
  EXPECT_EQ(run.Terminate(), 0) << run.Log();

  // With the provider unreachable, status and the watch still answer from the subscriber.
  std::vector<std::string> no_provider{"--provider", "host=127.0.0.1 port=1 dbname=nope user=nobody", "--subscriber",
                                       Subscriber(), "--name", "main"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = no_provider;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto s = RunLorry(with({"status"}));
  EXPECT_EQ(s.exit_code, 0) << s.all();
  EXPECT_THAT(s.out, HasSubstr("provider unreachable"));
  auto ws = RunLorry(with({"status", "--watch", "--count", "1"}));
  EXPECT_EQ(ws.exit_code, 0) << ws.all();
  EXPECT_THAT(ws.out, HasSubstr("lorry main  stopped  (no lorry run active"));
  EXPECT_TRUE(std::regex_search(ws.out, std::regex(R"(public\.a\s+ready\s+10 rows copied)"))) << ws.out;
}

TEST_F(Metrics, StandbyRunShowsInStatusViewAndWatch) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  LorryProcess active(Args({"run"}));
  Wait(&active);
  LorryProcess standby(Args({"run"}));
  std::string pid = std::to_string(standby.pid());
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT standby_pid FROM lorry.status") == pid; }))
      << standby.Log();
  EXPECT_EQ(SubscriberValue("SELECT state || ' ' || running || ' ' || (lease_owner IS NOT NULL) FROM lorry.status"),
            "streaming true true");
  auto w = RunLorry(Args({"status", "--watch", "--count", "1"}));
  EXPECT_EQ(w.exit_code, 0) << w.all();
  EXPECT_THAT(w.out, HasSubstr("; standby pid " + pid + " on "));
  EXPECT_EQ(standby.Terminate(), 0) << standby.Log();
  EXPECT_EQ(active.Terminate(), 0) << active.Log();
}

TEST_F(Metrics, JsonLogsAndReloadOnSighup) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  std::string path = WriteConfig("log_level = \"info\"\nlog_format = \"json\"\n");
  // A password in the provider's connection string: trust authentication
  // ignores it, and no log line may show it.
  std::string provider = Provider() + " password=Sup3rSecret";
  LorryProcess run({"-c", path, "--provider", provider, "run"});
  ASSERT_TRUE(Eventually([&] { return run.Log().find("streaming from slot") != std::string::npos; })) << run.Log();
  EXPECT_EQ(run.Log().find("\"level\":\"debug\""), std::string::npos);

  std::ofstream(path) << fmt::format(
      "name = \"main\"\nprovider = \"{}\"\nsubscriber = \"{}\"\nlog_level = \"debug\"\nlog_format = \"json\"\n"
      "[apply]\ngroup_max_changes = 7\n[copy]\njobs = 3\n[metrics]\naddr = \"127.0.0.1:0\"\n",
      Provider(), Subscriber());
  kill(run.pid(), SIGHUP);
  ASSERT_TRUE(Eventually([&] { return run.Log().find("\"level\":\"debug\"") != std::string::npos; }, 20))
      << run.Log();
  std::string log = run.Log();
  EXPECT_THAT(log, HasSubstr("log_level info -> debug"));
  EXPECT_THAT(log, HasSubstr("apply.group_max_changes 10000 -> 7"));
  EXPECT_THAT(log, HasSubstr("metrics.addr off -> 127.0.0.1:0"));
  // Only copy.jobs: the --provider flag still wins over the file's provider.
  EXPECT_THAT(log, HasSubstr("restart `lorry run` for them: copy.jobs\"}"));
  int port = MetricsPort(&run);
  EXPECT_EQ(HttpGet(port, "/healthz").code, 200);

  ProviderSql("INSERT INTO t SELECT generate_series(1, 50)");
  auto w = RunLorry(Args({"wait", "--timeout", "60"}), 90);
  EXPECT_EQ(w.exit_code, 0) << w.all();
  EXPECT_EQ(run.Terminate(), 0);
  log = run.Log();
  EXPECT_EQ(log.find("Sup3rSecret"), std::string::npos);
  std::istringstream lines(log);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << line;
    n++;
  }
  EXPECT_GT(n, 5);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace lorry::test
