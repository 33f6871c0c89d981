// Integration tests for LocalCluster: real servers are started, queried,
// crashed, restarted and removed; every test checks that nothing (process,
// folder, port) is left behind by the part it exercises.
#include "testing/local_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "pg/connection.h"

namespace lorry {
namespace {

using lorry::testing::LocalCluster;
using lorry::testing::LocalClusterOptions;

// Binds like PostgreSQL does (SO_REUSEADDR), so that connections in
// TIME_WAIT do not count as "in use".
int BindPort(int port, bool listen_too) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || (listen_too && listen(fd, 1) != 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

bool PortIsFree(int port) {
  int fd = BindPort(port, false);
  if (fd < 0) return false;
  close(fd);
  return true;
}

pid_t PostmasterPid(const LocalCluster& c) {
  std::ifstream f(c.datadir() + "/postmaster.pid");
  pid_t pid = 0;
  f >> pid;
  return pid;
}

// Alive and not a zombie (the postmaster is not our child; init reaps it).
bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto p = line.rfind(')');
  return p != std::string::npos && p + 2 < line.size() && line[p + 2] != 'Z' && line[p + 2] != 'X';
}

std::unique_ptr<LocalCluster> MustStart(const std::string& name, std::vector<std::string> settings = {}) {
  LocalClusterOptions options;
  options.name = name;
  options.settings = std::move(settings);
  auto c = LocalCluster::Start(options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

std::string Value(const LocalCluster& c, const std::string& sql, const std::string& dbname = "postgres") {
  auto conn = pg::PgConn::Connect(c.Conninfo(dbname));
  if (!conn.ok()) return "<connect: " + conn.status().message() + ">";
  auto v = conn->QueryValue(sql);
  if (!v.ok()) return "<query: " + v.status().message() + ">";
  return v.value() ? *v.value() : "<null>";
}

TEST(LocalClusterTest, StartsWithLogicalWalAndAnswersQueries) {
  auto c = MustStart("basic");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host(), "127.0.0.1");
  EXPECT_GT(c->port(), 0);
  EXPECT_GE(c->major_version(), 10);
  EXPECT_EQ(c->Conninfo("app", "bob"),
            "host=127.0.0.1 port=" + std::to_string(c->port()) + " dbname=app user=bob");
  EXPECT_TRUE(std::filesystem::is_directory(c->datadir()));

  Status st = c->Execute("SELECT 1");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Value(*c, "SELECT 1"), "1");
  EXPECT_EQ(Value(*c, "SHOW wal_level"), "logical");
  EXPECT_EQ(Value(*c, "SHOW max_replication_slots"), "10");
  EXPECT_EQ(Value(*c, "SHOW max_wal_senders"), "10");
  EXPECT_EQ(Value(*c, "SHOW fsync"), "on");
  EXPECT_EQ(Value(*c, "SHOW listen_addresses"), "127.0.0.1");
  EXPECT_EQ(Value(*c, "SELECT current_setting('server_version_num')::int / 10000"),
            std::to_string(c->major_version()));
  EXPECT_EQ(Value(*c, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'postgres'"), "UTF8");

  // Errors from Execute are server errors, not crashes.
  EXPECT_FALSE(c->Execute("SELECT * FROM no_such_table").ok());
  // NOTICEs are not printed (DROP ... IF EXISTS of nothing raises one).
  EXPECT_TRUE(c->Execute("DROP TABLE IF EXISTS no_such_table").ok());
}

TEST(LocalClusterTest, OptionsSettingsAndNonLogical) {
  LocalClusterOptions options;
  options.name = "plain cluster/with odd name";
  options.logical = false;
  options.settings = {"work_mem = '5MB'"};
  auto c = LocalCluster::Start(options);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(Value(**c, "SHOW wal_level"), "replica");
  EXPECT_EQ(Value(**c, "SHOW work_mem"), "5MB");
}

TEST(LocalClusterTest, PasswordUsersNeedTheRightPassword) {
  auto c = MustStart("auth");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Execute("CREATE ROLE alice LOGIN REPLICATION PASSWORD 'secret'").ok());
  auto good = pg::PgConn::Connect(c->Conninfo("postgres", "alice") + " password=secret");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  auto bad = pg::PgConn::Connect(c->Conninfo("postgres", "alice") + " password=wrong");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("password authentication failed"), std::string::npos)
      << bad.status().message();
  auto none = pg::PgConn::Connect(c->Conninfo("postgres", "alice"));
  EXPECT_FALSE(none.ok());
}

TEST(LocalClusterTest, Kill9ThenStartAgainRecoversCommittedData) {
  auto c = MustStart("crash");
  ASSERT_TRUE(c);
  int port = c->port();
  ASSERT_TRUE(c->Execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)").ok());
  // An open connection (a backend) must be killed with the postmaster.
  auto held = pg::PgConn::Connect(c->Conninfo());
  ASSERT_TRUE(held.ok());
  pid_t postmaster = PostmasterPid(*c);
  ASSERT_TRUE(ProcessAlive(postmaster));

  Status st = c->Kill9();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(ProcessAlive(postmaster));
  EXPECT_FALSE(c->Execute("SELECT 1").ok());
  EXPECT_FALSE(held->Exec("SELECT 1").ok());
  EXPECT_FALSE(c->Kill9().ok());  // nothing to kill

  st = c->StartAgain();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c->port(), port);
  EXPECT_EQ(Value(*c, "SELECT count(*) FROM t"), "1000");
  EXPECT_NE(c->LogTail(100000).find("not properly shut down"), std::string::npos) << c->LogTail();
  EXPECT_FALSE(c->StartAgain().ok());  // already running
}

TEST(LocalClusterTest, StopStartAgainAndRestartApplySettings) {
  auto c = MustStart("restart");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->SetSetting("work_mem = '7MB'").ok());
  Status st = c->Restart();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Value(*c, "SHOW work_mem"), "7MB");

  ASSERT_TRUE(c->SetSetting("work_mem = '9MB'").ok());
  st = c->Stop();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(c->Execute("SELECT 1").ok());
  EXPECT_TRUE(c->Stop().ok());  // stopping a stopped server is fine
  EXPECT_FALSE(c->Stop("sideways").ok());
  st = c->StartAgain();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Value(*c, "SHOW work_mem"), "9MB");
  ASSERT_TRUE(c->Stop("immediate").ok());
  ASSERT_TRUE(c->StartAgain().ok());
  EXPECT_EQ(Value(*c, "SELECT 1"), "1");
}

