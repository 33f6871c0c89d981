// Cascades A -> B -> C: B is the subscriber of subscription `main` (from A)
// and the provider of subscription `bc` (to C). B forwards what it applied,
// `lorry execute` scripts and captured DDL included, and `status` on C
// shows the chain.
#include <atomic>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class Cascade : public TwoClusters {
 protected:
  static void SetUpTestSuite() {
    TwoClusters::SetUpTestSuite();
    if (!c_) {
      testing::LocalClusterOptions o;
      o.name = "cascade_c";
      const char* bindir = std::getenv("PG_BINDIR_SUBSCRIBER");
      o.bindir = bindir != nullptr ? bindir : "";
      auto c = testing::LocalCluster::Start(o);
      ASSERT_TRUE(c.ok()) << c.status().message();
      c_ = std::move(c).value();
    }
  }
  static void TearDownTestSuite() {
    c_.reset();
    TwoClusters::TearDownTestSuite();
  }
  void SetUp() override {
    TwoClusters::SetUp();
    ASSERT_TRUE(c_->Execute(fmt::format("DROP DATABASE IF EXISTS \"{}\"", dbname_)).ok());
    ASSERT_TRUE(c_->Execute(fmt::format("CREATE DATABASE \"{}\"", dbname_)).ok());
  }
  void TearDown() override {
    // B's slot for C: a database cannot be dropped while a slot uses it.
    (void)subscriber_cluster()->Execute(fmt::format(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{}' AND NOT active",
        dbname_));
    (void)c_->Execute(fmt::format(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        dbname_));
    (void)c_->Execute(fmt::format("DROP DATABASE IF EXISTS \"{}\"", dbname_));
    TwoClusters::TearDown();
  }

  std::string C() const { return c_->Conninfo(dbname_); }
  // Subscription `bc`: provider B (this test's subscriber database), subscriber C.
  std::vector<std::string> ArgsBC(std::vector<std::string> args) const {
    std::vector<std::string> out{args.front(), "--provider", Subscriber(), "--subscriber", C(), "--name", "bc"};
    out.insert(out.end(), args.begin() + 1, args.end());
    return out;
  }
  void AllSql(const std::string& sql) const {
    BothSql(sql);
    auto s = c_->Execute(sql, dbname_);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::string CValue(const std::string& sql) const {
    auto conn = pg::PgConn::Connect(C(), {{}, "C"});
    EXPECT_TRUE(conn.ok()) << conn.status().message();
    if (!conn.ok()) return "<error>";
    auto v = conn->QueryValue(sql);
    EXPECT_TRUE(v.ok()) << v.status().message();
    return v.ok() && v.value() ? *v.value() : "<null>";
  }
  // As Dump() reads A and B.
  std::string DumpC(const std::string& table) const {
    auto conn = pg::PgConn::Connect(C(), {{}, "C"});
    EXPECT_TRUE(conn.ok()) << conn.status().message();
    if (!conn.ok()) return "<error>";
    auto r = conn->Exec("SET extra_float_digits = 3; SET datestyle = 'ISO'; SELECT string_agg(t::text, E'\\n' "
                        "ORDER BY t::text COLLATE \"C\") FROM " + table + " t");
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok() || r->rows() == 0 || r->IsNull(0, 0)) return "";
    return std::string(r->Get(0, 0));
  }
  std::string Script(const std::string& sql) {
    std::string path = fmt::format("/tmp/lorry-cascade-test-{}.sql", getpid());
    std::ofstream(path) << sql;
    return path;
  }

  static std::unique_ptr<testing::LocalCluster> c_;
};

std::unique_ptr<testing::LocalCluster> Cascade::c_;

