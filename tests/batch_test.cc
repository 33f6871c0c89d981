// Batched and grouped apply (issue 4): changes held back per key, merged and
// sent as set-based statements must leave the subscriber exactly as the
// provider, at every batch boundary: a key touched several times, primary
// key changes, TRUNCATE between changes, foreign keys, unique indexes other
// than the key, unchanged TOASTed values; and a failing change is applied
// again alone so that its error names its own transaction.
//
// The changes are made while `lorry run` is stopped, so that the catch-up
// applies many provider transactions in one group (one subscriber
// transaction, one batch per table).
#include <filesystem>

#include <fmt/format.h>

#include "apply/applier.h"
#include "fixture.h"

namespace lorry::test {
namespace {

class Batching : public TwoClusters {
 protected:
  std::unique_ptr<LorryProcess> StartRun() { return std::make_unique<LorryProcess>(Args({"run"})); }
  // Copies the tables, stops lorry; `changes` then run on the provider and
  // are applied by one catch-up.
  void CatchUp(const std::vector<std::string>& tables, const std::vector<std::string>& changes) {
    InitAndAdd(tables);
    auto run = StartRun();
    Wait(run.get());
    ASSERT_EQ(run->Terminate(), 0) << run->Log();
    for (const auto& sql : changes) ProviderSql(sql);
    run = StartRun();
    Wait(run.get());
    log_ = run->Log();
    EXPECT_EQ(run->Terminate(), 0) << run->Log();
  }
  std::string log_;
};

TEST_F(Batching, KeyUpdatedDeletedAndInsertedAgainInOneGroup) {
  BothSql("CREATE TABLE k (id int PRIMARY KEY, v text, n int)");
  ProviderSql("INSERT INTO k SELECT g, 'v' || g, 0 FROM generate_series(1, 100) g");
  CatchUp({"k"}, {
      "UPDATE k SET n = n + 1 WHERE id = 5",
      "BEGIN; UPDATE k SET v = 'x' WHERE id = 5; DELETE FROM k WHERE id = 5; "
      "INSERT INTO k VALUES (5, 'again', 42); UPDATE k SET n = n + 1 WHERE id = 5; COMMIT",
      "DELETE FROM k WHERE id = 6",
      "INSERT INTO k VALUES (6, 'six again', 6)",
      "INSERT INTO k VALUES (1000, 'short-lived', 0)",
      "UPDATE k SET n = 7 WHERE id = 1000",
      "DELETE FROM k WHERE id = 1000",
      "INSERT INTO k VALUES (1001, NULL, NULL)",
      "UPDATE k SET v = 'null no more' WHERE id = 1001",
      "DELETE FROM k WHERE id = 7",
      "UPDATE k SET n = n + 1 WHERE id BETWEEN 1 AND 50",
      "UPDATE k SET n = n + 1 WHERE id BETWEEN 40 AND 90",
  });
  ExpectSameContent("k");
  EXPECT_EQ(SubscriberValue("SELECT v || ':' || n FROM k WHERE id = 5"), "again:44");
}

TEST_F(Batching, PrimaryKeyChangesInsideABatch) {
  BothSql("CREATE TABLE p (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO p SELECT g, 'v' || g FROM generate_series(1, 50) g");
  CatchUp({"p"}, {
      "UPDATE p SET v = 'before move' WHERE id = 10",
      "UPDATE p SET id = 1010 WHERE id = 10",
      "UPDATE p SET v = 'after move' WHERE id = 1010",
      "INSERT INTO p VALUES (10, 'new row at the old key')",
      // A swap through a free key, and a whole range shifted.
      "BEGIN; UPDATE p SET id = -1 WHERE id = 1; UPDATE p SET id = 1 WHERE id = 2; "
      "UPDATE p SET id = 2 WHERE id = -1; COMMIT",
      "UPDATE p SET id = id + 100 WHERE id BETWEEN 20 AND 30",
      "UPDATE p SET v = v || '!' WHERE id BETWEEN 120 AND 125",
      "DELETE FROM p WHERE id = 1010",
  });
  ExpectSameContent("p");
}

TEST_F(Batching, TruncateInTheMiddleOfABatch) {
  BothSql("CREATE TABLE a (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE b (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 20) g");
  CatchUp({"a", "b"}, {
      "INSERT INTO a VALUES (100, 'before truncate')",
      "INSERT INTO b VALUES (1, 'b before')",
      "UPDATE a SET v = 'changed' WHERE id = 3",
      "BEGIN; INSERT INTO a VALUES (101, 'in the truncating transaction'); TRUNCATE a; "
      "INSERT INTO a VALUES (1, 'first after truncate'); COMMIT",
      "UPDATE a SET v = 'updated after truncate' WHERE id = 1",
      "INSERT INTO a VALUES (2, 'second')",
      "UPDATE b SET v = 'b after' WHERE id = 1",
  });
  ExpectSameContent("a");
  ExpectSameContent("b");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM a"), "2");
}

TEST_F(Batching, TransactionsAcrossTablesWithForeignKeys) {
  BothSql("CREATE TABLE parent (id int PRIMARY KEY, name text)");
  BothSql("CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, "
          "v text)");
  ProviderSql("INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 10) g");
  ProviderSql("INSERT INTO child SELECT g, 1 + g % 10, 'c' || g FROM generate_series(1, 100) g");
  std::vector<std::string> changes;
  for (int i = 0; i < 20; ++i) {
    changes.push_back(fmt::format("BEGIN; INSERT INTO parent VALUES ({0}, 'new'); INSERT INTO child VALUES "
                                  "({1}, {0}, 'new child'); UPDATE child SET parent_id = {0} WHERE id = {2}; COMMIT",
                                  100 + i, 1000 + i, 1 + i));
    changes.push_back(fmt::format("BEGIN; DELETE FROM child WHERE parent_id = {0}; DELETE FROM parent WHERE id = {0}; "
                                  "COMMIT",
                                  1 + i % 10));
  }
  changes.push_back("DELETE FROM parent WHERE id = 100");  // cascades to its child on the provider
  CatchUp({"parent", "child"}, changes);
  ExpectSameContent("parent");
  ExpectSameContent("child");
  // The subscriber's data satisfies its foreign key.
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM child c WHERE NOT EXISTS (SELECT 1 FROM parent p "
                            "WHERE p.id = c.parent_id)"),
            "0");
}

// A unique index besides the key: rows with different keys may then
// conflict, so their changes must keep their order (no merging).
TEST_F(Batching, UniqueIndexBesidesTheKeyKeepsTheOrder) {
  BothSql("CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE, n int)");
  ProviderSql("INSERT INTO u VALUES (1, 'one@x', 0), (2, 'two@x', 0)");
  CatchUp({"u"}, {
      "UPDATE u SET n = n + 1 WHERE id = 2",
      "UPDATE u SET email = 'moved@x' WHERE id = 1",
      "UPDATE u SET email = 'one@x' WHERE id = 2",  // takes the address row 1 gave up
      "INSERT INTO u VALUES (3, 'two@x', 0)",
      "DELETE FROM u WHERE id = 1",
      "INSERT INTO u VALUES (4, 'moved@x', 1)",
  });
  ExpectSameContent("u");
}

TEST_F(Batching, UnchangedToastValuesSurviveMergedUpdates) {
  BothSql("CREATE TABLE d (id int PRIMARY KEY, n int, doc text)");
  BothSql("ALTER TABLE d ALTER COLUMN doc SET STORAGE EXTERNAL");
  ProviderSql("INSERT INTO d SELECT g, 0, (SELECT string_agg(md5(g::text || i::text), '') FROM "
              "generate_series(1, 300) i) FROM generate_series(1, 5) g");
  CatchUp({"d"}, {
      "UPDATE d SET n = n + 1 WHERE id = 1",
      "UPDATE d SET n = n + 1 WHERE id = 1",
      "UPDATE d SET doc = 'short now' WHERE id = 2",
      "UPDATE d SET n = 5 WHERE id = 2",
      "INSERT INTO d VALUES (6, 0, repeat('x', 5000))",
      "UPDATE d SET n = 6 WHERE id = 6",
      "BEGIN; DELETE FROM d WHERE id = 3; INSERT INTO d VALUES (3, 9, 'replaced'); COMMIT",
      "UPDATE d SET n = 10 WHERE id = 3",
  });
  ExpectSameContent("d");
  EXPECT_EQ(SubscriberValue("SELECT length(doc) FROM d WHERE id = 1"), "9600");
}

// Many updates of one row in one group reach the subscriber as one.
TEST_F(Batching, RepeatedUpdatesOfOneRowAreMerged) {
  BothSql("CREATE TABLE hot (id int PRIMARY KEY, n int)");
  ProviderSql("INSERT INTO hot VALUES (1, 0)");
  std::vector<std::string> changes(1000, "UPDATE hot SET n = n + 1 WHERE id = 1");
  CatchUp({"hot"}, changes);
  ExpectSameContent("hot");
  EXPECT_EQ(SubscriberValue("SELECT n FROM hot"), "1000");
  // Statistics reach pg_stat_user_tables some time after the commit.
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'hot'") != "0";
  }, 30));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_LT(std::stoll(SubscriberValue("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'hot'")), 100)
      << log_;
}

