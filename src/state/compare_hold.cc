#include "state/compare_hold.h"

#include <thread>

#include <fmt/format.h>

#include "common/log.h"

namespace lorry {

Result<Lsn> HoldRequest::HoldAt(Lsn lsn, std::chrono::seconds timeout) {
  LORRY_RETURN_IF_ERROR(conn_
                            ->ExecParams("UPDATE lorry.subscriptions SET hold_lsn = $2::pg_lsn, held_lsn = NULL, "
                                         "hold_until = clock_timestamp() + make_interval(secs => $3) WHERE name = $1",
                                         {sub_, lsn.ToString(), std::to_string(timeout.count() + kLapseSeconds)})
                            .status());
  requested_ = true;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    LORRY_ASSIGN_OR_RETURN(auto held, conn_->QueryValue("SELECT held_lsn::text FROM lorry.subscriptions "
                                                        "WHERE name = $1 AND hold_lsn = $2::pg_lsn",
                                                        {sub_, lsn.ToString()}));
    if (held) {
      auto l = Lsn::Parse(*held);
      if (!l) return Status::Internal("bad held_lsn " + *held);
      return *l;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return Status::Timeout(fmt::format(
          "`lorry run` did not reach the point to compare at ({}) within {} s: it may be far behind, copying "
          "tables or retrying after an error (see `lorry status`); try again later or with a longer --timeout",
          lsn.ToString(), timeout.count()));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status HoldRequest::Release() {
  if (!requested_) return Status::Ok();
  requested_ = false;
  return conn_
      ->ExecParams("UPDATE lorry.subscriptions SET hold_lsn = NULL, hold_until = NULL, held_lsn = NULL "
                   "WHERE name = $1",
                   {sub_})
      .status();
}

Status CompareHold::Poll() {
  LORRY_ASSIGN_OR_RETURN(auto v, conn_->QueryValue("SELECT hold_lsn::text FROM lorry.subscriptions WHERE name = $1 "
                                                   "AND hold_until > clock_timestamp()",
                                                   {sub_}));
  std::optional<Lsn> target = v ? Lsn::Parse(*v) : std::nullopt;
  if (target != target_) {
    if (target)
      spdlog::info("sub={} holding for lorry compare before lsn={}", sub_, target->ToString());
    else
      spdlog::info("sub={} compare hold released", sub_);
    marked_ = false;
  }
  target_ = target;
  return Status::Ok();
}

bool CompareHold::Stash(const protocol::PgOutputMessage& msg) {
  // A transaction's commit record: a BEGIN's final LSN, or for a transaction
  // streamed while in progress (spooled, applied only at its STREAM COMMIT)
  // the STREAM COMMIT's commit LSN.
  Lsn commit;
  if (auto* begin = std::get_if<protocol::BeginMsg>(&msg))
    commit = begin->final_lsn;
  else if (auto* sc = std::get_if<protocol::StreamCommitMsg>(&msg))
    commit = sc->commit_lsn;
  else
    return false;
  if (!Blocks(commit)) return false;
  stash_ = msg;
  stash_final_ = commit;
  return true;
}

std::optional<protocol::PgOutputMessage> CompareHold::TakeReleased() {
  if (!stash_ || Blocks(stash_final_)) return std::nullopt;
  auto m = std::move(stash_);
  stash_.reset();
  return m;
}

Status CompareHold::MarkHeld(Lsn applied) {
  if (marked_ || !target_) return Status::Ok();
  LORRY_RETURN_IF_ERROR(conn_
                            ->ExecParams("UPDATE lorry.subscriptions SET held_lsn = $3::pg_lsn WHERE name = $1 "
                                         "AND hold_lsn = $2::pg_lsn",
                                         {sub_, target_->ToString(), applied.ToString()})
                            .status());
  marked_ = true;
  spdlog::info("sub={} holding for lorry compare: applied up to lsn={}", sub_, applied.ToString());
  return Status::Ok();
}

}  // namespace lorry
