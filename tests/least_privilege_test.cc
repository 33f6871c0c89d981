// Least privilege (README "Least privilege"): the whole workflow runs with
// exactly the roles the README documents (its SQL is read from README.md,
// so the two cannot drift apart); `add` refuses, before changing anything,
// a table whose privileges are missing on either side and prints the exact
// statements that fix it; the copy never drops an index it could not build
// again; and a rebuild that fails anyway shows in `lorry status` until fixed.
#include <fstream>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;

// The README's SQL block that begins with `-- lorry least privilege: <side>`,
// as statements, with `app` (the database) replaced by `dbname`; statements
// marked for a newer PostgreSQL than `major` ("14+", "15+") left out.
std::vector<std::string> DocumentedRoleSql(const std::string& side, const std::string& dbname, int major) {
  std::ifstream f(std::string(LORRY_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string readme = ss.str();
  std::string marker = "-- lorry least privilege: " + side;
  size_t begin = readme.find(marker);
  EXPECT_NE(begin, std::string::npos) << marker;
  if (begin == std::string::npos) return {};
  size_t end = readme.find("```", begin);
  std::istringstream block(readme.substr(begin, end - begin));
  std::vector<std::string> out;
  std::string line, statement;
  while (std::getline(block, line)) {
    if (line.rfind("--", 0) == 0) continue;
    statement += line + "\n";
    if (line.find(';') == std::string::npos) continue;
    std::smatch m;
    bool newer = std::regex_search(statement, m, std::regex(R"((\d+)\+)")) && std::stoi(m[1]) > major;
    statement = std::regex_replace(statement, std::regex(R"(DATABASE app\b)"), "DATABASE \"" + dbname + "\"");
    if (!newer) out.push_back(statement);
    statement.clear();
  }
  return out;
}

constexpr const char* kSchema = R"sql(
  CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric, CONSTRAINT owner_unique UNIQUE (owner));
  CREATE INDEX accounts_balance ON accounts (balance);
  CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int NOT NULL, amount numeric);
)sql";

class LeastPrivilege : public TwoClusters {
 protected:
  void SetUp() override {
    TwoClusters::SetUp();
    for (auto* c : {provider_cluster(), subscriber_cluster()}) {
      for (const char* role : {"lorry_provider", "lorry_subscriber"})
        (void)c->Execute(fmt::format("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}", role), dbname_);
      (void)c->Execute("DROP OWNED BY app_owner; DROP ROLE IF EXISTS app_owner", dbname_);
      ASSERT_TRUE(c->Execute("CREATE ROLE app_owner; GRANT CREATE ON SCHEMA public TO app_owner", dbname_).ok());
      ASSERT_TRUE(c->Execute(std::string("SET ROLE app_owner;") + kSchema, dbname_).ok());
    }
    ProviderSql("INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 2000) g");
    ProviderSql("INSERT INTO ledger (account, amount) SELECT g % 2000 + 1, g FROM generate_series(1, 5000) g");
  }
  void TearDown() override {
    for (auto* c : {provider_cluster(), subscriber_cluster()})
      for (const char* role : {"lorry_provider", "lorry_subscriber", "app_owner"})
        (void)c->Execute(fmt::format("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}", role), dbname_);
    TwoClusters::TearDown();
  }
  void CreateDocumentedRoles() {
    for (const auto& [side, cluster] : {std::pair{"provider", provider_cluster()},
                                        std::pair{"subscriber", subscriber_cluster()}}) {
      auto statements = DocumentedRoleSql(side, dbname_, cluster->major_version());
      ASSERT_GE(statements.size(), 3u) << side;
      for (const auto& sql : statements) ASSERT_TRUE(cluster->Execute(sql, dbname_).ok()) << side << ": " << sql;
    }
  }
  std::vector<std::string> As(std::vector<std::string> args) const {
    std::vector<std::string> out{args.front(), "--provider",
                                 provider_cluster()->Conninfo(dbname_, "lorry_provider") + " password=change-me",
                                 "--subscriber",
                                 subscriber_cluster()->Conninfo(dbname_, "lorry_subscriber") + " password=change-me"};
    out.insert(out.end(), args.begin() + 1, args.end());
    return out;
  }
  std::string Indexes(bool provider) {
    std::string sql =
        "SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'";
    return provider ? ProviderValue(sql) : SubscriberValue(sql);
  }
};

