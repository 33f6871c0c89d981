#include "sync/table_sync.h"

#include <set>

#include <fmt/format.h>

#include "common/fault.h"
#include "common/log.h"
#include "protocol/pgoutput.h"
#include "protocol/walsender.h"
#include "state/state_store.h"

namespace lorry::sync {

namespace {
using Clock = std::chrono::steady_clock;
// The worker asks for the hand-over once it has reached the main stream's
// position (the main stream then pauses for about one transaction); after
// kExactFor without that (a provider too busy ever to pause), once it is
// kNearEnough bytes of WAL behind: the pause is then the time to read that.
constexpr auto kExactFor = std::chrono::seconds(5);
constexpr uint64_t kNearEnough = 256 << 10;

pg::ConnectOptions SyncOptions() {
  return {{{"options", pg::kTextSessionOptions}, {"application_name", "lorry_sync"}}, "subscriber"};
}
}  // namespace

TableSync::TableSync(TableSyncOptions options, std::vector<pg::QualifiedName> tables)
    : options_(std::move(options)), tables_(std::move(tables)), thread_([this] { Main(); }) {}

TableSync::~TableSync() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> l(mu_);
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

bool TableSync::WantsHandOver() {
  std::lock_guard<std::mutex> l(mu_);
  return wants_ && !finished_;
}

bool TableSync::finished() {
  std::lock_guard<std::mutex> l(mu_);
  return finished_;
}

Status TableSync::result() {
  std::lock_guard<std::mutex> l(mu_);
  return result_;
}

std::optional<Lsn> TableSync::Target() {
  std::lock_guard<std::mutex> l(mu_);
  return target_;
}

Result<bool> TableSync::HandOver(Lsn position, std::chrono::milliseconds timeout,
                                 const std::function<Status()>& while_waiting) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> l(mu_);
  target_ = position;
  cv_.notify_all();
  while (!done_ && !finished_) {
    cv_.wait_for(l, std::chrono::seconds(1));
    if (done_ || finished_) break;
    bool give_up = Clock::now() >= deadline || stop_.load();
    if (!give_up) {
      l.unlock();
      Status s = while_waiting();
      l.lock();
      if (!s.ok()) {
        if (!finishing_) {
          target_.reset();
          wants_ = false;
        }
        return s;
      }
      continue;
    }
    if (!finishing_) {
      target_.reset();
      wants_ = false;
      return false;
    }
  }
  if (done_) return true;
  // The worker ended without committing the hand-over. If it was finishing,
  // its commit may have happened: only a fresh start knows.
  if (finishing_) return result_.ok() ? Status::Internal("table sync ended while handing over") : result_;
  target_.reset();
  wants_ = false;
  return false;
}

void TableSync::Main() {
  Status s = Work();
  if (!s.ok() && !stop_.load())
    spdlog::error("sub={} table sync failed: {}", options_.copy.subscription, s.message());
  std::lock_guard<std::mutex> l(mu_);
  result_ = s;
  finished_ = true;
  cv_.notify_all();
}

std::string TableSync::UpdateCopied(const std::vector<pg::QualifiedName>& copied, const std::string& set) const {
  std::string in;
  for (const auto& t : copied)
    in += fmt::format("{}({}, {})", in.empty() ? "" : ", ", pg::QuoteLiteral(t.schema), pg::QuoteLiteral(t.name));
  // Fenced like the main stream's commits: a run that lost its lease cannot commit.
  std::string fence = options_.copy.fence_sql.empty() ? "SELECT" : options_.copy.fence_sql;
  return fmt::format("WITH fence AS ({}) UPDATE lorry.tables SET {} WHERE subscription = {} AND state = 'copying' "
                     "AND (nspname, relname) IN ({}) AND EXISTS (SELECT FROM fence)",
                     fence, set, pg::QuoteLiteral(options_.copy.subscription), in);
}

