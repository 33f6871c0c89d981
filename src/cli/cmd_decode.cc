// Subcommand decode: the receive and decode stages alone (benchmarks,
// debugging). Not in the main help: it advances the slot it reads, which is
// for benchmarks only (lorry's own slots are refused).
#include <csignal>
#include <iostream>

#include <fmt/format.h>

#include "cli/cli.h"
#include "replication/decode_only.h"

namespace lorry::cli {

void RegisterDecode(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* cmd = app.add_subcommand("decode", "benchmarks only: decode a slot of your own without applying, advancing "
                                            "it (lorry's slots are refused)");
  cmd->group("");  // hidden from `lorry --help`
  auto opts = std::make_shared<replication::DecodeOnlyOptions>();
  auto until = std::make_shared<std::string>();
  cmd->add_option("--slot", opts->slot, "an existing pgoutput slot of your own, not lorry_* (it is advanced!)")->required();
  cmd->add_option("--publications", opts->publications, "publication names, comma-separated")->required();
  cmd->add_option("--until", *until, "stop at this LSN (default: the provider's insert LSN at start)");
  cmd->add_option("--idle-timeout", opts->idle_timeout_seconds, "give up after this many seconds without data");
  cmd->callback([&, opts, until] {
    action = [&, opts, until] {
      if (g.provider.empty()) return Finish(Status::Usage("decode needs --provider"));
      opts->provider = g.provider;
      if (!until->empty()) {
        auto lsn = Lsn::Parse(*until);
        if (!lsn) return Finish(Status::Usage(fmt::format("--until: not an LSN: {}", *until)));
        opts->until = *lsn;
      }
      static std::atomic<bool> stop{false};
      std::signal(SIGINT, [](int) { stop.store(true); });
      auto st = replication::DecodeOnly(*opts, stop);
      if (!st.ok()) return Finish(st.status());
      std::cout << fmt::format(
          "decoded {} transactions, {} changes, {} bytes in {:.3f} s ({:.0f} tx/s), reached {}\n", st->transactions,
          st->changes, st->bytes, st->seconds, st->seconds > 0 ? st->transactions / st->seconds : 0.0,
          st->reached.ToString());
      return 0;
    };
  });
}

}  // namespace lorry::cli
