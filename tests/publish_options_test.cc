// Row filters, column lists and operations per table (`lorry add --where
// --columns --ops`): the initial copy and the stream both honour them, an
// UPDATE moving a row across the filter is replicated as DELETE/INSERT, and
// what PostgreSQL would only refuse later on the provider is refused at add.
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

// PG_BINDIR may run the tests against another major (make test-pg MAJOR=14).
#define REQUIRE_PROVIDER_15()                                                         \
  if (Major() < 15) GTEST_SKIP() << "needs PostgreSQL 15+ on the provider, have " << Major()

class PublishOptions : public TwoClusters {
 protected:
  void Init() {
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
  }
  CommandResult Add(std::vector<std::string> args) {
    args.insert(args.begin(), "add");
    return RunLorry(Args(args));
  }
  void Wait(LorryProcess* run) {
    auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << run->Log();
  }
  int Major() const { return provider_cluster()->major_version(); }
  // The subscriber's rows equal the provider's rows of `provider_query`.
  void ExpectSubscriberHolds(const std::string& table, const std::string& provider_query) {
    EXPECT_EQ(Dump(false, table), Dump(true, "(" + provider_query + ")")) << table;
  }
};

TEST_F(PublishOptions, RowFilterInCopyAndStreamWithRowsMovingAcross) {
  REQUIRE_PROVIDER_15();
  // On the key (the default identity), and on any column with REPLICA IDENTITY FULL.
  BothSql("CREATE TABLE k (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE r (id int PRIMARY KEY, region text, v int)");
  ProviderSql("ALTER TABLE r REPLICA IDENTITY FULL");
  ProviderSql("INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 1000) g");
  ProviderSql("INSERT INTO r SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 900) g");
  Init();
  auto added = Add({"k", "--where", "id % 2 = 0"});
  ASSERT_EQ(added.exit_code, 0) << added.all();
  // As the provider prints it (pg_get_expr), which is what is stored and shown.
  EXPECT_NE(added.out.find("rows where ((id % 2) = 0)"), std::string::npos) << added.out;
  added = Add({"r", "--where", "region = 'eu'"});
  ASSERT_EQ(added.exit_code, 0) << added.all();

  // Split into ctid ranges (tables above 16 kB): each range is filtered too.
  std::string config = fmt::format("/tmp/lorry-filter-test-{}.toml", getpid());
  {
    std::ofstream f(config);
    f << "[copy]\nsplit_tables_larger_than = \"16kB\"\n";
  }
  auto run_args = Args({"run", "--jobs", "2"});
  run_args.insert(run_args.end(), {"-c", config});
  LorryProcess run(run_args);
  Wait(&run);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM k"), "500");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM r"), "300");
  ExpectSubscriberHolds("k", "SELECT * FROM k WHERE id % 2 = 0");

  ProviderSql("INSERT INTO k SELECT g, 'new' FROM generate_series(1001, 1100) g");
  ProviderSql("UPDATE k SET v = 'changed' WHERE id <= 100");
  ProviderSql("DELETE FROM k WHERE id BETWEEN 200 AND 260");
  // Out of the filter (even -> odd: DELETE) and into it (odd -> even: INSERT).
  ProviderSql("UPDATE k SET id = id + 10001 WHERE id BETWEEN 1 AND 20");
  ProviderSql("UPDATE r SET region = 'eu', v = -v WHERE id BETWEEN 1 AND 30 AND region = 'us'");
  ProviderSql("UPDATE r SET region = 'us' WHERE id BETWEEN 31 AND 60 AND region = 'eu'");
  ProviderSql("UPDATE r SET v = 0 WHERE id BETWEEN 61 AND 90");
  Wait(&run);
  ExpectSubscriberHolds("k", "SELECT * FROM k WHERE id % 2 = 0");
  ExpectSubscriberHolds("r", "SELECT * FROM r WHERE region = 'eu'");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM k WHERE id > 10000"), "10");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  EXPECT_NE(run.Log().find("table=public.k copy begins"), std::string::npos);
  EXPECT_NE(run.Log().find("split_by=ctid"), std::string::npos) << run.Log();
  std::remove(config.c_str());
  auto tables = RunLorry(Args({"tables"}));
  EXPECT_NE(tables.out.find("where ((id % 2) = 0)"), std::string::npos) << tables.all();
}

