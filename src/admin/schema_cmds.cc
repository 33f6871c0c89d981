// `lorry missing` and `lorry check`: the tables and table definitions of both
// sides compared, read only.
#include <algorithm>
#include <map>
#include <ostream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "catalog/catalog.h"
#include "catalog/partitions.h"
#include "schema/table_diff.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

struct Replicated {
  std::map<pg::QualifiedName, bool> tables;  // -> insert_only
};

Result<Replicated> ListReplicated(pg::PgConn& provider, pg::PgConn& subscriber, const SubscriptionNames& names) {
  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(names.name);
  LORRY_ASSIGN_OR_RETURN(auto members, ListPublicationMembers(provider, names));
  LORRY_ASSIGN_OR_RETURN(auto states, store.ListTables());
  Replicated r;
  for (const auto& m : members) r.tables[m.table] = m.insert_only;
  for (const auto& s : states) r.tables[s.name] = s.insert_only;
  return r;
}

// Why a provider table is not replicated, with the fix: a partitioned table
// whose leaves are replicated one by one has its other leaves listed; a
// table without a replica identity needs one (or --insert-only).
Status WhyNotReplicated(pg::PgConn& provider, const catalog::TableInfo& t, const Replicated& replicated,
                        std::vector<pg::QualifiedName>* out, std::map<pg::QualifiedName, std::string>* why) {
  std::string add = ShellQuote(t.name.Display());
  if (t.partitioned()) {
    LORRY_ASSIGN_OR_RETURN(auto leaves, catalog::ListLeaves(provider, t.oid));
    std::vector<pg::QualifiedName> left;
    for (const auto& l : leaves)
      if (!replicated.tables.count(l)) left.push_back(l);
    if (left.size() < leaves.size()) {  // replicated leaf by leaf (--partitions leaves)
      for (const auto& l : left) {
        out->push_back(l);
        (*why)[l] = fmt::format("a partition of {}, whose other partitions are replicated one by one; to add it: "
                                "lorry add --partitions leaves {}",
                                t.name.Display(), ShellQuote(l.Display()));
      }
      return Status::Ok();
    }
    out->push_back(t.name);
    (*why)[t.name] = fmt::format("partitioned, {} partition{} replicated through it; to add it: lorry add {}",
                                 t.leaf_partitions, t.leaf_partitions == 1 ? "" : "s", add);
    return Status::Ok();
  }
  out->push_back(t.name);
  (*why)[t.name] = t.HasUsableIdentity()
                       ? "to add it: lorry add " + add
                       : fmt::format("no primary key or replica identity: add a primary key (or ALTER TABLE {} "
                                     "REPLICA IDENTITY FULL), then lorry add {}; or lorry add --insert-only {}",
                                     t.name.Quoted(), add, add);
  return Status::Ok();
}

nlohmann::json NameList(const std::vector<pg::QualifiedName>& names) {
  auto a = nlohmann::json::array();
  for (const auto& n : names) a.push_back(n.Display());
  return a;
}

}  // namespace