TEST_F(LeastPrivilege, WholeWorkflowWithTheDocumentedRoles) {
  if (subscriber_cluster()->major_version() < 14) GTEST_SKIP() << "replication origins need a superuser before 14";
  CreateDocumentedRoles();
  auto init = RunLorry(As({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  EXPECT_EQ(init.out.find("FAIL"), std::string::npos) << init.out;
  auto add = RunLorry(As({"add", "accounts", "ledger"}));
  ASSERT_EQ(add.exit_code, 0) << add.all();
  LorryProcess run(As({"run"}));
  auto wait = RunLorry(As({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << run.Log();
  // The copy deferred the indexes and keys and built them again.
  EXPECT_THAT(run.Log(), HasSubstr("index=accounts_pkey deferred"));
  EXPECT_EQ(Indexes(false), Indexes(true));
  ProviderSql("UPDATE accounts SET balance = balance + 1 WHERE id <= 100; DELETE FROM ledger WHERE id <= 50; "
              "INSERT INTO accounts VALUES (3000, 'new', 0); TRUNCATE ledger");
  wait = RunLorry(As({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << run.Log();
  ExpectCompareClean({"accounts", "ledger"}, &run, As({"compare"}));
  auto status = RunLorry(As({"status"}));
  EXPECT_EQ(status.exit_code, 0) << status.all();
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  auto drop = RunLorry(As({"drop"}));
  EXPECT_EQ(drop.exit_code, 0) << drop.all();
  EXPECT_EQ(SubscriberValue("SELECT to_regnamespace('lorry') IS NULL"), "t");
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_replication_slots"), "0");
}

// Without the table privileges, `add` says exactly what to grant, on which
// side, and changes nothing; the printed statements are enough.
TEST_F(LeastPrivilege, AddRefusesMissingPrivilegesWithTheStatementsThatFixThem) {
  if (subscriber_cluster()->major_version() < 14) GTEST_SKIP() << "replication origins need a superuser before 14";
  CreateDocumentedRoles();
  ASSERT_TRUE(provider_cluster()->Execute("REVOKE app_owner FROM lorry_provider", dbname_).ok());
  ASSERT_TRUE(subscriber_cluster()->Execute("REVOKE app_owner FROM lorry_subscriber", dbname_).ok());
  ASSERT_TRUE(subscriber_cluster()->Execute("REVOKE CREATE ON SCHEMA public FROM lorry_subscriber, app_owner", dbname_).ok());
  ASSERT_EQ(RunLorry(As({"init"})).exit_code, 0);
  auto add = RunLorry(As({"add", "accounts"}));
  EXPECT_EQ(add.exit_code, 2) << add.all();
  EXPECT_THAT(add.err, HasSubstr("provider table public.accounts: user lorry_provider may not SELECT"));
  EXPECT_THAT(add.err, HasSubstr("does not own it (owner app_owner; adding it to the publication needs that)"));
  EXPECT_THAT(add.err, HasSubstr("ALTER TABLE \"public\".\"accounts\" OWNER TO \"lorry_provider\";"));
  EXPECT_THAT(add.err, HasSubstr("subscriber table public.accounts: user lorry_subscriber may not SELECT, INSERT, "
                                 "UPDATE, DELETE, TRUNCATE"));
  EXPECT_THAT(add.err, HasSubstr("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE \"public\".\"accounts\" TO "
                                 "\"lorry_subscriber\";"));
  EXPECT_THAT(add.err, HasSubstr("GRANT CREATE ON SCHEMA \"public\" TO \"lorry_subscriber\";"));
  EXPECT_EQ(ProviderValue("SELECT count(*) FROM pg_publication_rel"), "0");
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM lorry.tables"), "0");
  // Insert-only needs neither UPDATE nor DELETE.
  auto insert_only = RunLorry(As({"add", "--insert-only", "ledger"}));
  EXPECT_THAT(insert_only.err, HasSubstr("may not SELECT, INSERT, TRUNCATE ("));
  // Each printed statement, run on its side, is enough.
  std::regex fix(R"((provider|subscriber): ((?:(?:ALTER TABLE|GRANT) [^;]+; ?)+))");
  int applied = 0;
  for (std::sregex_iterator it(add.err.begin(), add.err.end(), fix), end; it != end; ++it, ++applied) {
    auto* cluster = (*it)[1] == "provider" ? provider_cluster() : subscriber_cluster();
    ASSERT_TRUE(cluster->Execute((*it)[2].str(), dbname_).ok()) << (*it)[2];
  }
  EXPECT_EQ(applied, 2) << add.err;
  auto again = RunLorry(As({"add", "accounts"}));
  EXPECT_EQ(again.exit_code, 0) << again.all();
}

// A privilege lost between `add` and the copy: the indexes are kept (never
// dropped without the proof that lorry can build them again) and the copy
// goes on; a rebuild that fails anyway shows in status, with its fix, until
// it succeeds.
TEST_F(LeastPrivilege, IndexesLorryCannotBuildAgainAreNeverDropped) {
  if (subscriber_cluster()->major_version() < 14) GTEST_SKIP() << "replication origins need a superuser before 14";
  CreateDocumentedRoles();
  ASSERT_EQ(RunLorry(As({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(As({"add", "accounts"})).exit_code, 0);
  ASSERT_TRUE(subscriber_cluster()->Execute("REVOKE CREATE ON SCHEMA public FROM lorry_subscriber, app_owner", dbname_).ok());
  LorryProcess run(As({"run"}));
  auto wait = RunLorry(As({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << run.Log();
  EXPECT_THAT(run.Log(), HasSubstr("indexes kept during the copy (slower): lorry could not create them again"));
  EXPECT_THAT(run.Log(), HasSubstr("GRANT CREATE ON SCHEMA \"public\" TO \"lorry_subscriber\";"));
  EXPECT_EQ(Indexes(false), Indexes(true));
  ExpectCompareClean({"accounts"}, &run, As({"compare"}));
}

TEST_F(LeastPrivilege, AFailedIndexRebuildShowsInStatusUntilItSucceeds) {
  if (subscriber_cluster()->major_version() < 14) GTEST_SKIP() << "replication origins need a superuser before 14";
  CreateDocumentedRoles();
  ASSERT_EQ(RunLorry(As({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(As({"add", "accounts"})).exit_code, 0);
  // A window between the indexes' drop and their rebuild.
  setenv("LORRY_FAULT_SLEEP", "index_rebuild:5000", 1);
  LorryProcess run(As({"run"}));
  unsetenv("LORRY_FAULT_SLEEP");
  ASSERT_TRUE(Eventually([&] {
    return SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes") != "0";
  }, 60)) << run.Log();
  ASSERT_TRUE(subscriber_cluster()->Execute("REVOKE CREATE ON SCHEMA public FROM lorry_subscriber, app_owner", dbname_).ok());
  auto failed_line = [&] {
    auto status = RunLorry(As({"status"}));
    size_t at = status.out.find("index rebuild failed table public.accounts");
    return at == std::string::npos ? std::string() : status.out.substr(at, status.out.find('\n', at) - at);
  };
  ASSERT_TRUE(Eventually([&] { return !failed_line().empty(); }, 60)) << run.Log();
  EXPECT_THAT(failed_line(), HasSubstr("permission denied for schema public"));
  EXPECT_THAT(failed_line(), HasSubstr("GRANT CREATE ON SCHEMA \"public\" TO \"lorry_subscriber\";"));
  // It stays while lorry retries (not only until the next attempt begins).
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(failed_line().empty()) << "status lost the failed rebuild";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  auto json = RunLorry(As({"tables", "--json"}));
  EXPECT_THAT(json.out, HasSubstr("\"index_rebuild_error\": \"index "));
  ASSERT_TRUE(subscriber_cluster()->Execute("GRANT CREATE ON SCHEMA public TO lorry_subscriber", dbname_).ok());
  auto wait = RunLorry(As({"wait", "--timeout", "120"}), 150);
  ASSERT_EQ(wait.exit_code, 0) << wait.all() << run.Log();
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT count(*) FROM lorry.deferred_indexes") == "0"; }, 60));
  EXPECT_TRUE(failed_line().empty());
  EXPECT_EQ(Indexes(false), Indexes(true));
}

}  // namespace
}  // namespace lorry::test
