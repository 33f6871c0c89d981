#include "daemon/run_lease.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "common/log.h"
#include "state/state_store.h"

namespace lorry::daemon {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

int64_t Ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

milliseconds Ms(double seconds) { return milliseconds(static_cast<int64_t>(seconds * 1000)); }

std::string HostName() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return host;
}

}  // namespace

RunLease::RunLease(Options options, const std::atomic<bool>& stop) : options_(std::move(options)), stop_(stop) {
  host_ = HostName();
  std::random_device rd;
  owner_ = fmt::format("{}:{}:{:08x}", host_, getpid(), rd());
  double t = options_.takeover_timeout_s;
  renew_every_ = std::min(milliseconds(1000), Ms(t / 4));
  standby_every_ = std::min(milliseconds(250), Ms(t / 8));
  hold_limit_ = Ms(t) - renew_every_;
  thread_ = std::thread([this] { Loop(); });
  watch_thread_ = std::thread([this] { Watch(); });
}

RunLease::~RunLease() {
  quit_ = true;
  if (thread_.joinable()) thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  Release();
}

std::chrono::milliseconds RunLease::QueryTimeout() const {
  return std::max(milliseconds(500), std::min(Ms(options_.network_timeout_s), Ms(options_.takeover_timeout_s / 3)));
}

void RunLease::SleepFor(milliseconds d) {
  auto until = Clock::now() + d;
  while (!quit_ && Clock::now() < until) std::this_thread::sleep_for(std::min(milliseconds(20), d));
}

