#include "daemon/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "apply/applier.h"
#include "catalog/publications.h"
#include "catalog/server_identity.h"
#include "common/log.h"
#include "daemon/publication_gate.h"
#include "daemon/run_lease.h"
#include "metrics/run_metrics.h"
#include "metrics/stream_observer.h"
#include "pg/connection.h"
#include "pg/replication_conn.h"
#include "protocol/pgoutput.h"
#include "protocol/walsender.h"
#include "replication/stream_spool.h"
#include "state/compare_hold.h"
#include "state/names.h"
#include "state/state_store.h"
#include "sync/deferred_indexes.h"
#include "sync/sequence_sync.h"
#include "sync/table_copy.h"
#include "sync/table_sync.h"

namespace lorry::daemon {

using Clock = std::chrono::steady_clock;
// How often sequence values are copied while streaming.
constexpr auto kSequenceSyncInterval = std::chrono::seconds(5);

std::string StreamOptions(int proto_version, const std::vector<std::string>& publications,
                          bool stream_in_progress) {
  std::string list;
  for (const auto& p : publications) list += (list.empty() ? "" : ",") + pg::QuoteIdent(p);
  // Every lorry publication (a table is in exactly one, catalog/publications.h),
  // and from protocol 2 (PostgreSQL 14) on the logical messages that carry
  // `lorry execute` scripts and captured DDL (apply/lorry_message.h).
  std::string options = fmt::format("proto_version '{}', publication_names '{}'", proto_version, list);
  if (proto_version >= 2) options += ", messages 'true'";
  // Large transactions arrive while they run (PostgreSQL 14+), instead of
  // after their commit from the provider's own spill files.
  if (stream_in_progress && proto_version >= 2) options += ", streaming 'on'";
  // Cascades: changes this provider applied as a subscriber itself (they
  // carry a replication origin) are forwarded. `any` is pgoutput's default
  // from PostgreSQL 16 (protocol 4) on, where the option exists; said
  // explicitly so that it never depends on a default. Before 16 pgoutput
  // sends every origin.
  if (proto_version >= 4) options += ", origin 'any'";
  return options;
}

int ProtocolVersionFor(int server_version_num) {
  if (server_version_num >= 160000) return 4;
  if (server_version_num >= 150000) return 3;
  if (server_version_num >= 140000) return 2;
  return 1;
}

namespace {

struct TableFilterState {
  TableStateKind state;
  std::optional<Lsn> sync_lsn;
  std::optional<Lsn> remove_lsn;  // removed: only transactions committed before it are applied
};

// How long the stream waits, paused, for a table sync to hand over.
constexpr auto kHandOverTimeout = std::chrono::seconds(30);

// One connected attempt at running the subscription: connections, start-up
// copies and the stream; tables added meanwhile are copied in the background
// (sync/table_sync.h). It ends on stop or on error.
class Session {
 public:
  // `lease` is held when the session starts; its abort flag is `stop_`.
  // `gate` and `restart_from` carry over from the session before (see
  // daemon/publication_gate.h). A stream starting before
  // `whole_transactions_until` asks for no in-progress transactions (the
  // spool was full there).
  Session(const Config& config, const RunOptions& options, RunLease* lease, apply::ApplyStats* stats,
          Lsn careful_until, PublicationGate* gate, Lsn restart_from, Lsn whole_transactions_until)
      : config_(config),
        options_(options),
        stop_(lease->abort_flag()),
        lease_(lease),
        names_(SubscriptionNames::For(config.name)),
        stats_(stats),
        careful_until_(careful_until),
        gate_(gate),
        restart_from_(restart_from),
        whole_transactions_until_(whole_transactions_until) {}
  ~Session() { lease_->ForgetSessions(); }  // before the connections close

  Status Run() {
    LORRY_RETURN_IF_ERROR(ConnectSubscriber());
    LORRY_RETURN_IF_ERROR(ConnectProvider());
    Phase(RunPhase::kPreparing, "checking the slot");
    LORRY_RETURN_IF_ERROR(PrepareSlotAndCopies());
    if (stop_.load()) return Status::Ok();
    SyncSequences();  // values at least as high as any the copied rows use
    return Stream();
  }

  // Whether this session committed anything on the subscriber (a provider
  // COMMIT handled is not enough: its group may still fail to commit, and a
  // failure that recurs at every attempt must back off).
  bool made_progress() const { return applier_ && applier_->last_group_end().valid(); }
  bool apply_failed() const { return apply_failed_; }
  // The stream ended because the spool of in-progress transactions was full.
  bool spool_full() const { return spool_full_; }
  // The stream position when this session stopped (what was received).
  Lsn received() const { return received_; }
  // Where the next stream starts, when this one ended at a publication's
  // gate: everything before it is applied and flushed, nothing after.
  Lsn restart_from() const { return restart_from_; }
  // Whether it stopped at RunOptions::until (everything before it applied).
  bool reached_until() const { return reached_until_; }

 private:
  pg::ConnectOptions SubscriberOptions(const char* app, bool keep_running_on_stop = false) const {
    return {{{"options", pg::kTextSessionOptions}, {"application_name", app}}, "subscriber", keep_running_on_stop};
  }

