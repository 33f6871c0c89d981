// `lorry drop`: removes what `init` and `run` created for one subscription:
// the slot, its publications and its DDL capture on the provider, the origin and the
// subscription's rows (and the lorry schema when no other subscription uses
// it) on the subscriber. Nothing else, never the user's tables.
//
// Each object is looked up first and reported as dropped or not present, so
// drop works on a partially initialised subscription and can be repeated.
// It refuses while a `lorry run` holds the subscription's run lock.
#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "admin/ddl_capture.h"
#include "catalog/publications.h"
#include "state/state_store.h"
#include "sync/deferred_indexes.h"

namespace lorry::admin {

namespace {

void Report(std::ostream& out, bool dropped, const std::string& side, const std::string& what) {
  out << fmt::format("{} {} ({})", dropped ? "dropped" : "not present:", what, side) << "\n";
}

// Drops the slot; a walsender still attached to it (a run that died without
// its lock, e.g. on a lost subscriber connection) is terminated first.
Status DropSlot(pg::PgConn& provider, const std::string& slot, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto r, provider.ExecParams("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                                                     {slot}));
  if (r.rows() == 0) {
    Report(out, false, "provider", "replication slot " + slot);
    return Status::Ok();
  }
  if (!r.IsNull(0, 0)) {
    std::string pid(r.Get(0, 0));
    LORRY_RETURN_IF_ERROR(provider.ExecParams("SELECT pg_terminate_backend($1::int)", {pid})
                              .status()
                              .WithContext("terminating the walsender (pid " + pid + ") that uses slot " + slot));
    out << fmt::format("terminated the walsender (pid {}) still using slot {}", pid, slot) << "\n";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      LORRY_ASSIGN_OR_RETURN(auto active, provider.QueryValue(
                                              "SELECT active FROM pg_replication_slots WHERE slot_name = $1", {slot}));
      if (!active || *active == "f") break;
      if (std::chrono::steady_clock::now() > deadline)
        return Status::Precondition(fmt::format("slot {} is still in use by pid {} after 10 s; try again", slot, pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  LORRY_RETURN_IF_ERROR(provider.ExecParams("SELECT pg_drop_replication_slot($1)", {slot}).status());
  Report(out, true, "provider", "replication slot " + slot);
  return Status::Ok();
}

}  // namespace

Status Drop(const Config& config, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));

  LORRY_ASSIGN_OR_RETURN(bool running, RunIsActive(subscriber, names.name));
  if (running) {
    std::string holder = RunHolder(subscriber, names.name);
    return Status::Precondition(fmt::format("`lorry run` is active for subscription \"{}\"{}: stop lorry run first, "
                                            "then drop; nothing was dropped",
                                            names.name, holder.empty() ? "" : " (" + holder + ")"));
  }

  // Indexes dropped for a copy are the user's: put them back before the
  // records of them go (never drop a table's keys with lorry's schema).
  LORRY_ASSIGN_OR_RETURN(bool installed_before, StateStore(&subscriber, names.name).IsInstalled());
  if (installed_before) {
    LORRY_ASSIGN_OR_RETURN(int64_t deferred, sync::CountDeferredIndexes(subscriber, names.name));
    if (deferred > 0) {
      std::atomic<bool> no_stop{false};
      LORRY_RETURN_IF_ERROR(
          sync::RebuildDeferredIndexes(config.subscriber, names.name, std::nullopt, config.copy.index_jobs,
                                       config.copy.maintenance_work_mem, no_stop)
              .WithContext("rebuilding indexes deferred by an unfinished copy (nothing was dropped)"));
      out << fmt::format("rebuilt {} index{} deferred by an unfinished copy (subscriber)\n", deferred,
                         deferred == 1 ? "" : "es");
    }
  }

  LORRY_RETURN_IF_ERROR(DropSlot(provider, names.slot, out));
  LORRY_RETURN_IF_ERROR(UninstallDdlCapture(provider, names, out));
  LORRY_ASSIGN_OR_RETURN(auto publications, catalog::ListPublications(provider, names));
  for (const auto& pub : {names.publication, names.insert_only_publication})
    if (std::find(publications.begin(), publications.end(), pub) == publications.end())
      Report(out, false, "provider", "publication " + pub);
  for (const auto& pub : publications) {
    LORRY_RETURN_IF_ERROR(provider.Exec("DROP PUBLICATION " + pg::QuoteIdent(pub)).status());
    Report(out, true, "provider", "publication " + pub);
  }

  LORRY_ASSIGN_OR_RETURN(auto origin, subscriber.QueryValue("SELECT pg_replication_origin_oid($1)", {names.origin}));
  if (origin) LORRY_RETURN_IF_ERROR(subscriber.ExecParams("SELECT pg_replication_origin_drop($1)", {names.origin}).status());
  Report(out, origin.has_value(), "subscriber", "replication origin " + names.origin);

  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  LORRY_RETURN_IF_ERROR(store.Uninstall());
  LORRY_ASSIGN_OR_RETURN(auto schema, subscriber.QueryValue("SELECT to_regnamespace('lorry')::text"));
  if (!installed)
    Report(out, false, "subscriber", fmt::format("subscription \"{}\" in schema lorry", names.name));
  else if (schema)
    out << fmt::format("dropped subscription \"{}\" from schema lorry (subscriber; the schema stays: other "
                       "subscriptions use it)",
                       names.name)
        << "\n";
  else
    Report(out, true, "subscriber", "schema lorry");
  out << fmt::format("subscription \"{}\" is dropped; replicated tables and their rows are left as they are", names.name)
      << "\n";
  return Status::Ok();
}

}  // namespace lorry::admin
