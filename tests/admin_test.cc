// The administrative commands against real clusters: init's checks and
// idempotence, add/remove with their refusals (nothing changed on failure),
// status/tables output, wait's timeout and drop. No `lorry run` is needed:
// where a daemon's effect matters, the test writes lorry's state directly.
#include <gmock/gmock.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fixture.h"
#include "state/names.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

class Admin : public TwoClusters {
 protected:
  void Init() {
    auto r = RunLorry(Args({"init"}));
    ASSERT_EQ(r.exit_code, 0) << r.all();
  }
  std::string PublishedTables() const {
    return ProviderValue(
        "SELECT coalesce(string_agg(pubname || ':' || schemaname || '.' || tablename, ',' "
        "ORDER BY pubname, schemaname, tablename), '') "
        "FROM pg_publication_tables WHERE pubname LIKE 'lorry_main%'");
  }
  std::string StateTables() const {
    return SubscriberValue(
        "SELECT coalesce(string_agg(nspname || '.' || relname || ':' || state || ':' || insert_only, ',' "
        "ORDER BY nspname, relname), '') FROM lorry.tables");
  }
};

TEST_F(Admin, InitChecksAndIsIdempotent) {
  auto first = RunLorry(Args({"init"}));
  ASSERT_EQ(first.exit_code, 0) << first.all();
  EXPECT_THAT(first.out, HasSubstr("ok    provider: server version "));
  EXPECT_THAT(first.out, HasSubstr("ok    provider: wal_level is logical"));
  EXPECT_THAT(first.out, HasSubstr("ok    subscriber: server version "));
  EXPECT_THAT(first.out, HasSubstr("max_replication_slots"));
  EXPECT_THAT(first.out, HasSubstr("created  provider: publication lorry_main "));
  EXPECT_THAT(first.out, HasSubstr("created  provider: publication lorry_main_insert_only"));
  EXPECT_THAT(first.out, HasSubstr("created  subscriber: replication origin lorry_main"));
  EXPECT_EQ(first.out.find("FAIL"), std::string::npos) << first.out;

  auto second = RunLorry(Args({"init"}));
  ASSERT_EQ(second.exit_code, 0) << second.all();
  EXPECT_EQ(second.out.find("created"), std::string::npos) << second.out;
  EXPECT_THAT(second.out, HasSubstr("present  provider: publication lorry_main "));

  EXPECT_EQ(ProviderValue("SELECT string_agg(format('%s:%s%s%s%s', pubname, pubinsert::int, pubupdate::int, "
                          "pubdelete::int, pubtruncate::int), ',' ORDER BY pubname) FROM pg_publication"),
            "lorry_main:1111,lorry_main_insert_only:1001");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_replication_origin WHERE roname = 'lorry_main'"), "1");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.subscriptions WHERE name = 'main'"), "1");
}

TEST_F(Admin, InitRefusesWalLevelReplicaAndInstallsNothing) {
  testing::LocalClusterOptions o;
  o.name = "replica";
  o.logical = false;
  o.settings = {"wal_level = replica"};
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status().message();
  auto r = RunLorry({"init", "--provider", (*cluster)->Conninfo("postgres"), "--subscriber", Subscriber()});
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.out, HasSubstr("FAIL  provider: wal_level is replica; logical decoding needs logical. "
                                          "Fix: ALTER SYSTEM SET wal_level = logical; then restart the provider"));
  EXPECT_THAT(r.out, HasSubstr("ok    subscriber: server version"));  // every check is shown
  EXPECT_THAT(r.err, HasSubstr("nothing was installed"));
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_replication_origin"), "0");
  auto conn = pg::PgConn::Connect((*cluster)->Conninfo("postgres"));
  ASSERT_TRUE(conn.ok());
  auto pubs = conn->QueryValue("SELECT count(*) FROM pg_publication");
  ASSERT_TRUE(pubs.ok());
  EXPECT_EQ(pubs->value_or("?"), "0");
}