void RunLease::Watch() {
  while (!quit_) {
    if (stop_) abort_ = true;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto since = std::chrono::nanoseconds(Ns(Clock::now()) - last_good_renewal_sent_.load());
      if (state_ == State::kHeld && since > hold_limit_)
        Lose(fmt::format("could not renew it for {:.1f} s (subscriber unreachable or not answering); a standby "
                         "may take over",
                         std::chrono::duration<double>(since).count()));
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

Status RunLease::WaitUntilHeld() {
  std::unique_lock<std::mutex> l(mu_);
  lost_reason_.clear();
  if (state_ != State::kHeld) state_ = State::kStandby;
  while (true) {
    if (stop_) return Status::Cancelled("stop requested");
    if (!fatal_.ok()) return fatal_;
    if (state_ == State::kHeld) {
      abort_ = stop_.load();
      return Status::Ok();
    }
    cv_.wait_for(l, milliseconds(50));
  }
}

std::string RunLease::lost_reason() const {
  std::lock_guard<std::mutex> l(mu_);
  return lost_reason_;
}

std::string RunLease::CheckSql() const {
  return fmt::format("SELECT lorry.check_lease({}, {})", pg::QuoteLiteral(options_.subscription),
                     pg::QuoteLiteral(owner_));
}

Status RunLease::AddSessions(pg::PgConn& conn, const std::vector<const pg::PgConn*>& sessions) {
  std::string pids;
  for (const auto* s : sessions) pids += fmt::format("{}{}", pids.empty() ? "" : ",", s->backend_pid());
  LORRY_ASSIGN_OR_RETURN(auto r, conn.ExecParams("UPDATE lorry.subscriptions SET lease_pids = "
                                                 "array_cat(lease_pids, $3::int[]) "
                                                 "WHERE name = $1 AND lease_owner = $2 RETURNING 1",
                                                 {options_.subscription, owner_, "{" + pids + "}"}));
  if (r.rows() == 0)
    return Status::Connection(fmt::format("this run ({}) no longer holds the lease of subscription \"{}\"", owner_,
                                          options_.subscription));
  std::lock_guard<std::mutex> l(mu_);
  for (const auto* s : sessions)
    if (s->socket() >= 0) sockets_.push_back(s->socket());
  // Lost meanwhile: the caller's calls on them must fail too.
  if (state_ != State::kHeld)
    for (int fd : sockets_) shutdown(fd, SHUT_RDWR);
  return Status::Ok();
}

void RunLease::ForgetSessions() {
  std::lock_guard<std::mutex> l(mu_);
  sockets_.clear();
}

void RunLease::Lose(const std::string& reason) {
  if (state_ != State::kHeld) return;
  state_ = State::kLost;
  lost_reason_ = reason;
  abort_ = true;
  // Unblocks a call of the applying session stuck on a subscriber that no
  // longer answers; the fd stays open (no reuse) until the session closes it.
  for (int fd : sockets_) shutdown(fd, SHUT_RDWR);
  sockets_.clear();
  spdlog::warn("sub={} lost the run lease: {}; stopping to apply", options_.subscription, reason);
  cv_.notify_all();
}

Status RunLease::Connect() {
  int connect_timeout = std::max(2, static_cast<int>(std::ceil(std::min(options_.network_timeout_s,
                                                                        options_.takeover_timeout_s / 2))));
  pg::ConnectOptions o{{{"application_name", "lorry_lease"}, {"connect_timeout", std::to_string(connect_timeout)}},
                       "subscriber",
                       /*keep_running_on_stop=*/true};  // releases the lease when the run stops
  LORRY_ASSIGN_OR_RETURN(auto c, pg::PgConn::Connect(options_.conninfo, o));
  StateStore store(&c, options_.subscription);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed)
    return Status::Precondition(fmt::format("subscription \"{}\" is not initialised on {}: run `lorry init` first",
                                            options_.subscription, c.label()));
  // The lease lives in the lorry schema: bring it to this binary's version.
  LORRY_RETURN_IF_ERROR(store.Install());
  conn_ = std::move(c);
  return Status::Ok();
}

Status RunLease::TryAcquire(bool* acquired) {
  // Free: released, expired, or none of its holder's sessions alive.
  LORRY_ASSIGN_OR_RETURN(
      auto r,
      conn_.ExecParamsWithin(
          "WITH cur AS (SELECT lease_owner, lease_pids, lease_expires_at FROM lorry.subscriptions "
          "  WHERE name = $1 FOR UPDATE), "
          "took AS (UPDATE lorry.subscriptions s SET lease_owner = $2, lease_since = clock_timestamp(), "
          "  lease_expires_at = clock_timestamp() + make_interval(secs => $3::float8), "
          "  lease_pids = ARRAY[pg_backend_pid()], "
          "  takeovers = s.takeovers + CASE WHEN cur.lease_owner IS NULL THEN 0 ELSE 1 END "
          "  FROM cur WHERE s.name = $1 AND (s.lease_owner IS NULL OR s.lease_owner = $2 "
          "    OR s.lease_expires_at < clock_timestamp() "
          "    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = ANY (s.lease_pids))) "
          "  RETURNING 1) "
          "SELECT EXISTS (SELECT 1 FROM took), cur.lease_owner, cur.lease_pids::text, "
          "  round(extract(epoch FROM cur.lease_expires_at - clock_timestamp())::numeric, 1) FROM cur",
          {options_.subscription, owner_, fmt::format("{}", options_.takeover_timeout_s)}, QueryTimeout()));
  if (r.rows() == 0)
    return Status::Precondition(fmt::format("subscription \"{}\" is not initialised: run `lorry init` first",
                                            options_.subscription));
  *acquired = r.GetBool(0, 0);
  std::string previous(r.Get(0, 1));
  if (!*acquired) {
    if (!standby_logged_) {
      spdlog::info("sub={} standby: the lease is held by {} (expires in {} s unless renewed); waiting to take over",
                   options_.subscription, previous, r.Get(0, 3));
      standby_logged_ = true;
      if (options_.on_standby) options_.on_standby(previous);
    }
    return Status::Ok();
  }
  standby_logged_ = false;
  last_good_renewal_sent_ = Ns(Clock::now());
  if (!previous.empty() && previous != owner_) {
    spdlog::warn("sub={} took over the lease from {}", options_.subscription, previous);
    TerminatePrevious(previous, std::string(r.Get(0, 2)));
  } else {
    spdlog::info("sub={} holds the lease as {}", options_.subscription, owner_);
    // Taken again after losing it: the sessions recorded are this run's
    // abandoned ones (e.g. cut off by a network that dropped their close;
    // the server keeps them, and the run lock, until its keepalives fail).
    if (previous == owner_) TerminatePrevious("this run's previous session", std::string(r.Get(0, 2)));
  }
  (void)conn_.ExecParamsWithin(
      "UPDATE lorry.subscriptions SET standby_host = NULL, standby_pid = NULL, standby_since = NULL, "
      "standby_seen_at = NULL WHERE name = $1 AND standby_host = $2 AND standby_pid = $3::int",
      {options_.subscription, host_, std::to_string(getpid())}, QueryTimeout());
  return Status::Ok();
}

void RunLease::TerminatePrevious(const std::string& previous_owner, const std::string& pids) {
  if (pids.empty()) return;
  // Its sessions may still be alive (a run cut off from us by the network
  // whose sessions the server has not noticed dead yet): end them, so that
  // nothing of it can still commit while we apply.
  auto t = conn_.ExecParamsWithin(
      "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE pid = ANY ($1::int[]) AND pid <> pg_backend_pid()",
      {pids}, QueryTimeout());
  if (!t.ok()) {
    spdlog::warn("sub={} could not end the sessions {} of the previous lease holder {}: {}", options_.subscription,
                 pids, previous_owner, t.status().message());
    return;
  }
  if (t->GetInt(0, 0) > 0)
    spdlog::warn("sub={} ended {} subscriber sessions of {} still alive (pids {})", options_.subscription,
                 t->GetInt(0, 0), previous_owner, pids);
  auto until = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < until && !quit_) {
    auto left = conn_.ExecParamsWithin("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY ($1::int[])", {pids},
                                       QueryTimeout());
    if (!left.ok() || left->GetInt(0, 0) == 0) return;
    std::this_thread::sleep_for(milliseconds(50));
  }
  spdlog::warn("sub={} sessions {} of the previous lease holder {} are still alive", options_.subscription, pids,
               previous_owner);
}

