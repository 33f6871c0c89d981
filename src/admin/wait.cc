// `lorry wait`: blocks until every table is ready and the subscriber has
// applied everything the provider had committed when wait started.
//
// The target is the provider's WAL *insert* position: with
// synchronous_commit = off, pg_current_wal_lsn() (the write position) can be
// behind commits already made. The WAL after the last replicated change may
// hold nothing lorry replicates, so no commit will ever move the origin past
// the target; positions confirmed by keepalives (lorry.subscriptions.
// confirmed_lsn, kept by the daemon) count too. A logical message written at
// the start makes sure WAL exists past the target, so that the walsender's
// keepalives move beyond it even on an idle provider. Once caught up, wait
// syncs the sequences itself (sync/sequence_sync.h): after it returns 0, no
// subscriber sequence is lower than the provider's was when wait started.
#include <chrono>
#include <ostream>
#include <thread>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "catalog/partitions.h"
#include "state/state_store.h"
#include "sync/sequence_sync.h"

namespace lorry::admin {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);

}  // namespace

Result<Lsn> ProviderPositionNow(const Config& config) {
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto v, provider.QueryValue("SELECT CASE WHEN pg_is_in_recovery() THEN "
                                                     "pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END"));
  auto target = v ? Lsn::Parse(*v) : std::nullopt;
  if (!target) return Status::Internal("provider: cannot read the current WAL insert position");
  // Not transactional, so it is written at once; may be refused to users who
  // lack the privilege, in which case the provider's own activity (or the
  // next checkpoint) moves the WAL on.
  auto emitted = provider.Exec("SELECT pg_logical_emit_message(false, 'lorry_wait', '')");
  if (!emitted.ok() && emitted.status().kind() == Status::Kind::kConnection) return emitted.status();
  return *target;
}

namespace {

struct Progress {
  std::vector<TableState> not_ready;
  std::optional<Lsn> applied;  // max(origin progress flushed, confirmed_lsn)
  bool run_active = false;
  std::string stream_error;  // what holds the stream (lorry.subscriptions.last_error), "" if nothing
};

Result<Progress> Poll(pg::PgConn& subscriber, const SubscriptionNames& names) {
  StateStore store(&subscriber, names.name);
  Progress p;
  // Positions first, tables after: a table the stream records (`execute
  // --add`) commits with the origin's progress past it, so the tables read
  // afterwards include it (read the other way round, a commit in between
  // showed the position without the table, and wait returned too early).
  LORRY_ASSIGN_OR_RETURN(auto sub, store.LoadSubscription());
  p.applied = OriginProgress(subscriber, names.origin, true);
  if (sub.confirmed_lsn && (!p.applied || *sub.confirmed_lsn > *p.applied)) p.applied = sub.confirmed_lsn;
  if (!sub.last_error.empty())
    p.stream_error = sub.last_error + (sub.last_error_at.empty() ? "" : " (since " + sub.last_error_at + ")");
  LORRY_ASSIGN_OR_RETURN(auto tables, store.ListTables());
  for (auto& t : tables)
    if (t.state != TableStateKind::kReady) p.not_ready.push_back(std::move(t));
  LORRY_ASSIGN_OR_RETURN(p.run_active, RunIsActive(subscriber, names.name));
  return p;
}

bool CaughtUp(const Progress& p, Lsn target) { return p.not_ready.empty() && p.applied && *p.applied >= target; }

std::string Behind(const Progress& p, Lsn target) {
  std::string msg;
  for (const auto& t : p.not_ready) {
    msg += fmt::format("\n  - table {} is {}", t.name.Display(), TableStateName(t.state));
    if (!t.error.empty()) msg += ": " + t.error;
  }
  if (!p.applied)
    msg += fmt::format("\n  - nothing applied yet; the target is provider LSN {}", target.ToString());
  else if (*p.applied < target)
    msg += fmt::format("\n  - applied up to provider LSN {}, target {} ({} bytes behind)", p.applied->ToString(),
                       target.ToString(), target.value - p.applied->value);
  if (p.applied && *p.applied < target && !p.stream_error.empty())
    msg += "\n  - the stream is held by an error: " + p.stream_error;
  if (!p.run_active) msg += "\n  - `lorry run` is not active for this subscription: start it";
  return msg;
}

// The partitions of replicated tables the subscriber lacks
// (catalog/partitions.h), the usual cause of a held stream once partitions
// are created on the provider; "" when none or unknown.
std::string PartitionGaps(const Config& config, pg::PgConn& subscriber) {
  auto provider = ConnectProvider(config);
  if (!provider.ok()) return "";
  auto tables = StateStore(&subscriber, config.name).ListTables();
  if (!tables.ok()) return "";
  std::vector<pg::QualifiedName> names;
  for (const auto& t : *tables) names.push_back(t.name);
  auto gaps = catalog::MissingPartitions(*provider, subscriber, names);
  std::string msg;
  if (gaps.ok())
    for (const auto& g : *gaps) msg += "\n  - " + catalog::DescribeGap(g);
  return msg;
}

// Once caught up: a sequence sync that began after wait did, so that no
// subscriber sequence is behind where the provider's was when wait started.
Status FinalSequenceSync(const Config& config, pg::PgConn& subscriber, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto r, sync::SyncSequences(provider, subscriber, config.name));
  if (!r.problems.empty()) {
    std::string msg = fmt::format("subscription \"{}\" caught up, but sequences could not be synced:", config.name);
    for (const auto& p : r.problems) msg += "\n  - " + p;
    return Status::Precondition(msg);
  }
  if (r.sequences > 0) out << fmt::format("sequences synced: {} ({} advanced)", r.sequences, r.advanced) << "\n";
  return Status::Ok();
}

}  // namespace

