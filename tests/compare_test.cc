// `lorry compare` against real clusters with a running `lorry run`: equal
// tables under a concurrent provider workload (the consistent point), a row
// changed by hand on the subscriber found and, with --rows, named by its key;
// tables without a key, tables not ready, and compare without run.
#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

class Compare : public TwoClusters {
 protected:
  void SetUpTables() {
    BothSql("CREATE TABLE t (id int PRIMARY KEY, v text, ts timestamptz, f float8); "
            "CREATE TABLE nokey (a int, b text); ALTER TABLE nokey REPLICA IDENTITY FULL; "
            "CREATE TABLE \"Two Key\" (k1 text, k2 int, v text, PRIMARY KEY (k1, k2))");
    ProviderSql("INSERT INTO t SELECT g, 'row ' || g, now() - g * interval '1 minute', g / 3.0 "
                "FROM generate_series(1, 3000) g; "
                "INSERT INTO nokey SELECT g, 'n' || g FROM generate_series(1, 50) g; "
                "INSERT INTO \"Two Key\" SELECT chr(65 + g % 26) || g, g % 7, 'v' || g FROM generate_series(1, 500) g");
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry(Args({"add", "t", "nokey", "\"Two Key\""}));
    ASSERT_EQ(add.exit_code, 0) << add.all();
  }
  void Wait(LorryProcess& run) {
    auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << run.Log();
  }
};

TEST_F(Compare, RefusesWithoutRun) {
  SetUpTables();
  auto r = RunLorry(Args({"compare"}));
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr("lorry compare needs `lorry run` running"));
}

TEST_F(Compare, EqualUnderConcurrentWritesThenFindsAndNamesRowsChangedByHand) {
  SetUpTables();
  LorryProcess run(Args({"run"}));
  Wait(run);

  // A provider workload runs through the compare: both sides are still read
  // at one point, so no difference shows.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto conn = ConnectProvider();
    for (int i = 3001; !stop.load(); ++i) {
      (void)conn.Exec(fmt::format("INSERT INTO t VALUES ({0}, 'w{0}', now(), {0}); UPDATE t SET v = v || '+' "
                                  "WHERE id = {1}; UPDATE \"Two Key\" SET v = v || '+' WHERE k2 = {2}",
                                  i, i % 3000 + 1, i % 7));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  for (int round = 0; round < 2; ++round) {
    auto ok = RunLorry(Args({"compare", "--jobs", "2"}));
    EXPECT_EQ(ok.exit_code, 0) << ok.all() << "\n--- lorry run log:\n" << run.Log();
    EXPECT_THAT(ok.out, HasSubstr("public.t: ok ("));
    EXPECT_THAT(ok.out, HasSubstr("public.nokey: ok (50 rows)"));
    EXPECT_THAT(ok.out, HasSubstr("public.\"Two Key\": ok (500 rows)"));
  }
  stop = true;
  writer.join();
  Wait(run);

  // Changed by hand on the subscriber: one row updated, one deleted, one added.
  SubscriberSql("UPDATE t SET v = 'by hand' WHERE id = 1234; DELETE FROM t WHERE id = 77; "
                "INSERT INTO t VALUES (999999, 'extra', now(), 0); "
                "UPDATE \"Two Key\" SET v = 'x' WHERE (k1, k2) = (SELECT k1, k2 FROM \"Two Key\" ORDER BY k1, k2 "
                "LIMIT 1 OFFSET 100); UPDATE nokey SET b = 'changed' WHERE a = 3");
  std::string two_key = SubscriberValue("SELECT format('(k1, k2)=(%s, %s)', k1, k2) FROM \"Two Key\" WHERE v = 'x'");
  auto diff = RunLorry(Args({"compare"}));
  EXPECT_EQ(diff.exit_code, 1) << diff.all() << "\n--- lorry run log:\n" << run.Log();
  EXPECT_THAT(diff.out, HasSubstr("public.t: differs: same row count ("));
  EXPECT_THAT(diff.out, HasSubstr("public.nokey: differs: same row count (50), different content"));
  EXPECT_THAT(diff.out, HasSubstr("public.\"Two Key\": differs"));
  EXPECT_THAT(diff.err, HasSubstr("3 tables differ"));

  auto rows = RunLorry(Args({"compare", "--rows", "t", "nokey", "\"Two Key\""}));
  EXPECT_EQ(rows.exit_code, 1) << rows.all() << "\n--- lorry run log:\n" << run.Log();
  EXPECT_THAT(rows.out, HasSubstr("  (id)=(77): only on the provider\n"));
  EXPECT_THAT(rows.out, HasSubstr("  (id)=(1234): differs\n"));
  EXPECT_THAT(rows.out, HasSubstr("  (id)=(999999): only on the subscriber\n"));
  EXPECT_THAT(rows.out, HasSubstr("  " + two_key + ": differs\n"));
  EXPECT_THAT(rows.out, HasSubstr("rows can't be narrowed down: the table has no primary key"));

  auto j = RunLorry(Args({"compare", "--rows", "--json", "t"}));
  ASSERT_EQ(j.exit_code, 1) << j.all() << "\n--- lorry run log:\n" << run.Log();
  ASSERT_THAT(j.out, HasSubstr("\"tables\"")) << j.all() << "\n--- lorry run log:\n" << run.Log();
  auto parsed = json::parse(j.out);
  ASSERT_EQ(parsed["tables"].size(), 1u);
  auto& t = parsed["tables"][0];
  EXPECT_EQ(t["table"], "public.t");
  EXPECT_EQ(t["result"], "differs");
  EXPECT_EQ(t["provider"]["rows"], t["subscriber"]["rows"]);
  ASSERT_EQ(t["rows"].size(), 3u) << j.out;
  EXPECT_EQ(t["rows"][0]["key"], "(id)=(77)");
  EXPECT_EQ(t["rows"][0]["difference"], "only on the provider");

  // A table not ready is reported with its state, not as a difference.
  SubscriberSql("UPDATE lorry.tables SET state = 'paused' WHERE relname = 'nokey'");
  auto paused = RunLorry(Args({"compare", "nokey"}));
  EXPECT_EQ(paused.exit_code, 0) << paused.all();
  EXPECT_THAT(paused.out, HasSubstr("public.nokey: paused (not compared)"));
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

}  // namespace
}  // namespace lorry::test