Status TableSync::Work() {
  const std::string& sub = options_.copy.subscription;
  LORRY_ASSIGN_OR_RETURN(auto repl, pg::ReplicationConn::Connect(options_.copy.provider_conninfo, "provider"));
  LORRY_ASSIGN_OR_RETURN(auto slot, repl.CreateSlot(options_.slot, true));
  CopyPlan plan = options_.copy;
  plan.snapshot = slot.snapshot;
  plan.sync_lsn = slot.consistent_point;
  plan.done_state = TableStateKind::kCopying;  // the hand-over moves them on
  std::vector<CopyTask> tasks;
  for (const auto& t : tables_) tasks.push_back({t});
  spdlog::info("sub={} background copy tables={} slot={} snapshot_lsn={} (the stream goes on)", sub, tasks.size(),
               options_.slot, slot.consistent_point.ToString());
  auto started = Clock::now();
  LORRY_RETURN_IF_ERROR(CopyTables(plan, tasks, stop_));
  spdlog::info("sub={} background copy done tables={} seconds={:.2f}", sub, tasks.size(),
               std::chrono::duration<double>(Clock::now() - started).count());

  // The tables whose rows and indexes are all in at this snapshot (a table
  // refused by the copy is in `error` and is not handed over).
  LORRY_ASSIGN_OR_RETURN(auto control, pg::PgConn::Connect(options_.copy.subscriber_conninfo, SyncOptions()));
  LORRY_ASSIGN_OR_RETURN(auto states, StateStore(&control, sub).ListTables());
  std::set<pg::QualifiedName> mine(tables_.begin(), tables_.end());
  std::vector<pg::QualifiedName> copied;
  for (const auto& t : states)
    if (mine.count(t.name) && t.state == TableStateKind::kCopying && t.deferred_indexes == 0 &&
        t.sync_lsn == slot.consistent_point)
      copied.push_back(t.name);
  if (copied.empty()) return Status::Ok();
  return CatchUp(repl, copied, slot.consistent_point);
}

Result<bool> TableSync::Finish(const std::vector<pg::QualifiedName>& copied, Lsn position, int64_t applied) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!target_ || position < *target_) return false;
    finishing_ = true;
  }
  LORRY_ASSIGN_OR_RETURN(auto control, pg::PgConn::Connect(options_.copy.subscriber_conninfo, SyncOptions()));
  LORRY_RETURN_IF_ERROR(
      control
          .Exec(UpdateCopied(copied, fmt::format("state = 'catching_up', sync_lsn = {}, state_changed_at = now()",
                                                 pg::QuoteLiteral(position.ToString()))))
          .status());
  for (const auto& t : copied)
    spdlog::info("sub={} table={} handed over to the stream at {} (stream_position={} catch_up_xacts={})",
                 options_.copy.subscription, t.Display(), position.ToString(), Target()->ToString(), applied);
  std::lock_guard<std::mutex> l(mu_);
  done_ = true;
  cv_.notify_all();
  return true;
}

