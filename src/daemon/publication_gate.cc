#include "daemon/publication_gate.h"

#include <algorithm>
#include <string>

#include <fmt/format.h>

namespace lorry::daemon {

std::optional<Lsn> UsableFrom(const SubscriptionNames& names, const catalog::PublicationTables& pub,
                              const std::vector<TableState>& tables, const std::map<std::string, Lsn>& learned) {
  // `init` creates these two before the slot: usable from any position the slot streams.
  if (pub.name == names.publication || pub.name == names.insert_only_publication) return Lsn();
  std::optional<Lsn> best;
  auto consider = [&](Lsn lsn) {
    if (!best || lsn < *best) best = lsn;
  };
  if (auto it = learned.find(pub.name); it != learned.end()) consider(it->second);
  for (const auto& t : tables)
    if (t.sync_lsn && std::find(pub.tables.begin(), pub.tables.end(), t.name) != pub.tables.end())
      consider(*t.sync_lsn);
  return best;
}

Result<std::vector<std::string>> PublicationGate::Begin(pg::PgConn& provider, const std::vector<TableState>& tables,
                                                        Lsn start) {
  LORRY_ASSIGN_OR_RETURN(auto publications, catalog::ListPublicationTables(provider, names_));
  streaming_.clear();
  std::vector<std::string> out;
  for (const auto& p : publications) {
    auto usable = UsableFrom(names_, p, tables, learned_);
    if (usable && *usable <= start) {
      streaming_.insert(p.name);
      out.push_back(p.name);
    }
  }
  LORRY_RETURN_IF_ERROR(Refresh(provider, publications, tables));
  return out;
}

Status PublicationGate::Poll(pg::PgConn& provider, const std::vector<TableState>& tables) {
  LORRY_ASSIGN_OR_RETURN(auto publications, catalog::ListPublicationTables(provider, names_));
  return Refresh(provider, publications, tables);
}

Status PublicationGate::Refresh(pg::PgConn& provider, const std::vector<catalog::PublicationTables>& publications,
                                const std::vector<TableState>& tables) {
  waiting_.clear();
  carried_.clear();
  gate_.reset();
  for (const auto& p : publications) {
    if (streaming_.count(p.name)) {
      carried_.insert(p.tables.begin(), p.tables.end());
      continue;
    }
    waiting_.insert(p.name);
    auto usable = UsableFrom(names_, p, tables, learned_);
    if (!usable) {
      LORRY_ASSIGN_OR_RETURN(usable, Horizon(provider, p.name));
    }
    if (usable && (!gate_ || *usable < *gate_)) gate_ = usable;
  }
  return Status::Ok();
}

Result<std::optional<Lsn>> PublicationGate::Horizon(pg::PgConn& provider, const std::string& pub) {
  // txid_* (not pg_snapshot_*, PostgreSQL 13+): the same on every supported major.
  auto it = horizons_.find(pub);
  if (it == horizons_.end()) {
    LORRY_ASSIGN_OR_RETURN(auto xmax, provider.QueryValue("SELECT txid_snapshot_xmax(txid_current_snapshot())"));
    horizons_[pub] = std::stoll(xmax.value_or("0"));
    return std::optional<Lsn>();
  }
  LORRY_ASSIGN_OR_RETURN(auto r, provider.ExecParams("SELECT txid_snapshot_xmin(txid_current_snapshot()) >= "
                                                     "$1::bigint, pg_current_wal_lsn()::text",
                                                     {std::to_string(it->second)}));
  if (!r.GetBool(0, 0)) return std::optional<Lsn>();
  auto lsn = Lsn::Parse(r.Get(0, 1));
  if (!lsn) return Status::Protocol(fmt::format("pg_current_wal_lsn() returned \"{}\"", r.Get(0, 1)));
  learned_[pub] = *lsn;
  horizons_.erase(it);
  return std::optional<Lsn>(*lsn);
}

}  // namespace lorry::daemon