TEST(LocalClusterTest, DestructorRemovesFolderStopsServerAndFreesPort) {
  auto c = MustStart("gone");
  ASSERT_TRUE(c);
  std::string base = c->basedir();
  int port = c->port();
  pid_t postmaster = PostmasterPid(*c);
  auto held = pg::PgConn::Connect(c->Conninfo());  // the server must go anyway
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(ProcessAlive(postmaster));
  EXPECT_FALSE(PortIsFree(port));

  c.reset();
  EXPECT_FALSE(std::filesystem::exists(base));
  EXPECT_FALSE(ProcessAlive(postmaster));
  EXPECT_TRUE(PortIsFree(port));
}

TEST(LocalClusterTest, DestructorCleansUpAStoppedOrKilledCluster) {
  auto stopped = MustStart("stopped");
  auto killed = MustStart("killed");
  ASSERT_TRUE(stopped && killed);
  std::string a = stopped->basedir(), b = killed->basedir();
  ASSERT_TRUE(stopped->Stop().ok());
  ASSERT_TRUE(killed->Kill9().ok());
  stopped.reset();
  killed.reset();
  EXPECT_FALSE(std::filesystem::exists(a));
  EXPECT_FALSE(std::filesystem::exists(b));
}

TEST(LocalClusterTest, TwoClustersAtOnceGetDifferentPortsAndFolders) {
  auto a = MustStart("one");
  auto b = MustStart("two");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->port(), b->port());
  EXPECT_NE(a->datadir(), b->datadir());
  ASSERT_TRUE(a->Execute("CREATE TABLE only_in_a (x int)").ok());
  EXPECT_EQ(Value(*a, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"), "1");
  EXPECT_EQ(Value(*b, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"), "0");
}

TEST(LocalClusterTest, StartAgainReportsATakenPortWithTheLog) {
  auto c = MustStart("taken");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Stop().ok());
  int squatter = BindPort(c->port(), /*listen_too=*/true);
  ASSERT_GE(squatter, 0);
  Status st = c->StartAgain();
  close(squatter);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("could not bind"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("server log tail"), std::string::npos) << st.message();
  st = c->StartAgain();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Value(*c, "SELECT 1"), "1");
}

TEST(LocalClusterTest, StopAllLocalClustersLeavesNothing) {
  auto a = MustStart("all_a");
  auto b = MustStart("all_b");
  ASSERT_TRUE(a && b);
  std::string base_a = a->basedir(), base_b = b->basedir();
  pid_t pa = PostmasterPid(*a), pb = PostmasterPid(*b);
  lorry::testing::StopAllLocalClusters();
  EXPECT_FALSE(ProcessAlive(pa));
  EXPECT_FALSE(ProcessAlive(pb));
  EXPECT_FALSE(std::filesystem::exists(base_a));
  EXPECT_FALSE(std::filesystem::exists(base_b));
  EXPECT_TRUE(PortIsFree(a->port()));
  EXPECT_FALSE(a->Execute("SELECT 1").ok());
  EXPECT_EQ(a->StartAgain().kind(), Status::Kind::kCancelled);
  // The objects are still safe to destroy.
  a.reset();
  b.reset();
}

// A process that dies without destroying its cluster (here SIGKILL, as a test
// timeout would) must not leave the server or the folder behind.
TEST(LocalClusterTest, WatchdogCleansUpAfterTheOwnerIsKilled) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t owner = fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    close(fds[0]);
    LocalClusterOptions options;
    options.name = "orphan";
    auto c = LocalCluster::Start(options);
    std::string report = c.ok() ? (*c)->basedir() + "\n" + std::to_string(PostmasterPid(**c)) + "\n" : "failed\n";
    (void)!write(fds[1], report.data(), report.size());
    pause();  // until SIGKILLed
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) {
    report.append(buf, n);
    if (std::count(report.begin(), report.end(), '\n') >= 2 || report == "failed\n") break;
  }
  close(fds[0]);
  kill(owner, SIGKILL);
  int status = 0;
  waitpid(owner, &status, 0);
  ASSERT_NE(report, "failed\n");
  std::string base = report.substr(0, report.find('\n'));
  pid_t postmaster = std::stoi(report.substr(report.find('\n') + 1));
  ASSERT_TRUE(std::filesystem::exists(base));
  ASSERT_TRUE(ProcessAlive(postmaster));

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((ProcessAlive(postmaster) || std::filesystem::exists(base)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(ProcessAlive(postmaster));
  EXPECT_FALSE(std::filesystem::exists(base));
}

TEST(LocalClusterTest, MissingBinariesAreAPreconditionError) {
  LocalClusterOptions options;
  options.name = "nobin";
  options.bindir = "/nonexistent/bin";
  auto c = LocalCluster::Start(options);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().kind(), Status::Kind::kPrecondition);
  EXPECT_NE(c.status().message().find("PG_BINDIR"), std::string::npos);
}

TEST(LocalClusterTest, FindFreePortReturnsABindablePort) {
  auto port = lorry::testing::FindFreePort();
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_GT(*port, 0);
  EXPECT_TRUE(PortIsFree(*port));
}

}  // namespace
}  // namespace lorry