Status Missing(const Config& config, bool json, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(auto replicated, ListReplicated(provider, subscriber, names));
  LORRY_ASSIGN_OR_RETURN(auto provider_tables, catalog::ListUserTables(provider));
  std::vector<pg::QualifiedName> not_replicated, missing_sub, missing_prov;
  std::map<pg::QualifiedName, std::string> why;  // not replicated: the reason and the fix
  for (const auto& t : provider_tables) {
    if (replicated.tables.count(t)) continue;
    LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, t));
    if (!info) continue;  // dropped since listed
    LORRY_RETURN_IF_ERROR(WhyNotReplicated(provider, *info, replicated, &not_replicated, &why));
  }
  std::vector<pg::QualifiedName> roots;
  for (const auto& [t, insert_only] : replicated.tables) roots.push_back(t);
  LORRY_ASSIGN_OR_RETURN(auto gaps, catalog::MissingPartitions(provider, subscriber, roots));
  for (const auto& [t, insert_only] : replicated.tables) {
    LORRY_ASSIGN_OR_RETURN(auto sub, subscriber.QueryValue("SELECT to_regclass($1)::oid", {t.Quoted()}));
    if (!sub) missing_sub.push_back(t);
    LORRY_ASSIGN_OR_RETURN(auto prov, provider.QueryValue("SELECT to_regclass($1)::oid", {t.Quoted()}));
    if (!prov) missing_prov.push_back(t);
  }
  if (json) {
    auto reasons = nlohmann::json::object();
    for (const auto& [t, w] : why) reasons[t.Display()] = w;
    auto partitions = nlohmann::json::array();
    for (const auto& g : gaps)
      partitions.push_back({{"partition", g.partition.Display()}, {"parent", g.parent.Display()}, {"fix", g.fix}});
    out << nlohmann::json{{"not_replicated", NameList(not_replicated)},
                          {"not_replicated_reasons", reasons},
                          {"missing_on_subscriber", NameList(missing_sub)},
                          {"missing_partitions_on_subscriber", partitions},
                          {"missing_on_provider", NameList(missing_prov)}}
               .dump(2)
        << "\n";
  } else {
    for (const auto& t : not_replicated) out << fmt::format("not replicated: {} ({})\n", t.Display(), why[t]);
    for (const auto& g : gaps) out << "missing on the subscriber: " << catalog::DescribeGap(g) << "\n";
    for (const auto& t : missing_sub)
      out << fmt::format("missing on the subscriber: {} (replicated; create it there, or `lorry remove` and `lorry "
                         "add --create` it)\n",
                         t.Display());
    for (const auto& t : missing_prov)
      out << fmt::format("missing on the provider: {} (replicated, but dropped there; `lorry remove {}`)\n",
                         t.Display(), ShellQuote(t.Display()));
  }
  size_t n = not_replicated.size() + missing_sub.size() + missing_prov.size() + gaps.size();
  if (n == 0) {
    if (!json) out << "nothing missing: every provider table is replicated and present on the subscriber\n";
    return Status::Ok();
  }
  return Status::NotTrue(fmt::format("{} table{} missing", n, n == 1 ? "" : "s"));
}

Status CheckTables(const Config& config, const std::vector<std::string>& tables, bool json, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(auto replicated, ListReplicated(provider, subscriber, names));

  // The tables to check, with whether they are replicated insert-only.
  std::vector<std::pair<pg::QualifiedName, bool>> todo;
  for (const auto& text : tables) {
    LORRY_ASSIGN_OR_RETURN(auto name, pg::ParseQualifiedName(text));
    if (name.schema.empty()) {
      LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, name));
      if (!info) return Status::Usage(fmt::format("table {} not found on the provider", name.Display()));
      name = info->name;
    }
    auto it = replicated.tables.find(name);
    todo.push_back({name, it != replicated.tables.end() && it->second});
  }
  if (tables.empty())
    for (const auto& [t, insert_only] : replicated.tables) todo.push_back({t, insert_only});

  auto report = nlohmann::json::array();
  int breaking_tables = 0;
  for (const auto& [name, insert_only] : todo) {
    schema::TableDiff d;
    LORRY_ASSIGN_OR_RETURN(auto prov, catalog::LookupTable(provider, name));
    LORRY_ASSIGN_OR_RETURN(auto sub, catalog::LookupTable(subscriber, name));
    if (!prov) d.breaking.push_back("the table is missing on the provider");
    if (!sub)
      d.breaking.push_back("the table is missing on the subscriber. Fix: create it there (`lorry add --create` "
                           "creates tables from the provider's definitions)");
    if (prov && sub) {
      LORRY_ASSIGN_OR_RETURN(d, schema::DiffTable(provider, subscriber, *prov, *sub, insert_only));
    }
    if (!d.breaking.empty()) ++breaking_tables;
    if (json) {
      report.push_back({{"table", name.Display()},
                        {"ok", d.breaking.empty()},
                        {"breaking", d.breaking},
                        {"harmless", d.harmless}});
      continue;
    }
    if (d.breaking.empty() && d.harmless.empty()) {
      out << name.Display() << ": ok\n";
      continue;
    }
    out << fmt::format("{}: {}\n", name.Display(),
                       d.breaking.empty() ? "ok, with harmless differences"
                                          : fmt::format("{} difference{} that break replication", d.breaking.size(),
                                                        d.breaking.size() == 1 ? "" : "s"));
    for (const auto& b : d.breaking) out << "  BREAKS    " << b << "\n";
    for (const auto& h : d.harmless) out << "  harmless  " << h << "\n";
  }
  if (json) out << report.dump(2) << "\n";
  if (todo.empty() && !json) out << "no replicated tables to check\n";
  if (breaking_tables > 0)
    return Status::NotTrue(fmt::format("{} table{} with differences that break replication", breaking_tables,
                                       breaking_tables == 1 ? "" : "s"));
  return Status::Ok();
}

}  // namespace lorry::admin
