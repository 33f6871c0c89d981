#include "common/log.h"

#include <ctime>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "pg/conninfo.h"

namespace lorry {

namespace {

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20)
          *out += fmt::format("\\u{:04x}", c);
        else
          out->push_back(static_cast<char>(c));  // UTF-8 passes through
    }
  }
  out->push_back('"');
}

// Formats each message as text or JSON, with secrets redacted.
class LorryFormatter : public spdlog::formatter {
 public:
  explicit LorryFormatter(bool json)
      : json_(json), text_(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v")) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string text = pg::RedactSecrets(std::string_view(msg.payload.data(), msg.payload.size()));
    if (json_) {
      auto level = spdlog::level::to_string_view(msg.level);
      std::string line = JsonLogLine(msg.time, std::string(level.data(), level.size()), text);
      line.push_back('\n');
      dest.append(line.data(), line.data() + line.size());
      return;
    }
    spdlog::details::log_msg copy(msg);
    copy.payload = spdlog::string_view_t(text.data(), text.size());
    text_->format(copy, dest);
    // The color sink reads where the level is (mutable members) from `msg`.
    msg.color_range_start = copy.color_range_start;
    msg.color_range_end = copy.color_range_end;
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<LorryFormatter>(json_); }

 private:
  bool json_;
  std::unique_ptr<spdlog::formatter> text_;
};

}  // namespace

std::string JsonLogLine(std::chrono::system_clock::time_point ts, const std::string& level, std::string_view msg) {
  auto secs = std::chrono::system_clock::to_time_t(ts);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(ts.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = fmt::format("{{\"ts\":\"{}.{:03d}Z\",\"level\":", when, static_cast<int>(ms));
  AppendJsonString(&out, level);
  out += ",\"msg\":";
  AppendJsonString(&out, msg);
  out += "}";
  return out;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json) { return std::make_unique<LorryFormatter>(json); }

void SetupLogging(const std::string& level) {
  static bool done = false;
  if (!done) {
    auto logger = spdlog::stderr_color_mt("lorry");
    logger->set_formatter(std::make_unique<LorryFormatter>(false));
    spdlog::set_default_logger(logger);
    done = true;
  }
  SetLogLevel(level);
}

void SetLogLevel(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

void SetLogFormat(const std::string& format) {
  spdlog::default_logger()->set_formatter(std::make_unique<LorryFormatter>(format == "json"));
}

}  // namespace lorry
