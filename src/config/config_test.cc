// Tests for lorry.toml parsing and validation (no server needed).
#include "config/config.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>

namespace lorry {
namespace {

constexpr std::string_view kSample = R"(# lorry.toml: replicate the app database to the new server
name = "app_to_pg18"
provider = "host=old.example.com port=5432 dbname=app user=lorry password=s3cret"
subscriber = "postgresql://lorry@new.example.com:5433/app?sslmode=require"
log_level = "debug"

[copy]
jobs = 8

[apply]
group_max_changes = 5000
group_max_delay_ms = 0
statement_cache_size = 200
)";

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// The error message for a config text, which must fail with kUsage.
std::string ParseError(std::string_view text) {
  auto r = ParseConfig(text, "lorry.toml");
  EXPECT_FALSE(r.ok()) << "expected an error for:\n" << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().kind(), Status::Kind::kUsage);
  return r.status().message();
}

TEST(ParseConfig, SampleConfig) {
  auto r = ParseConfig(kSample, "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Config& c = r.value();
  EXPECT_EQ(c.name, "app_to_pg18");
  EXPECT_EQ(c.provider, "host=old.example.com port=5432 dbname=app user=lorry password=s3cret");
  EXPECT_EQ(c.subscriber, "postgresql://lorry@new.example.com:5433/app?sslmode=require");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.copy.jobs, 8);
  EXPECT_EQ(c.apply.group_max_changes, 5000);
  EXPECT_EQ(c.apply.group_max_delay_ms, 0);
  EXPECT_EQ(c.apply.statement_cache_size, 200);
  EXPECT_EQ(c.source, "lorry.toml");
  EXPECT_TRUE(ValidateConfig(c).ok());
}

TEST(ParseConfig, EmptyGivesDefaults) {
  auto r = ParseConfig("", "empty.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Config& c = r.value();
  EXPECT_EQ(c.name, "main");
  EXPECT_EQ(c.provider, "");
  EXPECT_EQ(c.subscriber, "");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.copy.jobs, 4);
  EXPECT_EQ(c.apply.group_max_changes, 10000);
  EXPECT_EQ(c.apply.group_max_delay_ms, 50);
  EXPECT_EQ(c.apply.statement_cache_size, 1000);
  EXPECT_EQ(c.source, "empty.toml");
  EXPECT_TRUE(ValidateConfig(c).ok());
}

