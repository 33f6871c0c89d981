// RunLease: which `lorry run` of a subscription applies, coordinated through
// the subscriber database (lorry.subscriptions.lease_* and standby_*).
//
// The applying run holds the lease and renews it every second from a thread
// with a connection of its own. A run that does not hold it is a standby: it
// records itself (standby_*, shown by `lorry status`) and tries to take the
// lease four times a second. The lease is free when its holder released it
// (clean stop), when it was not renewed for takeover_timeout (measured on the
// subscriber's clock), or when none of its holder's subscriber sessions
// (lease_pids) is alive any more (the holder was killed: taken over at once).
//
// Never two appliers:
//  - the holder stops (abort flag set, its subscriber sockets shut down) as
//    soon as it cannot prove it still holds the lease: a renewal finds
//    another owner, or no renewal succeeded for takeover_timeout minus one
//    renewal interval, counted from when the last good renewal was sent, so
//    before the subscriber may consider the lease expired;
//  - a run that takes the lease over terminates the previous holder's
//    sessions (lease_pids) and waits until they are gone before applying;
//  - each apply transaction calls lorry.check_lease() right before COMMIT
//    (CheckSql()): it fails unless this run still holds the lease and locks
//    the row, so a takeover waits for that commit. A deposed run cannot
//    commit.
//
// Thread safety: the public methods may be called from any thread; the
// renewal thread uses only its own connection.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"

namespace lorry::daemon {

class RunLease {
 public:
  struct Options {
    std::string conninfo;      // the subscriber
    std::string subscription;  // its name
    double takeover_timeout_s = 10;
    double network_timeout_s = 30;
    // Optional: called (from the lease's thread) when this run starts
    // standing by, with the lease's holder.
    std::function<void(const std::string& holder)> on_standby;
    // Optional: called (from the lease's thread) when taking the lease
    // failed with an error that may pass (the subscriber unreachable).
    std::function<void(const std::string& error)> on_retry;
  };

  // Starts the thread; nothing is taken until WaitUntilHeld(). `stop` (the
  // process's stop request) must outlive this object.
  RunLease(Options options, const std::atomic<bool>& stop);
  // Releases the lease if held (a standby takes over at once) and joins.
  ~RunLease();
  RunLease(const RunLease&) = delete;
  RunLease& operator=(const RunLease&) = delete;

  // Blocks, as a standby, until this run holds the lease. Ok when held;
  // Cancelled on stop; the error when the subscriber refuses us for good
  // (credentials, `lorry init` not run).
  Status WaitUntilHeld();

  // True from a loss of the lease (or a stop request) until the next
  // WaitUntilHeld(): what the applying session stops on.
  const std::atomic<bool>& abort_flag() const { return abort_; }
  // Why the lease was lost since the last WaitUntilHeld(), or "".
  std::string lost_reason() const;

  // This run's identity in lorry.subscriptions.lease_owner.
  const std::string& owner() const { return owner_; }

  // Records sessions of this run in lease_pids (terminated by a run that
  // takes over) and watches their sockets (shut down when the lease is
  // lost, to unblock a call stuck on them). kConnection when the lease is
  // no longer ours. `conn` is a connection of the caller's thread.
  Status AddSessions(pg::PgConn& conn, const std::vector<const pg::PgConn*>& sessions);
  // Forgets the watched sockets; call before closing those connections.
  void ForgetSessions();

  // The SQL an apply transaction runs right before COMMIT (fencing).
  std::string CheckSql() const;

 private:
  enum class State { kIdle, kStandby, kHeld, kLost };

  void Loop();
  // Every 20 ms: passes a stop request on to the abort flag, and gives the
  // lease up once it was not renewed in time, even while Loop() is blocked
  // (e.g. connecting to a subscriber that does not answer).
  void Watch();
  Status Connect();
  Status TryAcquire(bool* acquired);
  Status Renew(bool* still_ours);
  void RecordStandby();
  void Release();
  void TerminatePrevious(const std::string& previous_owner, const std::string& pids);
  void Lose(const std::string& reason);  // REQUIRES: mu_ held
  std::chrono::milliseconds QueryTimeout() const;
  void SleepFor(std::chrono::milliseconds d);

  Options options_;
  const std::atomic<bool>& stop_;
  std::string owner_;
  std::string host_;
  std::chrono::milliseconds renew_every_;
  std::chrono::milliseconds standby_every_;
  std::chrono::milliseconds hold_limit_;  // stop applying after this long without a good renewal

  pg::PgConn conn_;  // the thread's own
  // steady_clock nanoseconds of when the last successful renewal was sent.
  std::atomic<int64_t> last_good_renewal_sent_{0};
  std::chrono::steady_clock::time_point last_standby_record_;
  bool standby_logged_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kIdle;
  Status fatal_;
  std::string lost_reason_;
  std::vector<int> sockets_;  // shut down on loss
  std::atomic<bool> abort_{false};
  std::atomic<bool> quit_{false};
  std::thread thread_;
  std::thread watch_thread_;
};

}  // namespace lorry::daemon