// A change failing inside a batch is applied again alone: the error
// recorded names the transaction's own LSN and the row, not a batch.
TEST_F(Batching, AFailingChangeIsRetriedAloneAndNamed) {
  BothSql("CREATE TABLE f (id int PRIMARY KEY, v text)");
  SubscriberSql("ALTER TABLE f ADD CONSTRAINT no_bad CHECK (v <> 'bad')");
  InitAndAdd({"f"});
  auto run = StartRun();
  Wait(run.get());
  ASSERT_EQ(run->Terminate(), 0) << run->Log();
  for (int i = 1; i <= 50; ++i) ProviderSql(fmt::format("INSERT INTO f VALUES ({}, 'ok')", i));
  std::string before = ProviderValue("SELECT pg_current_wal_insert_lsn()");
  ProviderSql("INSERT INTO f VALUES (51, 'bad')");
  std::string after = ProviderValue("SELECT pg_current_wal_insert_lsn()");
  for (int i = 52; i <= 60; ++i) ProviderSql(fmt::format("INSERT INTO f VALUES ({}, 'ok')", i));
  run = StartRun();
  std::string error;
  ASSERT_TRUE(Eventually([&] {
    error = SubscriberValue("SELECT coalesce(last_error, '') FROM lorry.subscriptions");
    return error.find("no_bad") != std::string::npos && error.find("batched") == std::string::npos;
  }, 60)) << error << "\n" << run->Log();
  EXPECT_NE(run->Log().find("applying carefully"), std::string::npos) << run->Log();
  EXPECT_NE(error.find("apply INSERT"), std::string::npos) << error;
  // The LSN named is the failing transaction's commit, between the two positions read around it.
  auto at = error.find("lsn=");
  ASSERT_NE(at, std::string::npos) << error;
  std::string lsn = error.substr(at + 4, error.find_first_of(" :)", at + 4) - at - 4);
  EXPECT_EQ(ProviderValue(fmt::format("SELECT '{}'::pg_lsn > '{}'::pg_lsn AND '{}'::pg_lsn <= '{}'::pg_lsn", lsn,
                                      before, lsn, after)),
            "t")
      << error;
  // Everything before it is applied, nothing after it.
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM f"), "50");
  SubscriberSql("ALTER TABLE f DROP CONSTRAINT no_bad");
  Wait(run.get());
  ExpectSameContent("f");
}

}  // namespace
}  // namespace lorry::test