TEST_F(Admin, WrongPasswordIsAConnectionErrorWithoutThePassword) {
  auto* p = provider_cluster();
  ASSERT_TRUE(p->Execute("DROP ROLE IF EXISTS alice; CREATE ROLE alice LOGIN PASSWORD 'Right-Pa55'").ok());
  const std::string kWrong = "Wr0ngSecret";
  for (const std::string& conninfo :
       {p->Conninfo(dbname_, "alice") + " password=" + kWrong,
        fmt::format("postgresql://alice:{}@127.0.0.1:{}/{}", kWrong, p->port(), dbname_)}) {
    for (const char* cmd : {"init", "add", "status"}) {
      std::vector<std::string> args{cmd, "--provider", conninfo, "--subscriber", Subscriber()};
      if (std::string(cmd) == "add") args.push_back("t");
      auto r = RunLorry(args);
      SCOPED_TRACE(std::string(cmd) + " " + conninfo);
      if (std::string(cmd) == "status") {
        // status needs the subscriber only, which is not initialised here.
        EXPECT_EQ(r.all().find(kWrong), std::string::npos) << r.all();
        continue;
      }
      EXPECT_EQ(r.exit_code, 3) << r.all();
      EXPECT_THAT(r.err, HasSubstr("provider"));
      EXPECT_THAT(r.err, HasSubstr("password authentication failed"));
      EXPECT_EQ(r.all().find(kWrong), std::string::npos) << r.all();
    }
  }
  // The subscriber side is named too.
  auto r = RunLorry({"init", "--provider", Provider(), "--subscriber",
                     subscriber_cluster()->Conninfo(dbname_, "nobody") + " password=" + kWrong});
  EXPECT_EQ(r.exit_code, 3) << r.all();
  EXPECT_THAT(r.err, HasSubstr("cannot connect to subscriber"));
  EXPECT_EQ(r.all().find(kWrong), std::string::npos) << r.all();
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
  (void)p->Execute("DROP ROLE IF EXISTS alice");
}

TEST_F(Admin, InitReportsMissingPrivilegesWithTheirFixes) {
  const std::string role = "lorry_admin_bob";
  auto both_clusters = [&](const std::string& sql, const std::string& db = "postgres") {
    for (auto* c : {provider_cluster(), subscriber_cluster()}) ASSERT_TRUE(c->Execute(sql, db).ok()) << sql;
  };
  both_clusters(fmt::format("DROP ROLE IF EXISTS {0}; CREATE ROLE {0} LOGIN PASSWORD 'pw-Bob-1'", role));
  std::vector<std::string> args{"init", "--provider", provider_cluster()->Conninfo(dbname_, role) + " password=pw-Bob-1",
                                "--subscriber", subscriber_cluster()->Conninfo(dbname_, role) + " password=pw-Bob-1"};
  auto r = RunLorry(args);
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.out, HasSubstr("FAIL  provider: user lorry_admin_bob has no REPLICATION privilege"));
  EXPECT_THAT(r.out, HasSubstr("ALTER ROLE lorry_admin_bob REPLICATION;"));
  EXPECT_THAT(r.out, HasSubstr("FAIL  subscriber: user lorry_admin_bob may not use replication origins"));
  // Before PostgreSQL 14 replication origins need a superuser: no GRANT helps.
  bool origins_need_superuser = subscriber_cluster()->major_version() < 14;
  if (origins_need_superuser)
    EXPECT_THAT(r.out, HasSubstr("ALTER ROLE lorry_admin_bob SUPERUSER"));
  else
    EXPECT_THAT(r.out,
                HasSubstr("GRANT EXECUTE ON FUNCTION pg_replication_origin_session_setup(text) TO lorry_admin_bob;"));
  EXPECT_THAT(r.out, HasSubstr("warn  subscriber: user lorry_admin_bob may not SET session_replication_role"));
  EXPECT_THAT(r.err, HasSubstr("4 checks failed; nothing was installed"));
  EXPECT_EQ(r.all().find("pw-Bob-1"), std::string::npos) << r.all();

  // Applying the printed fixes is enough.
  ASSERT_TRUE(provider_cluster()->Execute(fmt::format("ALTER ROLE {0} REPLICATION; GRANT CREATE ON DATABASE {1} TO {0}",
                                                      role, dbname_)).ok());
  std::string grants;
  for (size_t pos = 0; (pos = r.out.find("GRANT EXECUTE", pos)) != std::string::npos;) {
    size_t end = r.out.find(';', pos);
    grants += r.out.substr(pos, end + 1 - pos) + " ";
    pos = end;
  }
  if (origins_need_superuser) grants += fmt::format("ALTER ROLE {} SUPERUSER; ", role);
  ASSERT_TRUE(subscriber_cluster()->Execute(grants + fmt::format("GRANT CREATE ON DATABASE {1} TO {0}", role, dbname_),
                                            dbname_).ok()) << grants;
  auto fixed = RunLorry(args);
  EXPECT_EQ(fixed.exit_code, 0) << fixed.all();
  EXPECT_THAT(fixed.out, HasSubstr("created  provider: publication lorry_main "));
  auto drop = RunLorry({"drop", "--provider", args[2], "--subscriber", args[4]});
  EXPECT_EQ(drop.exit_code, 0) << drop.all();

  for (auto* c : {provider_cluster(), subscriber_cluster()})
    (void)c->Execute(fmt::format("DROP OWNED BY {}", role), dbname_);
  both_clusters(fmt::format("DROP ROLE IF EXISTS {}", role));
}

