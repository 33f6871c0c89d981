// Live changes to a running subscription: tables added while `lorry run`
// streams are copied in the background and handed over without stopping the
// other tables (sync/table_sync.h); `resync` copies tables again; `remove`
// takes effect at a clear point of the stream. Under a steady write load.
#include <atomic>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include <fmt/format.h>

#include "fixture.h"

namespace lorry::test {
namespace {

class Live : public TwoClusters {
 protected:
  void SetUp() override {
    TwoClusters::SetUp();
    // Small split size: a table of a few MB is copied in many ranges, each
    // of which the copy_range fault point can slow down.
    path_ = fmt::format("/tmp/lorry-live-test-{}.toml", getpid());
    std::ofstream f(path_);
    f << "[copy]\njobs = 1\nindex_jobs = 1\nsplit_tables_larger_than = \"256kB\"\n";
  }
  void TearDown() override {
    StopLoad();
    std::remove(path_.c_str());
    TwoClusters::TearDown();
  }
  std::vector<std::string> Cmd(std::vector<std::string> args) {
    auto a = Args(std::move(args));
    a.push_back("-c");
    a.push_back(path_);
    return a;
  }
  void Lorry(std::vector<std::string> args) {
    auto r = RunLorry(Cmd(std::move(args)));
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
  // `lorry run`, with copy ranges slowed by `copy_range_ms` (0: not).
  std::unique_ptr<LorryProcess> StartRun(int copy_range_ms, const std::string& more_faults = "") {
    std::string faults = copy_range_ms > 0 ? fmt::format("copy_range:{}", copy_range_ms) : "";
    if (!more_faults.empty()) faults += (faults.empty() ? "" : ",") + more_faults;
    if (!faults.empty()) setenv("LORRY_FAULT_SLEEP", faults.c_str(), 1);
    auto run = std::make_unique<LorryProcess>(Cmd({"run"}));
    unsetenv("LORRY_FAULT_SLEEP");
    return run;
  }
  void Wait(LorryProcess* run, double timeout = 180) {
    auto w = RunLorry(Cmd({"wait", "--timeout", fmt::format("{}", timeout)}), timeout + 30);
    ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << (run ? run->Log() : "");
  }
  std::string TableState(const std::string& table) {
    return SubscriberValue(fmt::format("SELECT state FROM lorry.tables WHERE relname = '{}'", table));
  }

  // A steady write load: one small transaction every few milliseconds on
  // each SQL statement given ({i} is the iteration number), until StopLoad.
  void StartLoad(std::vector<std::string> statements) {
    load_stop_ = false;
    load_ = std::thread([this, statements] {
      auto conn = ConnectProvider();
      for (int i = 1; !load_stop_.load(); ++i) {
        for (const auto& st : statements) {
          auto r = conn.Exec(fmt::format(fmt::runtime(st), fmt::arg("i", i)));
          if (!r.ok()) {
            load_error_ = r.status().message();
            return;
          }
        }
        load_iterations_ = i;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  void StopLoad() {
    load_stop_ = true;
    if (load_.joinable()) load_.join();
    EXPECT_EQ(load_error_, "");
  }

  // Two tables on both sides: `steady` (replicated from the start) and
  // `added` (a few MB, copied in many ranges).
  void CreateTables() {
    BothSql("CREATE TABLE steady (id bigint PRIMARY KEY, v text)");
    BothSql("CREATE TABLE added (id bigint PRIMARY KEY, v text, n int)");
    ProviderSql("INSERT INTO steady SELECT g, 's' || g FROM generate_series(1, 100) g");
    ProviderSql("INSERT INTO added SELECT g, repeat(md5(g::text), 3), 0 FROM generate_series(1, 40000) g");
    ProviderSql("ANALYZE added");
  }
  // CreateTables, init, and `steady` added.
  void SetUpSteady() {
    CreateTables();
    Lorry({"init"});
    Lorry({"add", "steady"});
  }
  // CreateTables, init, both tables added and copied by a run, which stopped.
  void SetUpBothCopiedThenStopped() {
    CreateTables();
    Lorry({"init"});
    Lorry({"add", "steady", "added"});
    auto run = StartRun(0);
    Wait(run.get());
    EXPECT_EQ(run->Terminate(), 0) << run->Log();
  }
  // Inserts into both tables and updates and deletes `added`'s copied rows.
  void StartLoadOnBoth() {
    StartLoad({"INSERT INTO steady VALUES (1000 + {i}, 'load')",
               "BEGIN; INSERT INTO added VALUES (100000 + {i}, 'new', {i}); "
               "UPDATE added SET n = n + 1, v = 'upd' WHERE id = ({i} * 7919) % 40000 + 1; "
               "DELETE FROM added WHERE id = ({i} * 104729) % 40000 + 1; COMMIT"});
  }

  std::string path_;
  std::thread load_;
  std::atomic<bool> load_stop_{false};
  std::atomic<int> load_iterations_{0};
  std::string load_error_;
};

int64_t CatchUpTransactions(const std::string& log) {
  std::smatch m;
  if (!std::regex_search(log, m, std::regex("catch_up_xacts=(\\d+)"))) return -1;
  return std::stoll(m[1]);
}

// The brief's main case: a table added under load on it and on a ready table.
// The ready table keeps replicating during the (slowed) copy, the new table's
// changes made during the copy come from the copy's own slot, and both end
// identical to the provider.
TEST_F(Live, TableAddedUnderLoadIsHandedOverWhileTheOthersKeepReplicating) {
  SetUpSteady();
  auto run = StartRun(400);
  Wait(run.get());
  StartLoadOnBoth();
  Lorry({"add", "added"});
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "copying"; }, 60)) << run->Log();
  // Written while `added` is being copied: it reaches the subscriber before
  // the copy ends.
  ProviderSql("INSERT INTO steady VALUES (-1, 'during the copy')");
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM steady WHERE id = -1") == "1"; }, 30))
      << run->Log();
  EXPECT_EQ(SubscriberValue("SELECT state || ' ' || (copy_finished_at IS NULL) FROM lorry.tables "
                            "WHERE relname = 'added'"),
            "copying true");
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "ready"; }, 120)) << run->Log();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // load on the table once it is ready
  StopLoad();
  Wait(run.get());
  ExpectSameContent("steady");
  ExpectSameContent("added");
  // The stream was past the copy's snapshot when the copy ended: what
  // `added` got meanwhile was applied from the copy's temporary slot.
  std::string log = run->Log();
  EXPECT_GT(CatchUpTransactions(log), 0) << log;
  EXPECT_NE(log.find("background copy tables=1"), std::string::npos) << log;
  EXPECT_EQ(log.find("stopping the stream"), std::string::npos) << log;
  // No temporary slot is left behind.
  EXPECT_TRUE(Eventually([&] {
    return ProviderValue("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'lorry_main_sync%'") == "0";
  }, 10));
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

// The easy hand-over: nothing written during the copy, the stream is still
// at the copy's snapshot, the table is handed over at it with nothing to
// catch up; a table with rows on the subscriber is refused, not handed over.
TEST_F(Live, TableAddedWithoutWritesIsHandedOverAtItsSnapshot) {
  CreateTables();
  BothSql("CREATE TABLE full_here (id int PRIMARY KEY)");
  SubscriberSql("INSERT INTO full_here VALUES (1)");
  Lorry({"init"});
  Lorry({"add", "steady"});
  auto run = StartRun(0);
  Wait(run.get());
  Lorry({"add", "added", "full_here"});
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "ready"; }, 120)) << run->Log();
  EXPECT_TRUE(Eventually([&] { return TableState("full_here") == "error"; }, 30)) << run->Log();
  ProviderSql("UPDATE added SET n = 7 WHERE id <= 10");
  auto w = RunLorry(Cmd({"wait", "--timeout", "5"}));
  EXPECT_EQ(w.exit_code, 1) << w.all();  // full_here is in error
  EXPECT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM added WHERE n = 7") == "10"; }, 30));
  ExpectSameContent("added");
  EXPECT_EQ(CatchUpTransactions(run->Log()), 0) << run->Log();
}