Status RunLease::Renew(bool* still_ours) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn_.ExecParamsWithin("UPDATE lorry.subscriptions SET lease_expires_at = clock_timestamp() + "
                                     "make_interval(secs => $3::float8) WHERE name = $1 AND lease_owner = $2 "
                                     "RETURNING 1",
                                     {options_.subscription, owner_, fmt::format("{}", options_.takeover_timeout_s)},
                                     QueryTimeout()));
  *still_ours = r.rows() > 0;
  return Status::Ok();
}

void RunLease::RecordStandby() {
  if (Clock::now() - last_standby_record_ < milliseconds(1000)) return;
  last_standby_record_ = Clock::now();
  auto r = conn_.ExecParamsWithin(
      "UPDATE lorry.subscriptions SET standby_since = CASE WHEN standby_host IS NOT DISTINCT FROM $2 "
      "AND standby_pid IS NOT DISTINCT FROM $3::int THEN coalesce(standby_since, clock_timestamp()) "
      "ELSE clock_timestamp() END, standby_host = $2, standby_pid = $3::int, standby_seen_at = clock_timestamp() "
      "WHERE name = $1",
      {options_.subscription, host_, std::to_string(getpid())}, QueryTimeout());
  if (!r.ok()) conn_ = pg::PgConn();
}

void RunLease::Release() {
  std::lock_guard<std::mutex> l(mu_);
  if (!conn_.connected()) return;
  if (state_ == State::kHeld) {
    auto r = conn_.ExecParamsWithin("UPDATE lorry.subscriptions SET lease_owner = NULL, lease_expires_at = NULL, "
                                    "lease_pids = NULL WHERE name = $1 AND lease_owner = $2",
                                    {options_.subscription, owner_}, QueryTimeout());
    if (r.ok()) spdlog::info("sub={} released the lease", options_.subscription);
  }
  (void)conn_.ExecParamsWithin(
      "UPDATE lorry.subscriptions SET standby_host = NULL, standby_pid = NULL, standby_since = NULL, "
      "standby_seen_at = NULL WHERE name = $1 AND standby_host = $2 AND standby_pid = $3::int",
      {options_.subscription, host_, std::to_string(getpid())}, QueryTimeout());
  state_ = State::kIdle;
}

void RunLease::Loop() {
  Clock::time_point last_warning;
  while (!quit_) {
    if (stop_) abort_ = true;
    State state;
    {
      std::lock_guard<std::mutex> l(mu_);
      state = state_;
    }
    if (state == State::kIdle || state == State::kLost) {
      SleepFor(milliseconds(50));
      continue;
    }
    Status s;
    if (!conn_.connected()) s = Connect();
    if (s.ok() && state == State::kStandby) {
      bool acquired = false;
      s = TryAcquire(&acquired);
      if (s.ok() && acquired) {
        std::lock_guard<std::mutex> l(mu_);
        state_ = State::kHeld;
        cv_.notify_all();
        continue;
      }
      if (s.ok()) {
        RecordStandby();
        SleepFor(standby_every_);
        continue;
      }
    } else if (s.ok()) {
      auto sent = Clock::now();
      bool ours = true;
      s = Renew(&ours);
      if (s.ok() && ours) last_good_renewal_sent_ = Ns(sent);
      if (s.ok() && !ours) {
        std::lock_guard<std::mutex> l(mu_);
        Lose("another run took the lease over");
        continue;
      }
    }
    if (!s.ok()) {
      conn_ = pg::PgConn();
      if (s.kind() == Status::Kind::kAuth || s.kind() == Status::Kind::kPrecondition) {
        std::lock_guard<std::mutex> l(mu_);
        fatal_ = s;
        Lose(s.message());
        state_ = State::kIdle;
        cv_.notify_all();
        continue;
      }
      if (Clock::now() - last_warning > std::chrono::seconds(5)) {
        spdlog::warn("sub={} lease: {}", options_.subscription, s.message());
        last_warning = Clock::now();
        if (state != State::kHeld && options_.on_retry) options_.on_retry(s.message());
      }
    }
    SleepFor(state == State::kHeld ? renew_every_ : milliseconds(500));
  }
}

}  // namespace lorry::daemon
