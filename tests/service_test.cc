// `lorry run` as a service: systemd's notify protocol (READY, STATUS,
// WATCHDOG, STOPPING) over a notify socket of the test's own, the exit
// status of errors a restart cannot fix, journald priorities, JSON start-up
// errors, LORRY_PROVIDER/LORRY_SUBSCRIBER/LORRY_NAME, and `status --check`.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "fixture.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;

// A datagram socket standing in for systemd's NOTIFY_SOCKET; collects what
// lorry sends on a thread of its own.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = fmt::format("/tmp/lorry_notify_{}_{}.sock", getpid(), counter_++);
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{0, 100000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) continue;
        std::lock_guard lock(mu_);
        messages_.emplace_back(buf, static_cast<size_t>(n));
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    thread_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::vector<std::string> Messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // Index of the first message containing `text`, or -1.
  int Find(const std::string& text) {
    auto m = Messages();
    for (size_t i = 0; i < m.size(); ++i)
      if (m[i].find(text) != std::string::npos) return static_cast<int>(i);
    return -1;
  }
  int Count(const std::string& text) {
    int n = 0;
    for (const auto& m : Messages()) n += m.find(text) != std::string::npos;
    return n;
  }

 private:
  static inline int counter_ = 0;
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> messages_;
  std::thread thread_;
};

// Sets environment variables for the lorry processes started while it lives.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::vector<std::pair<std::string, std::string>> vars) : vars_(std::move(vars)) {
    for (const auto& [k, v] : vars_) setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : vars_) unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

// A listening socket on a free loopback port, as another program would hold it.
class BusyPort {
 public:
  BusyPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 4), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~BusyPort() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class Service : public TwoClusters {};

TEST_F(Service, NotifiesSystemdReadyStatusWatchdogAndStopping) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  NotifySocket notify;
  std::unique_ptr<LorryProcess> run;
  {
    ScopedEnv env({{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "1000000"}});
    run = std::make_unique<LorryProcess>(Args({"run"}));
  }
  ASSERT_TRUE(Eventually([&] { return notify.Find("READY=1") >= 0; }, 60)) << run->Log();
  // Once streaming, the status line says so with the lag.
  ASSERT_TRUE(Eventually([&] { return notify.Find("; 1 of 1 tables ready") >= 0; }, 60))
      << fmt::format("{}", fmt::join(notify.Messages(), "\n")) << run->Log();
  EXPECT_GE(notify.Find("STATUS=streaming: lag "), notify.Find("READY=1"));
  EXPECT_THAT(notify.Messages()[notify.Find("; 1 of 1 tables ready")], HasSubstr("STATUS=streaming: lag "));
  // WATCHDOG=1 every WatchdogSec/4 while the apply loop goes round.
  int before = notify.Count("WATCHDOG=1");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_GE(notify.Count("WATCHDOG=1") - before, 4) << fmt::format("{}", fmt::join(notify.Messages(), "\n"));
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
  EXPECT_GE(notify.Find("STOPPING=1"), 0);
}

// A refused login will not pass by itself: run exits at once with 3 (the
// unit's RestartPreventExitStatus), before telling systemd it is ready.
TEST_F(Service, RefusedLoginExitsThreeWithoutReady) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  SubscriberSql("DO $$BEGIN CREATE ROLE lorry_pw LOGIN PASSWORD 'right'; EXCEPTION WHEN duplicate_object THEN END$$");
  NotifySocket notify;
  ScopedEnv env({{"NOTIFY_SOCKET", notify.path()}});
  for (const char* login : {" user=lorry_pw password=wrong", " user=lorry_pw"}) {
    auto start = std::chrono::steady_clock::now();
    auto r = RunLorry({"run", "--provider", Provider(), "--subscriber", Subscriber() + login, "--name", "main"}, 60);
    EXPECT_EQ(r.exit_code, 3) << login << "\n" << r.all();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << login << ": no retry loop";
    EXPECT_THAT(r.err, HasSubstr("lorry_pw")) << r.err;
    EXPECT_THAT(r.err, ::testing::AnyOf(HasSubstr("password authentication failed"), HasSubstr("~/.pgpass")));
  }
  EXPECT_EQ(notify.Find("READY=1"), -1);
}

TEST_F(Service, JournalGetsEachLinesPriority) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  std::string log = fmt::format("/tmp/lorry_journal_{}_{}.log", getpid(), dbname_);
  std::ofstream(log).close();
  struct stat st {};
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  // systemd names the stream it connected to stderr: a shell redirection
  // to that very file stands in for it.
  BusyPort busy;
  std::string cmd = fmt::format("JOURNAL_STREAM={}:{} {} run --provider '{}' --subscriber '{}' --name main "
                                "--log-format json --metrics-addr 127.0.0.1:{} 2>>{}",
                                st.st_dev, st.st_ino, LORRY_BINARY, Provider(), Subscriber(), busy.port(), log);
  int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(log.c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2) << text;
  ASSERT_EQ(text.rfind("<3>{", 0), 0u) << text;
  auto j = nlohmann::json::parse(text.substr(3, text.find('\n') - 3));
  EXPECT_EQ(j["level"], "error");
  EXPECT_THAT(j["msg"].get<std::string>(), HasSubstr("is already in use"));
}

