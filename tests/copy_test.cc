// The initial copy: large tables split into ctid ranges, indexes deferred and
// rebuilt, binary/text format choice, crash during a copy, and a subscriber
// table that is not empty.
#include <fstream>
#include <regex>

#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

const char* kSchema = R"sql(
  CREATE TABLE big (id int PRIMARY KEY, code text NOT NULL, v text, n int,
                    CONSTRAINT big_code_key UNIQUE (code));
  CREATE INDEX big_n_idx ON big (n);
  CREATE INDEX "Big Expr" ON big (lower(v)) WHERE n > 10;
  CREATE TABLE ref (id int PRIMARY KEY, big_id int REFERENCES big (id));
)sql";

class Copy : public TwoClusters {
 protected:
  // A config file that splits tables above `split` and rebuilds indexes with 2 jobs.
  std::string Config(const std::string& split) {
    path_ = fmt::format("/tmp/lorry-copy-test-{}.toml", getpid());
    std::ofstream f(path_);
    f << "[copy]\njobs = 3\nindex_jobs = 2\nsplit_tables_larger_than = \"" << split << "\"\n";
    return path_;
  }
  void TearDown() override {
    if (!path_.empty()) std::remove(path_.c_str());
    TwoClusters::TearDown();
  }
  std::vector<std::string> WithConfig(std::vector<std::string> args) {
    auto a = Args(std::move(args));
    a.push_back("-c");
    a.push_back(path_);
    return a;
  }
  // Index and constraint definitions of a table, in a stable order.
  std::string Indexes(bool provider, const std::string& table) {
    std::string sql = fmt::format(
        "SELECT string_agg(d, E'\\n' ORDER BY d) FROM ("
        "SELECT indexdef AS d FROM pg_indexes WHERE tablename = '{0}' UNION ALL "
        "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{0}'::regclass) x",
        table);
    return provider ? ProviderValue(sql) : SubscriberValue(sql);
  }
  // Copies `big` (`rows` rows) and `ref` with every index rebuild held back,
  // and returns the `run` once all their rows are in (indexes still deferred).
  std::unique_ptr<LorryProcess> CopyWithIndexRebuildHeldBack(int rows) {
    BothSql(kSchema);
    ProviderSql(fmt::format(
        "INSERT INTO big SELECT g, 'c' || g, md5(g::text), g % 100 FROM generate_series(1, {}) g", rows));
    Config("1GB");
    EXPECT_EQ(RunLorry(WithConfig({"init"})).exit_code, 0);
    EXPECT_EQ(RunLorry(WithConfig({"add", "big", "ref"})).exit_code, 0);
    setenv("LORRY_FAULT_SLEEP", "index_rebuild:60000", 1);
    auto run = std::make_unique<LorryProcess>(WithConfig({"run"}));
    unsetenv("LORRY_FAULT_SLEEP");
    EXPECT_TRUE(Eventually([&] {
      return SubscriberValue("SELECT count(*) FROM lorry.tables WHERE copy_finished_at IS NOT NULL") == "2";
    }, 60)) << run->Log();
    return run;
  }

  std::string path_;
};