namespace lorry::test {
namespace {

// Large transactions streamed while in progress (PostgreSQL 14+): spooled to
// files by lorry and applied at their commit; aborted subtransactions and
// aborted transactions leave nothing behind.
class Streaming : public TwoClusters {
 protected:
  void SetUp() override {
    TwoClusters::SetUp();
    if (provider_cluster()->major_version() < 14) GTEST_SKIP() << "streaming needs PostgreSQL 14 on the provider";
    // The walsender streams a transaction once its decoded changes pass this.
    ProviderSql(fmt::format("ALTER DATABASE \"{}\" SET logical_decoding_work_mem = '64kB'", dbname_));
    BothSql("CREATE TABLE big (id int PRIMARY KEY, v text)");
    ProviderSql("INSERT INTO big SELECT g, 'initial' FROM generate_series(1, 100) g");
    InitAndAdd({"big"});
  }
  std::unique_ptr<LorryProcess> StartRun() { return std::make_unique<LorryProcess>(Args({"run"})); }
};

TEST_F(Streaming, LargeTransactionWithSubtransactionsIsStreamedAndApplied) {
  auto run = StartRun();
  Wait(run.get());
  ProviderSql(
      "BEGIN;"
      "INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1000, 20999) g;"
      "SAVEPOINT a; INSERT INTO big SELECT g, 'rolled back' FROM generate_series(30000, 34999) g;"
      "  SAVEPOINT b; UPDATE big SET v = 'nested, rolled back' WHERE id < 50; ROLLBACK TO SAVEPOINT a;"
      "SAVEPOINT c; UPDATE big SET v = 'kept' WHERE id BETWEEN 1000 AND 3000; RELEASE SAVEPOINT c;"
      "DELETE FROM big WHERE id BETWEEN 5000 AND 5999;"
      "UPDATE big SET id = id + 100000 WHERE id BETWEEN 1 AND 10;"
      "COMMIT");
  ProviderSql("BEGIN; INSERT INTO big SELECT g, 'aborted' FROM generate_series(40000, 59999) g; ROLLBACK");
  ProviderSql("INSERT INTO big VALUES (0, 'after')");
  Wait(run.get());
  ExpectSameContent("big");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM big WHERE v IN ('rolled back', 'aborted')"), "0");
  EXPECT_NE(run->Log().find("streamed transaction"), std::string::npos) << run->Log();
}

TEST_F(Streaming, Kill9WhileATransactionIsSpooled) {
  auto run = StartRun();
  Wait(run.get());
  auto open = ConnectProvider();
  ASSERT_TRUE(open.Exec("BEGIN").ok());
  ASSERT_TRUE(open.Exec("INSERT INTO big SELECT g, repeat('y', 100) FROM generate_series(1000, 30999) g").ok());
  // lorry has spooled part of it (a file in its spool directory).
  std::string spool;
  ASSERT_TRUE(Eventually([&] { return !(spool = SpoolDirWithData(run->pid())).empty(); }, 30)) << run->Log();
  run->Kill9();
  ASSERT_TRUE(open.Exec("UPDATE big SET v = 'late' WHERE id BETWEEN 1 AND 20000").ok());
  ASSERT_TRUE(open.Exec("COMMIT").ok());
  run = StartRun();
  Wait(run.get());
  ExpectCompareClean({"big"}, run.get());
  EXPECT_FALSE(std::filesystem::exists(spool)) << "the dead process's spool is removed";
}

// A spool over [run] spool_max_size: the stream starts again and the
// provider sends the transaction once committed; nothing is lost. The spool
// goes under [run] spool_dir.
TEST_F(Streaming, ATransactionBeyondTheSpoolLimitIsSentAgainAfterItsCommit) {
  std::string dir = fmt::format("/tmp/lorry-spool-dir-{}", getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms(0700));
  auto a = Args({"run", "-c", ConfigFile(fmt::format("[run]\nspool_dir = \"{}\"\nspool_max_size = \"256kB\"\n", dir))});
  auto run = std::make_unique<LorryProcess>(a);
  Wait(run.get());
  // Made when the stream starts.
  ASSERT_TRUE(Eventually([&] { return SpoolDirsOf(run->pid(), dir).size() == 1; }, 30)) << run->Log();
  auto open = ConnectProvider();
  ASSERT_TRUE(open.Exec("BEGIN").ok());
  ASSERT_TRUE(open.Exec("INSERT INTO big SELECT g, repeat('z', 100) FROM generate_series(1000, 30999) g").ok());
  ASSERT_TRUE(Eventually([&] { return run->Log().find("spool_max_size = 262144 bytes") != std::string::npos; }, 60))
      << run->Log();
  ASSERT_TRUE(open.Exec("UPDATE big SET v = 'late' WHERE id BETWEEN 1 AND 20000").ok());
  ASSERT_TRUE(open.Exec("COMMIT").ok());
  ProviderSql("INSERT INTO big VALUES (0, 'after')");
  Wait(run.get());
  ExpectCompareClean({"big"}, run.get());
  EXPECT_NE(run->Log().find("large transactions are asked for once committed"), std::string::npos) << run->Log();
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM big WHERE v = 'late'"), "19101");
  EXPECT_EQ(run->Terminate(), 0);
  EXPECT_TRUE(SpoolDirsOf(run->pid(), dir).empty()) << "the spool directory goes with the process";
  std::filesystem::remove_all(dir);
}

// The apply session's settings for one-row statements found by key. With
// enable_seqscan off, a statement that must scan (REPLICA IDENTITY FULL
// without an index) costs over 10^10 and would be JIT-compiled at every
// execution (~100 ms each: 3 000 updates of a 50-row table took 162 s to
// apply); jit is off.
TEST_F(Batching, ApplySessionTurnsJitOffAlongWithSeqScans) {
  auto conn = ConnectSubscriber();
  apply::Applier applier(&conn, "", [](const pg::QualifiedName&, Lsn) { return true; }, 16,
                         apply::Applier::GroupLimits{});
  ASSERT_TRUE(applier.Setup().ok());
  for (auto [name, want] : {std::pair{"jit", "off"}, std::pair{"enable_seqscan", "off"},
                            std::pair{"synchronous_commit", "off"}, std::pair{"session_replication_role", "replica"}})
    EXPECT_EQ(conn.QueryValue(std::string("SHOW ") + name)->value_or(""), want) << name;
}

}  // namespace
}  // namespace lorry::test