Status TableSync::CatchUp(pg::ReplicationConn& repl, const std::vector<pg::QualifiedName>& copied,
                          Lsn snapshot_lsn) {
  const std::string& sub = options_.copy.subscription;
  LORRY_ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(options_.copy.subscriber_conninfo, SyncOptions()));
  std::set<pg::QualifiedName> set(copied.begin(), copied.end());
  apply::Applier applier(
      &conn, "", [&](const pg::QualifiedName& t, Lsn) { return set.count(t) > 0; }, options_.statement_cache_size,
      options_.limits);
  // Every group commits with the tables' new sync_lsn: the invariant at the
  // top of table_sync.h holds after each commit.
  applier.set_commit_hook([&](Lsn end) {
    return UpdateCopied(copied, fmt::format("sync_lsn = {}", pg::QuoteLiteral(end.ToString())));
  });
  LORRY_RETURN_IF_ERROR(applier.Setup());
  LORRY_RETURN_IF_ERROR(repl.StartReplication(options_.slot, snapshot_lsn, options_.start_options));
  spdlog::info("sub={} catching up tables={} from slot={} at {}", sub, copied.size(), options_.slot,
               snapshot_lsn.ToString());
  protocol::PgOutputDecoder decoder(options_.proto_version);
  Lsn idle = snapshot_lsn;  // positions reached between transactions (keepalives)
  auto position = [&] { return std::max(applier.last_commit_end(), idle); };
  auto commit_group = [&]() -> Status {
    Status s = applier.CommitGroup();
    if (!s.ok()) applier.Rollback();
    return s;
  };
  auto last_ping = Clock::now() - std::chrono::seconds(1);
  auto started = Clock::now();
  while (!stop_.load()) {
    if (!applier.in_remote_transaction()) {
      if (auto target = Target()) {
        if (applier.group_pending()) LORRY_RETURN_IF_ERROR(commit_group());
        if (position() >= *target) {
          LORRY_ASSIGN_OR_RETURN(bool finished, Finish(copied, position(), applier.stats().xacts));
          if (finished) return Status::Ok();
        }
      } else if (position().value + (Clock::now() - started > kExactFor ? kNearEnough : 0) >=
                 main_position_.load()) {
        std::lock_guard<std::mutex> l(mu_);
        if (!wants_) SPDLOG_DEBUG("sub={} table sync at {}: asks for the hand-over", sub, position().ToString());
        wants_ = true;
      }
    }
    // Asking for a reply makes the walsender send a keepalive with the
    // position it has read up to: once it comes back between transactions,
    // this stream has caught up with the WAL of a moment ago.
    if (Clock::now() - last_ping >= std::chrono::seconds(1)) {
      Lsn p = position();
      LORRY_RETURN_IF_ERROR(repl.Send(protocol::BuildStandbyStatusUpdate(
          p, p, p, protocol::ToPgMicros(std::chrono::system_clock::now()), true)));
      last_ping = Clock::now();
    }
    // Unlike the main stream, nobody waits for a lone transaction here: a
    // group is committed only after a short pause in the data (or at its
    // limits), so that a backlog is applied in few commits.
    bool group = applier.group_pending();
    LORRY_ASSIGN_OR_RETURN(auto data, repl.Read(std::chrono::milliseconds(group ? 20 : 100)));
    if (!data) {
      if (group) LORRY_RETURN_IF_ERROR(commit_group());
      continue;
    }
    LORRY_ASSIGN_OR_RETURN(auto frame, protocol::ParseWalSenderFrame(*data));
    if (auto* x = std::get_if<protocol::XLogData>(&frame)) {
      LORRY_ASSIGN_OR_RETURN(auto msg, decoder.Decode(x->data));
      if (auto* b = std::get_if<protocol::BeginMsg>(&msg)) {
        // Every transaction before this one is processed: a main stream
        // waiting at or before its commit LSN can take over here.
        auto target = Target();
        if (target && b->final_lsn >= *target) {
          if (applier.group_pending()) LORRY_RETURN_IF_ERROR(commit_group());
          LORRY_ASSIGN_OR_RETURN(bool finished, Finish(copied, std::max(position(), *target), applier.stats().xacts));
          if (finished) return Status::Ok();
        }
      }
      Status s = applier.Handle(msg);
      if (!s.ok()) {
        applier.Rollback();
        return s.WithContext("table sync catch-up");
      }
      if (std::holds_alternative<protocol::CommitMsg>(msg)) FaultPoint("sync_catch_up");
    } else if (auto* k = std::get_if<protocol::PrimaryKeepalive>(&frame)) {
      if (!applier.in_remote_transaction()) {
        if (applier.group_pending()) LORRY_RETURN_IF_ERROR(commit_group());
        idle = std::max(idle, k->wal_end);
      }
      if (k->reply_requested) {
        Lsn p = position();
        LORRY_RETURN_IF_ERROR(repl.Send(protocol::BuildStandbyStatusUpdate(
            p, p, p, protocol::ToPgMicros(std::chrono::system_clock::now()), false)));
      }
    }
  }
  applier.Rollback();
  return Status::Cancelled("table sync stopped");
}

}  // namespace lorry::sync
