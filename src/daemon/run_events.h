// RunEvents: what the daemon tells whoever runs it about its life, so that
// the service around it (systemd's notify socket, /healthz, the status page)
// needs nothing of the daemon's internals.
//
// The daemon calls these from its own thread (OnPhase also from the run
// lease's thread): implementations must be thread-safe and must not block.
#pragma once

#include <string>

namespace lorry::daemon {

enum class RunPhase {
  kStarting,   // taking the run lease, connecting
  kStandby,    // another run holds the lease; this one waits to take over
  kPreparing,  // connected with the lease: checking the slot (creating it may wait for provider transactions)
  kCopying,    // the initial copy at the slot's snapshot (the stream waits for it)
  kStreaming,  // applying the stream
  kRetrying,   // the last attempt failed with an error that may pass; waiting before the next
};
const char* RunPhaseName(RunPhase phase);

class RunEvents {
 public:
  virtual ~RunEvents() = default;
  // The phase changed; `detail` says more in a few words ("3 tables", the error).
  virtual void OnPhase(RunPhase phase, const std::string& detail) = 0;
  // The apply loop went round (about once a second while streaming): the
  // daemon is not stuck.
  virtual void OnAlive() = 0;
};

}  // namespace lorry::daemon
