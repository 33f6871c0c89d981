#include "cli/cli.h"

#include <filesystem>
#include <iostream>

#include "common/log.h"
#include "pg/conninfo.h"

namespace lorry::cli {

Result<Config> ResolveConfig(const GlobalOptions& g) {
  Config config;
  std::string path = ResolveConfigPath(g.config_path);
  bool named = !g.config_path.empty() || std::getenv("LORRY_CONFIG") != nullptr;
  if (named || std::filesystem::exists(path)) {
    LORRY_ASSIGN_OR_RETURN(config, LoadConfigFile(path));
    for (const auto& w : config.warnings) spdlog::warn("{}", w);
  }
  if (!g.provider.empty()) config.provider = g.provider;
  if (!g.subscriber.empty()) config.subscriber = g.subscriber;
  if (g.name) config.name = *g.name;  // given empty: refused below, never "main"
  if (!g.log_level.empty()) config.log_level = g.log_level;
  if (!g.log_format.empty()) config.log_format = g.log_format;
  LORRY_RETURN_IF_ERROR(ValidateConfig(config));
  if (config.provider.empty() && config.subscriber.empty())
    return Status::Usage(fmt::format(
        "no provider or subscriber given: write them in {} or pass --provider and --subscriber", path));
  return config;
}

int Finish(const Status& s) {
  if (!s.ok() && s.kind() != Status::Kind::kNotTrue) {
    // With --log-format json (or log_format = "json") an error that ends
    // the command is a log line like the others: a log shipper reading
    // stderr gets JSON only, also when start-up fails.
    if (LogFormatIsJson())
      spdlog::error("{}", s.message());  // redacted by the formatter
    else
      std::cerr << "lorry: " << pg::RedactSecrets(s.message()) << "\n";
  } else if (!s.ok()) {
    std::cerr << pg::RedactSecrets(s.message()) << "\n";
  }
  return s.ExitCode();
}

void BuildApp(CLI::App& app, GlobalOptions& g, Action& action) {
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lorry ") + LORRY_VERSION);
  auto* opts = app.add_option_group("global");
  opts->add_option("-c,--config", g.config_path, "config file (default $LORRY_CONFIG or ./lorry.toml)");
  // The environment variables sit between the file and the flags: a flag
  // wins over them, they win over the config file.
  opts->add_option("--provider", g.provider, "provider connection string (libpq key=value or URI)")
      ->envname("LORRY_PROVIDER");
  opts->add_option("--subscriber", g.subscriber, "subscriber connection string")->envname("LORRY_SUBSCRIBER");
  // Kept as given, also when empty: `--name ""` is refused, not taken for main.
  opts->add_option_function<std::string>(
          "--name", [&g](const std::string& v) { g.name = v; }, "subscription name (default main)")
      ->envname("LORRY_NAME");
  opts->add_option("--log-level", g.log_level, "trace, debug, info, warn or error");
  opts->add_option("--log-format", g.log_format, "text (key=value lines) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  app.fallthrough();

  RegisterInit(app, g, action);
  RegisterAdd(app, g, action);
  RegisterRemove(app, g, action);
  RegisterResync(app, g, action);
  RegisterRun(app, g, action);
  RegisterWait(app, g, action);
  RegisterStatus(app, g, action);
  RegisterDrop(app, g, action);
  RegisterExecute(app, g, action);
  RegisterDemo(app, g, action);
  RegisterDecode(app, g, action);
  RegisterSchema(app, g, action);
  RegisterSkip(app, g, action);
}

int Main(int argc, char** argv) {
  CLI::App app{kDescription, "lorry"};
  GlobalOptions g;
  Action action;
  BuildApp(app, g, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0 && g.log_format == "json") {
      SetupLogging("info");
      SetLogFormat("json");
      spdlog::error("{}", e.what());
      return 2;
    }
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  SetupLogging(g.log_level.empty() ? "info" : g.log_level);
  if (!g.log_format.empty()) SetLogFormat(g.log_format);
  if (!action) return 2;
  return action();
}

}  // namespace lorry::cli
