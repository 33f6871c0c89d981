#include "common/log.h"

#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

namespace lorry {
namespace {

std::string LogOne(bool json, const std::string& text) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("log_test", sink);
  logger.set_formatter(MakeLogFormatter(json));
  logger.warn("{}", text);
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

}  // namespace
}  // namespace lorry