TEST(ParseConfig, SectionsMayBePartialOrDotted) {
  auto r = ParseConfig("copy.jobs = 2\n[apply]\n", "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->copy.jobs, 2);
  EXPECT_EQ(r->apply.group_max_changes, 10000);
  r = ParseConfig("copy = { jobs = 64 }", "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->copy.jobs, 64);
}

TEST(ParseConfig, UnknownKeys) {
  std::string m = ParseError("[copy]\njobs = 2\njbos = 3\n");
  EXPECT_TRUE(Contains(m, "unknown key \"copy.jbos\" in lorry.toml, line 3")) << m;
  EXPECT_TRUE(Contains(m, "known keys in [copy]: jobs")) << m;

  m = ParseError("nmae = \"x\"\n");
  EXPECT_TRUE(Contains(m, "unknown key \"nmae\" in lorry.toml, line 1")) << m;
  EXPECT_TRUE(Contains(m, "at the top level")) << m;

  m = ParseError("\n[aply]\ngroup_max_changes = 1\n");
  EXPECT_TRUE(Contains(m, "unknown key \"aply\" in lorry.toml, line 2")) << m;

  m = ParseError("[apply]\ngroup_max_delay = 5\n");
  EXPECT_TRUE(Contains(m, "unknown key \"apply.group_max_delay\" in lorry.toml, line 2")) << m;

  // Keys are case-sensitive, as in TOML.
  m = ParseError("Name = \"x\"\n");
  EXPECT_TRUE(Contains(m, "unknown key \"Name\"")) << m;
}

TEST(ParseConfig, WrongTypes) {
  std::string m = ParseError("[copy]\njobs = \"x\"\n");
  EXPECT_TRUE(Contains(m, "copy.jobs: expected an integer 1..64, got \"x\" in lorry.toml, line 2")) << m;

  m = ParseError("[copy]\njobs = 4.0\n");
  EXPECT_TRUE(Contains(m, "copy.jobs: expected an integer 1..64, got 4.0")) << m;

  m = ParseError("[apply]\ngroup_max_changes = true\n");
  EXPECT_TRUE(Contains(m, "apply.group_max_changes: expected an integer >= 1, got true")) << m;

  m = ParseError("[apply]\nstatement_cache_size = [1]\n");
  EXPECT_TRUE(Contains(m, "apply.statement_cache_size: expected an integer 1..1000000, got an array")) << m;

  m = ParseError("name = 5\n");
  EXPECT_TRUE(Contains(m, "name: expected a string, got 5 in lorry.toml, line 1")) << m;

  m = ParseError("provider = { host = \"a\" }\n");
  EXPECT_TRUE(Contains(m, "provider: expected a string, got a table")) << m;

  m = ParseError("log_level = 1979-05-27\n");
  EXPECT_TRUE(Contains(m, "log_level: expected a string, got a date")) << m;

  m = ParseError("copy = 3\n");
  EXPECT_TRUE(Contains(m, "copy: expected a table ([copy]), got 3 in lorry.toml, line 1")) << m;

  m = ParseError("apply = \"fast\"\n");
  EXPECT_TRUE(Contains(m, "apply: expected a table ([apply]), got \"fast\"")) << m;
}

TEST(ParseConfig, OutOfRange) {
  std::string m = ParseError("[copy]\njobs = 0\n");
  EXPECT_TRUE(Contains(m, "copy.jobs: expected an integer 1..64, got 0 in lorry.toml, line 2")) << m;
  m = ParseError("[copy]\njobs = 65\n");
  EXPECT_TRUE(Contains(m, "copy.jobs: expected an integer 1..64, got 65")) << m;
  m = ParseError("[copy]\njobs = 9999999999999\n");
  EXPECT_TRUE(Contains(m, "got 9999999999999")) << m;
  m = ParseError("[apply]\ngroup_max_changes = 0\n");
  EXPECT_TRUE(Contains(m, "apply.group_max_changes: expected an integer >= 1, got 0")) << m;
  m = ParseError("[apply]\ngroup_max_changes = 4294967296\n");
  EXPECT_TRUE(Contains(m, "apply.group_max_changes: expected an integer >= 1, got 4294967296")) << m;
  m = ParseError("[apply]\ngroup_max_delay_ms = -1\n");
  EXPECT_TRUE(Contains(m, "apply.group_max_delay_ms: expected an integer 0..60000, got -1")) << m;
  m = ParseError("[apply]\ngroup_max_delay_ms = 60001\n");
  EXPECT_TRUE(Contains(m, "got 60001")) << m;
  m = ParseError("[apply]\nstatement_cache_size = 0\n");
  EXPECT_TRUE(Contains(m, "apply.statement_cache_size: expected an integer 1..1000000, got 0")) << m;

  auto r = ParseConfig("[copy]\njobs = 64\n[apply]\ngroup_max_delay_ms = 60000\ngroup_max_changes = 2147483647\n",
                       "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->apply.group_max_changes, 2147483647);
}

TEST(ParseConfig, NameSyntax) {
  for (std::string_view bad :
       {"", "Main", "my-sub", "my sub", "sub.1", "ünï", "12345678901234567890123456789012345678901"}) {
    std::string m = ParseError("name = \"" + std::string(bad) + "\"\n");
    EXPECT_TRUE(Contains(m, "name: expected 1..40 characters from a-z, 0-9 and _")) << m;
    EXPECT_TRUE(Contains(m, "line 1")) << m;
  }
  auto r = ParseConfig("name = \"a_1\"", "lorry.toml");
  ASSERT_TRUE(r.ok());
  r = ParseConfig("name = \"1234567890123456789012345678901234567890\"", "lorry.toml");
  ASSERT_TRUE(r.ok()) << r.status().message();
}

TEST(ParseConfig, LogLevel) {
  for (std::string_view ok : {"trace", "debug", "info", "warn", "error"}) {
    auto r = ParseConfig("log_level = \"" + std::string(ok) + "\"", "lorry.toml");
    ASSERT_TRUE(r.ok()) << ok;
    EXPECT_EQ(r->log_level, ok);
  }
  std::string m = ParseError("log_level = \"verbose\"");
  EXPECT_TRUE(Contains(m, "log_level: expected one of trace, debug, info, warn, error, got \"verbose\"")) << m;
  m = ParseError("log_level = \"INFO\"");
  EXPECT_TRUE(Contains(m, "got \"INFO\"")) << m;
}

TEST(ParseConfig, BadConninfoNamesKeyWithoutPassword) {
  std::string m = ParseError("\nprovider = \"host=a hots=b\"\n");
  EXPECT_TRUE(Contains(m, "provider: invalid connection string: invalid connection option \"hots\" in lorry.toml, line 2"))
      << m;
  m = ParseError("subscriber = \"host=a password=first second\"\n");
  EXPECT_TRUE(Contains(m, "subscriber: invalid connection string")) << m;
  EXPECT_FALSE(Contains(m, "first")) << m;
  EXPECT_FALSE(Contains(m, "second")) << m;
}

TEST(ParseConfig, SyntaxErrorsNameFileAndLine) {
  std::string m = ParseError("name = \"main\"\n[copy\njobs = 2\n");
  EXPECT_TRUE(Contains(m, "syntax error in lorry.toml, line 2")) << m;
  m = ParseError("name = \"main\"\nname = \"other\"\n");
  EXPECT_TRUE(Contains(m, "syntax error in lorry.toml, line 2")) << m;
  m = ParseError("jobs 4\n");
  EXPECT_TRUE(Contains(m, "syntax error in lorry.toml, line 1")) << m;
  m = ParseError("provider = \"host=a password=s3cret\n");
  EXPECT_TRUE(Contains(m, "syntax error in lorry.toml, line 1")) << m;
  EXPECT_FALSE(Contains(m, "s3cret")) << m;
}

// --- ValidateConfig ---

TEST(ValidateConfig, DefaultsAreValid) { EXPECT_TRUE(ValidateConfig(Config{}).ok()); }

TEST(ValidateConfig, ChecksEveryRange) {
  auto message = [](auto mutate) {
    Config c;
    mutate(c);
    Status s = ValidateConfig(c);
    EXPECT_EQ(s.kind(), Status::Kind::kUsage);
    return s.message();
  };
  EXPECT_EQ(message([](Config& c) { c.copy.jobs = 0; }), "copy.jobs: expected an integer 1..64, got 0");
  EXPECT_EQ(message([](Config& c) { c.copy.jobs = 65; }), "copy.jobs: expected an integer 1..64, got 65");
  EXPECT_EQ(message([](Config& c) { c.apply.group_max_changes = 0; }),
            "apply.group_max_changes: expected an integer >= 1, got 0");
  EXPECT_EQ(message([](Config& c) { c.apply.group_max_delay_ms = -5; }),
            "apply.group_max_delay_ms: expected an integer 0..60000, got -5");
  EXPECT_EQ(message([](Config& c) { c.apply.group_max_delay_ms = 60001; }),
            "apply.group_max_delay_ms: expected an integer 0..60000, got 60001");
  EXPECT_EQ(message([](Config& c) { c.apply.statement_cache_size = 0; }),
            "apply.statement_cache_size: expected an integer 1..1000000, got 0");
  EXPECT_TRUE(Contains(message([](Config& c) { c.name = "Bad-Name"; }), "name: expected 1..40 characters"));
  EXPECT_TRUE(Contains(message([](Config& c) { c.name = std::string(41, 'a'); }), "name: expected"));
  EXPECT_TRUE(Contains(message([](Config& c) { c.log_level = "loud"; }), "log_level: expected one of"));
  EXPECT_EQ(message([](Config& c) { c.provider = "host=a hots=b"; }),
            "provider: invalid connection string: invalid connection option \"hots\"");
  EXPECT_TRUE(Contains(message([](Config& c) { c.subscriber = "postgresql://h/db?x"; }),
                       "subscriber: invalid connection string"));
}

TEST(ValidateConfig, AcceptsBoundaries) {
  Config c;
  c.copy.jobs = 1;
  c.apply.group_max_delay_ms = 0;
  c.apply.group_max_changes = 1;
  c.apply.statement_cache_size = 1000000;
  c.name = std::string(40, 'z');
  c.provider = "postgres://u:pw@h/db";
  c.subscriber = "";
  EXPECT_TRUE(ValidateConfig(c).ok()) << ValidateConfig(c).message();
}

// --- LoadConfigFile ---

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lorry_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, std::string_view text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ConfigFileTest, LoadsFile) {
  std::string path = Write("lorry.toml", kSample);
  auto r = LoadConfigFile(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->name, "app_to_pg18");
  EXPECT_EQ(r->source, path);
}

TEST_F(ConfigFileTest, MissingFileNamesPath) {
  std::string path = (dir_ / "nope.toml").string();
  auto r = LoadConfigFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kUsage);
  EXPECT_TRUE(Contains(r.status().message(), "config file " + path + " not found")) << r.status().message();
}

TEST_F(ConfigFileTest, DirectoryIsAnError) {
  auto r = LoadConfigFile(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kUsage);
  EXPECT_TRUE(Contains(r.status().message(), "is a directory")) << r.status().message();
}

TEST_F(ConfigFileTest, ErrorsNameTheFile) {
  std::string path = Write("bad.toml", "[copy]\njobs = 2\njbos = 3\n");
  auto r = LoadConfigFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "unknown key \"copy.jbos\" in " + path + ", line 3"))
      << r.status().message();
}

