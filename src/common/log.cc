#include "common/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "pg/conninfo.h"

namespace lorry {

namespace {

std::atomic<bool> g_json{false};

// Formats each message as text or JSON, with secrets redacted, behind the
// journal's priority prefix when stderr is the journal.
class LorryFormatter : public spdlog::formatter {
 public:
  LorryFormatter(bool json, bool journal)
      : json_(json),
        journal_(journal),
        text_(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v")) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string text = pg::RedactSecrets(std::string_view(msg.payload.data(), msg.payload.size()));
    if (journal_) {
      std::string prefix = JournalPrefix(msg.level);
      dest.append(prefix.data(), prefix.data() + prefix.size());
    }
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

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LorryFormatter>(json_, journal_);
  }

 private:
  bool json_;
  bool journal_;
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
  nlohmann::ordered_json line = {{"ts", fmt::format("{}.{:03d}Z", when, static_cast<int>(ms))},
                                 {"level", level},
                                 {"msg", std::string(msg)}};
  // Server messages come in the server's encoding (e.g. LATIN1): bytes that
  // are not UTF-8 become U+FFFD, so that the line stays valid JSON.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string JournalPrefix(spdlog::level::level_enum level) {
  // syslog priorities (sd-daemon.h's SD_ERR ...), which journald reads from
  // the start of each line and strips.
  switch (level) {
    case spdlog::level::critical: return "<2>";
    case spdlog::level::err: return "<3>";
    case spdlog::level::warn: return "<4>";
    case spdlog::level::info: return "<6>";
    default: return "<7>";
  }
}

bool StderrIsJournal() {
  // systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected
  // to stderr; a redirection (2>file) changes stderr, not the variable.
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json, bool journal) {
  return std::make_unique<LorryFormatter>(json, journal);
}

void SetupLogging(const std::string& level) {
  static bool done = false;
  if (!done) {
    auto logger = spdlog::stderr_color_mt("lorry");
    logger->set_formatter(MakeLogFormatter(g_json.load(), StderrIsJournal()));
    spdlog::set_default_logger(logger);
    done = true;
  }
  SetLogLevel(level);
}

void SetLogLevel(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

void SetLogFormat(const std::string& format) {
  g_json.store(format == "json");
  spdlog::default_logger()->set_formatter(MakeLogFormatter(g_json.load(), StderrIsJournal()));
}

bool LogFormatIsJson() { return g_json.load(); }

}  // namespace lorry
