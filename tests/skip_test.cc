// A change the subscriber refuses (here a CHECK constraint only the
// subscriber has) stops applying with a message naming the table, the key,
// the provider transaction's commit LSN and commit time, shown by `status`;
// lorry keeps retrying. `lorry skip --lsn` skips exactly that transaction,
// records it in lorry.skips, and replication goes on.
#include <fmt/format.h>

#include <regex>

#include "fixture.h"

namespace lorry::test {
namespace {

class Skip : public TwoClusters {};

TEST_F(Skip, FailingTransactionIsReportedThenSkippedOnRequest) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v int)");
  SubscriberSql("ALTER TABLE t ADD CONSTRAINT v_small CHECK (v < 1000)");
  ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  LorryProcess run(Args({"run"}));
  auto w = RunLorry(Args({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(w.exit_code, 0) << w.all() << run.Log();

  std::string first = ProviderValue("SELECT pg_current_wal_insert_lsn()::text");
  ProviderSql("INSERT INTO t VALUES (1, 1)");
  std::string before = ProviderValue("SELECT pg_current_wal_insert_lsn()::text");
  ProviderSql("BEGIN; INSERT INTO t VALUES (2, 2); INSERT INTO t VALUES (3, 5000); UPDATE t SET v = 7 WHERE id = 1; "
              "COMMIT");
  std::string after = ProviderValue("SELECT pg_current_wal_insert_lsn()::text");
  ProviderSql("INSERT INTO t VALUES (4, 4)");

  const std::regex error_re("apply INSERT public\\.t key=\\(3\\) lsn=([0-9A-F]+/[0-9A-F]+) committed at ([0-9-]+ "
                            "[0-9:.]+\\+00)[^\\n]*violates check constraint \"v_small\"");
  std::smatch m;
  std::string log;
  ASSERT_TRUE(Eventually([&] {
    log = run.Log();
    return std::regex_search(log, m, error_re);
  }, 60)) << log;
  std::string lsn = m[1];
  // The commit LSN of that transaction: between the positions around it.
  EXPECT_EQ(ProviderValue(fmt::format("SELECT '{}'::pg_lsn > '{}'::pg_lsn AND '{}'::pg_lsn < '{}'::pg_lsn", lsn,
                                      before, lsn, after)),
            "t")
      << lsn << " not in " << before << ".." << after;
  EXPECT_NE(log.find(fmt::format("lorry skip --lsn {}", lsn)), std::string::npos) << log;
  EXPECT_NE(log.find("retrying in"), std::string::npos) << log;
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.out.find(fmt::format("lsn={}", lsn)), std::string::npos) << status.all();
  EXPECT_NE(status.out.find("v_small"), std::string::npos) << status.all();
  // Keeps retrying, and applies nothing past it.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_TRUE(run.Running()) << run.Log();
  EXPECT_EQ(SubscriberValue("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t"), "1:1");

  // An LSN already applied is refused; a malformed one too.
  auto old = RunLorry(Args({"skip", "--lsn", first}));
  EXPECT_EQ(old.exit_code, 2) << old.all();
  EXPECT_NE(old.all().find("already applied"), std::string::npos) << old.all();
  EXPECT_EQ(RunLorry(Args({"skip", "--lsn", "nonsense"})).exit_code, 2);

  auto skip = RunLorry(Args({"skip", "--lsn", lsn}));
  ASSERT_EQ(skip.exit_code, 0) << skip.all();
  EXPECT_NE(skip.out.find("recorded"), std::string::npos) << skip.out;
  auto pending = RunLorry(Args({"status"}));
  EXPECT_TRUE(pending.out.find(fmt::format("skip          requested, not yet skipped by run: {}", lsn)) !=
                  std::string::npos ||
              run.Log().find("skipped provider transaction") != std::string::npos)
      << pending.out;
  auto again = RunLorry(Args({"skip", "--lsn", lsn}));
  EXPECT_EQ(again.exit_code, 0) << again.all();
  // Asked again: requested, or (when run was quick) skipped already.
  EXPECT_TRUE(again.out.find("already requested") != std::string::npos ||
              again.out.find("already skipped at") != std::string::npos)
      << again.out;

  auto w2 = RunLorry(Args({"wait", "--timeout", "90"}), 120);
  ASSERT_EQ(w2.exit_code, 0) << w2.all() << run.Log();
  // Exactly that transaction is missing: its three changes, nothing else.
  EXPECT_EQ(SubscriberValue("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t"), "1:1,4:4");
  EXPECT_EQ(SubscriberValue(fmt::format("SELECT skipped_at IS NOT NULL AND changes = '{{\"public.t\": 3}}'::jsonb "
                                        "AND requested_by LIKE '%@%' AND commit_time IS NOT NULL AND end_lsn > "
                                        "commit_lsn FROM lorry.skips WHERE commit_lsn = '{}'",
                                        lsn)),
            "t");
  EXPECT_NE(run.Log().find(fmt::format("skipped provider transaction commit_lsn={}", lsn)), std::string::npos)
      << run.Log();
  auto status2 = RunLorry(Args({"status"}));
  EXPECT_NE(status2.out.find("last error    none"), std::string::npos) << status2.out;
  EXPECT_EQ(status2.out.find("not yet skipped"), std::string::npos) << status2.out;
  auto late = RunLorry(Args({"skip", "--lsn", lsn}));
  EXPECT_EQ(late.exit_code, 0) << late.all();
  EXPECT_NE(late.out.find("already skipped at"), std::string::npos) << late.all();
  // Later changes flow as usual.
  ProviderSql("UPDATE t SET v = 9 WHERE id = 4");
  ASSERT_EQ(RunLorry(Args({"wait", "--timeout", "60"}), 90).exit_code, 0) << run.Log();
  EXPECT_EQ(SubscriberValue("SELECT v FROM t WHERE id = 4"), "9");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
}

}  // namespace
}  // namespace lorry::test
