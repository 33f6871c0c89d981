// Two `lorry run` processes for one subscription: one applies, the other
// stands by (shown by `status`) and takes over when the active one is killed
// or cut off from the subscriber, under write load, with no loss, no
// duplicates and never two appliers at once.
#include <fmt/format.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "fixture.h"
#include "tcp_proxy.h"

namespace lorry::test {
namespace {

class Standby : public TwoClusters {
 protected:
  void InitAndAdd() {
    BothSql("CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)");
    ProviderSql("INSERT INTO c SELECT g, 0 FROM generate_series(1, 100) g");
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry(Args({"add", "c"}));
    ASSERT_EQ(add.exit_code, 0) << add.all();
  }

  std::vector<std::string> RunArgs(const std::string& subscriber) const {
    return {"run", "--provider", Provider(), "--subscriber", subscriber, "--name", "main",
            "--takeover-timeout", "3", "--network-timeout", "3"};
  }

  void Wait(LorryProcess* a, LorryProcess* b) {
    auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- first run:\n" << a->Log() << "\n--- second run:\n" << b->Log();
  }

  bool ShowsStandby(pid_t pid) {
    auto s = RunLorry(Args({"status"}));
    return s.out.find(fmt::format("standby       pid {} ", pid)) != std::string::npos;
  }

  int64_t Rows() { return std::stoll(SubscriberValue("SELECT count(*) FROM c")); }

  // Small transactions, each incrementing a counter and inserting a row: a
  // lost or duplicated transaction shows in the sums.
  std::thread Writer(int n, std::atomic<int>* done) {
    return std::thread([this, n, done] {
      auto p = ConnectProvider();
      for (int i = 0; i < n; ++i) {
        auto r = p.Exec(fmt::format("UPDATE c SET n = n + 1 WHERE id = {}; INSERT INTO c VALUES ({}, 1)",
                                    1 + i % 100, 1000 + i));
        ASSERT_TRUE(r.ok()) << r.status().message();
        *done = i + 1;
      }
    });
  }

