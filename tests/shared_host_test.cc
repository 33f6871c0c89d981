// lorry on a shared host: provider and subscriber told apart by what the
// servers say (not by connection strings), and `lorry run` that stops within
// seconds of SIGTERM whatever it waits on (a lock on either side), naming
// who holds a provider lock it waits for.
#include <sys/stat.h>

#include <chrono>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

class SharedHost : public TwoClusters {
 protected:
  // SIGTERM; the seconds until `run` exited, and its exit code.
  std::pair<double, int> TimedTerminate(LorryProcess* run) {
    auto begun = Clock::now();
    int code = run->Terminate(30);
    return {std::chrono::duration<double>(Clock::now() - begun).count(), code};
  }
};

// The same database, spelled as a URI with localhost where the provider is
// key=value with 127.0.0.1: refused before anything is installed.
TEST_F(SharedHost, InitRefusesTheSameDatabaseHoweverItIsSpelled) {
  std::string same = fmt::format("postgresql://postgres@localhost:{}/{}", provider_cluster()->port(), dbname_);
  auto init = RunLorry({"init", "--provider", Provider(), "--subscriber", same});
  EXPECT_EQ(init.exit_code, 2) << init.all();
  EXPECT_THAT(init.all(), HasSubstr("the provider and the subscriber are the same database"));
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication"), "0");
  EXPECT_EQ(ProviderValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
  // Run refuses it too: here the provider's database holds a lorry schema
  // of its own (a subscription the other way round), as it would after
  // pointing a configuration at the wrong database.
  auto reverse = RunLorry({"init", "--provider", Subscriber(), "--subscriber", Provider()});
  ASSERT_EQ(reverse.exit_code, 0) << reverse.all();
  auto run = RunLorry({"run", "--provider", Provider(), "--subscriber", same}, 60);
  EXPECT_EQ(run.exit_code, 2) << run.all();
  EXPECT_THAT(run.all(), HasSubstr("the same database"));
}

// Two databases of one server: allowed, with a warning, and replicated.
TEST_F(SharedHost, InitWarnsAboutTwoDatabasesOfOneServer) {
  std::string target = dbname_ + "_target";
  ASSERT_TRUE(provider_cluster()->Execute(fmt::format("DROP DATABASE IF EXISTS \"{}\"", target)).ok());
  ASSERT_TRUE(provider_cluster()->Execute(fmt::format("CREATE DATABASE \"{}\"", target)).ok());
  std::string sub = provider_cluster()->Conninfo(target);
  auto init = RunLorry({"init", "--provider", Provider(), "--subscriber", sub});
  EXPECT_EQ(init.exit_code, 0) << init.all();
  EXPECT_THAT(init.out, HasSubstr("warn  both: provider and subscriber are databases"));
  EXPECT_THAT(init.out, HasSubstr("of the same server"));
  auto drop = RunLorry({"drop", "--provider", Provider(), "--subscriber", sub});
  EXPECT_EQ(drop.exit_code, 0) << drop.all();
  ASSERT_TRUE(provider_cluster()->Execute(fmt::format("DROP DATABASE \"{}\" WITH (FORCE)", target)).ok());
}

TEST_F(SharedHost, InitSaysTwoServersAreTwo) {
  auto init = RunLorry(Args({"init"}));
  EXPECT_EQ(init.exit_code, 0) << init.all();
  EXPECT_THAT(init.out, HasSubstr("ok    both: provider and subscriber are different servers"));
}

// A provider table locked ACCESS EXCLUSIVE by a session that does not end:
// the copy waits, says who holds the lock, and SIGTERM ends the wait.
TEST_F(SharedHost, CopyWaitingForAProviderLockNamesItsHolderAndStopsOnSigterm) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g");
  InitAndAdd({"t"});
  // The lock is taken once the copy has begun (its slot exists: creating
  // one waits for every transaction that holds an xid, as the locker's).
  setenv("LORRY_FAULT_SLEEP", "copy_lock:4000", 1);
  LorryProcess run(Args({"run"}));
  unsetenv("LORRY_FAULT_SLEEP");
  ASSERT_TRUE(Eventually([&] { return run.Log().find("table=public.t copy begins") != std::string::npos; }, 60))
      << run.Log();
  auto blocker = ConnectProvider();
  ASSERT_TRUE(blocker.Exec("SET application_name = 'nightly_migration'; BEGIN; "
                           "LOCK TABLE t IN ACCESS EXCLUSIVE MODE").ok());
  ASSERT_TRUE(Eventually([&] { return run.Log().find("for a lock on the provider table") != std::string::npos; }, 30))
      << run.Log();
  EXPECT_THAT(run.Log(), HasSubstr(fmt::format("pid {} holds ACCESS EXCLUSIVE", blocker.backend_pid())));
  EXPECT_THAT(run.Log(), HasSubstr("nightly_migration"));
  auto [seconds, code] = TimedTerminate(&run);
  EXPECT_EQ(code, 0) << run.Log();
  EXPECT_LT(seconds, 5) << run.Log();
  // Once the lock is gone, a new run copies the table.
  ASSERT_TRUE(blocker.Exec("ROLLBACK").ok());
  LorryProcess again(Args({"run"}));
  Wait(&again);
  ExpectSameContent("t");
}

