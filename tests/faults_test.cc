// Fault injection: `lorry run` survives by itself, without loss or
// duplicates, connections cut in the middle of a transaction and networks
// that drop every packet (a TcpProxy between lorry and a server), and an
// invalidated slot (while stopped or while streaming) is reported with the
// way out, never re-created.
// kill -9 of lorry and restarts of either server: replication_test.cc.
//
// Each test ends with `lorry compare` clean (and the row-by-row dumps when
// it is not, for the diagnosis).
#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "fixture.h"
#include "pg/replication_conn.h"
#include "tcp_proxy.h"

namespace lorry::test {
namespace {

class Faults : public TwoClusters {
 protected:
  void InitAndAdd() {
    BothSql("CREATE TABLE f (id int PRIMARY KEY, n int NOT NULL, v text)");
    ProviderSql("INSERT INTO f SELECT g, 0, 'x' FROM generate_series(1, 100) g");
    auto init = RunLorry(Args({"init"}));
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry(Args({"add", "f"}));
    ASSERT_EQ(add.exit_code, 0) << add.all();
  }

  // `lorry run` with short timeouts; connection strings as given (e.g.
  // routed through a proxy, with a short connect_timeout).
  std::unique_ptr<LorryProcess> Run(const std::string& provider, const std::string& subscriber) {
    return std::make_unique<LorryProcess>(std::vector<std::string>{
        "run", "--provider", provider, "--subscriber", subscriber, "--name", "main", "--takeover-timeout", "3",
        "--network-timeout", "2"});
  }

  void Wait(LorryProcess* run, double timeout = 120) {
    auto w = RunLorry(Args({"wait", "--timeout", fmt::format("{}", timeout)}), timeout + 30);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << run->Log();
  }

  int64_t Rows() { return std::stoll(SubscriberValue("SELECT count(*) FROM f")); }

  // Waits until the apply session is inside a large subscriber transaction.
  bool ApplyingLargeTransaction() {
    return Eventually([&] {
      return SubscriberValue("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                             "application_name = 'lorry_apply' AND xact_start IS NOT NULL") != "0" &&
             SubscriberValue("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'f'") != "0";
    }, 60);
  }

  // Small transactions: a lost or duplicated one shows in the sums. Joined
  // on destruction too, so that a failed ASSERT returns cleanly (the fixture
  // then stops `lorry run`) instead of aborting on a joinable thread.
  std::jthread Writer(int n) {
    return std::jthread([this, n] {
      auto p = ConnectProvider();
      for (int i = 0; i < n; ++i) {
        auto r = p.Exec(fmt::format("UPDATE f SET n = n + 1 WHERE id = {}; INSERT INTO f VALUES ({}, 1, 'w')",
                                    1 + i % 100, 1000000 + i));
        ASSERT_TRUE(r.ok()) << r.status().message();
      }
    });
  }

  enum Side { kProvider, kSubscriber };

  // Starts `lorry run` with one side's connections through a new proxy and
  // waits for the initial copy.
  std::unique_ptr<LorryProcess> RunThrough(Side side, std::unique_ptr<TcpProxy>* proxy) {
    *proxy = std::make_unique<TcpProxy>((side == kProvider ? provider_cluster() : subscriber_cluster())->port());
    auto run = side == kProvider ? Run(Routed(**proxy, Provider()), Subscriber())
                                 : Run(Provider(), Routed(**proxy, Subscriber()));
    Wait(run.get());
    return run;
  }

  void CutInTheMiddleOfALargeTransaction(Side side) {
    InitAndAdd();
    std::unique_ptr<TcpProxy> proxy;
    auto run = RunThrough(side, &proxy);
    ProviderSql("INSERT INTO f SELECT g, 0, md5(g::text) FROM generate_series(101, 100100) g");
    ASSERT_TRUE(ApplyingLargeTransaction()) << run->Log();
    proxy->CutAll();
    EXPECT_EQ(Rows(), 100);
    Wait(run.get());
    EXPECT_EQ(Rows(), 100100);
    ExpectCompareClean({"f"}, run.get());
    EXPECT_NE(run->Log().find("retrying"), std::string::npos) << run->Log();
    EXPECT_TRUE(run->Running()) << run->Log();
  }

  // Blackholes one side under write load until lorry logs `noticed`, a
  // little longer (a reconnect attempt times out too), then heals it;
  // `lose_closes`: the connections lorry closed meanwhile stay open on the
  // server (TcpProxy::PassLosingCloses).
  void BlackholeWhileStreaming(Side side, const std::string& noticed, bool lose_closes = false) {
    InitAndAdd();
    std::unique_ptr<TcpProxy> proxy;
    auto run = RunThrough(side, &proxy);
    std::jthread writer = Writer(3000);
    ASSERT_TRUE(Eventually([&] { return Rows() > 500; }, 60)) << run->Log();
    proxy->Blackhole();
    ASSERT_TRUE(Eventually([&] { return run->Log().find(noticed) != std::string::npos; }, 60)) << run->Log();
    // A reconnect attempt fails too (a retry logged after the one that
    // noticed; on the subscriber side, the lease's): states in the log, not
    // a sleep that a loaded machine outruns.
    const std::string retried = side == kProvider ? "retrying in" : "sub=main lease: ";
    const int retries = side == kProvider ? 2 : 1;  // the provider's first is on the noticing line
    ASSERT_TRUE(Eventually([&] {
      std::string log = run->Log();
      size_t at = log.find(noticed);
      int seen = 0;
      while (at != std::string::npos && (at = log.find(retried, at + 1)) != std::string::npos) ++seen;
      return seen >= retries;
    }, 60)) << run->Log();
    if (lose_closes)
      proxy->PassLosingCloses();
    else
      proxy->Pass();
    writer.join();
    // That lorry ended what the lost closes left behind (instead of waiting
    // for wal_sender_timeout or the server's keepalives) is checked in its
    // log below, not by how fast it was.
    Wait(run.get(), 120);
    EXPECT_EQ(SubscriberValue("SELECT sum(n) FROM f"), "6000");
    ExpectCompareClean({"f"}, run.get());
    EXPECT_TRUE(run->Running()) << run->Log();
    if (lose_closes && side == kSubscriber) {
      EXPECT_NE(run->Log().find("subscriber sessions of this run's previous session still alive"),
                std::string::npos)
          << run->Log();
      EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                                "application_name = 'lorry_control'"),
                "1");
    }
    if (lose_closes && side == kProvider)
      EXPECT_NE(run->Log().find("it was still streaming slot lorry_main"), std::string::npos) << run->Log();
  }