TEST_F(Admin, AddRequiresInit) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  auto r = RunLorry(Args({"add", "t"}));
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr("run `lorry init` first"));
}

TEST_F(Admin, AddRefusesTableWithoutReplicaIdentityAndAddsNothing) {
  BothSql("CREATE TABLE good (id int PRIMARY KEY, v text); CREATE TABLE nopk (a int, b text); "
          "CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING");
  Init();
  auto r = RunLorry(Args({"add", "good", "nopk", "nothing"}));
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr("table public.nopk has no primary key"));
  EXPECT_THAT(r.err, HasSubstr("UPDATE and DELETE on it would fail on the provider"));
  EXPECT_THAT(r.err, HasSubstr("ALTER TABLE \"public\".\"nopk\" ADD PRIMARY KEY"));
  EXPECT_THAT(r.err, HasSubstr("ALTER TABLE \"public\".\"nopk\" REPLICA IDENTITY FULL;"));
  EXPECT_THAT(r.err, HasSubstr("lorry add --insert-only public.nopk"));
  EXPECT_THAT(r.err, HasSubstr("table public.nothing has REPLICA IDENTITY NOTHING"));
  EXPECT_THAT(r.err, HasSubstr("2 problems found, nothing was added"));
  EXPECT_EQ(PublishedTables(), "");
  EXPECT_EQ(StateTables(), "");
  // UPDATE still works on the provider: the table was not published.
  ProviderSql("INSERT INTO nopk VALUES (1, 'x'); UPDATE nopk SET b = 'y'");

  auto io = RunLorry(Args({"add", "--insert-only", "nopk"}));
  ASSERT_EQ(io.exit_code, 0) << io.all();
  EXPECT_THAT(io.out, HasSubstr("added public.nopk (insert-only"));
  auto good = RunLorry(Args({"add", "good"}));
  ASSERT_EQ(good.exit_code, 0) << good.all();
  EXPECT_EQ(PublishedTables(), "lorry_main:public.good,lorry_main_insert_only:public.nopk");
  EXPECT_EQ(StateTables(), "public.good:pending:false,public.nopk:pending:true");

  auto again = RunLorry(Args({"add", "good", "nopk"}));
  EXPECT_EQ(again.exit_code, 2) << again.all();  // nopk is named without --insert-only
  auto same = RunLorry(Args({"add", "good"}));
  EXPECT_EQ(same.exit_code, 0) << same.all();
  EXPECT_THAT(same.out, HasSubstr("public.good: already replicated"));

  auto tables = RunLorry(Args({"tables"}));
  ASSERT_EQ(tables.exit_code, 0) << tables.all();
  EXPECT_THAT(tables.out, HasSubstr("insert-only"));
  EXPECT_THAT(tables.out, HasSubstr("public.nopk"));
  auto tj = RunLorry(Args({"tables", "--json"}));
  ASSERT_EQ(tj.exit_code, 0) << tj.all();
  json j = json::parse(tj.out);
  ASSERT_EQ(j["tables"].size(), 2u);
  EXPECT_EQ(j["tables"][1]["name"], "public.nopk");
  EXPECT_EQ(j["tables"][1]["insert_only"], true);
  EXPECT_EQ(j["tables"][0]["insert_only"], false);
  EXPECT_EQ(j["tables"][0]["state"], "pending");
}

