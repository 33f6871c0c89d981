// The command line: git-style subcommands over the library. Parsing only.
//
// Every command takes -c/--config and the config keys as flags; a flag wins
// over the file. The config file is optional when the flags say enough.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common/status.h"
#include "config/config.h"

namespace lorry::cli {

struct GlobalOptions {
  std::string config_path;
  std::string provider;
  std::string subscriber;
  std::optional<std::string> name;
  std::string log_level;
  std::string log_format;
  bool json = false;
};

// The effective configuration: file (when present or named), then flags.
Result<Config> ResolveConfig(const GlobalOptions& g);

// Runs a command body and turns its Status into an exit code, printing the
// error (redacted) to stderr.
int Finish(const Status& s);

// Each Register* adds one subcommand; `action` is set to what runs when the
// subcommand is chosen.
using Action = std::function<int()>;
void RegisterInit(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterAdd(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterRemove(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterResync(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterRun(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterWait(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterStatus(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterDrop(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterExecute(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterDemo(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterDecode(CLI::App& app, GlobalOptions& g, Action& action);
void RegisterSchema(CLI::App& app, GlobalOptions& g, Action& action);  // missing, check, compare
void RegisterSkip(CLI::App& app, GlobalOptions& g, Action& action);

// lorry's command line: every subcommand and option (used by Main, and by
// the man page and shell completion generator, cli/docs.h).
inline constexpr const char* kDescription = "lorry: logical replication for PostgreSQL";
void BuildApp(CLI::App& app, GlobalOptions& g, Action& action);

int Main(int argc, char** argv);

}  // namespace lorry::cli
