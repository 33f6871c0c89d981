#include "fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace lorry::test {

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh file for captured output; the caller removes it.
std::string TempPath(const char* tag) {
  std::string tmpl = std::string("/tmp/lorry-test-") + tag + "-XXXXXX";
  int fd = mkstemp(tmpl.data());
  if (fd >= 0) close(fd);
  return tmpl;
}

pid_t SpawnLorry(const std::vector<std::string>& args, const std::string& out_path, const std::string& err_path) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Killed with the test process, however that ends (a failed ASSERT that
    // aborts it with a thread still joinable, a crash, ctest's timeout):
    // never a `lorry run` left behind. (The signal follows the forking
    // thread: tests start lorry from their main thread.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(LORRY_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(LORRY_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

CommandResult RunLorry(const std::vector<std::string>& args, double timeout_seconds) {
  std::string out_path = TempPath("out"), err_path = TempPath("err");
  pid_t pid = SpawnLorry(args, out_path, err_path);
  CommandResult r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  while (true) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "<timed out>\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.exit_code = DecodeStatus(status);
  r.out = ReadFile(out_path);
  r.err += ReadFile(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return r;
}

LorryProcess::LorryProcess(const std::vector<std::string>& args) {
  log_path_ = TempPath("log");
  pid_ = SpawnLorry(args, log_path_, log_path_);
}

LorryProcess::~LorryProcess() {
  if (Running()) Terminate(10);
  if (Running()) Kill9();
  std::remove(log_path_.c_str());
}

bool LorryProcess::Running() {
  if (pid_ <= 0 || status_ != -1) return false;
  int st = 0;
  pid_t w = waitpid(pid_, &st, WNOHANG);
  if (w == pid_) {
    status_ = DecodeStatus(st);
    return false;
  }
  return true;
}

void LorryProcess::Kill9() {
  if (!Running()) return;
  kill(pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = DecodeStatus(st);
}

int LorryProcess::Terminate(double timeout_seconds) {
  if (!Running()) return status_;
  kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (Running() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (Running()) Kill9();
  return status_;
}

std::string LorryProcess::Log() const { return ReadFile(log_path_); }

namespace {

// DROP DATABASE ... WITH (FORCE) exists from PostgreSQL 13 on; on 12 the
// other sessions are terminated first (DROP DATABASE waits up to 5 s for them
// to go). Two statements: DROP DATABASE cannot run in a multi-statement query.
Status DropDatabase(testing::LocalCluster* c, const std::string& dbname) {
  if (c->major_version() >= 13) return c->Execute(fmt::format("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", dbname));
  LORRY_RETURN_IF_ERROR(c->Execute(fmt::format(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
      dbname)));
  return c->Execute(fmt::format("DROP DATABASE IF EXISTS \"{}\"", dbname));
}

}  // namespace

std::unique_ptr<testing::LocalCluster> TwoClusters::provider_;
std::unique_ptr<testing::LocalCluster> TwoClusters::subscriber_;

testing::LocalCluster* TwoClusters::provider_cluster() { return provider_.get(); }
testing::LocalCluster* TwoClusters::subscriber_cluster() { return subscriber_.get(); }

namespace {

// $PG_BINDIR_PROVIDER / $PG_BINDIR_SUBSCRIBER run each side on its own major
// (scripts/test-cross-version, make test-matrix); unset or empty, the cluster
// falls back to $PG_BINDIR, then to Debian's PostgreSQL 15.
std::string BindirFromEnv(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

void TwoClusters::SetUpTestSuite() {
  if (!provider_) {
    testing::LocalClusterOptions p;
    p.name = "provider";
    p.bindir = BindirFromEnv("PG_BINDIR_PROVIDER");
    auto c = testing::LocalCluster::Start(p);
    ASSERT_TRUE(c.ok()) << c.status().message();
    provider_ = std::move(c).value();
  }
  if (!subscriber_) {
    testing::LocalClusterOptions s;
    s.name = "subscriber";
    s.bindir = BindirFromEnv("PG_BINDIR_SUBSCRIBER");
    auto c = testing::LocalCluster::Start(s);
    ASSERT_TRUE(c.ok()) << c.status().message();
    subscriber_ = std::move(c).value();
  }
}

void TwoClusters::TearDownTestSuite() {
  provider_.reset();
  subscriber_.reset();
}

void TwoClusters::SetUp() {
  ASSERT_TRUE(provider_ && subscriber_);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = fmt::format("t_{}_{}", info->test_suite_name(), info->name());
  for (auto& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? std::tolower(ch) : '_';
  dbname_ = name.substr(0, 60);
  for (auto* c : {provider_.get(), subscriber_.get()}) {
    auto d = DropDatabase(c, dbname_);
    ASSERT_TRUE(d.ok()) << d.message();
    auto s = c->Execute(fmt::format("CREATE DATABASE \"{}\"", dbname_));
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

void TwoClusters::TearDown() {
  // Slots pin WAL and a database cannot be dropped while a slot uses it.
  if (provider_) {
    (void)provider_->Execute(fmt::format(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{}' AND NOT active",
        dbname_));
  }
  if (subscriber_) {
    (void)subscriber_->Execute(
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname LIKE 'lorry_%'");
  }
  for (auto* c : {provider_.get(), subscriber_.get()})
    if (c) (void)DropDatabase(c, dbname_);
  for (const auto& f : config_files_) std::remove(f.c_str());
}

std::string TwoClusters::ConfigFile(const std::string& toml) {
  std::string path = fmt::format("/tmp/lorry-test-{}-{}-{}.toml", getpid(), dbname_, config_files_.size());
  std::ofstream(path) << toml;
  config_files_.push_back(path);
  return path;
}

std::vector<std::string> SpoolDirsOf(pid_t pid, const std::string& parent) {
  std::vector<std::string> out;
  std::string prefix = fmt::format("lorry-spool-{}-", pid);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(parent, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
  return out;
}

std::string SpoolDirWithData(pid_t pid) {
  std::error_code ec;
  for (const auto& dir : SpoolDirsOf(pid, std::filesystem::temp_directory_path(ec).string()))
    if (!std::filesystem::is_empty(dir, ec) && !ec) return dir;
  return "";
}

std::string TwoClusters::Provider() const { return provider_->Conninfo(dbname_); }
std::string TwoClusters::Subscriber() const { return subscriber_->Conninfo(dbname_); }

std::vector<std::string> TwoClusters::Args(std::vector<std::string> args) const {
  std::vector<std::string> out{"--provider", Provider(), "--subscriber", Subscriber(), "--name", "main"};
  // Subcommand first: global flags fall through from the subcommand.
  if (!args.empty()) {
    out.insert(out.begin(), args.front());
    out.insert(out.end(), args.begin() + 1, args.end());
  }
  return out;
}

pg::PgConn TwoClusters::ConnectProvider() const {
  auto c = pg::PgConn::Connect(Provider(), {{}, "provider"});
  EXPECT_TRUE(c.ok()) << c.status().message();
  return std::move(c).value();
}

pg::PgConn TwoClusters::ConnectSubscriber() const {
  auto c = pg::PgConn::Connect(Subscriber(), {{}, "subscriber"});
  EXPECT_TRUE(c.ok()) << c.status().message();
  return std::move(c).value();
}

void TwoClusters::ProviderSql(const std::string& sql) const {
  auto c = ConnectProvider();
  auto r = c.Exec(sql);
  ASSERT_TRUE(r.ok()) << r.status().message();
}

void TwoClusters::SubscriberSql(const std::string& sql) const {
  auto c = ConnectSubscriber();
  auto r = c.Exec(sql);
  ASSERT_TRUE(r.ok()) << r.status().message();
}

void TwoClusters::BothSql(const std::string& sql) const {
  ProviderSql(sql);
  SubscriberSql(sql);
}

std::string TwoClusters::ProviderValue(const std::string& sql) const {
  auto c = ConnectProvider();
  auto v = c.QueryValue(sql);
  EXPECT_TRUE(v.ok()) << v.status().message();
  return v.ok() && v.value() ? *v.value() : "<null>";
}

std::string TwoClusters::SubscriberValue(const std::string& sql) const {
  auto c = ConnectSubscriber();
  auto v = c.QueryValue(sql);
  EXPECT_TRUE(v.ok()) << v.status().message();
  return v.ok() && v.value() ? *v.value() : "<null>";
}

std::string TwoClusters::Dump(bool provider, const std::string& quoted_table) const {
  auto c = provider ? ConnectProvider() : ConnectSubscriber();
  // Row text forms, sorted: independent of physical order and of types
  // without an ordering (json, point).
  auto r = c.Exec("SET extra_float_digits = 3; SET datestyle = 'ISO'; SELECT string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\") FROM " + quoted_table + " t");
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok() || r->rows() == 0 || r->IsNull(0, 0)) return "";
  return std::string(r->Get(0, 0));
}

void TwoClusters::ExpectSameContent(const std::string& quoted_table) const {
  std::string p = Dump(true, quoted_table), s = Dump(false, quoted_table);
  EXPECT_EQ(p, s) << "content differs for " << quoted_table;
}

void TwoClusters::ExpectCompareClean(const std::vector<std::string>& tables, const LorryProcess* run,
                                     std::vector<std::string> args) const {
  args = args.empty() ? Args({"compare"}) : args;
  args.insert(args.end(), tables.begin(), tables.end());
  auto r = RunLorry(args, 180);
  bool ok = r.exit_code == 0;
  for (const auto& t : tables) ok = ok && r.out.find("public." + t + ": ok (") != std::string::npos;
  EXPECT_TRUE(ok) << "lorry compare exit " << r.exit_code << ":\n" << r.all() << "\n--- lorry run log:\n"
                  << (run ? run->Log() : std::string("(none)"));
  if (!ok)
    for (const auto& t : tables) ExpectSameContent(t);
}

void TwoClusters::InitAndAdd(const std::vector<std::string>& add_args) {
  auto init = RunLorry(Args({"init"}));
  ASSERT_EQ(init.exit_code, 0) << init.all();
  std::vector<std::string> a{"add"};
  a.insert(a.end(), add_args.begin(), add_args.end());
  auto add = RunLorry(Args(a));
  ASSERT_EQ(add.exit_code, 0) << add.all();
}

void TwoClusters::Wait(LorryProcess* run, double timeout) {
  auto w = RunLorry(Args({"wait", "--timeout", fmt::format("{}", timeout)}), timeout + 30);
  ASSERT_EQ(w.exit_code, 0) << w.all() << "\n--- lorry run log:\n" << (run ? run->Log() : "");
}

}  // namespace lorry::test
