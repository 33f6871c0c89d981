#include "daemon/run_events.h"

namespace lorry::daemon {

const char* RunPhaseName(RunPhase phase) {
  switch (phase) {
    case RunPhase::kStarting: return "starting";
    case RunPhase::kStandby: return "standby";
    case RunPhase::kPreparing: return "preparing";
    case RunPhase::kCopying: return "copying";
    case RunPhase::kStreaming: return "streaming";
    case RunPhase::kRetrying: return "retrying";
  }
  return "unknown";
}

}  // namespace lorry::daemon