TEST_F(Copy, LargeTableIsSplitIndexesDeferredAndRebuilt) {
  BothSql(kSchema);
  ProviderSql("INSERT INTO big SELECT g, 'c' || g, md5(g::text), g % 100 FROM generate_series(1, 30000) g");
  ProviderSql("INSERT INTO ref SELECT g, g FROM generate_series(1, 100) g");
  ProviderSql("ANALYZE");
  Config("256kB");
  ASSERT_EQ(RunLorry(WithConfig({"init"})).exit_code, 0);
  auto add = RunLorry(WithConfig({"add", "big", "ref"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  LorryProcess run(WithConfig({"run"}));
  auto w = RunLorry(WithConfig({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();
  ExpectSameContent("big");
  ExpectSameContent("ref");
  std::string log = run.Log();
  EXPECT_NE(log.find("table=public.big copy begins"), std::string::npos) << log;
  EXPECT_EQ(log.find("table=public.big copy begins size=0"), std::string::npos) << log;
  // About 2.3 MB in ranges of at most 256 kB.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("table=public.big copy begins size=(\\d+) ranges=(\\d+)"))) << log;
  EXPECT_GE(std::stoi(m[2]), std::stoll(m[1]) / (256 << 10)) << log;
  EXPECT_GE(std::stoi(m[2]), 3) << log;
  EXPECT_NE(log.find("format=binary"), std::string::npos) << log;
  // The primary key is referenced by ref's foreign key: kept. The others were
  // dropped for the copy and are back, exactly as they were.
  EXPECT_EQ(Indexes(true, "big"), Indexes(false, "big"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes"), "0");
  EXPECT_EQ(SubscriberValue("SELECT rows_copied FROM lorry.tables WHERE relname = 'big'"), "30000");
  // Streaming goes on through the rebuilt unique index.
  ProviderSql("UPDATE big SET v = 'changed' WHERE id <= 10; DELETE FROM big WHERE id > 29990");
  w = RunLorry(WithConfig({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(w.exit_code, 0) << w.all();
  ExpectSameContent("big");
}

TEST_F(Copy, UserTypesAreCopiedInTextFormat) {
  BothSql("CREATE TYPE color AS ENUM ('red', 'green'); CREATE TABLE paint (id int PRIMARY KEY, c color, a color[])");
  ProviderSql("INSERT INTO paint VALUES (1, 'red', '{red,green}'), (2, NULL, NULL)");
  Config("1GB");
  ASSERT_EQ(RunLorry(WithConfig({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(WithConfig({"add", "paint"})).exit_code, 0);
  LorryProcess run(WithConfig({"run"}));
  auto w = RunLorry(WithConfig({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();
  ExpectSameContent("paint");
  EXPECT_NE(run.Log().find("format=text"), std::string::npos) << run.Log();
}

TEST_F(Copy, Kill9DuringCopyThenRunAgainEndsIdentical) {
  BothSql(kSchema);
  ProviderSql("INSERT INTO big SELECT g, 'c' || g, repeat(md5(g::text), 4), g % 100 "
              "FROM generate_series(1, 100000) g");
  ProviderSql("ANALYZE");
  Config("1MB");
  ASSERT_EQ(RunLorry(WithConfig({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(WithConfig({"add", "big", "ref"})).exit_code, 0);
  {
    // Each range waits 400 ms before its commit: the copy takes seconds.
    setenv("LORRY_FAULT_SLEEP", "copy_range:400", 1);
    LorryProcess run(WithConfig({"run", "--jobs", "1"}));
    unsetenv("LORRY_FAULT_SLEEP");
    ASSERT_TRUE(Eventually([&] {
      return SubscriberValue("SELECT count(*) FROM lorry.tables WHERE state = 'copying' AND relname = 'big'") ==
                 "1" &&
             SubscriberValue("SELECT count(*) FROM big") != "0";
    }, 60)) << run.Log();
    // A person watching sees the copy move: bytes, share, rate and time left.
    std::string seen;
    EXPECT_TRUE(Eventually([&] {
      seen = RunLorry(WithConfig({"status"})).out;
      return seen.find(" copying: ") != std::string::npos && seen.find("s left") != std::string::npos &&
             seen.find("indexes to rebuild") != std::string::npos;
    }, 30)) << seen;
    run.Kill9();
  }
  // Some ranges are in, the indexes are recorded, not on the table.
  EXPECT_NE(SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes"), "0");
  LorryProcess run(WithConfig({"run"}));
  auto w = RunLorry(WithConfig({"wait", "--timeout", "180"}), 200);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();
  ExpectCompareClean({"big", "ref"}, &run, WithConfig({"compare"}));
  EXPECT_EQ(Indexes(true, "big"), Indexes(false, "big"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes"), "0");
  EXPECT_NE(run.Log().find("copy was interrupted"), std::string::npos) << run.Log();
}

// Killed after all rows are in but before the indexes are back: the rows
// are kept, the indexes rebuilt, and the table is not `ready` before that.
TEST_F(Copy, Kill9DuringIndexRebuildKeepsTheRows) {
  {
    auto held = CopyWithIndexRebuildHeldBack(20000);
    ASSERT_FALSE(HasFailure());
    // Rows in, indexes not: still `copying`, and `wait` does not call it done.
    EXPECT_EQ(SubscriberValue("SELECT state FROM lorry.tables WHERE relname = 'big'"), "copying");
    EXPECT_EQ(RunLorry(WithConfig({"wait", "--timeout", "1"}), 30).exit_code, 1);
    held->Kill9();
  }
  EXPECT_NE(SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes"), "0");
  LorryProcess run(WithConfig({"run"}));
  auto w = RunLorry(WithConfig({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();
  ExpectCompareClean({"big", "ref"}, &run, WithConfig({"compare"}));
  EXPECT_EQ(Indexes(true, "big"), Indexes(false, "big"));
  EXPECT_EQ(Indexes(true, "ref"), Indexes(false, "ref"));
  EXPECT_EQ(run.Log().find("copy was interrupted"), std::string::npos) << run.Log();
  EXPECT_EQ(SubscriberValue("SELECT string_agg(state, ',') FROM lorry.tables"), "ready,ready");
}

// `lorry drop` while indexes are deferred puts them back first: lorry never
// takes a table's keys away with its own schema.
TEST_F(Copy, DropRebuildsDeferredIndexes) {
  auto held = CopyWithIndexRebuildHeldBack(5000);
  ASSERT_FALSE(HasFailure());
  held->Kill9();
  EXPECT_NE(Indexes(true, "big"), Indexes(false, "big"));
  auto drop = RunLorry(WithConfig({"drop"}));
  ASSERT_EQ(drop.exit_code, 0) << drop.all();
  EXPECT_NE(drop.out.find("rebuilt 4 indexes deferred by an unfinished copy"), std::string::npos) << drop.all();
  EXPECT_EQ(Indexes(true, "big"), Indexes(false, "big"));
  EXPECT_EQ(Indexes(true, "ref"), Indexes(false, "ref"));
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry')::text"), "<null>");
}

TEST_F(Copy, TableWithRowsOnTheSubscriberIsRefusedNotOverwritten) {
  BothSql("CREATE TABLE full_one (id int PRIMARY KEY, v text); CREATE TABLE empty_one (id int PRIMARY KEY)");
  ProviderSql("INSERT INTO full_one VALUES (1, 'provider'); INSERT INTO empty_one VALUES (1)");
  SubscriberSql("INSERT INTO full_one VALUES (2, 'subscriber only')");
  Config("1GB");
  ASSERT_EQ(RunLorry(WithConfig({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(WithConfig({"add", "full_one", "empty_one"})).exit_code, 0);
  LorryProcess run(WithConfig({"run"}));
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT state FROM lorry.tables WHERE relname = 'full_one'") == "error";
  }, 60)) << run.Log();
  auto tables = RunLorry(WithConfig({"tables"}));
  EXPECT_NE(tables.all().find("already has rows"), std::string::npos) << tables.all();
  EXPECT_EQ(SubscriberValue("SELECT v FROM full_one"), "subscriber only");
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM empty_one") == "1"; }, 60));
  // `wait` does not hang on a table that needs the user: it says so at once.
  auto w = RunLorry(WithConfig({"wait"}), 30);
  EXPECT_EQ(w.exit_code, 1) << w.all();
  EXPECT_NE(w.all().find("full_one is error: "), std::string::npos) << w.all();
  EXPECT_NE(w.all().find("--truncate"), std::string::npos) << w.all();
  // The user asks for the subscriber's rows to be replaced: the running
  // daemon empties the table and copies it.
  auto add = RunLorry(WithConfig({"add", "--truncate", "full_one"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  w = RunLorry(WithConfig({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();
  ExpectSameContent("full_one");
}

}  // namespace
}  // namespace lorry::test
