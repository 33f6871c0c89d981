// End-to-end replication through `lorry run` against real clusters: initial
// copy, streaming of every change kind, types, identifiers, TOAST, replica
// identities, and crash recovery (kill -9 of lorry, subscriber restart).
#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

class Replication : public TwoClusters {
 protected:
  std::unique_ptr<LorryProcess> StartRun() { return std::make_unique<LorryProcess>(Args({"run", "--jobs", "2"})); }
};

TEST_F(Replication, CopyThenStreamInsertUpdateDeleteTruncate) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text, n numeric)");
  BothSql("CREATE TABLE u (id bigint PRIMARY KEY, w text)");
  ProviderSql("INSERT INTO t SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 1000) g");
  ProviderSql("INSERT INTO u SELECT g, 'u' || g FROM generate_series(1, 10) g");
  InitAndAdd({"t", "public.u"});
  auto run = StartRun();
  Wait(run.get());
  ExpectSameContent("t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t"), "1000");

  ProviderSql("INSERT INTO t SELECT g, 'new ' || g, NULL FROM generate_series(1001, 1100) g");
  ProviderSql("UPDATE t SET v = v || ' updated', n = NULL WHERE id % 7 = 0");
  ProviderSql("DELETE FROM t WHERE id % 11 = 0");
  ProviderSql("UPDATE t SET id = id + 100000 WHERE id BETWEEN 1 AND 5");  // primary-key change
  ProviderSql("BEGIN; INSERT INTO u VALUES (100, 'x'); UPDATE u SET w = 'y' WHERE id = 100; "
              "DELETE FROM u WHERE id = 1; COMMIT");
  Wait(run.get());
  ExpectSameContent("t");
  ExpectSameContent("u");

  ProviderSql("TRUNCATE t, u");
  ProviderSql("INSERT INTO u VALUES (7, 'after truncate')");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t"), "0");
  ExpectSameContent("u");

  auto status = RunLorry(Args({"status", "--json"}));
  EXPECT_EQ(status.exit_code, 0) << status.all();
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Replication, EveryBuiltinTypeAndNulls) {
  const char* ddl = R"sql(
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE pair AS (a int, b text);
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TABLE types (
      id int PRIMARY KEY,
      b bool, i2 smallint, i8 bigint, f4 real, f8 double precision, num numeric(20,6), m money,
      t text, vc varchar(10), ch char(3), by bytea,
      d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
      j json, jb jsonb, x xml, u uuid, ip inet, cidr_ cidr, mac macaddr,
      bits bit(4), vbits varbit, arr int[], tarr text[], rng int4range, tsr tstzrange,
      e mood, c pair, dom posint,
      pt point, ln line, seg lseg, bx box, pth path, pg polygon, ci circle,
      tsv tsvector, oid_ oid
    );)sql";
  BothSql(ddl);
  const char* row = R"sql(
    INSERT INTO types VALUES (%d, true, -2, 9000000000, 1.5, 3.141592653589793, 12345.678901, '$12.34',
      E'multi\nline \\ "quoted" ''text'' ünïcødé', 'abc', 'ab', '\xdeadbeef00',
      '2024-02-29', '13:14:15.123456', '13:14:15+02', '2024-01-01 00:00:00.000001', '2024-06-01 12:00:00+05:30',
      '1 year 2 mons 3 days 04:05:06.789',
      '{"a": [1, 2, {"b": null}]}', '{"z": 1, "a": "x"}', '<r><c>1</c></r>', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101', '{1,2,NULL,4}', '{"a b","c,d",NULL}',
      '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', 'happy', ROW(1, 'x y'), 7,
      '(1.5,2.5)', '{1,2,3}', '[(0,0),(1,1)]', '(2,2),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))',
      '<(0,0),5>', 'a fat cat', 42))sql";
  auto row_with_id = [&](int id) {
    std::string sql(row);
    return sql.replace(sql.find("%d"), 2, std::to_string(id));
  };
  ProviderSql(row_with_id(1));
  ProviderSql("INSERT INTO types (id) VALUES (2)");  // all NULLs
  InitAndAdd({"types"});
  auto run = StartRun();
  Wait(run.get());
  ExpectSameContent("types");
  // The same values again through the stream, then updated and deleted.
  ProviderSql(row_with_id(3));
  ProviderSql("INSERT INTO types (id, f8, j) VALUES (4, 'NaN', 'null'), (5, '-Infinity', '[]')");
  ProviderSql("UPDATE types SET jb = jb || '{\"new\": true}', arr = arr || 5, f4 = 'Infinity' WHERE id = 3");
  ProviderSql("UPDATE types SET t = NULL WHERE id = 1");
  ProviderSql("DELETE FROM types WHERE id = 2");
  Wait(run.get());
  ExpectSameContent("types");
}