  // Samples the subscriber every 20 ms: how many apply sessions of this
  // test's database exist at once (never more than one may).
  class ApplierSampler {
   public:
    explicit ApplierSampler(pg::PgConn conn) : conn_(std::move(conn)) {
      thread_ = std::thread([this] {
        while (!stop_) {
          auto v = conn_.QueryValue("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND application_name = 'lorry_apply'");
          if (v.ok() && *v) {
            int n = std::stoi(**v);
            max_ = std::max(max_.load(), n);
            if (n == 1) seen_one_ = true;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
    }
    ~ApplierSampler() { Stop(); }
    void Stop() {
      stop_ = true;
      if (thread_.joinable()) thread_.join();
    }
    int max() const { return max_; }
    bool seen_one() const { return seen_one_; }

   private:
    pg::PgConn conn_;
    std::atomic<bool> stop_{false};
    std::atomic<int> max_{0};
    std::atomic<bool> seen_one_{false};
    std::thread thread_;
  };
};

TEST_F(Standby, SecondRunStandsByAndTakesOverAfterKill9UnderLoad) {
  InitAndAdd();
  auto a = std::make_unique<LorryProcess>(RunArgs(Subscriber()));
  auto wa = RunLorry(Args({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(wa.exit_code, 0) << wa.all() << a->Log();
  auto b = std::make_unique<LorryProcess>(RunArgs(Subscriber()));
  ASSERT_TRUE(Eventually([&] { return ShowsStandby(b->pid()); }, 30)) << RunLorry(Args({"status"})).all()
                                                                       << b->Log();
  auto json = RunLorry(Args({"status", "--json"}));
  EXPECT_NE(json.out.find(fmt::format("\"pid\": {}", b->pid())), std::string::npos) << json.out;
  EXPECT_NE(b->Log().find("standby: the lease is held by"), std::string::npos) << b->Log();

  ApplierSampler sampler(ConnectSubscriber());
  std::atomic<int> written{0};
  std::thread writer = Writer(4000, &written);
  ASSERT_TRUE(Eventually([&] { return Rows() > 1000; }, 120)) << a->Log();
  a->Kill9();
  auto killed_at = std::chrono::steady_clock::now();
  int64_t at_kill = Rows();
  // The standby applies within the takeover timeout (3 s; here at once:
  // the killed run's sessions are gone).
  ASSERT_TRUE(Eventually([&] { return Rows() > at_kill; }, 30)) << b->Log();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LT(took, 3.0 + 1.0) << b->Log();
  writer.join();
  Wait(a.get(), b.get());
  sampler.Stop();
  EXPECT_EQ(SubscriberValue("SELECT sum(n) FROM c"), "8000");
  EXPECT_EQ(Rows(), 4100);
  ExpectCompareClean({"c"}, b.get());
  EXPECT_LE(sampler.max(), 1) << "two apply sessions at once";
  EXPECT_TRUE(sampler.seen_one());
  EXPECT_NE(b->Log().find("took over the lease from"), std::string::npos) << b->Log();
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.out.find("(1 takeover)"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find(fmt::format("pid {} on host", b->pid())), std::string::npos) << status.out;
  EXPECT_EQ(b->Terminate(), 0) << b->Log();
  // A clean stop releases the lease: the next run takes it at once.
  EXPECT_EQ(SubscriberValue("SELECT lease_owner IS NULL FROM lorry.subscriptions"), "t");
}

// The active run loses its subscriber connections (a network that drops
// packets: nothing fails, nothing answers). It stops applying by itself
// once it cannot renew its lease; the standby takes over once the lease
// expired and ends the old run's sessions. When the network comes back the
// old run stands by.
TEST_F(Standby, ActiveCutOffFromTheSubscriberIsReplaced) {
  InitAndAdd();
  TcpProxy proxy(subscriber_cluster()->port());
  auto a = std::make_unique<LorryProcess>(RunArgs(proxy.Route(Subscriber())));
  auto wa = RunLorry(Args({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(wa.exit_code, 0) << wa.all() << a->Log();
  auto b = std::make_unique<LorryProcess>(RunArgs(Subscriber()));
  ASSERT_TRUE(Eventually([&] { return ShowsStandby(b->pid()); }, 30)) << b->Log();

  ApplierSampler sampler(ConnectSubscriber());
  std::atomic<int> written{0};
  std::thread writer = Writer(3000, &written);
  ASSERT_TRUE(Eventually([&] { return Rows() > 600; }, 120)) << a->Log();
  proxy.Blackhole();
  auto cut_at = std::chrono::steady_clock::now();
  // What A committed before the cut is all there is until B takes over.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int64_t before = Rows();
  ASSERT_TRUE(Eventually([&] { return Rows() > before; }, 60)) << a->Log() << "\n---\n" << b->Log();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - cut_at).count();
  EXPECT_LT(took, 3.0 + 3.0) << b->Log();
  EXPECT_NE(a->Log().find("lost the run lease"), std::string::npos) << a->Log();
  proxy.Pass();
  ASSERT_TRUE(Eventually([&] { return ShowsStandby(a->pid()); }, 60)) << a->Log();
  writer.join();
  Wait(a.get(), b.get());
  sampler.Stop();
  EXPECT_EQ(SubscriberValue("SELECT sum(n) FROM c"), "6000");
  ExpectCompareClean({"c"}, b.get());
  EXPECT_LE(sampler.max(), 1) << "two apply sessions at once";
  EXPECT_TRUE(a->Running()) << a->Log();
  EXPECT_TRUE(b->Running()) << b->Log();
}


// Fencing: once another run owns the lease, this run's apply transactions
// cannot commit (lorry.check_lease right before COMMIT), even before its
// renewal has noticed; it stops applying and stands by.
TEST_F(Standby, DeposedRunCommitsNothing) {
  InitAndAdd();
  auto a = std::make_unique<LorryProcess>(Args({"run"}));  // default timeouts: renewal once a second
  auto wa = RunLorry(Args({"wait", "--timeout", "60"}), 90);
  ASSERT_EQ(wa.exit_code, 0) << wa.all() << a->Log();
  ProviderSql("INSERT INTO c VALUES (5000, 1)");
  ASSERT_TRUE(Eventually([&] { return Rows() == 101; }, 30)) << a->Log();
  // Another run took the lease over (by hand here); its session stays alive.
  auto intruder = ConnectSubscriber();
  ASSERT_TRUE(intruder.Exec("UPDATE lorry.subscriptions SET lease_owner = 'intruder:1:0', "
                            "lease_expires_at = now() + interval '1 hour', lease_pids = ARRAY[pg_backend_pid()]")
                  .ok());
  ProviderSql("INSERT INTO c VALUES (5001, 1)");
  ASSERT_TRUE(Eventually([&] { return a->Log().find("lost the run lease") != std::string::npos; }, 30)) << a->Log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(Rows(), 101) << a->Log();
  EXPECT_NE(a->Log().find("no longer holds the lease"), std::string::npos) << a->Log();
  EXPECT_EQ(a->Log().find("took over the lease from intruder"), std::string::npos) << a->Log();
  // Given back: the run takes it again and applies what it had not.
  SubscriberSql("UPDATE lorry.subscriptions SET lease_owner = NULL, lease_expires_at = NULL, lease_pids = NULL");
  ASSERT_TRUE(Eventually([&] { return Rows() == 102; }, 60)) << a->Log();
  ExpectCompareClean({"c"}, a.get());
}

// The same for a copy: once another run owns the lease, this run's copy
// commits no more rows (the fence runs before every copy commit); given the
// lease back, it copies the table again from empty.
TEST_F(Standby, DeposedRunCopiesNothingMore) {
  BothSql("CREATE TABLE big (id int PRIMARY KEY, v text)");
  ProviderSql("INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 8000) g");
  ProviderSql("ANALYZE big");
  ASSERT_EQ(RunLorry(Args({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(Args({"add", "big"})).exit_code, 0);
  std::string config = fmt::format("/tmp/lorry-standby-test-{}.toml", getpid());
  std::ofstream(config) << "[copy]\njobs = 1\nindex_jobs = 1\nsplit_tables_larger_than = \"64kB\"\n";
  auto args = Args({"run", "-c", config});
  setenv("LORRY_FAULT_SLEEP", "copy_range:400", 1);  // each copied range waits before its commit
  auto a = std::make_unique<LorryProcess>(args);
  unsetenv("LORRY_FAULT_SLEEP");
  auto count = [&] { return std::stoll(SubscriberValue("SELECT count(*) FROM big")); };
  ASSERT_TRUE(Eventually([&] { return count() > 0; }, 60)) << a->Log();
  auto intruder = ConnectSubscriber();
  ASSERT_TRUE(intruder.Exec("UPDATE lorry.subscriptions SET lease_owner = 'intruder:1:0', "
                            "lease_expires_at = now() + interval '1 hour', lease_pids = ARRAY[pg_backend_pid()]")
                  .ok());
  int64_t at_takeover = count();
  ASSERT_TRUE(Eventually([&] { return a->Log().find("lost the run lease") != std::string::npos; }, 30)) << a->Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(count(), at_takeover) << a->Log();
  EXPECT_LT(at_takeover, 8000) << "the copy was over before the takeover: nothing tested";
  SubscriberSql("UPDATE lorry.subscriptions SET lease_owner = NULL, lease_expires_at = NULL, lease_pids = NULL");
  auto w = RunLorry(Args({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(w.exit_code, 0) << w.all() << a->Log();
  ExpectCompareClean({"big"}, a.get());
  std::remove(config.c_str());
}

// The fencing function itself: it fails for a run that does not own the
// lease, and a takeover waits for a transaction that passed it.
TEST_F(Standby, LeaseCheckLocksOutATakeoverUntilCommit) {
  InitAndAdd();
  SubscriberSql("UPDATE lorry.subscriptions SET lease_owner = 'a:1:0'");
  auto one = ConnectSubscriber();
  auto two = ConnectSubscriber();
  ASSERT_TRUE(one.Exec("BEGIN; SELECT lorry.check_lease('main', 'a:1:0')").ok());
  ASSERT_TRUE(two.Exec("SET statement_timeout = '300ms'").ok());
  auto blocked = two.Exec("UPDATE lorry.subscriptions SET lease_owner = 'b:2:0'");
  EXPECT_FALSE(blocked.ok());
  EXPECT_NE(blocked.status().message().find("statement timeout"), std::string::npos) << blocked.status().message();
  ASSERT_TRUE(one.Exec("COMMIT").ok());
  ASSERT_TRUE(two.Exec("UPDATE lorry.subscriptions SET lease_owner = 'b:2:0'").ok());
  auto deposed = one.Exec("SELECT lorry.check_lease('main', 'a:1:0')");
  ASSERT_FALSE(deposed.ok());
  EXPECT_NE(deposed.status().message().find("no longer holds the lease of subscription main"), std::string::npos)
      << deposed.status().message();
  EXPECT_TRUE(two.Exec("SELECT lorry.check_lease('main', 'b:2:0')").ok());
}

}  // namespace
}  // namespace lorry::test
