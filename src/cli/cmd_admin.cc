// Subcommands init, add, remove, resync, wait, status, tables, execute and drop: option
// parsing only; the work is in admin/.
#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>

#include "admin/admin.h"
#include "admin/watch.h"
#include "cli/cli.h"
#include "common/log.h"
#include "pg/conninfo.h"

namespace lorry::cli {

namespace {
// Resolves the config, then runs `body` with it.
template <typename F>
int WithConfig(const GlobalOptions& g, F body) {
  auto config = ResolveConfig(g);
  if (!config.ok()) return Finish(config.status());
  SetLogLevel(config->log_level);
  SetLogFormat(config->log_format);
  return Finish(body(*config));
}
}  // namespace

void RegisterInit(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("init", "check both servers and install lorry's objects");
  auto opts = std::make_shared<admin::InitOptions>();
  cmd->add_flag("--capture-ddl", opts->capture_ddl,
                "install an event trigger on the provider that sends DDL on replicated tables to the subscriber "
                "(superuser, PostgreSQL 14+)");
  cmd->callback([&, opts] {
    action = [&, opts] { return WithConfig(g, [&](const Config& c) { return admin::Init(c, *opts, std::cout); }); };
  });
}

void RegisterAdd(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("add", "add tables to the subscription");
  auto opts = std::make_shared<admin::AddOptions>();
  cmd->add_option("tables", opts->tables, "tables, qualified or not (SQL quoting allowed)");
  cmd->add_flag("--all", opts->all, "every table of every user schema (or of --schema)");
  cmd->add_option("--schema", opts->schema, "with --all: only this schema");
  cmd->add_option("--exclude", opts->excludes,
                  "with --all: leave out tables and sequences matching SCHEMA.NAME (LIKE % _ or glob * ?; "
                  "repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--include-schema", opts->include_schemas, "with --all: only these schemas (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--exclude-schema", opts->exclude_schemas, "with --all: leave out these schemas (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--truncate", opts->truncate,
                "empty the tables on the subscriber before copying (else a table with rows is refused)");
  cmd->add_flag("--insert-only", opts->insert_only,
                "replicate only INSERT and TRUNCATE (for tables without a replica identity)");
  cmd->add_flag("--create", opts->create,
                "create tables missing on the subscriber from the provider's definitions (with pg_dump)");
  cmd->add_option("--pg-dump", opts->pg_dump,
                  "the pg_dump for --create (default $LORRY_PG_DUMP, else pg_dump from PATH)");
  cmd->add_option("--where", opts->where, "row filter (SQL expression; PostgreSQL 15+ on the provider)");
  cmd->add_option("--columns", opts->columns, "replicate only these columns: a,b (PostgreSQL 15+ on the provider)");
  cmd->add_option("--ops", opts->ops, "replicate only these operations: insert,update,delete,truncate");
  cmd->add_option("--sequence", opts->sequences, "also keep this sequence's value current (repeatable)");
  cmd->add_option("--partitions", opts->partitions,
                  "root (default): a partitioned table through its root; leaves: each leaf partition on its own")
      ->check(CLI::IsMember({"root", "leaves"}));
  cmd->callback([&, opts] {
    action = [&, opts] { return WithConfig(g, [&](const Config& c) { return admin::Add(c, *opts, std::cout); }); };
  });
}

void RegisterRemove(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("remove", "stop replicating tables (their data stays on the subscriber)");
  auto tables = std::make_shared<std::vector<std::string>>();
  auto sequences = std::make_shared<std::vector<std::string>>();
  cmd->add_option("tables", *tables, "tables");
  cmd->add_option("--sequence", *sequences, "stop syncing this sequence, added with add --sequence (repeatable)");
  cmd->callback([&, tables, sequences] {
    action = [&, tables, sequences] {
      return WithConfig(g, [&](const Config& c) {
        if (!sequences->empty()) {
          Status s = admin::RemoveSequences(c, *sequences, std::cout);
          if (!s.ok() || tables->empty()) return s;
        }
        return admin::Remove(c, *tables, std::cout);
      });
    };
  });
}

void RegisterResync(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("resync", "copy tables again (emptied first) while the others keep replicating");
  auto opts = std::make_shared<admin::ResyncOptions>();
  cmd->add_option("tables", opts->tables, "replicated tables, qualified or not");
  cmd->add_flag("--all", opts->all, "every table of the subscription (e.g. after its slot was lost)");
  cmd->callback([&, opts] {
    action = [&, opts] { return WithConfig(g, [&](const Config& c) { return admin::Resync(c, *opts, std::cout); }); };
  });
}

void RegisterWait(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("wait", "block until the subscriber has caught up");
  auto timeout = std::make_shared<double>(0);
  cmd->add_option("--timeout", *timeout, "seconds (0: no limit)");
  cmd->callback([&, timeout] {
    action = [&, timeout] {
      return WithConfig(g, [&](const Config& c) { return admin::Wait(c, *timeout, std::cout); });
    };
  });
}

void RegisterStatus(CLI::App& app, GlobalOptions& g, Action& action) {
  auto watch = std::make_shared<bool>(false);
  auto watch_opts = std::make_shared<admin::WatchOptions>();
  auto check = std::make_shared<bool>(false);
  auto limits = std::make_shared<admin::CheckLimits>();
  for (const char* name : {"status", "tables"}) {
    bool is_status = std::string(name) == "status";
    auto* cmd = app.add_subcommand(name, is_status ? "lag, throughput and table states" : "per-table state");
    cmd->add_flag("--json", g.json, "machine-readable output");
    if (is_status) {
      cmd->add_flag("--watch,-w", *watch, "redraw a compact view every --interval seconds (Ctrl-C stops)");
      cmd->add_option("--interval", watch_opts->interval_seconds, "with --watch: seconds between frames (default 1)")
          ->check(CLI::Range(0.1, 3600.0));
      cmd->add_option("--count", watch_opts->count, "with --watch: stop after this many frames (default: never)")
          ->check(CLI::NonNegativeNumber);
      cmd->add_flag("--check", *check,
                    "one line and a Nagios exit status: 0 ok, 1 warning, 2 critical, 3 unknown");
      cmd->add_option("--max-lag-bytes", limits->max_lag_bytes, "with --check: critical above this lag in bytes")
          ->check(CLI::NonNegativeNumber);
      cmd->add_option("--max-lag-seconds", limits->max_lag_seconds, "with --check: critical above this lag in seconds")
          ->check(CLI::NonNegativeNumber);
      cmd->add_option("--warn-lag-bytes", limits->warn_lag_bytes, "with --check: warning above this lag in bytes")
          ->check(CLI::NonNegativeNumber);
      cmd->add_option("--warn-lag-seconds", limits->warn_lag_seconds,
                      "with --check: warning above this lag in seconds")
          ->check(CLI::NonNegativeNumber);
    }
    cmd->callback([&, is_status, watch, watch_opts, check, limits] {
      action = [&, is_status, watch, watch_opts, check, limits] {
        if (is_status && *check) {
          // The one line goes to stdout whatever happens (a monitoring
          // plugin's contract), the exit status is the check's state.
          auto config = ResolveConfig(g);
          auto result = config.ok() ? admin::CheckStatus(*config, *limits)
                                    : admin::CheckUnknown(pg::RedactSecrets(config.status().message()));
          std::cout << result.line << "\n";
          return static_cast<int>(result.state);
        }
        return WithConfig(g, [&](const Config& c) {
          if (is_status && *watch) {
            static const std::atomic<bool> never{false};
            watch_opts->terminal = isatty(STDOUT_FILENO) == 1;
            winsize ws{};
            if (watch_opts->terminal && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
              watch_opts->width = ws.ws_col;
            return admin::Watch(c, *watch_opts, never, std::cout);
          }
          return is_status ? admin::ShowStatus(c, g.json, std::cout) : admin::ShowTables(c, g.json, std::cout);
        });
      };
    });
  }
}

void RegisterExecute(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("execute", "run a SQL script on the provider and, at the same point of the stream, "
                                            "on the subscriber (PostgreSQL 14+ on the provider)");
  auto opts = std::make_shared<admin::ExecuteOptions>();
  cmd->add_option("file", opts->file, "the SQL script")->required();
  cmd->add_option("--add", opts->add, "tables the script creates: add them to the subscription");
  cmd->callback([&, opts] {
    action = [&, opts] {
      return WithConfig(g, [&](const Config& c) { return admin::Execute(c, *opts, std::cout); });
    };
  });
}

void RegisterDrop(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("drop", "remove the slot, publications, origin and lorry schema");
  cmd->callback([&] {
    action = [&] { return WithConfig(g, [](const Config& c) { return admin::Drop(c, std::cout); }); };
  });
}

}  // namespace lorry::cli
