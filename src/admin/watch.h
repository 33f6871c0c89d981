// `lorry status --watch`: a compact view redrawn every interval, read only
// from the subscriber's lorry.status and lorry.table_progress views (so it
// works while the provider is unreachable, and shows what SQL users see).
//
// On a terminal each frame replaces the previous one (cursor home, clear
// screen). Otherwise frames are printed one after another, each starting
// with its "lorry <name>" header line and ending with an empty line, so a
// pipe or a log file gets plain text.
#pragma once

#include <atomic>
#include <iosfwd>

#include "common/status.h"
#include "config/config.h"

namespace lorry::admin {

struct WatchOptions {
  double interval_seconds = 1.0;
  int count = 0;          // stop after this many frames; 0: until stopped
  bool terminal = false;  // redraw in place (the caller checks isatty)
  int width = 0;          // columns a line may take (the terminal's); 0: no limit
};

// Draws frames until `stop` or `count`. A lost subscriber is shown in the
// frame and retried; only a subscription that does not exist is an error.
Status Watch(const Config& config, const WatchOptions& options, const std::atomic<bool>& stop, std::ostream& out);

// "[#######.............]": `fraction` (0..1) of `width` cells filled.
std::string ProgressBar(double fraction, int width);

}  // namespace lorry::admin