TEST_F(Admin, AddRefusesMissingTableOrColumnOnTheSubscriber) {
  ProviderSql("CREATE TABLE t (id int PRIMARY KEY, a int, b text, g int GENERATED ALWAYS AS (a * 2) STORED); "
              "CREATE TABLE only_here (id int PRIMARY KEY); "
              "CREATE TABLE extra (id int PRIMARY KEY); CREATE TABLE fine (id int PRIMARY KEY)");
  SubscriberSql("CREATE TABLE t (id int PRIMARY KEY, a int); "
                "CREATE TABLE extra (id int PRIMARY KEY, must int NOT NULL); "
                "CREATE TABLE fine (id bigint PRIMARY KEY, note text, n int NOT NULL DEFAULT 0)");
  Init();
  auto r = RunLorry(Args({"add", "t", "only_here", "extra", "fine", "no_such_table"}));
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr("column b (text) of table public.t is missing on the subscriber"));
  EXPECT_THAT(r.err, HasSubstr("ALTER TABLE \"public\".\"t\" ADD COLUMN \"b\" text;"));
  EXPECT_EQ(r.err.find("column g"), std::string::npos) << "generated columns are not replicated: " << r.err;
  EXPECT_THAT(r.err, HasSubstr("table public.only_here does not exist on the subscriber: create it there"));
  EXPECT_THAT(r.err, HasSubstr("column must of table public.extra exists only on the subscriber"));
  EXPECT_THAT(r.err, HasSubstr("table no_such_table not found on the provider"));
  EXPECT_EQ(r.err.find("public.fine"), std::string::npos) << r.err;
  EXPECT_EQ(PublishedTables(), "");
  EXPECT_EQ(StateTables(), "");

  auto ok = RunLorry(Args({"add", "fine"}));  // extra nullable / defaulted columns are fine
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_THAT(ok.out, HasSubstr("note: column id of table public.fine is integer on the provider and bigint on the "
                               "subscriber"));
  EXPECT_EQ(StateTables(), "public.fine:pending:false");
}

TEST_F(Admin, AddAllAndSchema) {
  BothSql("CREATE SCHEMA a; CREATE SCHEMA b; CREATE TABLE a.t1 (id int PRIMARY KEY); "
          "CREATE TABLE a.t2 (id int PRIMARY KEY); CREATE TABLE b.t3 (id int PRIMARY KEY); "
          "CREATE TABLE public.t4 (id int PRIMARY KEY)");
  ProviderSql("INSERT INTO a.t1 SELECT generate_series(1, 100); ANALYZE a.t1");
  Init();
  auto schema = RunLorry(Args({"add", "--all", "--schema", "a"}));
  ASSERT_EQ(schema.exit_code, 0) << schema.all();
  EXPECT_THAT(schema.out, HasSubstr("about 100 rows"));
  EXPECT_EQ(StateTables(), "a.t1:pending:false,a.t2:pending:false");
  auto all = RunLorry(Args({"add", "--all"}));
  ASSERT_EQ(all.exit_code, 0) << all.all();
  EXPECT_THAT(all.out, HasSubstr("a.t1: already replicated"));
  EXPECT_THAT(all.out, HasSubstr("added b.t3"));
  EXPECT_EQ(StateTables(), "a.t1:pending:false,a.t2:pending:false,b.t3:pending:false,public.t4:pending:false");
  EXPECT_EQ(PublishedTables(), "lorry_main:a.t1,lorry_main:a.t2,lorry_main:b.t3,lorry_main:public.t4");
  EXPECT_EQ(SubscriberValue("SELECT rows_estimate FROM lorry.tables WHERE relname = 't1'"), "100");

  auto none = RunLorry(Args({"add", "--all", "--schema", "nope"}));
  EXPECT_EQ(none.exit_code, 2) << none.all();
  auto usage = RunLorry(Args({"add"}));
  EXPECT_EQ(usage.exit_code, 2) << usage.all();
}

