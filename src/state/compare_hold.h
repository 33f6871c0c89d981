// The hold that `lorry compare` asks of a running `lorry run`, through three
// columns of lorry.subscriptions, so that the subscriber can be read at
// exactly the provider snapshot compare reads the provider at.
//
//   hold_lsn    set by compare: apply nothing whose commit record starts at or
//               after this LSN ('0/0': apply nothing more at all);
//   hold_until  set by compare: the request lapses then (a compare that dies
//               never stops replication for longer);
//   held_lsn    set by run once everything before hold_lsn is committed on
//               the subscriber and it holds: the origin's position then.
//
// The protocol (compare's side is HoldRequest, run's is CompareHold):
//   1. compare: hold_lsn = 0/0; run holds between two transactions, held_lsn = P.
//   2. compare creates a temporary slot with an exported snapshot; its
//      consistent point L >= P: the snapshot sees exactly the provider
//      transactions whose commit is before L.
//   3. compare: hold_lsn = L, held_lsn = NULL; run applies the transactions
//      before L (it knows it has them all when a transaction at or after L
//      begins, or a keepalive reports the stream past L) and holds again.
//   4. compare exports a subscriber snapshot (which sees exactly those
//      transactions), then clears the request; run goes on.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"
#include "protocol/pgoutput.h"

namespace lorry {

// compare's side. REQUIRES: `conn` outlives it and is not in a transaction.
class HoldRequest {
 public:
  HoldRequest(pg::PgConn* conn, std::string subscription) : conn_(conn), sub_(std::move(subscription)) {}
  ~HoldRequest() { (void)Release(); }
  HoldRequest(const HoldRequest&) = delete;
  HoldRequest& operator=(const HoldRequest&) = delete;

  // Asks run to hold before `lsn` and waits until it does; returns held_lsn.
  // kTimeout when run does not hold within `timeout` (it may be copying).
  Result<Lsn> HoldAt(Lsn lsn, std::chrono::seconds timeout);
  // Clears the request (idempotent).
  Status Release();

  // A request lapses this long after HoldAt's timeout, so that a compare
  // that dies never stops replication for longer.
  static constexpr int kLapseSeconds = 60;

 private:
  pg::PgConn* conn_;
  std::string sub_;
  bool requested_ = false;
};

// run's side: what the stream loop consults. Not thread-safe.
class CompareHold {
 public:
  CompareHold(pg::PgConn* control, std::string subscription) : conn_(control), sub_(std::move(subscription)) {}

  // Reads the request (the stream calls it once a second).
  Status Poll();
  bool requested() const { return target_.has_value(); }
  // Whether a transaction whose commit record starts at final_lsn must wait.
  bool Blocks(Lsn final_lsn) const { return target_ && final_lsn >= *target_; }

  // Keeps a BEGIN (or a streamed transaction's STREAM COMMIT) that must wait;
  // true when `msg` was kept (not to be applied now).
  bool Stash(const protocol::PgOutputMessage& msg);
  // The kept message once it may be applied (the hold released or moved past it).
  std::optional<protocol::PgOutputMessage> TakeReleased();

  // Between transactions, with everything received up to `received`:
  // whether everything before the hold's LSN is received, i.e. run must now
  // commit what it has, report and wait.
  bool Reached(Lsn received) const { return target_ && (stash_ || received >= *target_); }
  // Records that run holds with everything before the LSN committed, up to
  // `applied` (once per request).
  Status MarkHeld(Lsn applied);

 private:
  pg::PgConn* conn_;
  std::string sub_;
  std::optional<Lsn> target_;
  bool marked_ = false;
  std::optional<protocol::PgOutputMessage> stash_;
  Lsn stash_final_;
};

}  // namespace lorry
