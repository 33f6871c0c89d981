// lorry.toml: [metrics] addr and log_format (no server needed).
#include <gtest/gtest.h>

#include "config/config.h"

namespace lorry {
namespace {

TEST(ConfigMetrics, AddrAndLogFormat) {
  auto r = ParseConfig("log_format = \"json\"\n[metrics]\naddr = \"127.0.0.1:9187\"\n", "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->log_format, "json");
  EXPECT_EQ(r->metrics.addr, "127.0.0.1:9187");
  auto d = ParseConfig("", "lorry.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->log_format, "text");
  EXPECT_EQ(d->metrics.addr, "") << "no metrics server unless asked";
}

TEST(ConfigMetrics, ListenAddresses) {
  for (const char* ok : {"127.0.0.1:9187", "localhost:1", "[::1]:9187", ":9187", "0.0.0.0:65535", "127.0.0.1:0"})
    EXPECT_TRUE(CheckListenAddress(ok, "metrics.addr").ok()) << ok;
  for (const char* bad : {"9187", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:9187", "host:port", "a b:80"})
    EXPECT_FALSE(CheckListenAddress(bad, "metrics.addr").ok()) << bad;
  auto r = ParseConfig("[metrics]\naddr = \"9187\"\n", "lorry.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("metrics.addr: expected HOST:PORT"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("lorry.toml, line 2"), std::string::npos) << r.status().message();
  auto u = ParseConfig("[metrics]\nport = 1\n", "lorry.toml");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("known keys in [metrics]: addr"), std::string::npos);
  auto f = ParseConfig("log_format = \"xml\"\n", "lorry.toml");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("log_format: expected text or json"), std::string::npos);
}

}  // namespace
}  // namespace lorry