  std::string Routed(const TcpProxy& proxy, const std::string& conninfo) {
    return proxy.Route(conninfo) + " connect_timeout=2";
  }
};

// The stream breaks while a 100 000-row transaction is being applied: the
// open subscriber transaction is rolled back and applied again, whole.
TEST_F(Faults, ProviderConnectionCutInTheMiddleOfATransaction) { CutInTheMiddleOfALargeTransaction(kProvider); }

// The apply session's connection breaks in the middle of a large subscriber
// transaction (and the lease's too): nothing of it stays, all of it comes again.
TEST_F(Faults, SubscriberConnectionCutInTheMiddleOfATransaction) { CutInTheMiddleOfALargeTransaction(kSubscriber); }

// The provider stops answering without closing anything: lorry notices the
// silence on the replication connection after run.network_timeout (2 s
// here; the walsender's keepalives or the answer to lorry's probe would have
// come), reconnects with backoff until the network is back, and goes on.
// The walsender of the connection it gave up is still streaming the slot
// (its close was lost with the network, and wal_sender_timeout is a minute):
// the run ends it instead of waiting.
TEST_F(Faults, ProviderBlackholedWhileStreaming) {
  BlackholeWhileStreaming(kProvider, "nothing received on the replication connection for 2 s", true);
}

// The subscriber stops answering: lorry cannot renew its lease, stops
// applying (its blocked calls are unblocked), and once the network is back
// takes the lease again and goes on from the origin. The sessions it
// abandoned are still alive on the server (their close was lost with the
// network), one of them holding the run lock: the run ends them when it
// takes the lease again, as a takeover ends the previous holder's.
TEST_F(Faults, SubscriberBlackholedWhileStreaming) {
  BlackholeWhileStreaming(kSubscriber, "lost the run lease", true);
}

// The provider removed WAL the slot still needed (max_slot_wal_keep_size)
// while lorry was stopped: `run` refuses to go on, says what was lost and
// the way out, in its log and in `status`, and leaves the slot alone.
TEST_F(Faults, InvalidatedSlotIsReportedNeverRecreated) {
  if (provider_cluster()->major_version() < 13) GTEST_SKIP() << "max_slot_wal_keep_size is PostgreSQL 13+";
  InitAndAdd();
  auto run = Run(Provider(), Subscriber());
  Wait(run.get());
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
  ProviderSql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  ProviderSql("SELECT pg_reload_conf()");
  struct Reset {  // the provider cluster is shared by the tests of this process
    testing::LocalCluster* c;
    ~Reset() { (void)c->Execute("ALTER SYSTEM RESET max_slot_wal_keep_size; SELECT pg_reload_conf()"); }
  } reset{provider_cluster()};
  for (int i = 0; i < 4; ++i) ProviderSql(fmt::format("INSERT INTO f VALUES ({}, 0, 'lost'); SELECT pg_switch_wal()",
                                                      500 + i));
  ProviderSql("CHECKPOINT");
  ASSERT_EQ(ProviderValue("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "lost");
  std::string slot_before = ProviderValue("SELECT restart_lsn::text FROM pg_replication_slots");
  auto r = RunLorry({"run", "--provider", Provider(), "--subscriber", Subscriber(), "--name", "main"}, 60);
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_NE(r.all().find("replication slot lorry_main on the provider was invalidated"), std::string::npos) << r.all();
  EXPECT_NE(r.all().find("lorry resync --all"), std::string::npos) << r.all();
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.out.find("lorry resync --all"), std::string::npos) << status.all();
  // Not dropped, not re-created from a later point.
  EXPECT_EQ(ProviderValue("SELECT restart_lsn::text FROM pg_replication_slots"), slot_before);
  EXPECT_EQ(ProviderValue("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "lost");
}

// The same while `run` streams: its apply session waits on a lock on the
// subscriber, so the slot falls behind while the walsender is connected; the
// provider invalidates the slot (ending that walsender). Once the lock is
// gone, run finds the slot lost when it reconnects and stops, in its log and
// in `status`, with the way out; the slot is neither dropped nor re-created.
TEST_F(Faults, SlotInvalidatedWhileStreamingIsReportedNeverRecreated) {
  if (provider_cluster()->major_version() < 13) GTEST_SKIP() << "max_slot_wal_keep_size is PostgreSQL 13+";
  InitAndAdd();
  auto run = Run(Provider(), Subscriber());
  Wait(run.get());
  auto blocker = ConnectSubscriber();
  ASSERT_TRUE(blocker.Exec("BEGIN; LOCK TABLE f IN ACCESS EXCLUSIVE MODE").ok());
  ProviderSql("INSERT INTO f VALUES (1000, 0, 'behind')");
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                           "application_name = 'lorry_apply' AND wait_event_type = 'Lock'") == "1";
  }, 30)) << run->Log();
  ASSERT_EQ(ProviderValue("SELECT active FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "t");

  struct Reset {  // the provider cluster is shared by the tests of this process
    testing::LocalCluster* c;
    ~Reset() { (void)c->Execute("ALTER SYSTEM RESET max_slot_wal_keep_size; SELECT pg_reload_conf()"); }
  } reset{provider_cluster()};
  ProviderSql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  ProviderSql("SELECT pg_reload_conf()");
  ASSERT_TRUE(Eventually([&] {
    ProviderSql("CREATE TEMP TABLE filler AS SELECT g FROM generate_series(1, 100000) g; DROP TABLE filler");
    ProviderSql("SELECT pg_switch_wal()");
    ProviderSql("CHECKPOINT");
    return ProviderValue("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lorry_main'") == "lost";
  }, 60)) << run->Log();
  EXPECT_TRUE(run->Running()) << run->Log();
  ASSERT_TRUE(blocker.Exec("ROLLBACK").ok());

  ASSERT_TRUE(Eventually([&] { return !run->Running(); }, 60)) << run->Log();
  EXPECT_EQ(run->Terminate(), 2) << run->Log();
  std::string log = run->Log();
  EXPECT_NE(log.find("stopping: replication slot lorry_main on the provider was invalidated"), std::string::npos)
      << log;
  EXPECT_NE(log.find("lorry resync --all"), std::string::npos) << log;
  EXPECT_NE(log.find("provider changes since 0/"), std::string::npos) << log;
  EXPECT_EQ(log.find("created slot"), log.rfind("created slot")) << "created once, at the start:\n" << log;
  auto status = RunLorry(Args({"status"}));
  EXPECT_NE(status.out.find("was invalidated"), std::string::npos) << status.all();
  EXPECT_NE(status.out.find("lorry resync --all"), std::string::npos) << status.all();
  // Still there, still lost: not dropped, not re-created from a later point.
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_replication_slots"), "1");
  EXPECT_EQ(ProviderValue("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "lost");
}

// The server's side of lorry's TCP connections notices a vanished client as
// quickly as lorry notices a vanished server: a session left behind by a
// network that dropped its close (holding the run lock or the lease row) is
// ended within about 30 s, not the kernel's two hours.
TEST_F(Faults, LorrySessionsAskTheServerForTcpKeepalives) {
  auto check = [](pg::PgConn& c, const std::string& what) {
    // Simple queries only: a replication connection takes no extended protocol.
    for (auto [name, want] : {std::pair{"tcp_keepalives_idle", "10"}, std::pair{"tcp_keepalives_interval", "5"},
                              std::pair{"tcp_keepalives_count", "3"}, std::pair{"tcp_user_timeout", "30000"}}) {
      auto r = c.Exec(std::string("SHOW ") + name);
      ASSERT_TRUE(r.ok()) << what << ": " << r.status().message();
      EXPECT_EQ(r->Get(0, 0), want) << what << " " << name;
    }
  };
  auto plain = pg::PgConn::Connect(Subscriber(), {{}, "subscriber"});
  ASSERT_TRUE(plain.ok()) << plain.status().message();
  check(*plain, "subscriber session");
  auto repl = pg::ReplicationConn::Connect(Provider(), "provider");
  ASSERT_TRUE(repl.ok()) << repl.status().message();
  check(repl->conn(), "replication session");
}

}  // namespace
}  // namespace lorry::test
