// Provider failover (PostgreSQL 17+): lorry's slot is a failover slot; a
// physical standby with sync_replication_slots keeps it in step, and after
// the standby's promotion `run`, given both hosts with
// target_session_attrs=read-write, goes on from the synced slot without
// copying anything again.
#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class Failover : public TwoClusters {
 protected:
  // The provider as an application in front of a failover pair sees it.
  std::vector<std::string> PairArgs(std::vector<std::string> args, const testing::LocalCluster& standby) const {
    std::string provider = fmt::format(
        "host={0},{0} port={1},{2} dbname={3} user=postgres target_session_attrs=read-write connect_timeout=3",
        provider_cluster()->host(), provider_cluster()->port(), standby.port(), dbname_);
    std::vector<std::string> out{args.front(), "--provider", provider, "--subscriber", Subscriber(), "--name", "main"};
    out.insert(out.end(), args.begin() + 1, args.end());
    return out;
  }
};

TEST_F(Failover, PromotedStandbyGoesOnFromTheSyncedSlotWithoutACopy) {
  if (provider_cluster()->major_version() < 17)
    GTEST_SKIP() << "failover slots are PostgreSQL 17+ (the provider runs " << provider_cluster()->major_version()
                 << ")";
  auto* primary = provider_cluster();
  ASSERT_TRUE(primary->Execute("SELECT pg_create_physical_replication_slot('lorry_test_standby', true)").ok());
  testing::LocalClusterOptions o;
  o.name = "standby";
  o.bindir = std::getenv("PG_BINDIR_PROVIDER") != nullptr ? std::getenv("PG_BINDIR_PROVIDER") : "";
  o.standby_of = primary;
  o.settings = {"primary_slot_name = 'lorry_test_standby'", "hot_standby_feedback = on",
                "sync_replication_slots = on"};
  auto started = testing::LocalCluster::Start(o);
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::unique_ptr<testing::LocalCluster> standby = std::move(started).value();
  // The provider's logical walsenders send nothing the standby has not received.
  ASSERT_TRUE(primary->Execute("ALTER SYSTEM SET synchronized_standby_slots = 'lorry_test_standby'").ok());
  ASSERT_TRUE(primary->Execute("SELECT pg_reload_conf()").ok());
  struct Restore {
    testing::LocalCluster* primary;
    ~Restore() {
      (void)primary->StartAgain();
      (void)primary->Execute("ALTER SYSTEM RESET synchronized_standby_slots");
      (void)primary->Execute("SELECT pg_reload_conf()");
      (void)primary->Execute("SELECT pg_drop_replication_slot('lorry_test_standby')");
    }
  } restore{primary};

  BothSql("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
  BothSql("CREATE TABLE history (id bigserial PRIMARY KEY, account int NOT NULL, delta int NOT NULL)");
  ProviderSql("INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 100) g");
  auto init = RunLorry(PairArgs({"init"}, *standby));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  EXPECT_THAT(init.out, HasSubstr("the slot is created as a failover slot"));
  ASSERT_EQ(RunLorry(PairArgs({"add", "accounts", "history"}, *standby)).exit_code, 0);
  LorryProcess run(PairArgs({"run"}, *standby));

  // Transfers on the primary until it fails, then on the promoted standby.
  std::atomic<bool> stop{false};
  std::atomic<int> done{0};
  auto transfers = [&](std::string conninfo) {
    auto c = pg::PgConn::Connect(conninfo, {{}, "writer"});
    if (!c.ok()) return;
    for (int i = done.load(); !stop.load() && i < 100000; ++i) {
      int from = 1 + i % 100, to = 1 + (i * 7) % 100;
      auto r = c->Exec(fmt::format("BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = {0}; "
                                   "UPDATE accounts SET balance = balance + 1 WHERE id = {1}; "
                                   "INSERT INTO history (account, delta) VALUES ({0}, -1), ({1}, 1); COMMIT",
                                   from, to));
      if (!r.ok()) return;  // the primary failed
      done++;
    }
  };
  std::thread writer(transfers, Provider());
  auto wait = RunLorry(PairArgs({"wait", "--timeout", "120"}, *standby), 150);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << run.Log();
  EXPECT_EQ(ProviderValue("SELECT failover FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "t");
  auto status = RunLorry(PairArgs({"status"}, *standby));
  EXPECT_THAT(status.out, HasSubstr("failover slot: a standby with sync_replication_slots = on keeps it"));
  // The standby holds the slot, synced and kept over a promotion.
  auto standby_conn = [&] { return pg::PgConn::Connect(standby->Conninfo(dbname_), {{}, "standby"}); };
  ASSERT_TRUE(Eventually(
      [&] {
        auto c = standby_conn();
        if (!c.ok()) return false;
        auto v = c->QueryValue("SELECT synced AND NOT temporary FROM pg_replication_slots "
                               "WHERE slot_name = 'lorry_main'");
        return v.ok() && v->value_or("") == "t";
      },
      90))
      << standby->LogTail();
  ASSERT_TRUE(Eventually([&] { return done.load() > 300; }, 60));

  // The primary fails under load; the standby is promoted.
  ASSERT_TRUE(primary->Stop("immediate").ok());
  writer.join();
  {
    auto c = standby_conn();
    ASSERT_TRUE(c.ok()) << c.status().message();
    ASSERT_TRUE(c->Exec("SELECT pg_promote(true, 60)").ok());
  }
  int before = done.load();
  stop.store(false);
  std::thread writer2(transfers, standby->Conninfo(dbname_));
  ASSERT_TRUE(Eventually([&] { return done.load() > before + 300; }, 90)) << run.Log();
  stop.store(true);
  writer2.join();

  wait = RunLorry(PairArgs({"wait", "--timeout", "180"}, *standby), 210);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << "\n--- run:\n" << run.Log() << "\n--- standby:\n" << standby->LogTail();
  ExpectCompareClean({"accounts", "history"}, &run, PairArgs({"compare"}, *standby));
  EXPECT_EQ(SubscriberValue("SELECT sum(balance) FROM accounts"), "100000");
  // Nothing was copied again: the one copy is the initial one.
  std::string log = run.Log();
  size_t first = log.find("copying tables=");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("copying tables=", first + 1), std::string::npos) << log;
  EXPECT_THAT(log, Not(HasSubstr("resync")));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables WHERE state <> 'ready'"), "0");
  EXPECT_EQ(run.Terminate(), 0) << log;
}

// Before PostgreSQL 17 a failover costs a re-copy, and init and status say so.
TEST_F(Failover, BeforeSeventeenInitAndStatusSayAFailoverNeedsResync) {
  if (provider_cluster()->major_version() >= 17) GTEST_SKIP() << "the provider has failover slots";
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  EXPECT_THAT(init.out, HasSubstr("has no failover slots: after a failover of the provider (a standby promoted) the "
                                  "slot is gone and `lorry resync --all` copies every table again"));
  auto status = RunLorry(Args({"status"}));
  EXPECT_THAT(status.out, HasSubstr("has no failover slots: after a failover of the provider, `lorry resync --all`"));
}

}  // namespace
}  // namespace lorry::test