// --log-format json covers errors that end the command at start-up too.
TEST_F(Service, StartupErrorsAreJsonWithLogFormatJson) {
  auto r = RunLorry({"status", "--log-format", "json", "-c", "/nonexistent/lorry.toml"});
  EXPECT_EQ(r.exit_code, 2) << r.all();
  auto j = nlohmann::json::parse(r.err, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.err;
  EXPECT_EQ(j["level"], "error");
  EXPECT_THAT(j["msg"].get<std::string>(), HasSubstr("/nonexistent/lorry.toml"));
  auto parse = RunLorry({"run", "--log-format", "json", "--jobs", "many"});
  EXPECT_EQ(parse.exit_code, 2) << parse.all();
  EXPECT_FALSE(nlohmann::json::parse(parse.err, nullptr, false).is_discarded()) << parse.err;
  auto text = RunLorry({"status", "-c", "/nonexistent/lorry.toml"});
  EXPECT_EQ(text.err.rfind("lorry: ", 0), 0u) << text.err;
}

TEST_F(Service, BusyMetricsPortIsAClearError) {
  BusyPort busy;
  auto r = RunLorry(Args({"run", "--metrics-addr", fmt::format("127.0.0.1:{}", busy.port())}), 60);
  EXPECT_EQ(r.exit_code, 2) << r.all();
  EXPECT_THAT(r.err, HasSubstr(fmt::format("cannot serve metrics on 127.0.0.1:{}: port {} is already in use",
                                           busy.port(), busy.port())));
}

TEST_F(Service, EnvironmentNamesTheServersAndFlagsWin) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  {
    ScopedEnv env({{"LORRY_PROVIDER", Provider()}, {"LORRY_SUBSCRIBER", Subscriber()}, {"LORRY_NAME", "envsub"}});
    auto init = RunLorry({"init"});
    ASSERT_EQ(init.exit_code, 0) << init.all();
    auto add = RunLorry({"add", "t"});
    ASSERT_EQ(add.exit_code, 0) << add.all();
    auto status = RunLorry({"status", "--json"});
    ASSERT_EQ(status.exit_code, 0) << status.all();
    EXPECT_EQ(nlohmann::json::parse(status.out)["subscription"]["name"], "envsub");
    // A flag wins over the environment.
    auto other = RunLorry({"status", "--name", "main"});
    EXPECT_EQ(other.exit_code, 2) << other.all();  // main is not initialised
  }
  EXPECT_EQ(SubscriberValue("SELECT name FROM lorry.subscriptions"), "envsub");
  auto drop = RunLorry({"drop", "--provider", Provider(), "--subscriber", Subscriber(), "--name", "envsub"});
  EXPECT_EQ(drop.exit_code, 0) << drop.all();
}

TEST_F(Service, StatusCheckFollowsNagiosExitCodes) {
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  auto stopped = RunLorry(Args({"status", "--check"}));
  EXPECT_EQ(stopped.exit_code, 2) << stopped.all();
  EXPECT_EQ(stopped.out.rfind("LORRY CRITICAL - subscription main: no `lorry run` is active", 0), 0u) << stopped.out;
  EXPECT_EQ(std::count(stopped.out.begin(), stopped.out.end(), '\n'), 1) << "one line";

  LorryProcess run(Args({"run"}));
  Wait(&run);
  ProviderSql("INSERT INTO t SELECT generate_series(1, 10)");
  Wait(&run);
  auto ok = RunLorry(Args({"status", "--check", "--max-lag-seconds", "600", "--max-lag-bytes", "100000000"}));
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_EQ(ok.out.rfind("LORRY OK - subscription main streaming, lag ", 0), 0u) << ok.out;
  EXPECT_THAT(ok.out, HasSubstr("1 of 1 tables ready | lag_bytes="));
  EXPECT_THAT(ok.out, HasSubstr(";;100000000 lag_seconds="));
  // A table in error is critical, whatever the lag.
  SubscriberSql("UPDATE lorry.tables SET state = 'error', error = 'made up for the test'");
  auto error = RunLorry(Args({"status", "--check"}));
  EXPECT_EQ(error.exit_code, 2) << error.all();
  EXPECT_THAT(error.out, HasSubstr("1 table in error (public.t: made up for the test)"));
  SubscriberSql("UPDATE lorry.tables SET state = 'ready', error = NULL");
  EXPECT_EQ(run.Terminate(), 0);

  auto unknown = RunLorry({"status", "--check", "--provider", Provider(), "--subscriber",
                           "host=127.0.0.1 port=1 dbname=x connect_timeout=2", "--name", "main"});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.all();
  EXPECT_EQ(unknown.out.rfind("LORRY UNKNOWN - ", 0), 0u) << unknown.out;
  EXPECT_TRUE(unknown.err.empty()) << unknown.err;
}

}  // namespace
}  // namespace lorry::test