// The apply waits for a row lock a local subscriber session holds: SIGTERM
// ends the wait (the statement is cancelled and rolled back), and nothing
// is lost: the next run applies the change.
TEST_F(SharedHost, SigtermEndsAnApplyWaitingForASubscriberLock) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO t VALUES (1, 'a')");
  InitAndAdd({"t"});
  auto run = std::make_unique<LorryProcess>(Args({"run"}));
  Wait(run.get());
  auto local = ConnectSubscriber();
  ASSERT_TRUE(local.Exec("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE").ok());
  ProviderSql("UPDATE t SET v = 'b' WHERE id = 1");
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND application_name = 'lorry_apply'") == "1";
  }, 30)) << run->Log();
  auto [seconds, code] = TimedTerminate(run.get());
  EXPECT_EQ(code, 0) << run->Log();
  EXPECT_LT(seconds, 5) << run->Log();
  ASSERT_TRUE(local.Exec("ROLLBACK").ok());
  run = std::make_unique<LorryProcess>(Args({"run"}));
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT v FROM t WHERE id = 1"), "b");
}

// A lorry.toml that others may read and that holds a password: warned
// about, with the fix; none once it is private, or without a password.
TEST_F(SharedHost, AReadableConfigHoldingAPasswordIsWarnedAbout) {
  std::string with_password = ConfigFile(fmt::format("provider = \"{} password=s3cret-Pw\"\nsubscriber = \"{}\"\n",
                                                     Provider(), Subscriber()));
  ASSERT_EQ(chmod(with_password.c_str(), 0644), 0);
  auto r = RunLorry({"status", "-c", with_password});
  EXPECT_THAT(r.err, HasSubstr(fmt::format("config file {} holds a password and other users may read it (mode 644): "
                                           "chmod 600 {}",
                                           with_password, with_password)));
  EXPECT_EQ(r.all().find("s3cret-Pw"), std::string::npos) << r.all();
  ASSERT_EQ(chmod(with_password.c_str(), 0640), 0);
  EXPECT_THAT(RunLorry({"status", "-c", with_password}).err, HasSubstr("(mode 640)"));
  ASSERT_EQ(chmod(with_password.c_str(), 0600), 0);
  EXPECT_EQ(RunLorry({"status", "-c", with_password}).err.find("holds a password"), std::string::npos);
  std::string without = ConfigFile(fmt::format("provider = \"{}\"\nsubscriber = \"{}\"\n", Provider(), Subscriber()));
  ASSERT_EQ(chmod(without.c_str(), 0644), 0);
  EXPECT_EQ(RunLorry({"status", "-c", without}).err.find("holds a password"), std::string::npos);
}

// As compare does, run refuses a --jobs it cannot mean; an empty --name is
// refused, not taken for "main".
TEST_F(SharedHost, RunJobsAndNameAreChecked) {
  for (const char* jobs : {"0", "65", "100000"}) {
    auto r = RunLorry({"run", "--jobs", jobs, "--provider", Provider(), "--subscriber", Subscriber()}, 30);
    EXPECT_EQ(r.exit_code, 2) << jobs << ": " << r.all();
    EXPECT_THAT(r.all(), HasSubstr("--jobs")) << jobs;
  }
  auto named = RunLorry({"status", "--name", "", "--provider", Provider(), "--subscriber", Subscriber()}, 30);
  EXPECT_EQ(named.exit_code, 2) << named.all();
  EXPECT_THAT(named.err, HasSubstr("name: expected 1..40 characters"));
  auto init = RunLorry({"init", "--name=", "--provider", Provider(), "--subscriber", Subscriber()}, 30);
  EXPECT_EQ(init.exit_code, 2) << init.all();
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
}

}  // namespace
}  // namespace lorry::test