// A table added with operations no table had before goes into a new
// publication, which the running stream did not ask for: the stream restarts
// to include it, and the table is copied and handed over as usual.
TEST_F(Live, TableAddedIntoANewPublicationRestartsTheStreamToIncludeIt) {
  SetUpSteady();
  auto run = StartRun(0);
  Wait(run.get());
  StartLoad({"INSERT INTO steady VALUES (1000 + {i}, 'load')", "INSERT INTO added VALUES (100000 + {i}, 'new', {i})",
             "UPDATE added SET n = -1 WHERE id = {i}"});
  // A transaction that began changing data before the publication existed
  // and commits after: pgoutput would decode it with a catalog that lacks
  // the publication, so the stream must not ask for it until it has ended.
  auto open = ConnectProvider();
  ASSERT_TRUE(open.Exec("BEGIN").ok());
  ASSERT_TRUE(open.Exec("INSERT INTO steady VALUES (-1, 'open across the add')").ok());
  Lorry({"add", "--ops", "insert", "added"});
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(TableState("added"), "pending") << run->Log();
  ASSERT_TRUE(open.Exec("COMMIT").ok());
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "ready"; }, 120)) << run->Log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  StopLoad();
  Wait(run.get());
  ExpectSameContent("steady");
  EXPECT_EQ(SubscriberValue("SELECT v FROM steady WHERE id = -1"), "open across the add");
  // Inserts only: the provider's rows updated after the copy keep n = 0 here.
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM added"), ProviderValue("SELECT count(*) FROM added"));
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM added WHERE id > 100000"),
            ProviderValue("SELECT count(*) FROM added WHERE id > 100000"));
  // Updates made after the copy's snapshot stay on the provider.
  EXPECT_LT(std::stoll(SubscriberValue("SELECT count(*) FROM added WHERE n = -1")),
            std::stoll(ProviderValue("SELECT count(*) FROM added WHERE n = -1")));
  EXPECT_NE(run->Log().find("waits for the stream to include its publication"), std::string::npos) << run->Log();
  EXPECT_NE(run->Log().find("stream at publications' gate"), std::string::npos) << run->Log();
  EXPECT_EQ(run->Log().find("does not exist"), std::string::npos) << run->Log();
}

