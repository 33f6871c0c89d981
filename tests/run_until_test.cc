// `lorry run --until LSN|now`: applies every provider transaction committed
// before the position, none after, moves the origin to it and exits 0.
#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;

class RunUntil : public TwoClusters {
 protected:
  CommandResult RunUntilPosition(const std::string& until) {
    return RunLorry(Args({"run", "--until", until}), 180);
  }
  // Whether the subscription's origin is at or past `lsn`.
  bool OriginAtLeast(const std::string& lsn) const {
    return SubscriberValue(fmt::format("SELECT pg_replication_origin_progress('lorry_main', true) >= '{}'::pg_lsn",
                                       lsn)) == "t";
  }
};

TEST_F(RunUntil, StopsAtThePositionAndAppliesNothingCommittedAfterIt) {
  BothSql("CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, note text)");
  ProviderSql("INSERT INTO accounts SELECT g, 100, 'opening' FROM generate_series(1, 10) g");
  InitAndAdd({"accounts"});
  // The first run copies the table and streams up to the provider's position now.
  auto first = RunUntilPosition("now");
  ASSERT_EQ(first.exit_code, 0) << first.all();
  EXPECT_THAT(first.all(), HasSubstr("reached --until"));
  ExpectSameContent("accounts");

  for (int i = 11; i <= 50; ++i) ProviderSql(fmt::format("INSERT INTO accounts VALUES ({}, {}, 'before')", i, i));
  ProviderSql("UPDATE accounts SET balance = balance + 1 WHERE id <= 5");
  std::string cut = ProviderValue("SELECT pg_current_wal_lsn()");
  for (int i = 51; i <= 80; ++i) ProviderSql(fmt::format("INSERT INTO accounts VALUES ({}, {}, 'after')", i, i));
  ProviderSql("UPDATE accounts SET note = 'changed after the cut' WHERE id = 1");
  ProviderSql("DELETE FROM accounts WHERE id = 2");

  auto until = RunUntilPosition(cut);
  ASSERT_EQ(until.exit_code, 0) << until.all();
  EXPECT_THAT(until.all(), HasSubstr("reached --until " + cut));
  // Everything before the cut, nothing after it.
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM accounts"), "50");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM accounts WHERE note = 'after'"), "0");
  EXPECT_EQ(SubscriberValue("SELECT sum(balance) FROM accounts WHERE id <= 5"), "505");
  EXPECT_EQ(SubscriberValue("SELECT note FROM accounts WHERE id = 1"), "opening");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM accounts WHERE id = 2"), "1");
  EXPECT_TRUE(OriginAtLeast(cut)) << SubscriberValue("SELECT pg_replication_origin_progress('lorry_main', true)");
  // The slot was told so, and holds the rest.
  EXPECT_EQ(ProviderValue(fmt::format(
                "SELECT confirmed_flush_lsn >= '{}'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'lorry_main'",
                cut)),
            "t");

  // A position already passed: nothing to apply, the origin stays where it is.
  std::string origin = SubscriberValue("SELECT pg_replication_origin_progress('lorry_main', true)");
  auto again = RunUntilPosition("0/1000000");
  ASSERT_EQ(again.exit_code, 0) << again.all();
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM accounts"), "50");
  EXPECT_EQ(SubscriberValue("SELECT pg_replication_origin_progress('lorry_main', true)"), origin);

  // The rest arrives with the next run, once: the cut lost and doubled nothing.
  auto rest = RunUntilPosition("now");
  ASSERT_EQ(rest.exit_code, 0) << rest.all();
  ExpectSameContent("accounts");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM accounts"), "79");
}

// Under a steady writer, `--until now` applies a prefix of the provider's
// transactions (rows 1..k, no gaps) that holds every row committed before run
// started, and exits.
TEST_F(RunUntil, NowUnderLoadAppliesAPrefixOfTheCommits) {
  BothSql("CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
  InitAndAdd({"events"});
  auto created = RunUntilPosition("now");
  ASSERT_EQ(created.exit_code, 0) << created.all();

  std::atomic<bool> stop{false};
  std::atomic<int> committed{0};
  std::thread writer([&] {
    auto c = ConnectProvider();
    for (int i = 1; !stop.load() && i < 100000; ++i) {
      if (!c.Exec(fmt::format("INSERT INTO events (id) VALUES ({})", i)).ok()) break;
      committed.store(i);
    }
  });
  ASSERT_TRUE(Eventually([&] { return committed.load() >= 300; }, 60));
  int before = committed.load();
  auto until = RunUntilPosition("now");
  int after = committed.load();
  stop.store(true);
  writer.join();
  ASSERT_EQ(until.exit_code, 0) << until.all();
  int applied = std::stoi(SubscriberValue("SELECT count(*) FROM events"));
  EXPECT_GE(applied, before);
  EXPECT_LE(applied, after);
  EXPECT_EQ(SubscriberValue("SELECT coalesce(max(id), 0) FROM events"), std::to_string(applied)) << "a gap";

  auto rest = RunUntilPosition("now");
  ASSERT_EQ(rest.exit_code, 0) << rest.all();
  ExpectSameContent("events");
}

TEST_F(RunUntil, AnythingButAnLsnOrNowIsRefused) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  auto r = RunUntilPosition("yesterday");
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr("--until"));
  EXPECT_THAT(r.err, HasSubstr("now"));
}

}  // namespace
}  // namespace lorry::test
