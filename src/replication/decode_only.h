// Decode-only streaming: receive a slot's changes and decode them without
// applying, confirming as it goes. The receive and decode stages of the
// pipeline run on their own, for benchmarks (the decode ceiling against
// pg_recvlogical) and for debugging a stream.
#pragma once

#include <atomic>
#include <iosfwd>
#include <string>

#include "common/lsn.h"
#include "common/status.h"

namespace lorry::replication {

struct DecodeOnlyOptions {
  std::string provider;          // conninfo
  std::string slot;              // an existing pgoutput slot
  std::string publications;      // comma-separated, as in START_REPLICATION
  Lsn until;                     // stop once everything up to here is received (0: the insert LSN at start)
  double idle_timeout_seconds = 30;
};

struct DecodeOnlyStats {
  int64_t transactions = 0;
  int64_t changes = 0;
  int64_t bytes = 0;
  double seconds = 0;
  Lsn reached;
};

// Refuses (kUsage) a slot named lorry_*: a subscription's own slot, which
// decoding would advance past changes its subscriber never got.
Result<DecodeOnlyStats> DecodeOnly(const DecodeOnlyOptions& options, const std::atomic<bool>& stop);

}  // namespace lorry::replication