TEST_F(PublishOptions, RefusesWhatWouldBreakTheProvider) {
  REQUIRE_PROVIDER_15();
  BothSql("CREATE TABLE t (id int PRIMARY KEY, region text, secret text)");
  Init();
  // A filter on a column outside the replica identity: PostgreSQL would
  // accept it and then fail every UPDATE on the provider.
  auto bad = Add({"t", "--where", "region = 'eu'"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("replica identity"), std::string::npos) << bad.err;
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel"), "0");
  ProviderSql("UPDATE t SET region = 'x'");  // still works
  bad = Add({"t", "--columns", "region,secret"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("column id of table public.t is part of its replica identity"), std::string::npos)
      << bad.err;
  bad = Add({"t", "--columns", "id,nope"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("has no column nope"), std::string::npos) << bad.err;
  bad = Add({"t", "--ops", "insert,upsert"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("upsert"), std::string::npos) << bad.err;
  bad = Add({"t", "--where", "no_such_column > 1"});
  EXPECT_NE(bad.exit_code, 0) << bad.all();
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel"), "0");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables"), "0");

  // Inserts only: a filter on any column is fine.
  auto ok = Add({"t", "--ops", "insert", "--where", "region = 'eu'", "--columns", "id,region"});
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  // Named again with another filter: refused; with the same: already there.
  bad = Add({"t", "--ops", "insert", "--where", "region = 'us'", "--columns", "id,region"});
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("already replicated"), std::string::npos) << bad.err;
  ok = Add({"t", "--ops", "insert", "--where", "region = 'eu'", "--columns", "id,region"});
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_NE(ok.out.find("already replicated"), std::string::npos) << ok.out;
}

// --where is one SQL expression, parsed and checked by the provider itself
// before anything changes: what would close the parenthesis, add a
// statement, comment out the rest or open a quote is refused, and nothing
// on either side changes. What is stored and used is the server's own
// printed form (pg_get_expr).
TEST_F(PublishOptions, RowFilterIsOneExpressionCheckedByTheProvider) {
  REQUIRE_PROVIDER_15();
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ProviderSql("CREATE TABLE x (id int)");
  ProviderSql("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g");
  Init();
  for (const std::string where :
       {"id > 0) ; drop table x; --", "id > 0); DROP TABLE x", "id > 0) ; drop table x; select (1",
        "(id > 0", "id > 0)", "id > 0 /* unterminated", "id > 0 */ OR (true", "id > $$0", "id > $q$0$$",
        "id > 0), TABLE x WHERE (true", "id > 0) WITH (publish = 'insert'", "id > 0), TABLES IN SCHEMA public --",
        "id > 0) UNION SELECT 1 FROM x WHERE (true", "random() > 0.5", "id > (SELECT max(id) FROM x)", " ",
        "id"}) {
    auto bad = Add({"t", "--where", where});
    EXPECT_EQ(bad.exit_code, 2) << where << "\n" << bad.all();
    EXPECT_NE(bad.err.find("is not one boolean SQL expression"), std::string::npos) << where << "\n" << bad.err;
    EXPECT_EQ(ProviderValue("SELECT to_regclass('x') IS NOT NULL"), "t") << where;
    EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel"), "0") << where;
    EXPECT_EQ(ProviderValue("SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication"),
              "lorry_main,lorry_main_insert_only")
        << where;
    EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables"), "0") << where;
  }
  // Quotes, dollar quotes and comments inside one expression are fine: a
  // dollar-quoted literal that looks like an injection stays a literal.
  auto added = Add({"t", "--where", "id <> length($x$ ) ; drop table x; -- $x$) AND id > 10 -- the newest"});
  ASSERT_EQ(added.exit_code, 0) << added.all();
  EXPECT_EQ(ProviderValue("SELECT to_regclass('x') IS NOT NULL"), "t");
  std::string printed = ProviderValue("SELECT pg_get_expr(prqual, prrelid) FROM pg_publication_rel");
  EXPECT_EQ(printed, "((id <> length(' ) ; drop table x; -- '::text)) AND (id > 10))");
  EXPECT_EQ(SubscriberValue("SELECT row_filter FROM lorry.tables"), printed);
  EXPECT_NE(added.out.find("rows where " + printed), std::string::npos) << added.out;
  // Named again with the same filter spelled differently: the same filter.
  auto again = Add({"t", "--where", "(id<>length(' ) ; drop table x; -- ')) and (id>10)"});
  EXPECT_EQ(again.exit_code, 0) << again.all();
  EXPECT_NE(again.out.find("already replicated"), std::string::npos) << again.out;
  LorryProcess run(Args({"run"}));
  Wait(&run);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t"), "89");  // 11..100 but length(...) = 22
}

TEST_F(PublishOptions, ColumnListInCopyAndStream) {
  REQUIRE_PROVIDER_15();
  ProviderSql("CREATE TABLE c (id int PRIMARY KEY, a text, secret text NOT NULL, b int)");
  SubscriberSql("CREATE TABLE c (id int PRIMARY KEY, a text, b int, local_note text DEFAULT 'sub')");
  ProviderSql("INSERT INTO c SELECT g, 'a' || g, 'hidden', g FROM generate_series(1, 200) g");
  Init();
  auto added = Add({"c", "--columns", "id, a,b"});
  ASSERT_EQ(added.exit_code, 0) << added.all();
  LorryProcess run(Args({"run"}));
  Wait(&run);
  ProviderSql("INSERT INTO c VALUES (201, 'new', 'hidden too', 201)");
  ProviderSql("UPDATE c SET a = 'upd', secret = 'changed' WHERE id <= 10");
  ProviderSql("DELETE FROM c WHERE id BETWEEN 20 AND 29");
  Wait(&run);
  EXPECT_EQ(Dump(false, "(SELECT id, a, b FROM c)"), Dump(true, "(SELECT id, a, b FROM c)"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM c WHERE local_note = 'sub'"), "191");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  // `tables` says what is replicated of the table.
  auto tables = RunLorry(Args({"tables"}));
  EXPECT_NE(tables.out.find("columns id, a, b"), std::string::npos) << tables.all();
  auto json = RunLorry(Args({"tables", "--json"}));
  EXPECT_NE(json.out.find("\"columns\": \"id, a, b\""), std::string::npos) << json.all();
}

TEST_F(PublishOptions, OperationsPerTable) {
  BothSql("CREATE TABLE o (id int PRIMARY KEY, v text)");
  BothSql("CREATE TABLE full_ops (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO o SELECT g, 'v' FROM generate_series(1, 50) g");
  Init();
  auto added = Add({"o", "--ops", "insert,update"});
  ASSERT_EQ(added.exit_code, 0) << added.all();
  EXPECT_NE(added.out.find("operations: insert, update"), std::string::npos) << added.out;
  ASSERT_EQ(Add({"full_ops"}).exit_code, 0);
  EXPECT_EQ(ProviderValue("SELECT pubinsert AND pubupdate AND NOT pubdelete AND NOT pubtruncate FROM pg_publication "
                          "WHERE pubname = 'lorry_main_ops_iu'"),
            "t");
  LorryProcess run(Args({"run"}));
  Wait(&run);
  ProviderSql("INSERT INTO o VALUES (51, 'new')");
  ProviderSql("UPDATE o SET v = 'updated' WHERE id <= 5");
  ProviderSql("DELETE FROM o WHERE id > 40");  // not replicated
  ProviderSql("INSERT INTO full_ops VALUES (1, 'x')");
  ProviderSql("DELETE FROM full_ops");  // replicated
  Wait(&run);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM o"), "51");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM o WHERE v = 'updated'"), "5");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM full_ops"), "0");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  auto tables = RunLorry(Args({"tables"}));
  EXPECT_NE(tables.out.find("insert, update"), std::string::npos) << tables.all();

  auto removed = RunLorry(Args({"remove", "o"}));
  EXPECT_EQ(removed.exit_code, 0) << removed.all();
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid "
                          "WHERE p.pubname = 'lorry_main_ops_iu'"),
            "0");
  auto drop = RunLorry(Args({"drop"}));
  EXPECT_EQ(drop.exit_code, 0) << drop.all();
  EXPECT_NE(drop.out.find("dropped publication lorry_main_ops_iu"), std::string::npos) << drop.out;
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication"), "0");
}

TEST_F(PublishOptions, OlderProviderRefusesFiltersAndColumnsButNotOps) {
  if (Major() >= 15) GTEST_SKIP() << "for providers before PostgreSQL 15 (make test-pg MAJOR=14)";
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  Init();
  for (const auto& opt : {std::vector<std::string>{"t", "--where", "id > 1"},
                          std::vector<std::string>{"t", "--columns", "id"}}) {
    auto bad = Add(opt);
    EXPECT_EQ(bad.exit_code, 2) << bad.all();
    EXPECT_NE(bad.err.find("needs PostgreSQL 15 or later on the provider"), std::string::npos) << bad.err;
  }
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel"), "0");
  auto ok = Add({"t", "--ops", "insert"});
  ASSERT_EQ(ok.exit_code, 0) << ok.all();
  LorryProcess run(Args({"run"}));
  Wait(&run);
  ProviderSql("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
  ProviderSql("DELETE FROM t WHERE id = 1");
  Wait(&run);
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t"), "2");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

}  // namespace
}  // namespace lorry::test
