// The demo's progress samples (see monitor.h).
#include "demo/monitor.h"

#include <fmt/format.h>

#include "admin/admin_util.h"
#include "state/names.h"
#include "state/state_store.h"

namespace lorry::demo {

void Monitor::Disconnect() {
  provider_ = pg::PgConn();
  subscriber_ = pg::PgConn();
}

Result<Sample> Monitor::Take() {
  if (!subscriber_.connected()) {
    LORRY_ASSIGN_OR_RETURN(subscriber_, pg::PgConn::Connect(config_.subscriber, {{}, "subscriber"}));
  }
  if (!provider_.connected()) {
    LORRY_ASSIGN_OR_RETURN(provider_, pg::PgConn::Connect(config_.provider, {{}, "provider"}));
  }
  StateStore store(&subscriber_, config_.name);
  auto tables = store.ListTables();
  auto sub = store.LoadSubscription();
  auto wal = provider_.QueryValue("SELECT pg_current_wal_lsn()::text");
  for (const Status* s : {&tables.status(), &sub.status(), &wal.status()}) {
    if (s->kind() == Status::Kind::kConnection) Disconnect();
    if (!s->ok()) return *s;
  }
  Sample r;
  for (const auto& t : *tables) {
    r.tables++;
    r.rows_copied += t.rows_copied;
    if (t.state == TableStateKind::kReady) r.ready++;
    if (t.state == TableStateKind::kCopying)
      r.copying += fmt::format("{}{} {}/~{}", r.copying.empty() ? "" : ", ", t.name.Display(), t.rows_copied,
                               t.rows_estimate.value_or(0));
    if (t.state == TableStateKind::kError) r.errors += fmt::format(" {}: {}", t.name.Display(), t.error);
  }
  r.slot_created = sub->consistent_lsn.has_value();
  r.xacts_applied = sub->xacts_applied;
  r.changes_applied = sub->changes_applied;
  std::optional<Lsn> applied =
      admin::OriginProgress(subscriber_, SubscriptionNames::For(config_.name).origin, false);
  for (auto lsn : {sub->confirmed_lsn, sub->last_commit_lsn})
    if (lsn && (!applied || *lsn > *applied)) applied = lsn;
  auto provider_lsn = *wal ? Lsn::Parse(**wal) : std::nullopt;
  if (applied && provider_lsn)
    r.lag_bytes = provider_lsn->value > applied->value ? static_cast<int64_t>(provider_lsn->value - applied->value) : 0;
  return r;
}

}  // namespace lorry::demo
