// `lorry demo`: two throwaway PostgreSQL servers, a pgbench-like schema,
// init/add/run in-process, a live write workload with status every few
// seconds, wait, content verification, a summary, and cleanup (also on Ctrl-C).
#pragma once

#include <iosfwd>

#include "common/status.h"

namespace lorry::demo {

struct DemoOptions {
  int seconds = 20;
};

Status RunDemo(const DemoOptions& options, std::ostream& out);

}  // namespace lorry::demo