  Status ConnectSubscriber() {
    LORRY_ASSIGN_OR_RETURN(control_, pg::PgConn::Connect(config_.subscriber,
                                                         SubscriberOptions("lorry_control", /*keep_running_on_stop=*/true)));
    // The heartbeat's record of confirmed positions must be durable before
    // the provider is told it may forget them.
    LORRY_RETURN_IF_ERROR(control_.Exec("SET synchronous_commit = on").status());
    state_ = std::make_unique<StateStore>(&control_, config_.name);
    LORRY_ASSIGN_OR_RETURN(bool installed, state_->IsInstalled());
    if (!installed)
      return Status::Precondition(fmt::format(
          "subscription \"{}\" is not initialised on {}: run `lorry init` first", config_.name, control_.label()));
    // Brings the lorry schema up to this binary's version (idempotent).
    LORRY_RETURN_IF_ERROR(state_->Install());
    // The run lock shows `status` and `drop` that a run is active. This run
    // holds the lease, and a previous holder's sessions (this run's own
    // too, after it lost the lease) were ended when it took the lease: the
    // lock is free or about to be. The session is recorded first, so that a
    // run taking over ends it even if this one stops right after locking.
    LORRY_RETURN_IF_ERROR(lease_->AddSessions(control_, {&control_}));
    std::optional<std::string> locked;
    for (int i = 0; i < 50 && !(locked && *locked == "t"); ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      LORRY_ASSIGN_OR_RETURN(locked, control_.QueryValue("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                                         {std::to_string(kRunLockClass), config_.name}));
    }
    if (!locked || *locked != "t") return RunLockHeld();
    LORRY_ASSIGN_OR_RETURN(apply_conn_, pg::PgConn::Connect(config_.subscriber, SubscriberOptions("lorry_apply")));
    LORRY_RETURN_IF_ERROR(lease_->AddSessions(control_, {&apply_conn_}));
    LORRY_ASSIGN_OR_RETURN(sub_, state_->LoadSubscription());
    stats_->xacts = std::max(stats_->xacts, sub_.xacts_applied);
    stats_->changes = std::max(stats_->changes, sub_.changes_applied);
    // Which process runs, at once: the first Tick is a second away, and
    // `status` must not show a run without it (or the previous holder).
    StateStore::Progress now;
    now.last_commit_lsn = sub_.last_commit_lsn;
    now.xacts_applied = stats_->xacts;
    now.changes_applied = stats_->changes;
    LORRY_RETURN_IF_ERROR(state_->Heartbeat(now, true));
    // A copy that was running when lorry stopped: start it over, unless its
    // rows are all in at a position the stream has not passed.
    LORRY_ASSIGN_OR_RETURN(auto origin, control_.QueryValue("SELECT pg_replication_origin_progress($1, true)",
                                                            {names_.origin}));
    Lsn resume = std::max(sub_.consistent_lsn.value_or(Lsn()), sub_.confirmed_lsn.value_or(Lsn()));
    if (origin) resume = std::max(resume, Lsn::Parse(*origin).value_or(Lsn()));
    LORRY_RETURN_IF_ERROR(sync::ResetInterruptedCopies(control_, config_.name, resume));
    return Status::Ok();
  }

  // The run lock is held by a session this run's lease did not end: say
  // whose, so that it can be ended by hand (pg_terminate_backend).
  Status RunLockHeld() {
    auto sub = state_->LoadSubscription();
    std::string who = sub.ok() ? fmt::format("last heartbeat {}", sub->heartbeat_at) : "";
    auto h = control_.ExecParams(
        "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'), a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = $1::bigint AND l.objid::bigint = (hashtext($2)::bigint & 4294967295) "
        "AND l.objsubid = 2",
        {std::to_string(kRunLockClass), config_.name});
    if (h.ok() && h->rows() > 0)
      who += fmt::format("; the run lock is held by subscriber session pid {} ({} from {}, since {})", h->Get(0, 0),
                         h->Get(0, 1), h->Get(0, 2), h->Get(0, 3));
    return Status::Precondition(fmt::format(
        "another `lorry run` is already active for subscription \"{}\" ({}); only one may apply at a time",
        config_.name, who));
  }

  Status ConnectProvider() {
    LORRY_ASSIGN_OR_RETURN(provider_, pg::PgConn::Connect(config_.provider, {{}, "provider"}));
    proto_version_ = ProtocolVersionFor(provider_.server_version());
    // `lorry init` refuses it; a configuration changed since must not
    // make a table the source and target of its own copy.
    LORRY_ASSIGN_OR_RETURN(auto provider_id, catalog::IdentifyServer(provider_));
    LORRY_ASSIGN_OR_RETURN(auto subscriber_id, catalog::IdentifyServer(control_));
    LORRY_RETURN_IF_ERROR(catalog::RequireDistinctDatabases(provider_id, subscriber_id));
    return Status::Ok();
  }

  Result<std::vector<TableState>> TablesIn(TableStateKind kind) {
    LORRY_ASSIGN_OR_RETURN(auto all, state_->ListTables());
    std::vector<TableState> out;
    for (auto& t : all)
      if (t.state == kind) out.push_back(std::move(t));
    return out;
  }

  // Marks the pending tables `copying` and copies them at `snapshot`.
  Status CopyPending(const std::vector<TableState>& pending, const std::string& snapshot, Lsn sync_lsn,
                     TableStateKind done_state) {
    std::vector<sync::CopyTask> tasks;
    for (const auto& t : pending) tasks.push_back({t.name});
    sync::CopyPlan plan = CopyPlanFor(snapshot, sync_lsn, done_state);
    spdlog::info("sub={} copying tables={} jobs={} index_jobs={} snapshot_lsn={}", config_.name, tasks.size(),
                 plan.jobs, plan.index_jobs, sync_lsn.ToString());
    auto started = Clock::now();
    Phase(RunPhase::kCopying, fmt::format("initial copy of {} table{}", tasks.size(), tasks.size() == 1 ? "" : "s"));
    LORRY_RETURN_IF_ERROR(sync::CopyTables(plan, tasks, stop_));
    spdlog::info("sub={} copy done tables={} seconds={:.2f}", config_.name, tasks.size(),
                 std::chrono::duration<double>(Clock::now() - started).count());
    return Status::Ok();
  }

  sync::CopyPlan CopyPlanFor(const std::string& snapshot, Lsn sync_lsn, TableStateKind done_state) const {
    sync::CopyPlan plan;
    plan.provider_conninfo = config_.provider;
    plan.subscriber_conninfo = config_.subscriber;
    plan.subscription = config_.name;
    plan.snapshot = snapshot;
    plan.sync_lsn = sync_lsn;
    plan.done_state = done_state;
    plan.jobs = options_.jobs > 0 ? options_.jobs : config_.copy.jobs;
    plan.index_jobs = config_.copy.index_jobs;
    plan.split_tables_larger_than = config_.copy.split_tables_larger_than;
    plan.maintenance_work_mem = config_.copy.maintenance_work_mem;
    plan.fence_sql = lease_->CheckSql();
    return plan;
  }

  // Indexes deferred by a copy that a crash interrupted before their
  // rebuild; tables whose rows were all in then complete their copy. They
  // go to `catching_up` at their copy's LSN: the stream makes them `ready`
  // once it is past it (at once for the initial copy).
  Status RebuildLeftoverIndexes() {
    LORRY_ASSIGN_OR_RETURN(int64_t left, sync::CountDeferredIndexes(control_, config_.name));
    if (left > 0) {
      spdlog::info("sub={} rebuilding {} indexes deferred by an interrupted copy", config_.name, left);
      LORRY_RETURN_IF_ERROR(sync::RebuildDeferredIndexes(config_.subscriber, config_.name, std::nullopt,
                                                         config_.copy.index_jobs, config_.copy.maintenance_work_mem,
                                                         stop_));
    }
    LORRY_ASSIGN_OR_RETURN(auto copied, TablesIn(TableStateKind::kCopying));
    for (const auto& t : copied)
      LORRY_RETURN_IF_ERROR(
          sync::CompleteTable(CopyPlanFor("", Lsn(), TableStateKind::kCatchingUp), t.name,
                              TableStateKind::kCatchingUp));
    return Status::Ok();
  }

  Status PrepareSlotAndCopies() {
    LORRY_ASSIGN_OR_RETURN(
        auto slot, provider_.ExecParams("SELECT plugin, to_jsonb(s)->>'wal_status', database = current_database() "
                                        "FROM pg_replication_slots s WHERE slot_name = $1",
                                        {names_.slot}));
    bool exists = slot.rows() > 0;
    LORRY_ASSIGN_OR_RETURN(auto pending, TablesIn(TableStateKind::kPending));
    LORRY_ASSIGN_OR_RETURN(auto all, state_->ListTables());
    // `lorry resync --all`: nothing depends on the slot's past any more.
    bool afresh = !all.empty() && pending.size() == all.size();
    if (exists && slot.Get(0, 1) == "lost" && afresh) {
      spdlog::warn("sub={} slot={} was invalidated; every table is to be copied again: creating it afresh",
                   config_.name, names_.slot);
      LORRY_RETURN_IF_ERROR(provider_.ExecParams("SELECT pg_drop_replication_slot($1)", {names_.slot}).status());
      exists = false;
      sub_.consistent_lsn.reset();
    }
    if (!exists && sub_.consistent_lsn && afresh) sub_.consistent_lsn.reset();
    if (exists && slot.Get(0, 1) == "lost") return SlotInvalidated();
    if (exists && (slot.Get(0, 0) != "pgoutput" || !slot.GetBool(0, 2)))
      return Status::Precondition(fmt::format("replication slot {} exists on the provider but is not lorry's "
                                              "(plugin {}, or another database): drop or rename it",
                                              names_.slot, slot.Get(0, 0)));
    LORRY_ASSIGN_OR_RETURN(repl_, pg::ReplicationConn::Connect(config_.provider, "provider"));

    if (exists && !sub_.consistent_lsn) {
      // Created by a run that died before recording it: nothing was applied
      // from it, so it is safe to start afresh.
      spdlog::warn("sub={} slot={} was created but never used; creating it again", config_.name, names_.slot);
      LORRY_RETURN_IF_ERROR(
          provider_.ExecParams("SELECT pg_drop_replication_slot($1)", {names_.slot}).status());
      exists = false;
    }
    if (!exists) {
      if (sub_.consistent_lsn)
        return Status::Precondition(fmt::format(
            "replication slot {} is missing on the provider although subscription \"{}\" streamed from it "
            "(consistent point {}): changes made since are lost to lorry. Copy every table again: "
            "`lorry resync --all`, then `lorry run`",
            names_.slot, config_.name, sub_.consistent_lsn->ToString()));
      // A failover slot from PostgreSQL 17 on (README: Provider failover).
      LORRY_ASSIGN_OR_RETURN(auto created, repl_.CreateSlot(names_.slot, false, /*failover=*/true));
      spdlog::info("sub={} created slot={} consistent_point={} proto_version={}{}", config_.name, names_.slot,
                   created.consistent_point.ToString(), proto_version_,
                   provider_.server_version() >= 170000 ? " failover=true" : "");
      LORRY_RETURN_IF_ERROR(apply_conn_
                                .ExecParams("SELECT pg_replication_origin_advance($1, $2)",
                                            {names_.origin, created.consistent_point.ToString()})
                                .status());
      LORRY_RETURN_IF_ERROR(state_->SetConsistentPoint(created.consistent_point, proto_version_));
      sub_.consistent_lsn = created.consistent_point;
      // The stream starts exactly at the consistent point, so tables copied
      // at this snapshot are ready at once.
      if (!pending.empty())
        LORRY_RETURN_IF_ERROR(
            CopyPending(pending, created.snapshot, created.consistent_point, TableStateKind::kReady));
      return RebuildLeftoverIndexes();
    }
    LORRY_RETURN_IF_ERROR(EnsureFailoverSlot());
    // Tables added after the slot was created are copied in the background
    // once the stream runs (StartTableSync).
    return RebuildLeftoverIndexes();
  }

  // PostgreSQL 17+: a slot created as an ordinary one (by an older lorry, or
  // before the provider's upgrade to 17) becomes a failover slot.
  Status EnsureFailoverSlot() {
    if (provider_.server_version() < 170000) return Status::Ok();
    LORRY_ASSIGN_OR_RETURN(auto failover, provider_.QueryValue("SELECT failover FROM pg_replication_slots "
                                                               "WHERE slot_name = $1 AND NOT active",
                                                               {names_.slot}));
    if (!failover || *failover != "f") return Status::Ok();
    LORRY_RETURN_IF_ERROR(repl_.MakeFailoverSlot(names_.slot));
    spdlog::info("sub={} slot={} is now a failover slot", config_.name, names_.slot);
    return Status::Ok();
  }

  // START_REPLICATION refused with "replication slot ... is active for PID
  // N": a walsender still streams the slot to a connection of an earlier
  // session whose close never reached the provider (a network that dropped
  // it); the provider would end it only after wal_sender_timeout. Only the
  // run holding the lease streams from the slot, so it is stale: end it.
  // True when it is gone (start again).
  bool EndStaleWalsender(const Status& refused) {
    static const std::string kActive = "is active for PID ";
    size_t at = refused.message().find(kActive);
    if (at == std::string::npos) return false;
    std::string pid = std::to_string(std::atoi(refused.message().c_str() + at + kActive.size()));
    auto ended = provider_.ExecParams("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                                      "WHERE slot_name = $1 AND active_pid = $2::int",
                                      {names_.slot, pid});
    if (!ended.ok() || ended->rows() == 0 || !ended->GetBool(0, 0)) return false;
    spdlog::warn("sub={} ended walsender pid {} on the provider: it was still streaming slot {} to a connection "
                 "this subscription's runs no longer use",
                 config_.name, pid, names_.slot);
    for (auto until = Clock::now() + std::chrono::seconds(10); Clock::now() < until && !stop_.load();) {
      auto active = provider_.QueryValue("SELECT active_pid::text FROM pg_replication_slots WHERE slot_name = $1",
                                         {names_.slot});
      if (!active.ok()) return false;
      if (active->value_or("") != pid) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Never re-created silently: the changes it no longer has are lost to
  // lorry, and only copying the tables again makes the subscriber whole.
  Status SlotInvalidated() const {
    // The furthest position recorded as applied (the stream's start when
    // nothing was recorded since).
    Lsn since = std::max({sub_.consistent_lsn.value_or(Lsn()), sub_.confirmed_lsn.value_or(Lsn()),
                          sub_.last_commit_lsn.value_or(Lsn()), persisted_confirmed_});
    return Status::Precondition(fmt::format(
        "replication slot {} on the provider was invalidated (wal_status=lost: the provider removed WAL it still "
        "needed, see max_slot_wal_keep_size): provider changes since {} are lost to lorry. Copy every table again "
        "with `lorry resync --all` (then `lorry run`)",
        names_.slot, since.valid() ? since.ToString() : "lorry last ran"));
  }

  Status LoadFilter() {
    LORRY_ASSIGN_OR_RETURN(tables_, state_->ListTables());
    LORRY_ASSIGN_OR_RETURN(auto removals, state_->ListRemovals());
    const auto& tables = tables_;
    filter_.clear();
    pending_.clear();
    // A table removed, then added again, follows its new row.
    for (auto& r : removals)
      filter_[r.name] = {r.apply_from ? TableStateKind::kCatchingUp : TableStateKind::kReady, r.apply_from,
                         r.remove_lsn};
    for (auto& t : tables) {
      filter_[t.name] = {t.state, t.sync_lsn, std::nullopt};
      if (t.state == TableStateKind::kPending) pending_.push_back(t.name);
    }
    // Provider transactions to skip (`lorry skip --lsn`), by commit LSN.
    LORRY_ASSIGN_OR_RETURN(auto skips, control_.ExecParams("SELECT commit_lsn::text FROM lorry.skips "
                                                           "WHERE subscription = $1",
                                                           {config_.name}));
    skips_.clear();
    for (int i = 0; i < skips.rows(); ++i)
      if (auto lsn = Lsn::Parse(skips.Get(i, 0))) skips_.insert(*lsn);
    return Status::Ok();
  }

  bool ShouldApply(const pg::QualifiedName& table, Lsn final_lsn) const {
    if (!skips_.empty() && skips_.count(final_lsn)) {
      skipped_changes_[table.Display()]++;
      return false;
    }
    return Applies(table, final_lsn);
  }

  // ShouldApply without counting skipped changes (for the metrics observer).
  bool Applies(const pg::QualifiedName& table, Lsn final_lsn) const {
    if (!skips_.empty() && skips_.count(final_lsn)) return false;
    auto it = filter_.find(table);
    if (it == filter_.end()) return false;
    if (it->second.remove_lsn && final_lsn >= *it->second.remove_lsn) return false;
    switch (it->second.state) {
      case TableStateKind::kReady:
        return true;
      case TableStateKind::kCatchingUp:
        // Commits before the copy's snapshot LSN are in the copy already.
        return it->second.sync_lsn && final_lsn >= *it->second.sync_lsn;
      default:
        return false;
    }
  }

  Lsn Flushed() const { return std::max(applier_->last_commit_end(), idle_confirmed_); }

  // What the provider may forget: what is committed with the origin, and
  // beyond it only positions already recorded in lorry.subscriptions
  // (confirmed_lsn). So at every start the slot is never ahead of what the
  // subscriber knows, which CheckSlotNotAhead verifies.
  Lsn Reportable() const { return std::max(durable_, std::min(Flushed(), persisted_confirmed_)); }

  // Apply commits are asynchronous: this flushes the subscriber's WAL up to
  // the origin's last commit and returns the provider position it carries
  // (between heartbeats, when the provider asks for a reply).
  Status UpdateDurable() {
    LORRY_ASSIGN_OR_RETURN(auto v, control_.QueryValue("SELECT pg_replication_origin_progress($1, true)",
                                                       {names_.origin}));
    if (auto lsn = Lsn::Parse(v.value_or(""))) durable_ = std::max(durable_, *lsn);
    return Status::Ok();
  }

  Status SendFeedback(bool reply_requested) {
    Lsn flushed = Reportable();
    auto now = protocol::ToPgMicros(std::chrono::system_clock::now());
    LORRY_RETURN_IF_ERROR(
        repl_.Send(protocol::BuildStandbyStatusUpdate(std::max(received_, flushed), flushed, flushed, now, reply_requested)));
    last_feedback_ = Clock::now();
    last_feedback_lsn_ = flushed;
    return Status::Ok();
  }

  // Copies sequence values to the subscriber (sync/sequence_sync.h). A
  // failure does not stop the stream: it is logged (once per distinct
  // problem) and `lorry wait` reports it.
  void SyncSequences() {
    last_sequence_sync_ = Clock::now();
    auto r = sync::SyncSequences(provider_, control_, config_.name, /*wait_for_lock=*/false);
    std::string problem = !r.ok() ? r.status().message() : r->problems.empty() ? "" : r->problems.front();
    if (!problem.empty() && problem != last_sequence_problem_)
      spdlog::warn("sub={} sequences: {}", config_.name, problem);
    last_sequence_problem_ = problem;
    if (r.ok() && r->advanced > 0)
      SPDLOG_DEBUG("sub={} sequences synced={} advanced={}", config_.name, r->sequences, r->advanced);
  }

  // Tables added while the stream runs: one background copy at a time.
  Status ManageTableSync() {
    if (table_sync_ && table_sync_->finished()) {
      Status s = table_sync_->result();
      table_sync_.reset();
      // A failed copy or catch-up is repaired by a fresh start (see
      // ResetInterruptedCopies), which the retry loop does.
      LORRY_RETURN_IF_ERROR(s.WithContext("background table copy"));
      LORRY_RETURN_IF_ERROR(LoadFilter());
    }
    if (table_sync_ || pending_.empty() || stop_.load() || restart_) return Status::Ok();
    // Only a table in a publication this stream asked for can be handed over
    // to it; the others wait for the stream to start again with theirs.
    std::vector<pg::QualifiedName> tables;
    for (const auto& t : pending_) {
      if (gate_->Carries(t)) {
        tables.push_back(t);
      } else if (waiting_tables_.insert(t).second) {
        spdlog::info("sub={} table={} waits for the stream to include its publication ({})", config_.name,
                     t.Display(), GateText());
      }
    }
    if (tables.empty()) return Status::Ok();
    sync::TableSyncOptions o;
    o.copy = CopyPlanFor("", Lsn(), TableStateKind::kCopying);
    o.slot = fmt::format("{}_sync_{}_{}", names_.slot, getpid(), ++table_syncs_);
    // The catch-up reads whole transactions: its loop does not spool streamed ones.
    o.start_options = StreamOptions(proto_version_, stream_publications_, false);
    o.proto_version = proto_version_;
    o.statement_cache_size = config_.apply.statement_cache_size;
    o.limits = {config_.apply.group_max_changes, config_.apply.group_max_delay_ms};
    table_sync_ = std::make_unique<sync::TableSync>(std::move(o), tables);
    table_sync_->PublishPosition(processed_);
    return Status::Ok();
  }

  // "from <gate>" or why it is not known yet (daemon/publication_gate.h).
  std::string GateText() const {
    if (auto g = gate_->gate()) return "position " + g->ToString();
    return "a position known once the provider transactions in progress when they were created have ended";
  }

  // The commit LSN of a transaction whose BEGIN or STREAM COMMIT this is.
  static std::optional<Lsn> CommitLsnOf(const protocol::PgOutputMessage& m) {
    if (auto* b = std::get_if<protocol::BeginMsg>(&m)) return b->final_lsn;
    if (auto* c = std::get_if<protocol::StreamCommitMsg>(&m)) return c->commit_lsn;
    return std::nullopt;
  }

  // Between transactions, before one committed at `position` is applied
  // (or at a keepalive's position): whether the stream ends here, at the
  // gate of a publication it lacks. The next stream starts at the gate (or
  // here, if already past it) with that publication; nothing at or after
  // that position has been applied.
  bool AtGate(std::optional<Lsn> position) {
    auto gate = gate_->gate();
    if (!position || !gate || *position < *gate || restart_) return false;
    restart_from_ = std::max(processed_, *gate);
    restart_ = true;
    spdlog::info("sub={} stream at publications' gate {}: starting again from {} with {}", config_.name,
                 gate->ToString(), restart_from_.ToString(), fmt::join(gate_->waiting(), ", "));
    return true;
  }

  // The stream pauses, between transactions, while the background copy's
  // catch-up reaches its position (see sync/table_sync.h).
  Status HandOverTableSync() {
    if (applier_->group_pending()) LORRY_RETURN_IF_ERROR(CommitGroupOrFail());
    Lsn at = processed_;
    auto started = Clock::now();
    LORRY_ASSIGN_OR_RETURN(bool handed, table_sync_->HandOver(at, kHandOverTimeout, [this] {
      return stop_.load() ? Status::Cancelled("stopping") : SendFeedback(false);
    }));
    double secs = std::chrono::duration<double>(Clock::now() - started).count();
    if (!handed) {
      spdlog::warn("sub={} table sync did not reach the stream's position {} within {} s; going on",
                   config_.name, at.ToString(), kHandOverTimeout.count());
      return Status::Ok();
    }
    spdlog::info("sub={} tables handed over at stream position {} (stream paused {:.3f} s)", config_.name,
                 at.ToString(), secs);
    return LoadFilter();
  }

  // Removed tables whose last changes (before their remove LSN) are applied.
  Status ForgetRemovedTables(Lsn flushed) {
    for (auto it = filter_.begin(); it != filter_.end();) {
      const auto& f = it->second;
      if (f.remove_lsn && flushed >= *f.remove_lsn) {
        LORRY_RETURN_IF_ERROR(state_->ForgetRemoval(it->first));
        spdlog::info("sub={} table={} removed: changes committed before {} are applied", config_.name,
                     it->first.Display(), f.remove_lsn->ToString());
        it = filter_.erase(it);
        continue;
      }
      ++it;
    }
    return Status::Ok();
  }

  // Once a second: table states, catch-up hand-over, heartbeat, feedback.
  Status Tick() {
    LORRY_RETURN_IF_ERROR(LoadFilter());
    if (hold_) LORRY_RETURN_IF_ERROR(hold_->Poll());
    if (!pending_.empty() || !gate_->waiting().empty()) LORRY_RETURN_IF_ERROR(gate_->Poll(provider_, tables_));
    LORRY_RETURN_IF_ERROR(ManageTableSync());
    // The heartbeat below commits synchronously: its WAL flush covers every
    // apply commit that returned before it (earlier in the WAL).
    Lsn committed_before_heartbeat = applier_->last_commit_end();
    Lsn flushed = Flushed();
    LORRY_RETURN_IF_ERROR(ForgetRemovedTables(flushed));
    for (auto& [name, f] : filter_) {
      if (f.remove_lsn) continue;
      if (f.state == TableStateKind::kCatchingUp && f.sync_lsn && flushed >= *f.sync_lsn) {
        LORRY_RETURN_IF_ERROR(state_->SetState(name, TableStateKind::kReady));
        f.state = TableStateKind::kReady;
        spdlog::info("sub={} table={} caught up at {}: ready", config_.name, name.Display(), flushed.ToString());
      }
    }
    *stats_ = applier_->stats();
    StateStore::Progress p;
    if (flushed.valid()) p.confirmed_lsn = flushed;
    if (applier_->last_commit_end().valid()) p.last_commit_lsn = applier_->last_commit_end();
    p.last_commit_time_pg_us = applier_->last_commit_time();
    p.xacts_applied = stats_->xacts;
    p.changes_applied = stats_->changes;
    LORRY_RETURN_IF_ERROR(state_->Heartbeat(p, true));
    durable_ = std::max(durable_, committed_before_heartbeat);
    if (p.confirmed_lsn) persisted_confirmed_ = std::max(persisted_confirmed_, *p.confirmed_lsn);
    if (Reportable() != last_feedback_lsn_ || Clock::now() - last_feedback_ > std::chrono::seconds(10))
      LORRY_RETURN_IF_ERROR(SendFeedback(false));
    if (Clock::now() - last_sequence_sync_ >= kSequenceSyncInterval) SyncSequences();
    ReportToMetrics(flushed);
    ApplyLiveSettings();
    if (options_.events) options_.events->OnAlive();
    last_tick_ = Clock::now();
    return Status::Ok();
  }

  void Phase(RunPhase phase, const std::string& detail) {
    if (options_.events) options_.events->OnPhase(phase, detail);
  }

  // Positions and counts for metrics and lorry.status (no-op without a sink).
  void ReportToMetrics(Lsn flushed) {
    if (!observer_) return;
    observer_->OnDurable(flushed);
    metrics::StreamPosition pos{received_, flushed, last_feedback_lsn_, observer_->OldestPendingCommitTime(),
                                stats_->xacts, stats_->changes, stats_->missing_rows};
    options_.metrics->OnTick(pos);
  }

  // Apply limits changed by a reload (SIGHUP).
  void ApplyLiveSettings() {
    if (!options_.live) return;
    apply::Applier::GroupLimits limits{options_.live->group_max_changes.load(),
                                       options_.live->group_max_delay_ms.load()};
    if (limits.max_changes != group_limits_.max_changes || limits.max_delay_ms != group_limits_.max_delay_ms) {
      applier_->set_group_limits(limits);
      group_limits_ = limits;
    }
  }

  Status Stream() {
    group_limits_ = {config_.apply.group_max_changes, config_.apply.group_max_delay_ms};
    if (options_.metrics)
      observer_ = std::make_unique<metrics::StreamObserver>(
          options_.metrics, [this](const pg::QualifiedName& t, Lsn final_lsn) { return Applies(t, final_lsn); });
    applier_ = std::make_unique<apply::Applier>(
        &apply_conn_, names_.origin,
        [this](const pg::QualifiedName& t, Lsn final_lsn) { return ShouldApply(t, final_lsn); },
        config_.apply.statement_cache_size,
        group_limits_);
    applier_->set_stats(*stats_);
    applier_->set_commit_guard(lease_->CheckSql());
    if (careful_until_.valid()) {
      applier_->set_careful_until(careful_until_);
      spdlog::info("sub={} applying carefully (one statement per row, one commit per transaction) up to {} after "
                   "an apply error",
                   config_.name, careful_until_.ToString());
    }
    if (proto_version_ >= 2)
      applier_->EnableLorryMessages(config_.name, [this](Lsn final_lsn) { return skips_.count(final_lsn) > 0; });
    ApplyLiveSettings();
    LORRY_RETURN_IF_ERROR(applier_->Setup());
    hold_ = std::make_unique<CompareHold>(&control_, config_.name);
    LORRY_RETURN_IF_ERROR(hold_->Poll());
    LORRY_ASSIGN_OR_RETURN(auto origin_lsn,
                           apply_conn_.QueryValue("SELECT pg_replication_origin_progress($1, true)", {names_.origin}));
    Lsn start = std::max(sub_.consistent_lsn.value_or(Lsn()), restart_from_);
    if (origin_lsn) start = std::max(start, Lsn::Parse(*origin_lsn).value_or(Lsn()));
    restart_from_ = Lsn();
    idle_confirmed_ = start;
    durable_ = start;  // read with flush = true
    persisted_confirmed_ = std::max(start, sub_.confirmed_lsn.value_or(Lsn()));
    processed_ = start;
    LORRY_RETURN_IF_ERROR(LoadFilter());

    LORRY_ASSIGN_OR_RETURN(stream_publications_, gate_->Begin(provider_, tables_, start));
    if (!gate_->waiting().empty())
      spdlog::info("sub={} publications {} were created after position {}: the stream asks for them from {}",
                   config_.name, fmt::join(gate_->waiting(), ", "), start.ToString(), GateText());
    // In-progress transactions are spooled to files until their commit;
    // after the spool filled up, the provider keeps them until then instead.
    bool in_progress = proto_version_ >= 2 && start >= whole_transactions_until_;
    if (in_progress) {
      LORRY_ASSIGN_OR_RETURN(spool_, replication::StreamSpool::Create({config_.run.spool_dir,
                                                                       config_.run.spool_max_size}));
    } else if (proto_version_ >= 2) {
      spdlog::info("sub={} large transactions are asked for once committed, not while in progress, from {} to {} "
                   "at least (the spool was full)",
                   config_.name, start.ToString(), whole_transactions_until_.ToString());
    }
    std::string options = StreamOptions(proto_version_, stream_publications_, in_progress);
    Status started = repl_.StartReplication(names_.slot, start, options);
    if (!started.ok() && EndStaleWalsender(started)) started = repl_.StartReplication(names_.slot, start, options);
    if (Status st = started; !st.ok()) {
      // Invalidated since the check at start, or while streaming.
      if (st.message().find("can no longer get changes from replication slot") != std::string::npos ||
          st.message().find("has been invalidated") != std::string::npos)
        return SlotInvalidated();
      return st;
    }
    spdlog::info("sub={} streaming from slot={} start={} proto_version={}", config_.name, names_.slot,
                 start.ToString(), proto_version_);
    Phase(RunPhase::kStreaming, "from " + start.ToString());
    LORRY_RETURN_IF_ERROR(state_->RecordError(""));
    LORRY_RETURN_IF_ERROR(CheckSlotNotAhead(start));
    protocol::PgOutputDecoder decoder(proto_version_);
    last_tick_ = Clock::now();
    auto last_message = Clock::now();
    bool probed = false;
    const auto network_timeout = std::chrono::duration<double>(config_.run.network_timeout);
    while (!stop_.load()) {
      // `lorry compare` asked to hold at an LSN (state/compare_hold.h): between
      // transactions, HoldForCompare commits and waits while it must.
      if (!applier_->in_remote_transaction()) {
        LORRY_ASSIGN_OR_RETURN(bool holding, HoldForCompare(decoder));
        if (holding && restart_) break;  // new tables to copy: the next session holds again
        if (holding) {
          last_message = Clock::now();  // not reading while holding: no silence to detect
          continue;
        }
      }
      // `run --until` short of its position: a keepalive tells when the
      // stream is past it, also on an idle provider.
      if (options_.until.valid() && received_ < options_.until &&
          Clock::now() - last_feedback_ > std::chrono::milliseconds(500))
        LORRY_RETURN_IF_ERROR(SendFeedback(true));
      // With a group open, only look at what is already waiting: when
      // nothing is, the group commits now (a lone transaction is not delayed).
      bool group = applier_->group_pending();
      LORRY_ASSIGN_OR_RETURN(auto data, repl_.Read(std::chrono::milliseconds(group ? 0 : 100)));
      if (!data && group) LORRY_RETURN_IF_ERROR(CommitGroupOrFail());
      if (data) {
        last_message = Clock::now();
        probed = false;
      } else if (Clock::now() - last_message > network_timeout) {
        // The walsender sends keepalives and answers the probe below at
        // once: silence this long means the connection is dead (e.g. a
        // network dropping packets), even if TCP has not noticed yet.
        return Status::Connection(fmt::format("{}: nothing received on the replication connection for {:.0f} s "
                                              "(run.network_timeout); reconnecting",
                                              repl_.label(), config_.run.network_timeout));
      } else if (!probed && Clock::now() - last_message > network_timeout / 2) {
        LORRY_RETURN_IF_ERROR(SendFeedback(true));  // reply requested: a keepalive comes back
        probed = true;
      }
      if (data) {
        LORRY_ASSIGN_OR_RETURN(auto frame, protocol::ParseWalSenderFrame(*data));
        if (auto* x = std::get_if<protocol::XLogData>(&frame)) {
          received_ = std::max(received_, x->wal_end);
          LORRY_ASSIGN_OR_RETURN(auto msg, decoder.Decode(x->data));
          if (AtUntil(CommitLsnOf(msg)) || AtGate(CommitLsnOf(msg))) break;
          // A transaction committed at or after compare's hold point: kept for later.
          if (hold_->Stash(msg)) continue;
          LORRY_RETURN_IF_ERROR(Apply(decoder, msg, x->data));
        } else if (auto* k = std::get_if<protocol::PrimaryKeepalive>(&frame)) {
          received_ = std::max(received_, k->wal_end);
          if (!applier_->in_remote_transaction() && !decoder.in_stream() &&
              (AtUntil(k->wal_end) || AtGate(k->wal_end)))
            break;
          if (!applier_->in_remote_transaction()) processed_ = std::max(processed_, k->wal_end);
          // Between transactions everything sent so far is applied: the
          // position is confirmed even when the WAL held nothing for lorry.
          // With a group open, it is confirmed once the group commits.
          if (!applier_->in_transaction())
            idle_confirmed_ = std::max(idle_confirmed_, k->wal_end);
          else if (!applier_->in_remote_transaction())
            group_keepalive_ = std::max(group_keepalive_, k->wal_end);
          if (k->reply_requested) {
            LORRY_RETURN_IF_ERROR(UpdateDurable());
            LORRY_RETURN_IF_ERROR(SendFeedback(false));
          }
        }
      }
      if (observer_) observer_->OnCommitted(applier_->last_commit_end());
      if (Clock::now() - last_tick_ >= std::chrono::seconds(1)) LORRY_RETURN_IF_ERROR(Tick());
      if (table_sync_) {
        table_sync_->PublishPosition(processed_);
        if (!applier_->in_remote_transaction() && table_sync_->WantsHandOver())
          LORRY_RETURN_IF_ERROR(HandOverTableSync());
      }
      if (restart_ && applier_->group_pending()) LORRY_RETURN_IF_ERROR(CommitGroupOrFail());
      if (restart_ && !applier_->in_transaction()) break;
    }
    if (std::string why = lease_->lost_reason(); !why.empty()) {
      // Deposed: commit nothing more (another run may be applying).
      applier_->Rollback();
      return Status::Connection("lost the run lease: " + why);
    }
    if (applier_->group_pending()) LORRY_RETURN_IF_ERROR(CommitGroupOrFail());
    applier_->Rollback();
    if (reached_until_) LORRY_RETURN_IF_ERROR(StopAtUntil());
    return Tick();
  }

  // Between transactions, before one committed at `position` is applied (or
  // at a keepalive's position): whether the stream ends here for `run
  // --until`. Everything committed before `position` has been processed.
  bool AtUntil(std::optional<Lsn> position) {
    if (!options_.until.valid() || !position || *position < options_.until) return false;
    reached_until_ = true;
    return true;
  }

  // Stopped at `run --until`: everything committed before it is applied, so
  // the origin may move to it (never back: a subscription already past it
  // applied nothing this time). The next run starts there.
  Status StopAtUntil() {
    Lsn until = options_.until;
    idle_confirmed_ = std::max(idle_confirmed_, until);
    LORRY_ASSIGN_OR_RETURN(auto origin, apply_conn_.QueryValue("SELECT pg_replication_origin_progress($1, false)",
                                                               {names_.origin}));
    if (Lsn::Parse(origin.value_or("")).value_or(Lsn()) < until) {
      // pg_replication_origin_advance refuses an origin bound to a session.
      LORRY_RETURN_IF_ERROR(apply_conn_.Exec("SELECT pg_replication_origin_session_reset()").status());
      LORRY_RETURN_IF_ERROR(apply_conn_.Exec("BEGIN").status());
      Status s = apply_conn_.Exec(lease_->CheckSql()).status();
      if (s.ok())
        s = apply_conn_.ExecParams("SELECT pg_replication_origin_advance($1, $2)", {names_.origin, until.ToString()})
                .status();
      if (s.ok()) s = apply_conn_.Exec("COMMIT").status();
      if (!s.ok()) {
        (void)apply_conn_.Exec("ROLLBACK");
        return s.WithContext(fmt::format("moving replication origin {} to --until {}", names_.origin, until.ToString()));
      }
    }
    spdlog::info("sub={} reached --until {}: every provider transaction committed before it is applied, none "
                 "after; stopping",
                 config_.name, until.ToString());
    return Status::Ok();
  }

  // A provider transaction skipped on request: none of its changes were
  // applied. Recorded (once) with what was not applied; the origin moves
  // past it with the next transaction applied (until then, a restart
  // receives it again and skips it again).
  Status RecordSkip(const protocol::CommitMsg& c) {
    nlohmann::json changes = nlohmann::json::object();
    for (const auto& [table, n] : skipped_changes_) changes[table] = n;
    skipped_changes_.clear();
    spdlog::warn("sub={} skipped provider transaction commit_lsn={} end_lsn={} as requested (lorry skip): "
                 "changes not applied {}",
                 config_.name, c.commit_lsn.ToString(), c.end_lsn.ToString(), changes.dump());
    return control_
        .ExecParams("UPDATE lorry.skips SET skipped_at = coalesce(skipped_at, now()), end_lsn = $3, "
                    "commit_time = timestamptz '2000-01-01 00:00:00+00' + make_interval(secs => $4::float8), "
                    "changes = CASE WHEN skipped_at IS NULL THEN $5::jsonb ELSE changes END "
                    "WHERE subscription = $1 AND commit_lsn = $2",
                    {config_.name, c.commit_lsn.ToString(), c.end_lsn.ToString(),
                     fmt::format("{}", static_cast<double>(c.commit_time) / 1e6), changes.dump()})
        .status();
  }

  static bool IsStreamControl(const protocol::PgOutputMessage& m) {
    return std::holds_alternative<protocol::StreamStartMsg>(m) || std::holds_alternative<protocol::StreamStopMsg>(m) ||
           std::holds_alternative<protocol::StreamAbortMsg>(m) || std::holds_alternative<protocol::StreamCommitMsg>(m);
  }

  // The (sub)transaction an in-stream message belongs to.
  static Xid XidOf(const protocol::PgOutputMessage& m) {
    return std::visit(
        [](const auto& v) -> Xid {
          if constexpr (requires { v.xid; }) return v.xid;
          else return 0;
        },
        m);
  }

  // In-progress transactions streamed by the provider: their changes are
  // spooled to files (replication/stream_spool.h) and applied, as one
  // ordinary transaction, only at STREAM COMMIT.
  Status OnStreamed(const protocol::PgOutputDecoder& decoder, const protocol::PgOutputMessage& msg,
                    std::string_view raw) {
    if (!spool_) return Status::Protocol("the provider streamed an in-progress transaction lorry did not ask for");
    if (auto* start = std::get_if<protocol::StreamStartMsg>(&msg)) {
      if (start->first_segment) return spool_->Abort(start->xid, start->xid);  // begins afresh
      return Status::Ok();
    }
    if (std::holds_alternative<protocol::StreamStopMsg>(msg)) return Status::Ok();
    if (auto* abort = std::get_if<protocol::StreamAbortMsg>(&msg)) return spool_->Abort(abort->xid, abort->subxid);
    if (auto* commit = std::get_if<protocol::StreamCommitMsg>(&msg)) return ApplyStreamed(*commit);
    return spool_->Append(decoder.stream_xid(), XidOf(msg), raw);
  }

  // The metrics observer sees a streamed transaction as it is applied: as
  // an ordinary one, at STREAM COMMIT (never what was spooled, nor aborted).
  Status ApplyStreamed(const protocol::StreamCommitMsg& c) {
    auto observe = [&](const protocol::PgOutputMessage& m) {
      if (observer_) observer_->OnMessage(m);
    };
    protocol::PgOutputMessage begin = protocol::BeginMsg{c.commit_lsn, c.commit_time, c.xid};
    LORRY_RETURN_IF_ERROR(applier_->Handle(begin));
    observe(begin);
    // The spooled messages were sent inside stream blocks (they carry an
    // xid): decode them as such.
    protocol::PgOutputDecoder replay(proto_version_);
    std::string start = {'S', static_cast<char>(c.xid >> 24), static_cast<char>(c.xid >> 16),
                         static_cast<char>(c.xid >> 8), static_cast<char>(c.xid), 1};
    LORRY_RETURN_IF_ERROR(replay.Decode(start).status());
    int64_t bytes = spool_->bytes(), messages = 0;
    LORRY_RETURN_IF_ERROR(spool_->Replay(c.xid, [&](std::string_view raw) -> Status {
      LORRY_ASSIGN_OR_RETURN(auto m, replay.Decode(raw));
      messages++;
      LORRY_RETURN_IF_ERROR(applier_->Handle(m));
      observe(m);
      return Status::Ok();
    }));
    protocol::PgOutputMessage commit = protocol::CommitMsg{0, c.commit_lsn, c.end_lsn, c.commit_time};
    LORRY_RETURN_IF_ERROR(applier_->Handle(commit));
    observe(commit);
    spdlog::info("sub={} streamed transaction xid={} committed at {}: {} messages applied from the spool ({} kB)",
                 config_.name, c.xid, c.commit_lsn.ToString(), messages, (bytes - spool_->bytes()) / 1024);
    return Status::Ok();
  }

  // Applies one message; an apply error rolls back (see Stream()).
  Status Apply(const protocol::PgOutputDecoder& decoder, const protocol::PgOutputMessage& msg,
               std::string_view raw) {
    // Streamed (in-progress) transactions are observed when applied (ApplyStreamed).
    bool streamed = decoder.in_stream() || IsStreamControl(msg);
    if (observer_ && !streamed) observer_->OnMessage(msg);
    Status s = streamed ? OnStreamed(decoder, msg, raw) : applier_->Handle(msg);
    if (!s.ok() && spool_ && spool_->full()) {
      // Not the data's fault: the stream starts again without spooling.
      applier_->Rollback();
      spool_full_ = true;
      return s;
    }
    if (!s.ok()) {
      // A change that cannot be applied (a missing column, a
      // constraint) stops applying but not the daemon: the cause can
      // be fixed on the subscriber, and the retry goes on from the
      // origin without losing anything.
      applier_->Rollback();
      apply_failed_ = true;
      return s;
    }
    if (auto* c = std::get_if<protocol::CommitMsg>(&msg)) {
      if (skips_.count(c->commit_lsn)) LORRY_RETURN_IF_ERROR(RecordSkip(*c));
      processed_ = std::max(processed_, c->end_lsn);
    } else if (auto* sc = std::get_if<protocol::StreamCommitMsg>(&msg)) {
      if (skips_.count(sc->commit_lsn))
        LORRY_RETURN_IF_ERROR(RecordSkip(protocol::CommitMsg{0, sc->commit_lsn, sc->end_lsn, sc->commit_time}));
      processed_ = std::max(processed_, sc->end_lsn);
    }
    return s;
  }

  // `lorry compare`'s hold, between transactions. Returns true while the
  // stream must neither read nor apply: everything before the hold's LSN is
  // committed and recorded, and compare has not released it yet.
  Result<bool> HoldForCompare(const protocol::PgOutputDecoder& decoder) {
    // A kept BEGIN or STREAM COMMIT (outside stream blocks: no raw bytes needed).
    if (auto released = hold_->TakeReleased()) LORRY_RETURN_IF_ERROR(Apply(decoder, *released, {}));
    if (applier_->in_remote_transaction() || !hold_->requested()) return false;
    if (!hold_->Reached(received_)) {
      // Ask for a keepalive: its position tells when the stream is past the LSN.
      if (Clock::now() - last_feedback_ > std::chrono::milliseconds(500)) LORRY_RETURN_IF_ERROR(SendFeedback(true));
      return false;
    }
    if (applier_->group_pending()) LORRY_RETURN_IF_ERROR(CommitGroupOrFail());
    LORRY_RETURN_IF_ERROR(hold_->MarkHeld(Flushed()));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (Clock::now() - last_tick_ >= std::chrono::seconds(1)) LORRY_RETURN_IF_ERROR(Tick());
    return true;
  }

  // Invariant: lorry never confirms to the slot more than the subscriber
  // recorded. A slot ahead of that means changes in between may never be
  // sent again: say so loudly (and keep the evidence in status).
  Status CheckSlotNotAhead(Lsn start) {
    LORRY_ASSIGN_OR_RETURN(auto slot_lsn, provider_.QueryValue("SELECT confirmed_flush_lsn::text FROM "
                                                               "pg_replication_slots WHERE slot_name = $1",
                                                               {names_.slot}));
    Lsn known = std::max(start, sub_.confirmed_lsn.value_or(Lsn()));
    auto slot = Lsn::Parse(slot_lsn.value_or(""));
    if (slot && *slot > known) {
      std::string msg = fmt::format(
          "replication slot {} was confirmed up to {}, beyond what the subscriber recorded ({}): provider "
          "transactions committed between the two may be missing on the subscriber. Please compare the tables "
          "and report this as a lorry bug",
          names_.slot, slot->ToString(), known.ToString());
      spdlog::error("sub={} {}", config_.name, msg);
      LORRY_RETURN_IF_ERROR(state_->RecordError(msg));
    }
    return Status::Ok();
  }

  Status CommitGroupOrFail() {
    Status s = applier_->CommitGroup();
    if (!s.ok()) {
      applier_->Rollback();
      apply_failed_ = true;
      group_keepalive_ = Lsn();
      return s;
    }
    idle_confirmed_ = std::max(idle_confirmed_, group_keepalive_);
    group_keepalive_ = Lsn();
    return s;
  }

  const Config& config_;
  const RunOptions& options_;
  const std::atomic<bool>& stop_;  // the lease's abort flag: a stop request or the lease lost
  RunLease* lease_;
  SubscriptionNames names_;
  apply::ApplyStats* stats_;
  Lsn careful_until_;

  pg::PgConn control_;     // state, heartbeat and the run lock
  pg::PgConn apply_conn_;  // the applier's own session (bound to the origin)
  pg::PgConn provider_;
  pg::ReplicationConn repl_;
  std::unique_ptr<StateStore> state_;
  std::unique_ptr<apply::Applier> applier_;
  std::unique_ptr<replication::StreamSpool> spool_;  // when the stream asks for in-progress transactions
  apply::Applier::GroupLimits group_limits_;
  std::unique_ptr<metrics::StreamObserver> observer_;  // set when options_.metrics is
  std::unique_ptr<CompareHold> hold_;  // lorry compare's hold (state/compare_hold.h)
  SubscriptionRow sub_;
  int proto_version_ = 1;

  std::map<pg::QualifiedName, TableFilterState> filter_;
  std::set<Lsn> skips_;  // commit LSNs of provider transactions to skip
  mutable std::map<std::string, int64_t> skipped_changes_;  // of the transaction being skipped, per table
  Lsn received_;
  Lsn idle_confirmed_;
  Lsn group_keepalive_;  // a keepalive's position seen while a group was open
  Lsn persisted_confirmed_;  // confirmed_lsn as last written to lorry.subscriptions
  Lsn durable_;              // origin progress known flushed on the subscriber
  Lsn last_feedback_lsn_;
  Clock::time_point last_feedback_;
  Clock::time_point last_tick_;
  Clock::time_point last_sequence_sync_;
  std::string last_sequence_problem_;
  bool restart_ = false;  // at a publication's gate: the stream ends, the next session asks for it
  // Every transaction with a commit LSN below it is processed (applied or
  // skipped), none at or after it: a commit's end or a keepalive between
  // transactions (see sync/table_sync.h).
  Lsn processed_;
  std::vector<std::string> stream_publications_;  // what this stream asked for
  std::vector<pg::QualifiedName> pending_;
  std::vector<TableState> tables_;  // as LoadFilter last read them
  std::set<pg::QualifiedName> waiting_tables_;  // announced as waiting for their publication
  PublicationGate* gate_;
  Lsn restart_from_;
  Lsn whole_transactions_until_;
  int table_syncs_ = 0;
  bool apply_failed_ = false;
  bool reached_until_ = false;
  bool spool_full_ = false;
  // Last: stopped (and joined) before the connections above go.
  std::unique_ptr<sync::TableSync> table_sync_;
};

// The commit LSN of the provider transaction an apply error is about: the
// applier's context names it "lsn=X committed at ..." (Applier::Where).
std::optional<Lsn> FailedTransactionLsn(const std::string& message) {
  size_t at = message.find(" lsn=");
  if (at == std::string::npos) return std::nullopt;
  size_t start = at + 5;
  size_t end = message.find_first_of(" :;,)", start);
  return Lsn::Parse(message.substr(start, end == std::string::npos ? std::string::npos : end - start));
}

bool Retryable(const Status& s) {
  return s.kind() == Status::Kind::kConnection || s.kind() == Status::Kind::kServer;
}

// A stop request not done with after a second (a clean stop takes less)
// cancels what the process's connections are running, then again every
// second until the run is over: a wait on a lock, a COPY or an index build
// ends within seconds (the stop flag is only seen between statements). What
// a cancelled statement did is rolled back; the origin moves only with
// committed data, so nothing is lost. The control session (the final
// heartbeat) and the lease's are left alone.
class StopCanceller {
 public:
  explicit StopCanceller(const std::atomic<bool>& stop) : stop_(stop), thread_([this] { Loop(); }) {}
  ~StopCanceller() {
    done_ = true;
    thread_.join();
  }
  StopCanceller(const StopCanceller&) = delete;
  StopCanceller& operator=(const StopCanceller&) = delete;

 private:
  void Loop() {
    std::optional<Clock::time_point> next;  // set when the stop is seen
    while (!done_.load()) {
      if (stop_.load() && !next) next = Clock::now() + std::chrono::seconds(1);
      if (next && Clock::now() >= *next) {
        pg::CancelRunningQueries();
        next = Clock::now() + std::chrono::seconds(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const std::atomic<bool>& stop_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Sleeps up to `d`, waking early on stop.
void SleepUnlessStopped(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
  auto until = Clock::now() + d;
  while (!stop.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

Status Run(const Config& config, const RunOptions& options, const std::atomic<bool>& stop) {
  apply::ApplyStats stats;
  std::mt19937 rng(static_cast<unsigned>(getpid()));
  int failures = 0;
  RunEvents* events = options.events;
  auto phase = [events](RunPhase p, const std::string& detail) {
    if (events) events->OnPhase(p, detail);
  };
  RunLease::Options lease_options{.conninfo = config.subscriber,
                                  .subscription = config.name,
                                  .takeover_timeout_s = config.run.takeover_timeout,
                                  .network_timeout_s = config.run.network_timeout,
                                  .on_standby = nullptr,
                                  .on_retry = nullptr};
  lease_options.on_standby = [phase](const std::string& holder) {
    phase(RunPhase::kStandby, "the lease is held by " + holder);
  };
  lease_options.on_retry = [phase](const std::string& error) { phase(RunPhase::kRetrying, error); };
  RunLease lease(lease_options, stop);
  StopCanceller canceller(stop);
  // After an apply error, what was received is applied again one row and
  // one transaction at a time: the error then names its own transaction.
  Lsn careful_until;
  PublicationGate gate(SubscriptionNames::For(config.name));
  Lsn restart_from;
  Lsn whole_transactions_until;  // the spool was full up to there (see Session)
  while (!stop.load()) {
    phase(RunPhase::kStarting, "taking the run lease");
    // A standby until this run holds the lease (at once when nobody does).
    if (Status held = lease.WaitUntilHeld(); !held.ok()) {
      if (stop.load()) break;
      spdlog::error("sub={} stopping: {}", config.name, held.message());
      return held;
    }
    Session session(config, options, &lease, &stats, careful_until, &gate, restart_from, whole_transactions_until);
    Status s = session.Run();
    // Valid only after a clean end (the last heartbeat flushed what it applied).
    restart_from = s.ok() ? session.restart_from() : Lsn();
    if (s.ok() && session.reached_until()) return Status::Ok();
    if (session.apply_failed()) careful_until = std::max(careful_until, session.received());
    if (stop.load()) break;
    if (!lease.lost_reason().empty()) {
      failures = 0;  // deposed: stand by again
      continue;
    }
    if (s.ok()) continue;
    if (session.spool_full()) {
      // Nothing lost: the origin has not moved past the transaction, which
      // the provider sends again, after its commit, to the next stream.
      whole_transactions_until = std::max(whole_transactions_until, session.received());
      spdlog::warn("sub={} {}; streaming again, with large transactions sent once committed up to {} at least",
                   config.name, s.message(), whole_transactions_until.ToString());
      continue;
    }
    if (session.apply_failed())
      if (auto lsn = FailedTransactionLsn(s.message()))
        s = s.WithMessage(fmt::format("{}; to skip this provider transaction (all its changes): lorry skip --lsn {}",
                                      s.message(), lsn->ToString()));
    if (!Retryable(s) && !session.apply_failed()) {
      spdlog::error("sub={} stopping: {}", config.name, s.message());
      if (auto c = pg::PgConn::Connect(config.subscriber, {{}, "subscriber"}); c.ok())
        (void)StateStore(&c.value(), config.name).RecordError(s.message());
      return s;
    }
    if (session.made_progress()) failures = 0;
    failures++;
    if (options.metrics) options.metrics->OnFailure(metrics::FailureKind(s, session.apply_failed()));
    if (options.max_retries > 0 && failures > options.max_retries) return s;
    // Capped exponential backoff with jitter: 1, 2, 4 ... 30 s.
    int base_ms = std::min(30000, 1000 << std::min(failures - 1, 5));
    int delay_ms = base_ms / 2 + static_cast<int>(rng() % static_cast<unsigned>(base_ms / 2 + 1));
    spdlog::warn("sub={} {}; retrying in {:.1f} s (attempt {})", config.name, s.message(), delay_ms / 1000.0,
                 failures);
    phase(RunPhase::kRetrying, s.message());
    // Record it where `lorry status` shows it; the subscriber may be the one down.
    if (auto c = pg::PgConn::Connect(config.subscriber, {{}, "subscriber"}); c.ok())
      (void)StateStore(&c.value(), config.name).RecordError(s.message());
    SleepUnlessStopped(std::chrono::milliseconds(delay_ms), stop);
  }
  spdlog::info("sub={} stopped", config.name);
  return Status::Ok();
}

}  // namespace lorry::daemon
