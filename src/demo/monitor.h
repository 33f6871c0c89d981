// What the demo's status lines show: a subscription's progress read from the
// state lorry keeps on the subscriber and the provider's WAL position.
//
// A Monitor owns its two connections (one thread uses it) and reconnects
// after a lost connection on the next Take().
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "pg/connection.h"

namespace lorry::demo {

struct Sample {
  int tables = 0;
  int ready = 0;
  std::string copying;  // e.g. "pgbench_accounts 40000/~100000"
  std::string errors;   // tables in state error, with their reasons
  int64_t rows_copied = 0;
  int64_t xacts_applied = 0;  // as of the daemon's last heartbeat (once a second)
  int64_t changes_applied = 0;
  bool slot_created = false;
  // Provider WAL written minus the position known applied (origin progress,
  // or confirmed by keepalives); unknown before anything was applied.
  std::optional<int64_t> lag_bytes;
};

class Monitor {
 public:
  explicit Monitor(const Config& config) : config_(config) {}  // REQUIRES: config outlives this
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  Result<Sample> Take();
  void Disconnect();

 private:
  const Config& config_;
  pg::PgConn provider_;
  pg::PgConn subscriber_;
};

}  // namespace lorry::demo
