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

  auto* compare = app.add_subcommand("compare", "row counts and content hashes of both sides at one point");
  auto opts = std::make_shared<admin::CompareOptions>();
  compare->add_option("tables", opts->tables, "tables (default: every replicated table)");
  compare->add_option("--jobs", opts->jobs, "connections per side (default 4)");
  compare->add_option("--timeout", opts->timeout_seconds,
                      "seconds `lorry run` may take to reach the point compared at (default 60)");
  compare->add_flag("--rows", opts->rows, "narrow differences down to the differing keys");
  compare->add_flag("--json", g.json, "machine-readable output");
  compare->callback([&, opts] {
    action = [&, opts] {
      return WithSchemaConfig(g, [&](const Config& c) {
        opts->json = g.json;
        return admin::Compare(c, *opts, std::cout);
      });
    };
  });
}

}  // namespace lorry::cli