// --- ResolveConfigPath ---

class ResolveConfigPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* v = std::getenv("LORRY_CONFIG")) saved_ = v;
  }
  void TearDown() override {
    if (saved_) {
      ::setenv("LORRY_CONFIG", saved_->c_str(), 1);
    } else {
      ::unsetenv("LORRY_CONFIG");
    }
  }
  std::optional<std::string> saved_;
};

TEST_F(ResolveConfigPathTest, FlagWins) {
  ::setenv("LORRY_CONFIG", "/etc/lorry/env.toml", 1);
  EXPECT_EQ(ResolveConfigPath("/tmp/flag.toml"), "/tmp/flag.toml");
}

TEST_F(ResolveConfigPathTest, ThenEnvironment) {
  ::setenv("LORRY_CONFIG", "/etc/lorry/env.toml", 1);
  EXPECT_EQ(ResolveConfigPath(""), "/etc/lorry/env.toml");
}

TEST_F(ResolveConfigPathTest, ThenDefault) {
  ::unsetenv("LORRY_CONFIG");
  EXPECT_EQ(ResolveConfigPath(""), "./lorry.toml");
  ::setenv("LORRY_CONFIG", "", 1);
  EXPECT_EQ(ResolveConfigPath(""), "./lorry.toml");
}

}  // namespace
}  // namespace lorry