TEST_F(Admin, QuotedIdentifiersAndRemove) {
  const std::string table = "\"My Schema\".\"we\"\"ird.Tbl é✓\"";
  BothSql("CREATE SCHEMA \"My Schema\"; CREATE TABLE " + table + " (\"Id\" int PRIMARY KEY, \"select\" text)");
  SubscriberSql("INSERT INTO " + table + " VALUES (1, 'kept')");
  Init();
  auto add = RunLorry(Args({"add", table}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  EXPECT_THAT(add.out, HasSubstr("added " + table));
  EXPECT_EQ(PublishedTables(), "lorry_main:My Schema.we\"ird.Tbl é✓");
  auto tj = RunLorry(Args({"tables", "--json"}));
  ASSERT_EQ(tj.exit_code, 0) << tj.all();
  json j = json::parse(tj.out);
  ASSERT_EQ(j["tables"].size(), 1u);
  EXPECT_EQ(j["tables"][0]["schema"], "My Schema");
  EXPECT_EQ(j["tables"][0]["table"], "we\"ird.Tbl é✓");

  auto unknown = RunLorry(Args({"remove", "public.nope"}));
  EXPECT_EQ(unknown.exit_code, 2) << unknown.all();
  EXPECT_THAT(unknown.err, HasSubstr("public.nope is not replicated"));

  auto rm = RunLorry(Args({"remove", table}));
  ASSERT_EQ(rm.exit_code, 0) << rm.all();
  EXPECT_THAT(rm.out, HasSubstr("removed " + table));
  EXPECT_EQ(PublishedTables(), "");
  EXPECT_EQ(StateTables(), "");
  EXPECT_EQ(SubscriberValue("SELECT \"select\" FROM " + table), "kept");  // data stays
}

TEST_F(Admin, RemoveUnqualifiedInsertOnlyTable) {
  BothSql("CREATE TABLE h (a int, b text)");
  Init();
  ASSERT_EQ(RunLorry(Args({"add", "--insert-only", "h"})).exit_code, 0);
  auto rm = RunLorry(Args({"remove", "h"}));
  ASSERT_EQ(rm.exit_code, 0) << rm.all();
  EXPECT_EQ(PublishedTables(), "");
  EXPECT_EQ(StateTables(), "");
}

TEST_F(Admin, StatusHumanAndJson) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  Init();
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  auto human = RunLorry(Args({"status"}));
  ASSERT_EQ(human.exit_code, 0) << human.all();
  EXPECT_THAT(human.out, HasSubstr("not running"));
  EXPECT_THAT(human.out, HasSubstr("public.t"));
  EXPECT_THAT(human.out, HasSubstr("pending"));
  EXPECT_THAT(human.out, HasSubstr("not created yet"));

  auto r = RunLorry(Args({"status", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  json j = json::parse(r.out);
  const json& s = j["subscription"];
  EXPECT_EQ(s["name"], "main");
  EXPECT_EQ(s["slot"], "lorry_main");
  EXPECT_EQ(s["run_active"], false);
  EXPECT_EQ(s["provider_reachable"], true);
  EXPECT_TRUE(s["provider_lsn"].is_string());
  for (const char* key : {"applied_lsn", "confirmed_lsn", "lag_bytes", "lag_seconds", "xacts_applied",
                          "changes_applied", "last_error", "heartbeat_age_seconds"})
    EXPECT_TRUE(s.contains(key)) << key;
  EXPECT_EQ(s["slot_state"]["exists"], false);
  ASSERT_EQ(j["tables"].size(), 1u);
  EXPECT_EQ(j["tables"][0]["state"], "pending");
  EXPECT_EQ(j["table_states"]["pending"], 1);

  // What a daemon leaves behind: applied and confirmed positions.
  SubscriberSql("UPDATE lorry.subscriptions SET last_commit_lsn = '0/100', confirmed_lsn = 'FFFFFFFF/0', "
                "xacts_applied = 5, changes_applied = 7, last_commit_time = now()");
  j = json::parse(RunLorry(Args({"status", "--json"})).out);
  EXPECT_EQ(j["subscription"]["applied_lsn"], "0/100");
  EXPECT_EQ(j["subscription"]["lag_bytes"], 0);
  EXPECT_EQ(j["subscription"]["lag_seconds"], 0.0);
  EXPECT_EQ(j["subscription"]["xacts_applied"], 5);

  // A run holding the lock shows as active.
  auto sub = ConnectSubscriber();
  ASSERT_TRUE(sub.Exec(fmt::format("SELECT pg_advisory_lock({}, hashtext('main'))", kRunLockClass)).ok());
  j = json::parse(RunLorry(Args({"status", "--json"})).out);
  EXPECT_EQ(j["subscription"]["run_active"], true);
}

TEST_F(Admin, StatusWithProviderUnreachableNeverShowsPasswords) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  Init();
  const std::string kSecret = "TopSecret9";
  std::vector<std::string> base{"--provider", "host=127.0.0.1 port=1 dbname=x user=lorry password=" + kSecret,
                                "--subscriber", Subscriber() + " password=" + kSecret};
  for (bool as_json : {false, true}) {
    std::vector<std::string> args{"status"};
    if (as_json) args.push_back("--json");
    args.insert(args.end(), base.begin(), base.end());
    auto r = RunLorry(args);
    EXPECT_EQ(r.exit_code, 0) << r.all();
    EXPECT_THAT(r.out, HasSubstr("unreachable"));
    EXPECT_EQ(r.all().find(kSecret), std::string::npos) << r.all();
    if (as_json) {
      json j = json::parse(r.out);
      EXPECT_EQ(j["subscription"]["provider_reachable"], false);
    }
  }
  for (const char* cmd : {"add", "wait", "drop"}) {
    std::vector<std::string> args{cmd};
    if (std::string(cmd) == "add") args.push_back("t");
    args.insert(args.end(), base.begin(), base.end());
    auto r = RunLorry(args);
    EXPECT_EQ(r.exit_code, 3) << cmd << ": " << r.all();
    EXPECT_EQ(r.all().find(kSecret), std::string::npos) << r.all();
  }
}

TEST_F(Admin, WaitTimesOutNamingWhatIsBehind) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  Init();
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  auto start = std::chrono::steady_clock::now();
  auto r = RunLorry(Args({"wait", "--timeout", "1"}));
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 1) << r.all();
  EXPECT_THAT(r.err, HasSubstr("table public.t is pending"));
  EXPECT_THAT(r.err, HasSubstr("`lorry run` is not active"));
  EXPECT_LT(took, 10);
}

TEST_F(Admin, WaitCountsConfirmedPositions) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  Init();
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  SubscriberSql("UPDATE lorry.tables SET state = 'ready'");
  // Behind the provider: times out naming the positions.
  SubscriberSql("UPDATE lorry.subscriptions SET confirmed_lsn = '0/10'");
  auto behind = RunLorry(Args({"wait", "--timeout", "0.5"}));
  EXPECT_EQ(behind.exit_code, 1) << behind.all();
  EXPECT_THAT(behind.err, HasSubstr("applied up to provider LSN 0/10, target"));
  // A keepalive-confirmed position past the target is enough.
  SubscriberSql("UPDATE lorry.subscriptions SET confirmed_lsn = 'FFFFFFFF/0'");
  auto done = RunLorry(Args({"wait", "--timeout", "5"}));
  EXPECT_EQ(done.exit_code, 0) << done.all();
  EXPECT_THAT(done.out, HasSubstr("caught up at "));
}