TEST_F(Replication, IdentifiersThatNeedQuoting) {
  const char* ddl = R"sql(
    CREATE SCHEMA "My Schema";
    CREATE TABLE "My Schema"."we""ird.Tbl ü" (
      "Id" int PRIMARY KEY, "select" text, "col with space" int, "ÜnÏcode" text, "a""b" text);
    CREATE TABLE "Order" ("from" int PRIMARY KEY, "to" text);)sql";
  BothSql(ddl);
  ProviderSql(R"(INSERT INTO "My Schema"."we""ird.Tbl ü" VALUES (1, 'a', 1, 'x', 'q'), (2, 'b', 2, 'y', 'r'))");
  ProviderSql(R"(INSERT INTO "Order" VALUES (1, 'one'))");
  InitAndAdd({R"("My Schema"."we""ird.Tbl ü")", R"("Order")"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql(R"(INSERT INTO "My Schema"."we""ird.Tbl ü" VALUES (3, 'c', 3, 'z', 's'))");
  ProviderSql(R"(UPDATE "My Schema"."we""ird.Tbl ü" SET "select" = 'changed', "Id" = 20 WHERE "Id" = 2)");
  ProviderSql(R"(DELETE FROM "My Schema"."we""ird.Tbl ü" WHERE "Id" = 1)");
  ProviderSql(R"(UPDATE "Order" SET "to" = 'uno')");
  ProviderSql(R"(TRUNCATE "Order")");
  Wait(run.get());
  ExpectSameContent(R"("My Schema"."we""ird.Tbl ü")");
  ExpectSameContent(R"("Order")");
  auto tables = RunLorry(Args({"tables"}));
  EXPECT_NE(tables.out.find("ready"), std::string::npos) << tables.all();
}

TEST_F(Replication, UnchangedToastValueIsKept) {
  BothSql("CREATE TABLE doc (id int PRIMARY KEY, counter int, body text)");
  // Random text does not compress, so it is stored out of line (TOAST).
  ProviderSql("INSERT INTO doc SELECT 1, 0, string_agg(md5(g::text), '') FROM generate_series(1, 5000) g");
  InitAndAdd({"doc"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("UPDATE doc SET counter = counter + 1");  // body is sent as 'unchanged'
  ProviderSql("UPDATE doc SET counter = counter + 1");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT counter FROM doc"), "2");
  EXPECT_EQ(SubscriberValue("SELECT length(body) FROM doc"), "160000");
  ExpectSameContent("doc");
}

TEST_F(Replication, ReplicaIdentityFullWithDuplicatesAndNoEqualityTypes) {
  BothSql("CREATE TABLE f (a int, j json, p point, x xml, n text)");
  ProviderSql("ALTER TABLE f REPLICA IDENTITY FULL");
  SubscriberSql("ALTER TABLE f REPLICA IDENTITY FULL");
  ProviderSql("INSERT INTO f VALUES (1, '{\"k\": 1}', '(1,1)', '<a/>', NULL), (1, '{\"k\": 1}', '(1,1)', '<a/>', NULL), "
              "(2, '[]', '(0,0)', '<b/>', 'z')");
  InitAndAdd({"f"});
  auto run = StartRun();
  Wait(run.get());
  // Each change touches exactly one of the two identical rows.
  ProviderSql("UPDATE f SET n = 'one' WHERE ctid = (SELECT min(ctid) FROM f WHERE a = 1)");
  ProviderSql("DELETE FROM f WHERE a = 2");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM f WHERE a = 1 AND n = 'one'"), "1");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM f WHERE a = 1 AND n IS NULL"), "1");
  ExpectSameContent("f");
  ProviderSql("DELETE FROM f WHERE ctid = (SELECT min(ctid) FROM f WHERE a = 1 AND n IS NULL)");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM f"), "1");
  ExpectSameContent("f");
}

TEST_F(Replication, ReplicaIdentityUsingIndex) {
  BothSql("CREATE TABLE ri (id int, code text NOT NULL, v text); CREATE UNIQUE INDEX ri_code ON ri (code)");
  ProviderSql("ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code");
  ProviderSql("INSERT INTO ri VALUES (1, 'a', 'x'), (2, 'b', 'y')");
  InitAndAdd({"ri"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("UPDATE ri SET v = 'changed' WHERE code = 'a'");
  ProviderSql("UPDATE ri SET code = 'c' WHERE code = 'b'");
  ProviderSql("DELETE FROM ri WHERE code = 'a'");
  Wait(run.get());
  ExpectSameContent("ri");
}

TEST_F(Replication, TruncateSeveralTablesCascadeRestartIdentity) {
  BothSql("CREATE TABLE parent (id serial PRIMARY KEY, v text);"
          "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id));"
          "CREATE TABLE other (id int PRIMARY KEY)");
  ProviderSql("INSERT INTO parent (v) VALUES ('a'), ('b'); INSERT INTO child VALUES (1, 1), (2, 2);"
              "INSERT INTO other VALUES (1)");
  InitAndAdd({"parent", "child", "other"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("TRUNCATE parent, other RESTART IDENTITY CASCADE");
  ProviderSql("INSERT INTO parent (v) VALUES ('after')");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM child"), "0");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM other"), "0");
  ExpectSameContent("parent");
}

TEST_F(Replication, InsertOnlyTableWithoutKey) {
  BothSql("CREATE TABLE history (tid int, delta int, mtime timestamptz DEFAULT now())");
  ProviderSql("INSERT INTO history (tid, delta) SELECT g, g FROM generate_series(1, 100) g");
  InitAndAdd({"--insert-only", "history"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("INSERT INTO history (tid, delta) SELECT g, -g FROM generate_series(1, 50) g");
  // Publishing only inserts means UPDATE keeps working on the provider.
  ProviderSql("UPDATE history SET delta = 0 WHERE tid = 1");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM history"), "150");
}

TEST_F(Replication, TableAddedWhileRunningIsCopiedThenStreamed) {
  BothSql("CREATE TABLE first (id int PRIMARY KEY, v int); CREATE TABLE later (id int PRIMARY KEY, v int)");
  ProviderSql("INSERT INTO first SELECT g, g FROM generate_series(1, 100) g");
  ProviderSql("INSERT INTO later SELECT g, g FROM generate_series(1, 500) g");
  InitAndAdd({"first"});
  auto run = StartRun();
  Wait(run.get());
  // Changes to `later` before it is added must come through the copy.
  ProviderSql("UPDATE later SET v = -v WHERE id <= 10");
  auto add = RunLorry(Args({"add", "later"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  ProviderSql("UPDATE later SET v = 1000 WHERE id = 500; INSERT INTO first VALUES (101, 101)");
  Wait(run.get());
  ExpectSameContent("first");
  ExpectSameContent("later");
  ProviderSql("DELETE FROM later WHERE id > 400");
  Wait(run.get());
  ExpectSameContent("later");
}

// kill -9 of lorry in the middle of a stream of many small transactions.
TEST_F(Replication, Kill9DuringManySmallTransactions) {
  BothSql("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)");
  ProviderSql("INSERT INTO c SELECT g, 0 FROM generate_series(1, 100) g");
  InitAndAdd({"c"});
  auto run = StartRun();
  Wait(run.get());
  // 12 000 small transactions, each incrementing a counter and inserting a row:
  // a duplicate or lost transaction shows up in the sums.
  std::thread writer([&] {
    auto p = ConnectProvider();
    for (int i = 0; i < 12000; ++i) {
      auto r = p.Exec(fmt::format("UPDATE c SET n = n + 1 WHERE id = {}; INSERT INTO c VALUES ({}, 1)",
                                  1 + i % 100, 1000 + i));
      ASSERT_TRUE(r.ok()) << r.status().message();
    }
  });
  ASSERT_TRUE(Eventually([&] { return std::stoll(SubscriberValue("SELECT count(*) FROM c")) > 2000; }, 120));
  run->Kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  run = StartRun();
  ASSERT_TRUE(Eventually([&] { return std::stoll(SubscriberValue("SELECT count(*) FROM c")) > 6000; }, 120));
  run->Kill9();
  run = StartRun();
  writer.join();
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT sum(n) FROM c"), "24000");
  ExpectCompareClean({"c"}, run.get());
  EXPECT_EQ(run->Log().find("report this as a lorry bug"), std::string::npos) << run->Log();
}

// kill -9 of lorry in the middle of one large transaction.
TEST_F(Replication, Kill9DuringOneLargeTransaction) {
  BothSql("CREATE TABLE big (id int PRIMARY KEY, v text)");
  InitAndAdd({"big"});
  // Batches of rows are sent with a pause, so that the kill surely comes
  // before the transaction's end.
  setenv("LORRY_FAULT_SLEEP", "apply_batch:100", 1);
  auto run = StartRun();
  unsetenv("LORRY_FAULT_SLEEP");
  Wait(run.get());
  ProviderSql("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g");
  // Wait until the subscriber is inside the transaction (rows being written, none visible yet),
  // then kill: the open subscriber transaction rolls back and is applied again on restart.
  ASSERT_TRUE(Eventually([&] {
    // An apply transaction that has written (it has an xid), in pipeline
    // mode "active" until its commit.
    return SubscriberValue("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lorry_apply' "
                           "AND backend_xid IS NOT NULL") != "0";
  }, 60));
  run->Kill9();
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM big"), "0");
  run = StartRun();
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM big"), "300000");
  ExpectCompareClean({"big"}, run.get());
}

TEST_F(Replication, SubscriberRestartWhileStreaming) {
  BothSql("CREATE TABLE s (id int PRIMARY KEY, v int)");
  InitAndAdd({"s"});
  auto run = StartRun();
  Wait(run.get());
  std::atomic<int> written{0};
  std::thread writer([&] {
    auto p = ConnectProvider();
    for (int i = 1; i <= 3000; ++i) {
      ASSERT_TRUE(p.Exec(fmt::format("INSERT INTO s VALUES ({}, {})", i, i)).ok());
      written = i;
    }
  });
  // In the middle of the stream, however fast the machine writes.
  ASSERT_TRUE(Eventually([&] { return written.load() >= 1000; }, 60));
  ASSERT_TRUE(subscriber_cluster()->Restart().ok());
  writer.join();
  // The run notices (at its next subscriber call) and reconnects.
  ASSERT_TRUE(Eventually([&] { return run->Log().find("retrying") != std::string::npos; }, 60)) << run->Log();
  Wait(run.get(), 180);
  // On a loss, say where the positions stood (seen once in ~170 runs on PG 18).
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM s"), "3000")
      << "missing ids: " << SubscriberValue("SELECT string_agg(g::text, ',') FROM generate_series(1, 3000) g "
                                            "WHERE NOT EXISTS (SELECT 1 FROM s WHERE id = g)")
      << "\nslot: " << ProviderValue("SELECT confirmed_flush_lsn::text FROM pg_replication_slots")
      << "\norigin: " << SubscriberValue("SELECT pg_replication_origin_progress('lorry_main', true)::text")
      << "\nlog:\n" << run->Log();
  ExpectCompareClean({"s"}, run.get());
  EXPECT_TRUE(run->Running()) << run->Log();
}

TEST_F(Replication, RestartResumesFromOrigin) {
  BothSql("CREATE TABLE r (id int PRIMARY KEY)");
  InitAndAdd({"r"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("INSERT INTO r SELECT generate_series(1, 100)");
  Wait(run.get());
  EXPECT_EQ(run->Terminate(), 0);
  ProviderSql("INSERT INTO r SELECT generate_series(101, 200)");  // while lorry is down
  run = StartRun();
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM r"), "200");
  // A second `run` for the same subscription stands by: see standby_test.cc.
}

// A backlog of small provider transactions is applied in far fewer
// subscriber transactions (grouped commits), with every change kept.
TEST_F(Replication, BacklogOfSmallTransactionsIsAppliedInGroups) {
  BothSql("CREATE TABLE g (id int PRIMARY KEY, n int)");
  InitAndAdd({"g"});
  auto run = StartRun();
  Wait(run.get());
  EXPECT_EQ(run->Terminate(), 0);
  auto p = ConnectProvider();
  for (int i = 1; i <= 3000; ++i) ASSERT_TRUE(p.Exec(fmt::format("INSERT INTO g VALUES ({}, {})", i, i)).ok());
  std::string commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
  int64_t before = std::stoll(SubscriberValue(commits));
  run = StartRun();
  Wait(run.get());
  EXPECT_EQ(run->Terminate(), 0);
  ExpectSameContent("g");
  // Ended sessions have flushed their statistics.
  int64_t delta = std::stoll(SubscriberValue(commits)) - before;
  EXPECT_LT(delta, 1000) << "subscriber commits for 3000 provider transactions";
  EXPECT_EQ(SubscriberValue("SELECT xacts_applied FROM lorry.subscriptions"), "3000");
}

// The slot confirmed beyond what the subscriber recorded (here forced by
// hand) means changes may have been skipped: lorry says so loudly.
TEST_F(Replication, SlotAheadOfTheSubscriberIsReported) {
  BothSql("CREATE TABLE ah (id int PRIMARY KEY)");
  InitAndAdd({"ah"});
  auto run = StartRun();
  Wait(run.get());
  EXPECT_EQ(run->Terminate(), 0);
  EXPECT_EQ(run->Log().find("report this as a lorry bug"), std::string::npos) << run->Log();
  ProviderSql("INSERT INTO ah VALUES (1)");
  ProviderSql("SELECT pg_replication_slot_advance('lorry_main', pg_current_wal_lsn())");
  run = StartRun();
  ASSERT_TRUE(Eventually([&] { return run->Log().find("report this as a lorry bug") != std::string::npos; }, 30))
      << run->Log();
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.all().find("beyond what the subscriber recorded"), std::string::npos) << status.all();
}

TEST_F(Replication, ProviderRestartWhileStreaming) {
  BothSql("CREATE TABLE pr (id int PRIMARY KEY, v int)");
  InitAndAdd({"pr"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("INSERT INTO pr SELECT g, g FROM generate_series(1, 1000) g");
  ASSERT_TRUE(provider_cluster()->Restart().ok());
  ProviderSql("INSERT INTO pr SELECT g, g FROM generate_series(1001, 2000) g");
  Wait(run.get(), 180);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pr"), "2000");
  ExpectCompareClean({"pr"}, run.get());
  EXPECT_TRUE(run->Running()) << run->Log();
}

// A change that cannot be applied stops applying with a message naming the
// table and column; after the fix on the subscriber, lorry goes on by itself
// from where it stopped, losing nothing.
TEST_F(Replication, ApplyErrorNamesTheColumnAndResumesAfterTheFix) {
  BothSql("CREATE TABLE evolving (id int PRIMARY KEY, v text)");
  InitAndAdd({"evolving"});
  auto run = StartRun();
  Wait(run.get());
  ProviderSql("ALTER TABLE evolving ADD COLUMN extra int");
  ProviderSql("INSERT INTO evolving VALUES (1, 'a', 42)");
  ASSERT_TRUE(Eventually([&] { return run->Log().find("column \"extra\" of table public.evolving is missing") !=
                                      std::string::npos; }, 60))
      << run->Log();
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.all().find("extra"), std::string::npos) << status.all();
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM evolving"), "0");
  SubscriberSql("ALTER TABLE evolving ADD COLUMN extra int");
  Wait(run.get(), 120);
  ExpectSameContent("evolving");
  EXPECT_TRUE(run->Running()) << run->Log();
}

TEST_F(Replication, RunWithRefusedPasswordFailsFastWithoutShowingIt) {
  ProviderSql("CREATE ROLE carol LOGIN REPLICATION PASSWORD 'right-secret'");
  BothSql("CREATE TABLE w (id int PRIMARY KEY)");
  InitAndAdd({"w"});
  std::string bad = provider_cluster()->Conninfo(dbname_, "carol") + " password=wrong-secret";
  auto r = RunLorry({"run", "--provider", bad, "--subscriber", Subscriber()}, 60);
  EXPECT_EQ(r.exit_code, 3) << r.all();
  EXPECT_NE(r.all().find("password authentication failed"), std::string::npos) << r.all();
  EXPECT_EQ(r.all().find("wrong-secret"), std::string::npos) << r.all();
}

}  // namespace
}  // namespace lorry::test