namespace lorry {
namespace {

TEST(ConfigCopySection, SizesAndIndexJobs) {
  auto c = ParseConfig("[copy]\njobs = 8\nindex_jobs = 3\nsplit_tables_larger_than = \"2GB\"\n"
                       "maintenance_work_mem = \"1GB\"\n",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->copy.index_jobs, 3);
  EXPECT_EQ(c->copy.split_tables_larger_than, 2LL << 30);
  EXPECT_EQ(c->copy.maintenance_work_mem, "1GB");
  auto bytes = ParseConfig("[copy]\nsplit_tables_larger_than = 1000\n", "t.toml");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->copy.split_tables_larger_than, 1000);
}

TEST(ConfigCopySection, BadSizesNameTheKey) {
  auto c = ParseConfig("[copy]\nsplit_tables_larger_than = \"lots\"\n", "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("copy.split_tables_larger_than"), std::string::npos) << c.status().message();
  auto m = ParseConfig("[copy]\nmaintenance_work_mem = \"256 apples\"\n", "t.toml");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("copy.maintenance_work_mem"), std::string::npos);
  auto j = ParseConfig("[copy]\nindex_jobs = 0\n", "t.toml");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("copy.index_jobs"), std::string::npos);
}

TEST(ParseByteSize, Units) {
  EXPECT_EQ(ParseByteSize("512MB"), 512LL << 20);
  EXPECT_EQ(ParseByteSize("64kB"), 64LL << 10);
  EXPECT_EQ(ParseByteSize(" 3 GB "), 3LL << 30);
  EXPECT_EQ(ParseByteSize("1TB"), 1LL << 40);
  EXPECT_EQ(ParseByteSize("1234"), 1234);
  EXPECT_FALSE(ParseByteSize("MB"));
  EXPECT_FALSE(ParseByteSize("12mb"));
  EXPECT_FALSE(ParseByteSize("99999999999999999999"));
  EXPECT_FALSE(ParseByteSize("9000000TB"));
}

}  // namespace
}  // namespace lorry

namespace lorry {
namespace {

TEST(ConfigRunSection, TimeoutsInSeconds) {
  auto c = ParseConfig("[run]\ntakeover_timeout = 2.5\nnetwork_timeout = 5\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_DOUBLE_EQ(c->run.takeover_timeout, 2.5);
  EXPECT_DOUBLE_EQ(c->run.network_timeout, 5);
  auto d = ParseConfig("", "t.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_DOUBLE_EQ(d->run.takeover_timeout, 10);
  EXPECT_DOUBLE_EQ(d->run.network_timeout, 30);
  std::string m = ParseError("[run]\ntakeover_timeout = 0\n");
  EXPECT_TRUE(Contains(m, "run.takeover_timeout: expected seconds 1..3600, got 0 in lorry.toml, line 2")) << m;
  m = ParseError("[run]\nnetwork_timeout = \"10s\"\n");
  EXPECT_TRUE(Contains(m, "run.network_timeout: expected seconds 1..3600, got \"10s\"")) << m;
  m = ParseError("[run]\ntakeover = 3\n");
  EXPECT_TRUE(Contains(m, "unknown key \"run.takeover\"")) << m;
}

TEST(ConfigRunSection, SpoolDirectoryAndLimit) {
  auto c = ParseConfig("[run]\nspool_dir = \"/var/lib/lorry/spool\"\nspool_max_size = \"64MB\"\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->run.spool_dir, "/var/lib/lorry/spool");
  EXPECT_EQ(c->run.spool_max_size, 64LL << 20);
  auto d = ParseConfig("", "t.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->run.spool_dir, "");
  EXPECT_EQ(d->run.spool_max_size, 10LL << 30);
  std::string m = ParseError("[run]\nspool_max_size = \"lots\"\n");
  EXPECT_TRUE(Contains(m, "run.spool_max_size: expected a size in bytes")) << m;
}

}  // namespace
}  // namespace lorry
