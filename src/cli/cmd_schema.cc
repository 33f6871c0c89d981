// Subcommands missing, check and compare: option parsing only; the work is
// in admin/schema_cmds.cc and admin/compare.cc.
#include <iostream>

#include "admin/admin.h"
#include "cli/cli.h"
#include "common/log.h"

namespace lorry::cli {

namespace {
template <typename F>
int WithSchemaConfig(const GlobalOptions& g, F body) {
  auto config = ResolveConfig(g);
  if (!config.ok()) return Finish(config.status());
  SetLogLevel(config->log_level);
  return Finish(body(*config));
}
}  // namespace

void RegisterSchema(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* missing = app.add_subcommand("missing", "provider tables not replicated; replicated tables missing on a side");
  missing->add_flag("--json", g.json, "machine-readable output");
  missing->callback([&] {
    action = [&] { return WithSchemaConfig(g, [&](const Config& c) { return admin::Missing(c, g.json, std::cout); }); };
  });

  auto* check = app.add_subcommand("check", "table definitions that differ between the two sides");
  auto tables = std::make_shared<std::vector<std::string>>();
  check->add_option("tables", *tables, "tables (default: every replicated table)");
  check->add_flag("--json", g.json, "machine-readable output");
  check->callback([&, tables] {
    action = [&, tables] {
      return WithSchemaConfig(g, [&](const Config& c) { return admin::CheckTables(c, *tables, g.json, std::cout); });
    };
  });
}

}  // namespace lorry::cli
