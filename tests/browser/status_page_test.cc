// The live status page in a real browser: Debian's headless chromium loads
// http://127.0.0.1:PORT/ from `lorry run` during the initial copy and while
// streaming, after its script has polled /status.json, and what it shows is
// checked against the lorry.status view and lorry.tables; screenshots are
// kept under the build folder (screenshots/). Label `browser`: not part of
// `make test`; `make test-browser` installs chromium and runs it.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "fixture.h"
#include "http_client.h"

namespace lorry::test {
namespace {

using ::testing::HasSubstr;

constexpr const char* kChromium = "/usr/bin/chromium";

// Runs headless chromium with the flags it needs as root in a container,
// and a fresh profile; returns what it printed on stdout.
std::string Chromium(const std::string& what, const std::string& url) {
  std::string profile = fmt::format("/tmp/lorry_chromium_{}_{}", getpid(), std::rand());
  std::string cmd = fmt::format(
      "timeout 90 {} --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage "
      "--user-data-dir={} --virtual-time-budget=5000 --window-size=1280,1000 {} '{}' 2>/dev/null",
      kChromium, profile, what, url);
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  std::filesystem::remove_all(profile);
  return out;
}

// The value of `attr` on the element with id `id` in a dumped DOM.
std::string Attr(const std::string& dom, const std::string& id, const std::string& attr) {
  std::smatch m;
  std::regex re("<[^>]*id=\"" + id + "\"[^>]*>");
  if (!std::regex_search(dom, m, re)) return "<no #" + id + ">";
  std::smatch a;
  std::string tag = m[0];
  if (!std::regex_search(tag, a, std::regex(attr + "=\"([^\"]*)\""))) return "<no " + attr + ">";
  return a[1];
}

// data-state of the table row for `table`.
std::string RowState(const std::string& dom, const std::string& table) {
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex("<tr data-table=\"" + table + "\" data-state=\"([a-z_]+)\"")))
    return "<no row for " + table + ">";
  return m[1];
}

class StatusPage : public TwoClusters {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kChromium))
        << kChromium << " is missing: `make test-browser` installs it (apt-get install chromium)";
    TwoClusters::SetUp();
  }
  void Screenshot(int port, const std::string& name) {
    std::filesystem::create_directories("screenshots");
    std::string path = std::filesystem::absolute("screenshots/" + name).string();
    std::filesystem::remove(path);
    Chromium("--screenshot=" + path, fmt::format("http://127.0.0.1:{}/", port));
    EXPECT_TRUE(std::filesystem::exists(path) && std::filesystem::file_size(path) > 10000) << path;
  }
};

TEST_F(StatusPage, ShowsTheCopyThenTheStreamAsLorryStatusDoes) {
  BothSql("CREATE TABLE big (id int PRIMARY KEY, v text); CREATE TABLE small (id int PRIMARY KEY)");
  ProviderSql("INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g; ANALYZE big");
  ProviderSql("INSERT INTO small SELECT generate_series(1, 10)");
  std::string conf = fmt::format("/tmp/lorry_page_{}.toml", getpid());
  std::ofstream(conf) << "[copy]\njobs = 1\nsplit_tables_larger_than = \"1MB\"\n";
  auto with_conf = [&](std::vector<std::string> args) {
    auto a = Args(std::move(args));
    a.push_back("-c");
    a.push_back(conf);
    return a;
  };
  ASSERT_EQ(RunLorry(with_conf({"init"})).exit_code, 0);
  ASSERT_EQ(RunLorry(with_conf({"add", "big", "small"})).exit_code, 0);
  setenv("LORRY_FAULT_SLEEP", "copy_range:1500", 1);  // each range of big waits: the copy takes a while
  LorryProcess run(with_conf({"run", "--metrics-addr", "127.0.0.1:0"}));
  unsetenv("LORRY_FAULT_SLEEP");
  int port = MetricsPort(&run);
  ASSERT_GT(port, 0) << run.Log();
  std::string url = fmt::format("http://127.0.0.1:{}/", port);

  // During the copy.
  ASSERT_TRUE(Eventually([&] { return SubscriberValue("SELECT state FROM lorry.status") == "copying"; }, 60))
      << run.Log();
  std::string dom = Chromium("--dump-dom", url);
  ASSERT_THAT(dom, HasSubstr("<header>")) << dom;
  EXPECT_EQ(Attr(dom, "state", "data-state"), SubscriberValue("SELECT state FROM lorry.status"));
  EXPECT_EQ(RowState(dom, "public.big"),
            SubscriberValue("SELECT state FROM lorry.tables WHERE relname = 'big'"));
  EXPECT_NE(Attr(dom, "updated", "id"), "<no #updated>");
  EXPECT_THAT(dom, ::testing::Not(HasSubstr("id=\"updated\">at load<"))) << "the script polled /status.json";
  EXPECT_THAT(dom, HasSubstr("class=\"bar\" data-fraction=\""));
  Screenshot(port, "status-page-copying.png");

  // Streaming.
  Wait(&run, 300);
  ProviderSql("INSERT INTO small SELECT generate_series(11, 20)");
  Wait(&run);
  dom = Chromium("--dump-dom", url);
  EXPECT_EQ(Attr(dom, "state", "data-state"), "streaming") << dom;
  EXPECT_EQ(SubscriberValue("SELECT state FROM lorry.status"), "streaming");
  EXPECT_EQ(RowState(dom, "public.big"), "ready");
  EXPECT_EQ(RowState(dom, "public.small"), "ready");
  EXPECT_EQ(Attr(dom, "phase", "data-phase"), "streaming");
  EXPECT_TRUE(std::regex_match(Attr(dom, "lag", "data-lag-bytes"), std::regex("[0-9]+"))) << dom;
  EXPECT_EQ(Attr(dom, "health", "class"), "badge OK");
  EXPECT_THAT(dom, ::testing::Not(HasSubstr("id=\"updated\">at load<")));
  EXPECT_THAT(dom, HasSubstr(SubscriberValue("SELECT changes_applied FROM lorry.status") + " changes"));
  Screenshot(port, "status-page-streaming.png");
  EXPECT_EQ(run.Terminate(), 0) << run.Log();
  std::remove(conf.c_str());
}

}  // namespace
}  // namespace lorry::test
