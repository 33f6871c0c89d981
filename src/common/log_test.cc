#include "common/log.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

namespace lorry {
namespace {

std::string LogOne(bool json, const std::string& text, bool journal = false,
                   spdlog::level::level_enum level = spdlog::level::warn) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("log_test", sink);
  logger.set_formatter(MakeLogFormatter(json, journal));
  logger.set_level(spdlog::level::trace);
  logger.log(level, "{}", text);
  logger.flush();
  return out.str();
}

TEST(Log, JsonLinesParseAndRedactSecrets) {
  std::string line = LogOne(true, "sub=main connecting to host=db password=hunter2 \"quoted\"\ttab ü");
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per message";
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["msg"], "sub=main connecting to host=db password=******** \"quoted\"\ttab ü");
  EXPECT_EQ(line.find("hunter2"), std::string::npos);
  std::string ts = j["ts"];
  EXPECT_EQ(ts.size(), 24u) << ts;  // 2026-11-21T20:14:27.090Z
  EXPECT_EQ(ts.back(), 'Z');
}

TEST(Log, TextLinesRedactSecretsToo) {
  std::string line = LogOne(false, "uri postgresql://lorry:s3cret@db/app");
  EXPECT_NE(line.find("warning uri postgresql://lorry:********@db/app"), std::string::npos) << line;
  EXPECT_EQ(line.find("s3cret"), std::string::npos);
}

TEST(Log, JsonEscapesControlCharacters) {
  auto tp = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  EXPECT_EQ(JsonLogLine(tp, "info", std::string("a\x01z\n", 4)),
            "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"info\",\"msg\":\"a\\u0001z\\n\"}");
}

TEST(Log, Latin1ServerMessageStaysValidJson) {
  // "relation \"café\" does not exist" from a server whose encoding is LATIN1.
  std::string latin1 = "relation \"caf\xe9\" does not exist";
  std::string line = LogOne(true, latin1);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << line;
  EXPECT_EQ(j["msg"], "relation \"caf\xef\xbf\xbd\" does not exist");  // U+FFFD
}

TEST(Log, JournalPrefixCarriesThePriorityInBothFormats) {
  std::string json = LogOne(true, "sub=main failed", true, spdlog::level::err);
  ASSERT_EQ(json.rfind("<3>{", 0), 0u) << json;
  EXPECT_EQ(nlohmann::json::parse(json.substr(3))["level"], "error");
  EXPECT_EQ(LogOne(false, "x", true, spdlog::level::warn).rfind("<4>", 0), 0u);
  EXPECT_EQ(LogOne(false, "x", true, spdlog::level::info).rfind("<6>", 0), 0u);
  EXPECT_EQ(LogOne(true, "x", true, spdlog::level::debug).rfind("<7>", 0), 0u);
  EXPECT_EQ(LogOne(true, "x", false, spdlog::level::err).rfind("{", 0), 0u) << "no prefix outside the journal";
}

TEST(Log, StderrIsJournalOnlyWhenJournalStreamNamesStderr) {
  char path[] = "/tmp/lorry_log_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  std::string stream = fmt::format("{}:{}", st.st_dev, st.st_ino);
  setenv("JOURNAL_STREAM", stream.c_str(), 1);
  EXPECT_FALSE(StderrIsJournal()) << "stderr is not that file";
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  bool journal = StderrIsJournal();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  unlink(path);
  unsetenv("JOURNAL_STREAM");
  EXPECT_TRUE(journal);
  EXPECT_FALSE(StderrIsJournal());
}

}  // namespace
}  // namespace lorry