// The same while `lorry run` is stopped: the slot's position is before the
// publication's creation, with changes to the other table in between.
TEST_F(Live, TableAddedIntoANewPublicationWhileStoppedIsCopiedAtTheNextRun) {
  SetUpSteady();
  {
    auto run = StartRun(0);
    Wait(run.get());
  }
  ProviderSql("INSERT INTO steady SELECT g, 'before' FROM generate_series(2001, 2100) g");
  Lorry({"add", "--ops", "insert,update", "added"});
  ProviderSql("INSERT INTO steady SELECT g, 'after' FROM generate_series(2101, 2200) g");
  ProviderSql("UPDATE added SET n = 7 WHERE id <= 10");
  auto run = StartRun(0);
  StartLoad({"INSERT INTO steady VALUES (3000 + {i}, 'load')", "UPDATE added SET n = {i} WHERE id = {i} % 100 + 1"});
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "ready"; }, 120)) << run->Log();
  StopLoad();
  Wait(run.get());
  ExpectSameContent("steady");
  ExpectSameContent("added");
  EXPECT_NE(run->Log().find("were created after position"), std::string::npos) << run->Log();
  EXPECT_EQ(run->Log().find("does not exist"), std::string::npos) << run->Log();
}

// kill -9 while the background copy runs, and again while its catch-up
// applies from the temporary slot: the next run copies the table again (the
// stream went past what was applied) and it ends identical.
TEST_F(Live, Kill9DuringBackgroundCopyOrCatchUpThenRunAgainEndsIdentical) {
  SetUpSteady();
  {
    auto run = StartRun(300);
    Wait(run.get());
    StartLoadOnBoth();
    Lorry({"add", "added"});
    ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM added") != "0"; }, 60)) << run->Log();
    run->Kill9();
  }
  EXPECT_EQ(TableState("added"), "copying");
  {
    // Each catch-up transaction takes 200 ms: the catch-up lasts seconds.
    auto run = StartRun(0, "sync_catch_up:200");
    ASSERT_TRUE(Eventually([&] { return run->Log().find("catching up tables=1") != std::string::npos; }, 120))
        << run->Log();
    std::this_thread::sleep_for(std::chrono::seconds(2));
    run->Kill9();
    EXPECT_EQ(run->Log().find("handed over"), std::string::npos) << run->Log();
  }
  EXPECT_EQ(SubscriberValue("SELECT state || ' ' || (copy_finished_at IS NOT NULL) FROM lorry.tables "
                            "WHERE relname = 'added'"),
            "copying true");
  auto run = StartRun(0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  StopLoad();
  Wait(run.get());
  ExpectCompareClean({"steady", "added"}, run.get(), Cmd({"compare"}));
  EXPECT_NE(run->Log().find("catch-up was interrupted"), std::string::npos) << run->Log();
}

// `resync` under load: the subscriber's copy was damaged; resync empties and
// copies it again while the other table keeps replicating.
TEST_F(Live, ResyncUnderLoadEndsIdentical) {
  CreateTables();
  Lorry({"init"});
  Lorry({"add", "steady", "added"});
  auto run = StartRun(0);
  Wait(run.get());
  SubscriberSql("DELETE FROM added WHERE id % 3 = 0; UPDATE added SET v = 'damaged' WHERE id % 5 = 0");
  StartLoadOnBoth();
  auto bad = RunLorry(Cmd({"resync", "nosuch"}));
  EXPECT_EQ(bad.exit_code, 2) << bad.all();
  EXPECT_NE(bad.err.find("lorry add nosuch"), std::string::npos) << bad.all();
  auto r = RunLorry(Cmd({"resync", "added"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("in the background"), std::string::npos) << r.out;
  ASSERT_TRUE(Eventually([&] { return run->Log().find("background copy tables=1") != std::string::npos; }, 60))
      << run->Log();
  ProviderSql("INSERT INTO steady VALUES (-1, 'during the resync')");
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM steady WHERE id = -1") == "1"; }, 30));
  ASSERT_TRUE(Eventually([&] { return TableState("added") == "ready"; }, 120)) << run->Log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  StopLoad();
  Wait(run.get());
  ExpectSameContent("steady");
  ExpectSameContent("added");
  EXPECT_EQ(run->Terminate(), 0) << run->Log();

  // Without a running daemon: the next run does it.
  SubscriberSql("DELETE FROM added WHERE id < 100");
  Lorry({"resync", "public.added"});
  EXPECT_EQ(TableState("added"), "pending");
  auto again = StartRun(0);
  Wait(again.get());
  ExpectSameContent("added");
}

// `resync --all` when the slot is gone: the subscription starts afresh.
TEST_F(Live, ResyncAllAfterTheSlotIsGone) {
  SetUpBothCopiedThenStopped();
  ProviderSql("SELECT pg_drop_replication_slot('lorry_main')");
  ProviderSql("UPDATE added SET v = 'while the slot was missing' WHERE id <= 100; DELETE FROM steady WHERE id < 10");
  auto refused = RunLorry(Cmd({"run"}));
  EXPECT_EQ(refused.exit_code, 2) << refused.all();
  EXPECT_NE(refused.all().find("lorry resync --all"), std::string::npos) << refused.all();
  Lorry({"resync", "--all"});
  auto run = StartRun(0);
  Wait(run.get());
  ExpectSameContent("steady");
  ExpectSameContent("added");
  ProviderSql("INSERT INTO steady VALUES (-5, 'after')");
  Wait(run.get());
  ExpectSameContent("steady");
}

// `resync --all` after the slot was invalidated (max_slot_wal_keep_size):
// the next run drops it and starts afresh.
TEST_F(Live, ResyncAllAfterTheSlotWasInvalidated) {
  if (provider_cluster()->major_version() < 13) GTEST_SKIP() << "max_slot_wal_keep_size is PostgreSQL 13+";
  SetUpBothCopiedThenStopped();
  struct Reset {
    std::function<void()> f;
    ~Reset() { f(); }
  } reset{[&] {
    ProviderSql("ALTER SYSTEM RESET max_slot_wal_keep_size");
    ProviderSql("SELECT pg_reload_conf()");
  }};
  ProviderSql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  ProviderSql("SELECT pg_reload_conf()");
  ProviderSql("UPDATE added SET v = 'while the slot was lost' WHERE id <= 100");
  ASSERT_TRUE(Eventually([&] {
    ProviderSql("CREATE TEMP TABLE filler AS SELECT g FROM generate_series(1, 100000) g; DROP TABLE filler");
    ProviderSql("SELECT pg_switch_wal()");
    ProviderSql("CHECKPOINT");
    return ProviderValue("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lorry_main'") == "lost";
  }, 60));
  auto refused = RunLorry(Cmd({"run"}));
  EXPECT_EQ(refused.exit_code, 2) << refused.all();
  EXPECT_NE(refused.all().find("wal_status=lost"), std::string::npos) << refused.all();
  EXPECT_NE(refused.all().find("lorry resync --all"), std::string::npos) << refused.all();
  Lorry({"resync", "--all"});
  auto run = StartRun(0);
  Wait(run.get());
  ExpectSameContent("steady");
  ExpectSameContent("added");
  EXPECT_NE(run->Log().find("creating it afresh"), std::string::npos) << run->Log();
}

// `remove` at a clear point: transactions committed before it are applied,
// none after, whether `run` is running or not.
TEST_F(Live, RemoveTakesEffectAtAClearPointOfTheStream) {
  BothSql("CREATE TABLE seq (id bigint PRIMARY KEY)");
  BothSql("CREATE TABLE other (id bigint PRIMARY KEY)");
  Lorry({"init"});
  Lorry({"add", "seq", "other"});
  {
    // Not running: what was committed before remove is applied by the next run.
    auto run = StartRun(0);
    Wait(run.get());
    EXPECT_EQ(run->Terminate(), 0);
  }
  ProviderSql("INSERT INTO seq SELECT g FROM generate_series(1, 500) g");
  auto r = RunLorry(Cmd({"remove", "seq"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_NE(r.out.find("at provider LSN"), std::string::npos) << r.out;
  ProviderSql("INSERT INTO seq SELECT g FROM generate_series(501, 600) g; INSERT INTO other VALUES (1)");
  auto run = StartRun(0);
  Wait(run.get());
  EXPECT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM other") == "1"; }, 30));
  EXPECT_EQ(SubscriberValue("SELECT count(*) || ' ' || max(id) FROM seq"), "500 500");
  EXPECT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM lorry.removed_tables") == "0"; }, 30))
      << run->Log();

  // Running, under a steady load of single-row inserts: the subscriber ends
  // with an unbroken prefix of them, everything committed before remove began
  // and nothing committed after it returned.
  Lorry({"add", "--truncate", "seq"});
  ASSERT_TRUE(Eventually([&] { return TableState("seq") == "ready"; }, 60)) << run->Log();
  StartLoad({"INSERT INTO seq VALUES (1000 + {i})"});
  ASSERT_TRUE(Eventually([&] { return load_iterations_.load() > 50; }, 30));
  int64_t before = std::stoll(ProviderValue("SELECT max(id) FROM seq"));
  auto rm = RunLorry(Cmd({"remove", "seq"}));
  ASSERT_EQ(rm.exit_code, 0) << rm.all();
  int64_t after = std::stoll(ProviderValue("SELECT max(id) FROM seq"));
  ASSERT_TRUE(Eventually([&] { return load_iterations_.load() > after - 1000 + 50; }, 30));
  StopLoad();
  ProviderSql("INSERT INTO other VALUES (2)");
  Wait(run.get());
  EXPECT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM other") == "2"; }, 30));
  EXPECT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM lorry.removed_tables") == "0"; }, 30));
  auto got = SubscriberValue("SELECT count(*) || ' ' || min(id) || ' ' || max(id) FROM seq WHERE id > 1000");
  int64_t n = 0, lo = 0, hi = 0;
  ASSERT_EQ(sscanf(got.c_str(), "%ld %ld %ld", &n, &lo, &hi), 3) << got;
  EXPECT_EQ(lo, 1001);
  EXPECT_EQ(n, hi - lo + 1) << "a gap: " << got;  // nothing lost before the point
  EXPECT_GE(hi, before) << got;
  EXPECT_LE(hi, after) << got;  // nothing after it
  EXPECT_LT(hi, std::stoll(ProviderValue("SELECT max(id) FROM seq"))) << got;
  EXPECT_NE(run->Log().find("table=public.seq removed"), std::string::npos) << run->Log();
}

}  // namespace
}  // namespace lorry::test
