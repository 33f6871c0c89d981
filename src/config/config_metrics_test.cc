// lorry.toml: [metrics] addr and log_format (no server needed).
#include <gtest/gtest.h>

#include "config/config.h"

namespace lorry {
namespace {

TEST(ConfigMetrics, AddrAndLogFormat) {
  auto r = ParseConfig("log_format = \"json\"\n[metrics]\naddr = \"127.0.0.1:7187\"\n", "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->log_format, "json");
  EXPECT_EQ(r->metrics.addr, "127.0.0.1:7187");
  auto d = ParseConfig("", "lorry.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->log_format, "text");
  EXPECT_EQ(d->metrics.addr, "") << "no metrics server unless asked";
}

TEST(ConfigMetrics, BasicAuthNeedsUserAndPasswordFile) {
  auto r = ParseConfig("[metrics]\naddr = \"0.0.0.0:7187\"\nbasic_auth_user = \"prom\"\n"
                       "basic_auth_password_file = \"/etc/lorry/metrics-password\"\n",
                       "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->metrics.basic_auth_user, "prom");
  EXPECT_EQ(r->metrics.basic_auth_password_file, "/etc/lorry/metrics-password");
  EXPECT_TRUE(ValidateConfig(*r).ok());
  r->metrics.basic_auth_password_file.clear();
  auto s = ValidateConfig(*r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("basic_auth_user and basic_auth_password_file go together"), std::string::npos);
  r->metrics.basic_auth_user = "a:b";
  r->metrics.basic_auth_password_file = "/x";
  EXPECT_FALSE(ValidateConfig(*r).ok());
}

TEST(ConfigMetrics, ListenAddresses) {
  for (const char* ok : {"127.0.0.1:7187", "localhost:1", "[::1]:7187", ":7187", "0.0.0.0:65535", "127.0.0.1:0"})
    EXPECT_TRUE(CheckListenAddress(ok, "metrics.addr").ok()) << ok;
  for (const char* bad : {"7187", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:7187", "host:port", "a b:80"})
    EXPECT_FALSE(CheckListenAddress(bad, "metrics.addr").ok()) << bad;
  auto r = ParseConfig("[metrics]\naddr = \"7187\"\n", "lorry.toml");
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