TEST_F(Admin, DropRemovesOnlyLorryObjects) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)");
  Init();
  ASSERT_EQ(RunLorry(Args({"add", "t"})).exit_code, 0);
  ProviderSql("SELECT pg_create_logical_replication_slot('lorry_main', 'pgoutput')");

  {
    // Refused while a run holds the lock.
    auto sub = ConnectSubscriber();
    ASSERT_TRUE(sub.Exec(fmt::format("SELECT pg_advisory_lock({}, hashtext('main'))", kRunLockClass)).ok());
    auto r = RunLorry(Args({"drop"}));
    EXPECT_EQ(r.exit_code, 2) << r.all();
    EXPECT_THAT(r.err, HasSubstr("stop lorry run first"));
    EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "1");
  }

  auto r = RunLorry(Args({"drop"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_THAT(r.out, HasSubstr("dropped replication slot lorry_main (provider)"));
  EXPECT_THAT(r.out, HasSubstr("dropped publication lorry_main (provider)"));
  EXPECT_THAT(r.out, HasSubstr("dropped publication lorry_main_insert_only (provider)"));
  EXPECT_THAT(r.out, HasSubstr("dropped replication origin lorry_main (subscriber)"));
  EXPECT_THAT(r.out, HasSubstr("dropped schema lorry (subscriber)"));
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lorry_main'"), "0");
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication"), "0");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM pg_replication_origin"), "0");
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM t"), "2");
  EXPECT_EQ(SubscriberValue("SELECT to_regclass('public.t') IS NOT NULL"), "t");

  auto again = RunLorry(Args({"drop"}));
  ASSERT_EQ(again.exit_code, 0) << again.all();
  EXPECT_THAT(again.out, HasSubstr("not present: replication slot lorry_main"));
  EXPECT_THAT(again.out, HasSubstr("not present: publication lorry_main "));
  EXPECT_EQ(again.out.find("\ndropped "), std::string::npos) << again.out;
  EXPECT_NE(again.out.rfind("not present: ", 0), std::string::npos) << again.out;
}

TEST_F(Admin, DropWorksWhenPartiallyInitialised) {
  ProviderSql("CREATE PUBLICATION lorry_main");
  auto r = RunLorry(Args({"drop"}));
  ASSERT_EQ(r.exit_code, 0) << r.all();
  EXPECT_THAT(r.out, HasSubstr("dropped publication lorry_main (provider)"));
  EXPECT_THAT(r.out, HasSubstr("not present: replication origin lorry_main"));
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication"), "0");
}

}  // namespace
}  // namespace lorry::test