Status Wait(const Config& config, double timeout_seconds, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  auto start = std::chrono::steady_clock::now();
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  {
    StateStore store(&subscriber, names.name);
    LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
    if (!installed) return NotInitialised(names.name);
  }
  LORRY_ASSIGN_OR_RETURN(Lsn target, ProviderPositionNow(config));

  auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_seconds));
  auto expired = [&] { return timeout_seconds > 0 && std::chrono::steady_clock::now() >= deadline; };
  Progress last;
  Status last_error;
  while (true) {
    if (!subscriber.connected()) {
      auto again = ConnectSubscriber(config);
      if (again.ok()) subscriber = std::move(again).value();
      else last_error = again.status();
    }
    if (subscriber.connected()) {
      auto p = Poll(subscriber, names);
      if (p.ok()) {
        last = std::move(p).value();
        last_error = Status::Ok();
        if (CaughtUp(last, target)) {
          LORRY_RETURN_IF_ERROR(FinalSequenceSync(config, subscriber, out));
          out << "caught up at " << target.ToString() << "\n";
          return Status::Ok();
        }
        // A table in `error` needs the user: waiting longer cannot help.
        bool stuck = false;
        for (const auto& t : last.not_ready) stuck |= t.state == TableStateKind::kError;
        if (stuck)
          return Status::NotTrue(fmt::format("subscription \"{}\" cannot catch up until these are fixed:{}{}",
                                             names.name, Behind(last, target), PartitionGaps(config, subscriber)));
      } else if (p.status().kind() == Status::Kind::kConnection) {
        // The subscriber restarting is no reason to give up: reconnect.
        last_error = p.status();
        subscriber = pg::PgConn();
      } else {
        return p.status();
      }
    }
    if (expired()) {
      std::string msg = fmt::format("timed out after {:g} s waiting for subscription \"{}\" to catch up to provider "
                                    "LSN {}; still behind:{}",
                                    timeout_seconds, names.name, target.ToString(), Behind(last, target));
      if (subscriber.connected()) msg += PartitionGaps(config, subscriber);
      if (!last_error.ok()) msg += "\n  - last error: " + last_error.message();
      return Status::Timeout(msg);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace lorry::admin