TEST_F(Cascade, WorkloadOnAReachesCThroughBWithScriptsAndCapturedDdl) {
  if (provider_cluster()->major_version() < 14 || subscriber_cluster()->major_version() < 14)
    GTEST_SKIP() << "execute and DDL capture need PostgreSQL 14 on A and B";
  AllSql("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
  AllSql("CREATE TABLE history (id bigserial PRIMARY KEY, account int NOT NULL, delta int NOT NULL, "
         "at timestamptz NOT NULL DEFAULT now())");
  ProviderSql("INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 200) g");

  // A -> B, with DDL capture on A.
  auto init_ab = RunLorry(Args({"init", "--capture-ddl"}));
  ASSERT_EQ(init_ab.exit_code, 0) << init_ab.all();
  auto add_ab = RunLorry(Args({"add", "--all"}));
  ASSERT_EQ(add_ab.exit_code, 0) << add_ab.all();
  EXPECT_THAT(add_ab.all(), Not(HasSubstr("lorry_ddl")));
  LorryProcess run_ab(Args({"run"}));
  Wait(&run_ab);

  // B -> C: B holds lorry's own schema, which --all leaves out.
  auto init_bc = RunLorry(ArgsBC({"init"}));
  ASSERT_EQ(init_bc.exit_code, 0) << init_bc.all();
  auto add_bc = RunLorry(ArgsBC({"add", "--all"}));
  ASSERT_EQ(add_bc.exit_code, 0) << add_bc.all();
  EXPECT_THAT(add_bc.all(), Not(HasSubstr("lorry.")));
  EXPECT_EQ(CValue("SELECT string_agg(nspname || '.' || relname, ',' ORDER BY relname) FROM lorry.tables "
                   "WHERE subscription = 'bc'"),
            "public.accounts,public.history");
  auto named = RunLorry(ArgsBC({"add", "lorry.tables"}));
  EXPECT_EQ(named.exit_code, 2) << named.all();
  EXPECT_THAT(named.err, HasSubstr("lorry.tables is lorry's own state"));
  LorryProcess run_bc(ArgsBC({"run"}));
  auto wait_bc = RunLorry(ArgsBC({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait_bc.exit_code, 0) << wait_bc.all() << run_bc.Log();

  // pgbench-like transfers on A, two writers.
  std::atomic<bool> stop{false};
  std::atomic<int> done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      auto c = ConnectProvider();
      for (int i = 0; !stop.load() && i < 100000; ++i) {
        int from = 1 + (i * 7 + w * 13) % 200, to = 1 + (i * 11 + w * 3) % 200;
        auto r = c.Exec(fmt::format("BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = {0}; "
                                    "UPDATE accounts SET balance = balance + 1 WHERE id = {1}; "
                                    "INSERT INTO history (account, delta) VALUES ({0}, -1), ({1}, 1); COMMIT",
                                    from, to));
        if (!r.ok()) break;
        done++;
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return done.load() > 200; }, 60));
  // Captured DDL, then a script that creates and adds a table, under the load.
  ProviderSql("ALTER TABLE history ADD COLUMN note text");
  auto ex = RunLorry(Args({"execute", "--add", "ledger",
                           Script("CREATE TABLE ledger (id int PRIMARY KEY, total bigint);\n"
                                  "INSERT INTO ledger SELECT 1, sum(balance) FROM accounts;\n"
                                  "CREATE INDEX history_account_idx ON history (account);")}));
  ASSERT_EQ(ex.exit_code, 0) << ex.all();
  ProviderSql("INSERT INTO history (account, delta, note) VALUES (1, 0, 'after the DDL')");
  ProviderSql("INSERT INTO ledger VALUES (2, 0)");
  int before = done.load();
  ASSERT_TRUE(Eventually([&] { return done.load() > before + 200; }, 60));
  stop.store(true);
  for (auto& t : writers) t.join();

  Wait(&run_ab);
  wait_bc = RunLorry(ArgsBC({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait_bc.exit_code, 0) << wait_bc.all() << run_bc.Log();
  for (const char* t : {"accounts", "history", "ledger"}) {
    std::string a = Dump(true, t), b = Dump(false, t), c = DumpC(t);
    EXPECT_FALSE(a.empty()) << t;
    EXPECT_EQ(a, b) << t << " differs between A and B";
    EXPECT_EQ(a, c) << t << " differs between A and C\n--- run bc:\n" << run_bc.Log();
  }
  EXPECT_EQ(CValue("SELECT count(*) FROM pg_indexes WHERE indexname = 'history_account_idx'"), "1");
  EXPECT_EQ(CValue("SELECT state FROM lorry.tables WHERE subscription = 'bc' AND relname = 'ledger'"), "ready");
  ExpectCompareClean({"accounts", "history", "ledger"}, &run_bc, ArgsBC({"compare"}));

  // C's status shows where its provider's data comes from, and the lag end to end.
  auto status = RunLorry(ArgsBC({"status"}));
  ASSERT_EQ(status.exit_code, 0) << status.all();
  EXPECT_THAT(status.out, HasSubstr("the provider is fed by lorry subscription \"main\" (streaming, lag "));
  EXPECT_THAT(status.out, HasSubstr("end to end"));
  auto json_status = RunLorry(ArgsBC({"status", "--json"}));
  ASSERT_EQ(json_status.exit_code, 0) << json_status.all();
  auto j = nlohmann::json::parse(json_status.out);
  ASSERT_EQ(j["subscription"]["upstream"].size(), 1u) << json_status.out;
  EXPECT_EQ(j["subscription"]["upstream"][0]["subscription"], "main");
  EXPECT_TRUE(j["subscription"]["end_to_end_lag_seconds"].is_number()) << json_status.out;

  EXPECT_EQ(run_bc.Terminate(), 0) << run_bc.Log();
  EXPECT_EQ(run_ab.Terminate(), 0) << run_ab.Log();
}

}  // namespace
}  // namespace lorry::test
