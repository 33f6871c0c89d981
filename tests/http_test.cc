// `lorry run`'s HTTP endpoint against real clusters: /healthz while idle
// connections are held open, garbage requests (replication goes on),
// /status.json as `status --json` prints it, /readyz, the status page's
// errors, basic authentication and the warning for a non-loopback address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include "fixture.h"
#include "http_client.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

class Http : public TwoClusters {
 protected:
  // init, add t, run with the endpoint on a free port, wait until caught up.
  std::unique_ptr<LorryProcess> StartStreaming(std::vector<std::string> run_args = {}) {
    BothSql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    InitAndAdd({"t"});
    std::vector<std::string> args = {"run", "--metrics-addr", "127.0.0.1:0"};
    args.insert(args.end(), run_args.begin(), run_args.end());
    auto run = std::make_unique<LorryProcess>(Args(args));
    port_ = MetricsPort(run.get());
    EXPECT_GT(port_, 0) << run->Log();
    Wait(run.get());
    return run;
  }
  int port_ = 0;
};

// Idle connections each hold a worker until the request timeout; there are
// more workers than that, so a probe is answered at once.
TEST_F(Http, HealthzAnswersWithinASecondWhileFiftyIdleConnectionsAreOpen) {
  auto run = StartStreaming();
  std::vector<int> idle;
  for (int i = 0; i < 50; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int round = 0; round < 3; ++round) {
    auto start = std::chrono::steady_clock::now();
    auto r = HttpGet(port_, "/healthz");
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.code, 200) << r.head;
    EXPECT_LT(secs, 1.0) << "round " << round;
  }
  for (int fd : idle) close(fd);
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Http, GarbageRequestsAreRefusedAndReplicationGoesOn) {
  auto run = StartStreaming();
  auto garbage = HttpExchange(port_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 22));
  EXPECT_TRUE(garbage.code == 400 || garbage.code == 0) << garbage.head;
  EXPECT_EQ(HttpExchange(port_, "NONSENSE\r\n\r\n").code, 400);
  EXPECT_EQ(HttpExchange(port_, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n").code / 100, 4);
  EXPECT_EQ(HttpExchange(port_, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").code, 405);
  auto unknown = HttpGet(port_, "/nope");
  EXPECT_EQ(unknown.code, 404);
  EXPECT_THAT(unknown.body, HasSubstr("no such page: /nope"));
  ProviderSql("INSERT INTO t SELECT g, 'after garbage' FROM generate_series(1, 100) g");
  Wait(run.get());
  EXPECT_EQ(SubscriberValue("SELECT count(*) FROM t WHERE v = 'after garbage'"), "100");
  EXPECT_EQ(HttpGet(port_, "/healthz").code, 200);
  EXPECT_TRUE(run->Running());
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Http, StatusJsonIsStatusJsonAndUnknownTablesAreNamed) {
  auto run = StartStreaming();
  auto served = HttpGet(port_, "/status.json");
  ASSERT_EQ(served.code, 200) << served.body;
  auto cli = RunLorry(Args({"status", "--json"}));
  ASSERT_EQ(cli.exit_code, 0) << cli.all();
  json a = json::parse(served.body), b = json::parse(cli.out);
  // The same document: the same keys everywhere, the same values where they
  // do not move between two reads.
  EXPECT_EQ(a.size(), b.size());
  for (auto& [key, value] : b["subscription"].items())
    EXPECT_TRUE(a["subscription"].contains(key)) << key;
  for (const char* key : {"name", "slot", "publication", "origin", "subscriber", "provider", "run_active", "state"})
    EXPECT_EQ(a["subscription"][key], b["subscription"][key]) << key;
  EXPECT_EQ(a["subscription"]["state"], "streaming");
  EXPECT_EQ(a["tables"], b["tables"]);
  EXPECT_EQ(a["check"]["state"], "OK");

  auto one = json::parse(HttpGet(port_, "/status.json?table=public.t").body);
  EXPECT_EQ(one["tables"].size(), 1u);
  auto missing = HttpGet(port_, "/status.json?table=public.nope");
  EXPECT_EQ(missing.code, 404);
  EXPECT_EQ(json::parse(missing.body)["error"],
            "subscription main replicates no table named \"public.nope\" (its tables are: public.t)");
  auto page = HttpGet(port_, "/?table=nope%20at%20all");
  EXPECT_EQ(page.code, 404);
  EXPECT_THAT(page.body, HasSubstr("replicates no table named &quot;nope at all&quot;"));
  EXPECT_THAT(page.head, HasSubstr("Content-Security-Policy: default-src 'none'"));
  EXPECT_EQ(HttpGet(port_, "/").code, 200);
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Http, ReadyzFollowsStatusCheck) {
  auto run = StartStreaming();
  auto ready = HttpGet(port_, "/readyz?max_lag_seconds=600");
  EXPECT_EQ(ready.code, 200) << ready.body;
  EXPECT_EQ(ready.body.rfind("LORRY OK - subscription main streaming", 0), 0u) << ready.body;
  EXPECT_THAT(ready.head, HasSubstr("X-Lorry-Check: 0"));
  auto bad = HttpGet(port_, "/readyz?max_lag_seconds=soon");
  EXPECT_EQ(bad.code, 400);
  EXPECT_THAT(bad.body, HasSubstr("max_lag_seconds: expected a number >= 0, got \"soon\""));
  SubscriberSql("UPDATE lorry.tables SET state = 'error', error = 'made up for the test'");
  ASSERT_TRUE(Eventually([&] { return HttpGet(port_, "/readyz").code == 503; }, 30));
  auto critical = HttpGet(port_, "/readyz");
  EXPECT_THAT(critical.body, HasSubstr("LORRY CRITICAL"));
  EXPECT_THAT(critical.head, HasSubstr("X-Lorry-Check: 2"));
  EXPECT_EQ(HttpGet(port_, "/healthz").code, 200) << "liveness is not readiness";
  SubscriberSql("UPDATE lorry.tables SET state = 'ready', error = NULL");
  EXPECT_EQ(run->Terminate(), 0) << run->Log();
}

TEST_F(Http, BasicAuthGuardsAllButHealthz) {
  std::string pw = fmt::format("/tmp/lorry_http_pw_{}_{}", getpid(), dbname_);
  std::ofstream(pw) << "s3cret-metrics\n";
  std::string conf = fmt::format("/tmp/lorry_http_{}_{}.toml", getpid(), dbname_);
  std::ofstream(conf) << fmt::format(
      "name = \"main\"\nprovider = \"{}\"\nsubscriber = \"{}\"\n[metrics]\naddr = \"0.0.0.0:0\"\n"
      "basic_auth_user = \"prom\"\nbasic_auth_password_file = \"{}\"\n",
      Provider(), Subscriber(), pw);
  BothSql("CREATE TABLE t (id int PRIMARY KEY)");
  InitAndAdd({"t"});
  LorryProcess run({"-c", conf, "run"});
  int port = MetricsPort(&run);
  ASSERT_GT(port, 0) << run.Log();
  // Beyond loopback: said at start.
  EXPECT_THAT(run.Log(), HasSubstr("is reachable from other hosts"));
  auto denied = HttpGet(port, "/metrics");
  EXPECT_EQ(denied.code, 401);
  EXPECT_THAT(denied.head, HasSubstr("WWW-Authenticate: Basic realm=\"lorry\""));
  EXPECT_EQ(HttpGet(port, "/metrics", {"Authorization: Basic cHJvbTp3cm9uZw=="}).code, 401);  // prom:wrong
  auto ok = HttpGet(port, "/metrics", {"Authorization: Basic cHJvbTpzM2NyZXQtbWV0cmljcw=="});  // prom:s3cret-metrics
  EXPECT_EQ(ok.code, 200);
  EXPECT_THAT(ok.body, HasSubstr("lorry_build_info{"));
  EXPECT_EQ(HttpGet(port, "/healthz").code, 200);
  EXPECT_EQ(HttpGet(port, "/").code, 401);
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  EXPECT_EQ(run.Log().find("s3cret-metrics"), std::string::npos);
  std::remove(pw.c_str());
  std::remove(conf.c_str());
}

}  // namespace
}  // namespace lorry::test
