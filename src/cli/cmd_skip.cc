// Subcommand skip: skip one failing provider transaction, on purpose.
#include <iostream>

#include "admin/admin.h"
#include "cli/cli.h"
#include "common/log.h"

namespace lorry::cli {

void RegisterSkip(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("skip", "skip one provider transaction (all its changes), on purpose");
  auto lsn = std::make_shared<std::string>();
  cmd->add_option("--lsn", *lsn, "the transaction's commit LSN, as the apply error shows it (lsn=...)")->required();
  cmd->callback([&, lsn] {
    action = [&, lsn] {
      auto config = ResolveConfig(g);
      if (!config.ok()) return Finish(config.status());
      SetLogLevel(config->log_level);
      return Finish(admin::Skip(*config, *lsn, std::cout));
    };
  });
}

}  // namespace lorry::cli
