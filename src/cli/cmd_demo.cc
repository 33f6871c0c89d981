// Subcommand demo: two throwaway servers, live replication, verification.
#include <iostream>

#include "cli/cli.h"
#include "demo/demo.h"

namespace lorry::cli {

void RegisterDemo(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("demo", "replicate a live workload between two throwaway local servers");
  auto opts = std::make_shared<demo::DemoOptions>();
  cmd->add_option("--seconds", opts->seconds, "how long the write workload runs");
  cmd->callback([&, opts] { action = [&, opts] { return Finish(demo::RunDemo(*opts, std::cout)); }; });
}

}  // namespace lorry::cli
