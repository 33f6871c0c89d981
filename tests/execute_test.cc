// `lorry execute` and DDL capture (`lorry init --capture-ddl`): SQL run on
// the provider reaches the subscriber at exactly its point of the stream,
// while rows are being written, once (never twice).
#include <atomic>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <unistd.h>

#include "fixture.h"

namespace lorry::test {
namespace {

class Execute : public TwoClusters {
 protected:
  void TearDown() override {
    for (const auto& p : files_) std::remove(p.c_str());
    TwoClusters::TearDown();
  }
  std::string Script(const std::string& sql) {
    std::string path = fmt::format("/tmp/lorry-execute-test-{}-{}.sql", getpid(), files_.size());
    std::ofstream(path) << sql;
    files_.push_back(path);
    return path;
  }
  void Wait(LorryProcess* run) {
    auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << run->Log();
  }
  // Inserts rows into `table` from another session until stopped; `with_extra`
  // switches it to also fill the column the test adds.
  struct Writer {
    std::atomic<bool> stop{false};
    std::atomic<bool> with_extra{false};
    std::atomic<int> rows{0};
    std::thread thread;
    void Start(const std::string& conninfo) {
      thread = std::thread([this, conninfo] {
        auto c = pg::PgConn::Connect(conninfo, {{}, "provider"});
        int id = 100000;
        while (c.ok() && !stop.load()) {
          ++id;
          bool extra = with_extra.load();
          auto r = extra ? c->Exec(fmt::format("INSERT INTO t (id, v, extra) VALUES ({}, 'w', {})", id, id % 5))
                         : c->Exec(fmt::format("INSERT INTO t (id, v) VALUES ({}, 'w')", id));
          if (r.ok()) rows++;
        }
      });
    }
    void Stop() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  };
  int Major() const { return provider_cluster()->major_version(); }
  // `lorry execute` of `sql` (which adds column t.extra) while a Writer
  // inserts into t: rows before it, then rows filling the new column after.
  CommandResult ExecuteWhileWriting(const std::string& sql) {
    Writer writer;
    writer.Start(Provider());
    EXPECT_TRUE(Eventually([&] { return writer.rows.load() > 50; }, 30));
    auto ex = RunLorry(Args({"execute", Script(sql)}));
    writer.with_extra = true;
    int before = writer.rows.load();
    if (ex.exit_code == 0) EXPECT_TRUE(Eventually([&] { return writer.rows.load() > before + 50; }, 30));
    writer.Stop();
    return ex;
  }
  // Table t (id, v) with 500 rows on the provider, empty on the subscriber; init; add t.
  void CreateAndAddT() {
    BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    ProviderSql("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g");
    ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
    ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  }
  std::vector<std::string> files_;
};

// PG_BINDIR may run the tests against another major (make test-pg MAJOR=13).
#define REQUIRE_PROVIDER_14()                                                         \
  if (Major() < 14) GTEST_SKIP() << "needs PostgreSQL 14+ on the provider, have " << Major()

TEST_F(Execute, AddColumnWhileRowsAreWrittenThenRowsWithTheNewColumn) {
  REQUIRE_PROVIDER_14();
  CreateAndAddT();
  LorryProcess run(Args({"run"}));
  Wait(&run);

  // The script's own row changes are made on the subscriber by the script
  // itself, and not applied a second time from the stream.
  auto ex = ExecuteWhileWriting("ALTER TABLE t ADD COLUMN extra int DEFAULT 7;\n"
                                "UPDATE t SET v = 'script ' || id WHERE id <= 10;\n"
                                "INSERT INTO t (id, v, extra) VALUES (0, 'inserted by the script', 1);");
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  EXPECT_NE(ex.out.find("the subscriber runs it"), std::string::npos) << ex.out;
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t WHERE extra IS NOT NULL AND extra <> 7"),
            ProviderValue("SELECT count(*) FROM t WHERE extra IS NOT NULL AND extra <> 7"));
  EXPECT_NE(SubscriberValue("SELECT count(*) FROM t WHERE extra <> 7"), "0");
  EXPECT_NE(run.Log().find("ran execute script"), std::string::npos) << run.Log();
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

// A script whose transaction is large enough to be streamed while in
// progress (PostgreSQL 14+): spooled, then run at its commit, its own rows
// not applied a second time.
TEST_F(Execute, LargeScriptStreamedWhileInProgressRunsOnceAtItsPoint) {
  REQUIRE_PROVIDER_14();
  ProviderSql(fmt::format("ALTER DATABASE \"{}\" SET logical_decoding_work_mem = '64kB'", dbname_));
  CreateAndAddT();
  LorryProcess run(Args({"run"}));
  Wait(&run);
  auto ex = ExecuteWhileWriting("ALTER TABLE t ADD COLUMN extra int DEFAULT 7;\n"
                                "INSERT INTO t (id, v, extra) SELECT g, repeat('s', 60), 3 "
                                "FROM generate_series(1000, 30999) g;\n"
                                "UPDATE t SET v = 'script ' || id WHERE id <= 10;");
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t WHERE v = repeat('s', 60) AND extra = 3"), "30000");
  EXPECT_NE(run.Log().find("streamed transaction"), std::string::npos) << run.Log();
  EXPECT_NE(run.Log().find("ran execute script"), std::string::npos) << run.Log();
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

TEST_F(Execute, AddsTheTablesTheScriptCreates) {
  REQUIRE_PROVIDER_14();
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  // No slot yet: nothing would carry the script.
  auto early = RunLorry(Args({"execute", Script("CREATE TABLE n (id int PRIMARY KEY)")}));
  EXPECT_EQ(early.exit_code, 2) << early.all();
  EXPECT_NE(early.err.find("start `lorry run` once"), std::string::npos) << early.err;
  EXPECT_EQ(ProviderValue("SELECT to_regclass('n') IS NULL"), "t");

  LorryProcess run(Args({"run"}));
  Wait(&run);
  auto ex = RunLorry(Args({"execute", "--add", "n",
                           Script("CREATE TABLE n (id int PRIMARY KEY, label text);\n"
                                  "INSERT INTO n SELECT g, 'first ' || g FROM generate_series(1, 20) g;")}));
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  ProviderSql("INSERT INTO n VALUES (21, 'after')");
  ProviderSql("UPDATE n SET label = 'changed' WHERE id = 1");
  Wait(&run);
  ExpectSameContent("n");
  EXPECT_EQ(SubscriberValue("SELECT state FROM lorry.tables WHERE relname = 'n'"), "ready") << run.Log();

  // A failing script commits nothing; transaction control is refused.
  auto bad = RunLorry(Args({"execute", Script("ALTER TABLE t ADD COLUMN x int; SELECT 1/0;")}));
  EXPECT_EQ(bad.exit_code, 3) << bad.all();
  EXPECT_NE(bad.err.find("nothing was committed"), std::string::npos) << bad.err;
  bad = RunLorry(Args({"execute", Script("ALTER TABLE t ADD COLUMN x int; COMMIT;")}));
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'"), "0");
  ProviderSql("INSERT INTO t VALUES (1, 'still replicating')");
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

TEST_F(Execute, CapturedDdlAddColumnAndCreateIndex) {
  REQUIRE_PROVIDER_14();
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE other (id int PRIMARY KEY)");  // not replicated: its DDL stays on the provider
  ProviderSql("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g");
  auto init = RunLorry(Args({"init", "--capture-ddl"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  EXPECT_NE(init.out.find("event trigger lorry_capture_ddl"), std::string::npos) << init.out;
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  LorryProcess run(Args({"run"}));
  Wait(&run);

  Writer writer;
  writer.Start(Provider());
  ASSERT_TRUE(Eventually([&] { return writer.rows.load() > 50; }, 30));
  ProviderSql("ALTER TABLE t ADD COLUMN extra int");
  writer.with_extra = true;
  ProviderSql("CREATE INDEX t_extra_idx ON t (extra)");
  ProviderSql("CREATE INDEX CONCURRENTLY t_v_idx ON t (v)");
  ProviderSql("ALTER TABLE other ADD COLUMN only_here int");
  int before = writer.rows.load();
  ASSERT_TRUE(Eventually([&] { return writer.rows.load() > before + 50; }, 30));
  writer.Stop();
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_indexes WHERE tablename = 't' AND indexname IN "
                            "('t_extra_idx', 't_v_idx')"),
            "2");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_attribute WHERE attrelid = 'other'::regclass AND "
                            "attname = 'only_here'"),
            "0");

  // lorry's own publication DDL (add, a new ops publication) is not sent.
  BothSql("CREATE TABLE t2 (id int PRIMARY KEY)");
  auto add2 = RunLorry(Args({"add", "t2", "--ops", "insert"}));
  ASSERT_EQ(add2.exit_code, 0) << add2.all();
  ProviderSql("INSERT INTO t2 VALUES (1)");
  Wait(&run);
  ExpectSameContent("t2");

  // DDL sent by `lorry execute` is not captured a second time.
  auto ex = RunLorry(Args({"execute", Script("ALTER TABLE t ADD COLUMN by_execute int")}));
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  ProviderSql("INSERT INTO t (id, v, by_execute) VALUES (-1, 'x', 1)");
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();

  auto drop = RunLorry(Args({"drop"}));
  EXPECT_EQ(drop.exit_code, 0) << drop.all();
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'lorry_capture_ddl'"), "0");
  EXPECT_EQ(ProviderValue("SELECT to_regnamespace('lorry_ddl') IS NULL"), "t");
}

TEST_F(Execute, ScriptFailingOnTheSubscriberStopsApplyingUntilSkipped) {
  REQUIRE_PROVIDER_14();
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ProviderSql("CREATE TABLE provider_only (id int)");
  ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  LorryProcess run(Args({"run"}));
  Wait(&run);
  auto ex = RunLorry(Args({"execute", Script("ALTER TABLE provider_only ADD COLUMN x int")}));
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  ProviderSql("INSERT INTO t VALUES (1, 'after the script')");
  std::string error;
  ASSERT_TRUE(Eventually([&] {
    error = SubscriberValue("SELECT coalesce(last_error, '') FROM lorry.subscriptions");
    return error.find("lorry skip --lsn") != std::string::npos;
  }, 30)) << error << run.Log();
  EXPECT_NE(error.find("`lorry execute` SQL"), std::string::npos) << error;
  EXPECT_NE(error.find("provider_only"), std::string::npos) << error;
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t"), "0");
  std::string lsn = error.substr(error.find("lorry skip --lsn ") + 17);
  lsn = lsn.substr(0, lsn.find_first_of(" ;\n"));
  auto skip = RunLorry(Args({"skip", "--lsn", lsn}));
  ASSERT_EQ(skip.exit_code, 0) << skip.all();
  Wait(&run);
  ExpectSameContent("t");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

TEST_F(Execute, OlderProviderSaysItNeedsFourteen) {
  if (Major() >= 14) GTEST_SKIP() << "for providers before PostgreSQL 14 (make test-pg MAJOR=13)";
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  auto init = RunLorry(Args({"init", "--capture-ddl"}));
  EXPECT_EQ(init.exit_code, 2) << init.all();
  EXPECT_NE(init.all().find("--capture-ddl needs PostgreSQL 14 or later on the provider"), std::string::npos)
      << init.all();
  ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
  auto ex = RunLorry(Args({"execute", Script("ALTER TABLE t ADD COLUMN x int")}));
  EXPECT_EQ(ex.exit_code, 2) << ex.all();
  EXPECT_NE(ex.err.find("lorry execute needs PostgreSQL 14 or later on the provider"), std::string::npos) << ex.err;
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'"), "0");
}

}  // namespace
}  // namespace lorry::test
