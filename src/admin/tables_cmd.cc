// `lorry add` and `lorry remove`: which tables the subscription replicates.
//
// A table is replicated when it is in one of the subscription's publications
// on the provider (lorry_<name>, or lorry_<name>_insert_only for INSERT and
// TRUNCATE only) and has a row in lorry.tables on the subscriber.
//
// Invariants:
// - add checks every table before it changes anything, and changes nothing
//   unless all pass; every problem is reported at once.
// - The publication is changed before lorry.tables: a copy started for a new
//   row is then always taken after the table joined the publication, so no
//   change committed after the copy's snapshot can be missed.
// - remove takes effect at a clear point of the stream: the provider's WAL
//   position when it begins (before the publication changes). Transactions
//   committed before it are still applied to the table, none after
//   (lorry.removed_tables; the daemon forgets the table once past it).
// - Both commands are idempotent: repeating them, or re-running them after a
//   failure between the two steps, completes what is missing.
#include <algorithm>
#include <functional>
#include <map>
#include <ostream>
#include <set>

#include <fmt/format.h>

#include "admin/admin.h"
#include "admin/admin_util.h"
#include "catalog/catalog.h"
#include "catalog/privileges.h"
#include "catalog/publications.h"
#include "schema/table_create.h"
#include "schema/table_diff.h"
#include "state/state_store.h"

namespace lorry::admin {

namespace {

// "cannot add tables: 2 problems found, nothing was added" and the list.
Status Refusal(const char* verb, const char* done, const std::vector<std::string>& problems) {
  std::string msg = fmt::format("cannot {} tables: {} problem{} found, nothing was {}", verb, problems.size(),
                                problems.size() == 1 ? "" : "s", done);
  for (const auto& p : problems) msg += "\n  - " + p;
  return Status::Precondition(msg);
}

std::string NoIdentityProblem(const catalog::TableInfo& t) {
  std::string why = t.replica_identity == 'n' ? "has REPLICA IDENTITY NOTHING"
                                              : "has no primary key (and REPLICA IDENTITY DEFAULT)";
  return fmt::format(
      "table {0} {1}: once published for replication, every UPDATE and DELETE on it would fail on the provider "
      "(\"cannot update table because it does not have a replica identity and publishes updates\"). Fix one of:\n"
      "      - add a primary key: ALTER TABLE {2} ADD PRIMARY KEY (...);\n"
      "      - log whole rows: ALTER TABLE {2} REPLICA IDENTITY FULL;\n"
      "      - replicate only its INSERTs and TRUNCATEs: lorry add --insert-only {3}",
      t.name.Display(), why, t.name.Quoted(), ShellQuote(t.name.Display()));
}

// Problems that would make applying the provider's rows to the subscriber's
// table fail: a provider column missing there, or a subscriber-only column
// that needs a value. Type differences are only noted: values travel in text
// form, so e.g. integer -> bigint or varchar(20) -> text work.
void CompareColumns(const catalog::TableInfo& prov, const catalog::TableInfo& sub, std::vector<std::string>* problems,
                    std::vector<std::string>* notes) {
  for (const auto& c : prov.columns) {
    if (c.generated) continue;  // never sent by the provider
    const catalog::ColumnInfo* s = sub.FindColumn(c.name);
    if (s == nullptr) {
      problems->push_back(fmt::format("column {} ({}) of table {} is missing on the subscriber. Fix: on the "
                                      "subscriber, ALTER TABLE {} ADD COLUMN {} {};",
                                      pg::QuoteIdentIfNeeded(c.name), c.type, prov.name.Display(), sub.name.Quoted(),
                                      pg::QuoteIdent(c.name), c.type));
    } else if (s->type != c.type && !s->generated) {
      notes->push_back(fmt::format("column {} of table {} is {} on the provider and {} on the subscriber: values are "
                                   "applied through their text form",
                                   pg::QuoteIdentIfNeeded(c.name), prov.name.Display(), c.type, s->type));
    } else if (s->generated) {
      problems->push_back(fmt::format("column {} of table {} is generated on the subscriber but not on the provider: "
                                      "replicated values could not be stored in it",
                                      pg::QuoteIdentIfNeeded(c.name), prov.name.Display()));
    }
    if (s != nullptr && schema::AlwaysIdentityMismatch(c, *s))
      problems->push_back(schema::AlwaysIdentityProblem(c.name, prov.name.Display(), sub.name.Quoted()));
  }
  for (const auto& s : sub.columns) {
    const catalog::ColumnInfo* p = prov.FindColumn(s.name);
    bool replicated = p != nullptr && !p->generated;
    if (replicated || s.generated || !s.not_null || s.has_default || s.identity) continue;
    problems->push_back(fmt::format("column {} of table {} exists only on the subscriber and is NOT NULL without a "
                                    "default: replicated rows could not be inserted. Fix: on the subscriber, "
                                    "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL; (or SET DEFAULT ...)",
                                    pg::QuoteIdentIfNeeded(s.name), sub.name.Display(), sub.name.Quoted(),
                                    pg::QuoteIdent(s.name)));
  }
}

struct Candidate {
  catalog::TableInfo info;  // on the provider; info.name is qualified
  bool named = false;       // named on the command line, not only found by --all
};

// Why --all leaves a table or sequence out ("" when it takes it): the
// schema and name filters of `options`.
std::string FilteredOut(const AddOptions& options, const pg::QualifiedName& name) {
  auto& inc = options.include_schemas;
  if (!inc.empty() && std::find(inc.begin(), inc.end(), name.schema) == inc.end())
    return "its schema is not in --include-schema";
  auto& exc = options.exclude_schemas;
  if (std::find(exc.begin(), exc.end(), name.schema) != exc.end())
    return "--exclude-schema " + ShellQuote(name.schema);
  for (const auto& p : options.excludes)
    if (NameMatches(p, name)) return "--exclude " + ShellQuote(p);
  return "";
}

// How partitioned tables are added: through the root, unless --partitions
// leaves or the provider cannot publish through a root (before 13).
catalog::PartitionMode EffectiveMode(const AddOptions& options, int provider_version) {
  return options.partitions == "leaves" || provider_version < 130000 ? catalog::PartitionMode::kLeaves
                                                                     : catalog::PartitionMode::kRoot;
}

// The tables named on the command line (and by --all), resolved on the
// provider; problems for names that do not resolve. A partitioned table is
// itself a candidate in root mode, its leaves in leaves mode; a partition
// named in root mode is refused (its rows travel through its root).
Result<std::vector<Candidate>> ResolveTables(pg::PgConn& provider, const AddOptions& options,
                                             std::vector<std::string>* problems, std::vector<std::string>* notes,
                                             std::vector<std::string>* skipped) {
  std::vector<Candidate> out;
  std::set<pg::QualifiedName> seen;
  catalog::PartitionMode mode = EffectiveMode(options, provider.server_version());
  bool version_noted = false;  // --all on a provider before 13: said once
  std::function<Status(catalog::TableInfo, bool)> take = [&](catalog::TableInfo info, bool named) -> Status {
    if (info.partitioned() && mode == catalog::PartitionMode::kLeaves) {
      LORRY_ASSIGN_OR_RETURN(auto leaves, catalog::ListLeaves(provider, info.oid));
      if (options.partitions != "leaves")
        notes->push_back(fmt::format("PostgreSQL {} cannot publish a partitioned table through its root (13+ can): "
                                     "the partitions of {} are added one by one",
                                     provider.server_version() / 10000, info.name.Display()));
      for (const auto& leaf : leaves) {
        LORRY_ASSIGN_OR_RETURN(auto l, catalog::LookupTable(provider, leaf));
        if (l) LORRY_RETURN_IF_ERROR(take(std::move(*l), named));
      }
      return Status::Ok();
    }
    if (info.is_partition && mode == catalog::PartitionMode::kRoot) {
      LORRY_ASSIGN_OR_RETURN(auto root, catalog::PartitionRoot(provider, info.oid));
      std::string r = root ? root->Display() : "its root";
      problems->push_back(fmt::format(
          "table {} is a partition of {}: partitions are replicated through their root. Add the root (`lorry add "
          "{}`), or add partitions one by one with `lorry add --partitions leaves {}`",
          info.name.Display(), r, ShellQuote(r), ShellQuote(info.name.Display())));
      return Status::Ok();
    }
    if (seen.insert(info.name).second) out.push_back({std::move(info), named});
    return Status::Ok();
  };
  for (const auto& text : options.tables) {
    auto name = pg::ParseQualifiedName(text);
    if (!name.ok()) {
      problems->push_back(name.status().message());
      continue;
    }
    LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, *name));
    if (!info) {
      std::string where;
      if (name->schema.empty()) {
        auto path = provider.QueryValue("SELECT array_to_string(current_schemas(false), ', ')");
        if (path.ok() && path.value()) where = fmt::format(" (searched schemas: {})", *path.value());
      }
      problems->push_back(fmt::format("table {} not found on the provider{}", name->Display(), where));
      continue;
    }
    // lorry's own state (the subscriber schema lorry: a cascade's middle
    // database has it) and DDL capture's lorry_ddl are never replicated.
    if (info->name.schema == "lorry" || info->name.schema == "lorry_ddl") {
      problems->push_back(fmt::format("table {} is lorry's own state, which lorry does not replicate",
                                      info->name.Display()));
      continue;
    }
    LORRY_RETURN_IF_ERROR(take(std::move(*info), true));
  }
  if (options.all) {
    LORRY_ASSIGN_OR_RETURN(auto names, catalog::ListUserTables(provider, options.schema, mode));
    if (names.empty())
      problems->push_back(options.schema.empty()
                              ? std::string("--all: the provider database has no tables")
                              : fmt::format("--all --schema {}: the provider has no tables in schema {}",
                                            options.schema, pg::QuoteIdentIfNeeded(options.schema)));
    for (const auto& n : names) {
      if (std::string why = FilteredOut(options, n); !why.empty()) {
        skipped->push_back(fmt::format("{} ({})", n.Display(), why));
        continue;
      }
      LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, n));
      if (!info) continue;  // dropped since it was listed
      if (info->is_partition && options.partitions != "leaves" && !version_noted) {
        version_noted = true;
        notes->push_back(fmt::format("PostgreSQL {} cannot publish a partitioned table through its root (13+ can): "
                                     "partitions are added one by one",
                                     provider.server_version() / 10000));
      }
      LORRY_RETURN_IF_ERROR(take(std::move(*info), false));
    }
  }
  return out;
}

std::string SqlTableList(const std::vector<const catalog::TableInfo*>& tables) {
  std::string list;
  for (const auto* t : tables) {
    // ONLY: inheritance children are tables of their own, added by name.
    list += fmt::format("{}{}{}", list.empty() ? "" : ", ", t->relkind == 'p' ? "" : "ONLY ", t->name.Quoted());
  }
  return list;
}

Status RequireInitialised(pg::PgConn& provider, pg::PgConn& subscriber, const SubscriptionNames& names) {
  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(names.name);
  for (const auto& pub : {names.publication, names.insert_only_publication}) {
    LORRY_ASSIGN_OR_RETURN(bool exists, PublicationExists(provider, pub));
    if (!exists)
      return Status::Precondition(
          fmt::format("publication {} is missing on the provider: run `lorry init` first", pub));
  }
  return Status::Ok();
}

Status InTransaction(pg::PgConn& conn, const std::function<Status()>& body) {
  LORRY_RETURN_IF_ERROR(conn.Exec("BEGIN").status());
  Status s = body();
  if (!s.ok()) {
    (void)conn.Exec("ROLLBACK");
    return s;
  }
  return conn.Exec("COMMIT").status();
}

// What add does with one table; in_publication && in_state: nothing.
struct AddPlan {
  const catalog::TableInfo* table;
  bool in_publication;
  bool in_state;
  bool insert_only;
  catalog::PublishShape shape;  // its row filter and column list as the provider prints them
  bool done() const { return in_publication && in_state; }
};

// What the tables' publication carries, from the options (see
// catalog/publications.h); all empty: the whole table, all operations.
struct PublishSpec {
  catalog::Ops ops;
  bool ops_given = false;
  std::string where;
  std::vector<std::string> columns;
  std::string publication;   // the one the tables go to

  bool filtered() const { return !where.empty() || !columns.empty(); }
  // How it is stored in lorry.tables and compared with an earlier add.
  std::string ops_text() const { return ops_given ? ops.PublishList() : ""; }
};

Result<PublishSpec> SpecFrom(const AddOptions& options, const SubscriptionNames& names, int provider_version) {
  PublishSpec spec;
  if (!options.ops.empty()) {
    if (options.insert_only)
      return Status::Usage("--insert-only and --ops do not go together (--insert-only is --ops insert,truncate "
                           "for a table without a replica identity)");
    LORRY_ASSIGN_OR_RETURN(spec.ops, catalog::ParseOps(options.ops));
    spec.ops_given = !spec.ops.all();
  }
  if (options.insert_only) spec.ops = catalog::Ops{true, false, false, true};
  if (!options.where.empty()) {
    LORRY_RETURN_IF_ERROR(catalog::RequireRowFilterSupport(provider_version, "--where"));
    spec.where = options.where;
  }
  if (!options.columns.empty()) {
    LORRY_RETURN_IF_ERROR(catalog::RequireRowFilterSupport(provider_version, "--columns"));
    LORRY_ASSIGN_OR_RETURN(spec.columns, catalog::ParseColumnList(options.columns));
  }
  spec.publication = catalog::PublicationFor(names, spec.ops, options.insert_only);
  return spec;
}

// The row filter, column list and ops of tables already in lorry.tables.
struct StoredSpec {
  std::string where, columns, ops;
  bool operator==(const StoredSpec&) const = default;
};
Result<std::map<pg::QualifiedName, StoredSpec>> LoadStoredSpecs(pg::PgConn& subscriber, const std::string& sub) {
  LORRY_ASSIGN_OR_RETURN(auto r, subscriber.ExecParams("SELECT nspname, relname, coalesce(row_filter, ''), "
                                                       "coalesce(column_list, ''), coalesce(ops, '') "
                                                       "FROM lorry.tables WHERE subscription = $1",
                                                       {sub}));
  std::map<pg::QualifiedName, StoredSpec> out;
  for (int i = 0; i < r.rows(); ++i)
    out[{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))}] = {std::string(r.Get(i, 2)),
                                                                  std::string(r.Get(i, 3)), std::string(r.Get(i, 4))};
  return out;
}

// The provider table as the subscriber sees it through a column list.
catalog::TableInfo Projected(const catalog::TableInfo& t, const std::vector<std::string>& columns) {
  if (columns.empty()) return t;
  catalog::TableInfo out = t;
  out.columns.clear();
  for (const auto& c : t.columns)
    if (std::find(columns.begin(), columns.end(), c.name) != columns.end()) out.columns.push_back(c);
  return out;
}

// A column list must name existing, stored columns, and the replica identity
// when UPDATE or DELETE is published (PostgreSQL would refuse those on the
// provider otherwise).
void CheckColumns(const catalog::TableInfo& t, const PublishSpec& spec, std::vector<std::string>* problems) {
  for (const auto& name : spec.columns) {
    const auto* c = t.FindColumn(name);
    if (c == nullptr)
      problems->push_back(fmt::format("--columns: table {} has no column {}", t.name.Display(),
                                      pg::QuoteIdentIfNeeded(name)));
    else if (c->generated)
      problems->push_back(fmt::format("--columns: column {} of table {} is generated: it is never replicated",
                                      pg::QuoteIdentIfNeeded(name), t.name.Display()));
  }
  if (spec.columns.empty() || !spec.ops.needs_identity()) return;
  for (const auto& c : t.columns) {
    if (!c.identity_key || std::find(spec.columns.begin(), spec.columns.end(), c.name) != spec.columns.end())
      continue;
    problems->push_back(fmt::format(
        "--columns: column {} of table {} is part of its replica identity{}; a column list without it would make "
        "every UPDATE and DELETE on the provider fail. Add it to --columns, or replicate only inserts "
        "(--ops insert,truncate)",
        pg::QuoteIdentIfNeeded(c.name), t.name.Display(), t.replica_identity == 'f' ? " (REPLICA IDENTITY FULL)" : ""));
  }
}

// Checks every candidate against what is already replicated and against the
// subscriber's table, and its row filter and column list on the provider;
// fills `problems` (refusals) and `notes` (worth saying). Changes nothing.
Result<std::vector<AddPlan>> PlanAdd(pg::PgConn& provider, pg::PgConn& subscriber, const SubscriptionNames& names,
                                     const std::vector<Candidate>& candidates,
                                     const std::vector<PublicationMember>& members,
                                     const std::vector<TableState>& states,
                                     const std::map<pg::QualifiedName, StoredSpec>& stored, bool insert_only,
                                     const PublishSpec& spec, std::vector<std::string>* problems,
                                     std::vector<std::string>* notes, std::vector<pg::QualifiedName>* to_create) {
  std::vector<AddPlan> plans;
  for (const auto& c : candidates) {
    const auto& t = c.info;
    auto member = std::find_if(members.begin(), members.end(), [&](auto& m) { return m.table == t.name; });
    auto state = std::find_if(states.begin(), states.end(), [&](auto& s) { return s.name == t.name; });
    bool in_publication = member != members.end(), in_state = state != states.end();
    if (!(in_publication && in_state)) {
      // Everything `add`, `run` and the copy's index rebuild need, before
      // anything changes (catalog/privileges.h).
      size_t before = problems->size();
      LORRY_ASSIGN_OR_RETURN(auto on_provider, catalog::ProviderTablePrivileges(provider, t.name));
      if (!on_provider.empty()) problems->push_back(on_provider.Describe("provider", t.name));
      bool updates = !insert_only && spec.ops.update, deletes = !insert_only && spec.ops.del;
      auto on_subscriber = catalog::SubscriberTablePrivileges(subscriber, t.name, updates, deletes);
      if (on_subscriber.ok() && !on_subscriber->empty())
        problems->push_back(on_subscriber->Describe("subscriber", t.name));
      else if (!on_subscriber.ok() && on_subscriber.status().kind() != Status::Kind::kPrecondition)
        return on_subscriber.status();  // a table missing there is said below
      if (problems->size() > before) continue;
    }
    catalog::PublishShape shape;
    if (spec.filtered()) {
      std::vector<std::string> column_problems;
      CheckColumns(t, spec, &column_problems);
      problems->insert(problems->end(), column_problems.begin(), column_problems.end());
      if (!column_problems.empty()) continue;
      auto checked = catalog::CheckPublishShape(provider, names.publication + "_check", t.name, t.relkind == 'p',
                                                spec.where, spec.columns);
      if (!checked.ok() && checked.status().kind() == Status::Kind::kUsage) {
        problems->push_back(checked.status().message());
        continue;
      }
      LORRY_RETURN_IF_ERROR(checked.status());
      shape = *checked;
    }
    StoredSpec wanted{shape.where, shape.columns, spec.ops_text()};
    bool was_insert_only = in_state ? state->insert_only : in_publication && member->insert_only;
    bool same_publication = !in_publication || member->publication == spec.publication;
    auto old = stored.find(t.name);
    bool same_spec = (old == stored.end() ? StoredSpec{} : old->second) == wanted;
    // A table --all finds again is fine whatever its mode; one named again
    // with another mode, filter, columns or ops is not.
    if (in_publication && in_state && (!c.named || (was_insert_only == insert_only && same_publication && same_spec))) {
      plans.push_back({&t, true, true, was_insert_only, shape});
      continue;
    }
    if ((in_publication || in_state) && (was_insert_only != insert_only || !same_publication || !same_spec)) {
      problems->push_back(fmt::format("table {} is already replicated {}; to change that, `lorry remove` it and add "
                                      "it again",
                                      t.name.Display(),
                                      was_insert_only ? "insert-only"
                                                      : "with other operations, row filter or columns"));
      continue;
    }
    if (spec.ops.needs_identity() && !t.HasUsableIdentity()) problems->push_back(NoIdentityProblem(t));
    LORRY_ASSIGN_OR_RETURN(auto sub, catalog::LookupTable(subscriber, t.name));
    if (!sub && to_create != nullptr) {
      to_create->push_back(t.name);
    } else if (!sub) {
      problems->push_back(fmt::format("table {} does not exist on the subscriber: create it there first, with the "
                                      "same columns, or let lorry create it: `lorry add --create {}`",
                                      t.name.Display(), ShellQuote(t.name.Display())));
    } else {
      CompareColumns(Projected(t, spec.columns), *sub, problems, notes);
    }
    plans.push_back({&t, in_publication, in_state, insert_only, shape});
  }
  return plans;
}

// The columns a table's row filter refers to (read back from the provider
// catalog after ALTER PUBLICATION, in its transaction).
Result<std::vector<std::string>> FilterColumns(pg::PgConn& provider, const std::string& publication,
                                               const catalog::TableInfo& t) {
  LORRY_ASSIGN_OR_RETURN(auto tree, provider.QueryValue("SELECT pr.prqual::text FROM pg_publication_rel pr JOIN "
                                                        "pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 "
                                                        "AND pr.prrelid = $2::oid",
                                                        {publication, std::to_string(t.oid)}));
  std::vector<std::string> out;
  if (!tree) return out;
  for (int attno : catalog::VarAttnos(*tree)) {
    LORRY_ASSIGN_OR_RETURN(auto name, provider.QueryValue("SELECT attname FROM pg_attribute WHERE attrelid = $1::oid "
                                                          "AND attnum = $2::int2",
                                                          {std::to_string(t.oid), std::to_string(attno)}));
    if (name) out.push_back(*name);
  }
  return out;
}

// Publication first, then lorry.tables (see the invariants at the top).
// Tables with a row filter or column list are added one statement each, and
// the filter checked, in one provider transaction.
Status ApplyAdd(pg::PgConn& provider, pg::PgConn& subscriber, const SubscriptionNames& names,
                const std::vector<AddPlan>& plans, bool insert_only, bool truncate, const PublishSpec& spec) {
  const std::string& publication = spec.publication;
  std::vector<const catalog::TableInfo*> to_publish;
  std::vector<const AddPlan*> to_publish_plans;
  for (const auto& p : plans)
    if (!p.in_publication) {
      to_publish.push_back(p.table);
      to_publish_plans.push_back(&p);
    }
  if (!to_publish.empty()) {
    LORRY_RETURN_IF_ERROR(InTransaction(provider, [&]() -> Status {
      LORRY_ASSIGN_OR_RETURN(bool exists, PublicationExists(provider, publication));
      bool roots = std::any_of(to_publish.begin(), to_publish.end(), [](auto* t) { return t->partitioned(); });
      if (exists && roots) LORRY_RETURN_IF_ERROR(catalog::PublishViaRoot(provider, publication));
      if (!exists)
        LORRY_RETURN_IF_ERROR(provider
                                  .Exec(fmt::format("CREATE PUBLICATION {} WITH ({})", pg::QuoteIdent(publication),
                                                    catalog::PublicationOptions(spec.ops.PublishList(),
                                                                                provider.server_version())))
                                  .status());
      if (!spec.filtered())
        return provider
            .Exec(fmt::format("ALTER PUBLICATION {} ADD TABLE {}", pg::QuoteIdent(publication),
                              SqlTableList(to_publish)))
            .status()
            .WithContext("adding tables to publication " + publication);
      std::vector<std::string> problems;
      for (const auto* plan : to_publish_plans) {
        const catalog::TableInfo* t = plan->table;
        // The filter and columns as the provider printed them when it
        // checked them (PlanAdd): one expression, quoted names.
        std::string sql = fmt::format("ALTER PUBLICATION {} ADD TABLE {}{}{}{}", pg::QuoteIdent(publication),
                                      t->relkind == 'p' ? "" : "ONLY ", t->name.Quoted(),
                                      plan->shape.columns.empty() ? "" : " (" + plan->shape.columns + ")",
                                      plan->shape.where.empty() ? "" : " WHERE (" + plan->shape.where + ")");
        LORRY_RETURN_IF_ERROR(provider.ExecParams(sql, {}).status().WithContext(
            fmt::format("adding table {} to publication {} (nothing was added)", t->name.Display(), publication)));
        if (spec.where.empty() || !spec.ops.needs_identity() || t->replica_identity == 'f') continue;
        // PostgreSQL checks this only when an UPDATE or DELETE runs.
        LORRY_ASSIGN_OR_RETURN(auto used, FilterColumns(provider, publication, *t));
        for (const auto& col : used) {
          const auto* c = t->FindColumn(col);
          if (c && !c->identity_key)
            problems.push_back(fmt::format(
                "--where: the row filter of table {} uses column {}, which is not part of its replica identity: "
                "every UPDATE and DELETE on the provider would fail. Filter on key columns, replicate only inserts "
                "(--ops insert,truncate), or set REPLICA IDENTITY FULL on the table",
                t->name.Display(), pg::QuoteIdentIfNeeded(col)));
        }
      }
      if (!problems.empty()) return Refusal("add", "added", problems);
      return Status::Ok();
    }));
  }
  StateStore store(&subscriber, names.name);
  return InTransaction(subscriber, [&]() -> Status {
    for (const auto& p : plans) {
      if (p.in_state) {
        if (truncate) LORRY_RETURN_IF_ERROR(store.AllowTruncate(p.table->name));
        continue;
      }
      std::optional<int64_t> estimate;
      if (p.table->rows_estimate >= 0) estimate = p.table->rows_estimate;
      LORRY_RETURN_IF_ERROR(store.AddTable(p.table->name, p.insert_only, estimate, truncate));
      auto opt = [](const std::string& v) { return v.empty() ? pg::Param() : pg::Param(v); };
      LORRY_RETURN_IF_ERROR(subscriber
                                .ExecParams("UPDATE lorry.tables SET row_filter = $4, column_list = $5, ops = $6 "
                                            "WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                                            {names.name, p.table->name.schema, p.table->name.name,
                                             opt(p.shape.where), opt(p.shape.columns), opt(spec.ops_text())})
                                .status());
    }
    return Status::Ok();
  });
}

// Records sequences in lorry.sequences (synced from then on), saying so.
Status RecordSequences(pg::PgConn& subscriber, const std::string& sub, const std::vector<pg::QualifiedName>& found,
                       std::ostream& out);

// `add --sequence NAME`: checked on both sides, then recorded.
Status AddSequences(pg::PgConn& provider, pg::PgConn& subscriber, const std::string& sub,
                    const std::vector<std::string>& sequences, std::ostream& out) {
  std::vector<std::string> problems;
  std::vector<pg::QualifiedName> found;
  for (const auto& text : sequences) {
    auto name = pg::ParseQualifiedName(text);
    if (!name.ok()) {
      problems.push_back(name.status().message());
      continue;
    }
    constexpr const char* kLookup =
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass($1) AND c.relkind = 'S'";
    LORRY_ASSIGN_OR_RETURN(auto p, provider.ExecParams(kLookup, {name->Quoted()}));
    if (p.rows() == 0) {
      problems.push_back(fmt::format("sequence {} not found on the provider", name->Display()));
      continue;
    }
    pg::QualifiedName q{std::string(p.Get(0, 0)), std::string(p.Get(0, 1))};
    LORRY_ASSIGN_OR_RETURN(auto s, subscriber.ExecParams(kLookup, {q.Quoted()}));
    if (s.rows() == 0) {
      problems.push_back(fmt::format("sequence {} does not exist on the subscriber: create it there first "
                                     "(CREATE SEQUENCE {} ...)",
                                     q.Display(), q.Quoted()));
      continue;
    }
    found.push_back(q);
  }
  if (!problems.empty()) return Refusal("add", "added", problems);
  return RecordSequences(subscriber, sub, found, out);
}

// The free-standing sequences (no column owns them) of the schemas `add
// --all` covers, to be synced like those added by name. Those missing on
// the subscriber go to `to_create` with --create, else are refused.
Result<std::vector<pg::QualifiedName>> FreeSequences(pg::PgConn& provider, pg::PgConn& subscriber,
                                                     const AddOptions& options, std::vector<std::string>* problems,
                                                     std::vector<pg::QualifiedName>* to_create,
                                                     std::vector<std::string>* skipped) {
  LORRY_ASSIGN_OR_RETURN(auto all, catalog::ListFreeSequences(provider, options.schema));
  std::vector<pg::QualifiedName> seqs;
  for (const auto& q : all) {
    if (std::string why = FilteredOut(options, q); !why.empty()) {
      skipped->push_back(fmt::format("sequence {} ({})", q.Display(), why));
      continue;
    }
    seqs.push_back(q);
    LORRY_ASSIGN_OR_RETURN(auto exists, subscriber.QueryValue("SELECT 1 FROM pg_class WHERE oid = to_regclass($1) "
                                                              "AND relkind = 'S'",
                                                              {q.Quoted()}));
    if (exists) continue;
    if (options.create)
      to_create->push_back(q);
    else
      problems->push_back(fmt::format("sequence {} does not exist on the subscriber: create it there (CREATE "
                                      "SEQUENCE {} ...), or let lorry create it: `lorry add --all --create`",
                                      q.Display(), q.Quoted()));
  }
  return seqs;
}

Status RecordSequences(pg::PgConn& subscriber, const std::string& sub, const std::vector<pg::QualifiedName>& found,
                       std::ostream& out) {
  for (const auto& q : found) {
    LORRY_ASSIGN_OR_RETURN(auto r, subscriber.ExecParams("INSERT INTO lorry.sequences (subscription, nspname, "
                                                         "relname) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING "
                                                         "RETURNING 1",
                                                         {sub, q.schema, q.name}));
    out << (r.rows() > 0 ? fmt::format("added sequence {} (its value is kept current on the subscriber)",
                                       q.Display())
                         : fmt::format("sequence {}: already synced", q.Display()))
        << "\n";
  }
  return Status::Ok();
}

}  // namespace

Status Add(const Config& config, const AddOptions& options, std::ostream& out) {
  if (!options.all && options.tables.empty() && options.sequences.empty())
    return Status::Usage("name the tables to add (e.g. `lorry add public.orders`), or use --all [--schema S]");
  if (!options.all && !options.schema.empty())
    return Status::Usage("--schema goes with --all: `lorry add --all --schema " + ShellQuote(options.schema) + "`");
  if (!options.all &&
      (!options.excludes.empty() || !options.include_schemas.empty() || !options.exclude_schemas.empty()))
    return Status::Usage("--exclude, --include-schema and --exclude-schema go with --all: they choose among the "
                         "tables --all finds");
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_RETURN_IF_ERROR(RequireInitialised(provider, subscriber, names));
  LORRY_ASSIGN_OR_RETURN(auto spec, SpecFrom(options, names, provider.server_version()));
  if (!options.sequences.empty()) {
    LORRY_RETURN_IF_ERROR(AddSequences(provider, subscriber, names.name, options.sequences, out));
    if (!options.all && options.tables.empty()) return Status::Ok();
  }

  std::vector<std::string> problems, notes;
  std::vector<std::string> skipped;  // what --all left out, and why
  LORRY_ASSIGN_OR_RETURN(auto candidates, ResolveTables(provider, options, &problems, &notes, &skipped));
  LORRY_ASSIGN_OR_RETURN(auto members, ListPublicationMembers(provider, names));
  LORRY_ASSIGN_OR_RETURN(auto states, StateStore(&subscriber, names.name).ListTables());
  std::vector<pg::QualifiedName> to_create;
  LORRY_ASSIGN_OR_RETURN(auto stored, LoadStoredSpecs(subscriber, names.name));
  LORRY_ASSIGN_OR_RETURN(auto plans, PlanAdd(provider, subscriber, names, candidates, members, states, stored,
                                             options.insert_only,
                                             spec, &problems, &notes, options.create ? &to_create : nullptr));
  std::vector<pg::QualifiedName> free_sequences, sequences_to_create;
  if (options.all) {
    LORRY_ASSIGN_OR_RETURN(free_sequences,
                           FreeSequences(provider, subscriber, options, &problems, &sequences_to_create, &skipped));
  }
  if (!problems.empty()) return Refusal("add", "added", problems);
  if (!to_create.empty() || !sequences_to_create.empty()) {
    // A session of its own: the dump's SQL changes session settings.
    LORRY_ASSIGN_OR_RETURN(auto creator, ConnectSubscriber(config));
    bool leaves = EffectiveMode(options, provider.server_version()) == catalog::PartitionMode::kLeaves;
    LORRY_ASSIGN_OR_RETURN(auto created,
                           schema::CreateTables(provider, creator,
                                                {config.provider, schema::PgDumpProgram(options.pg_dump), to_create,
                                                 leaves, sequences_to_create}));
    for (const auto& c : created.created) out << "created " << c << "\n";
    if (!created.left_out.empty()) out << created.left_out << "\n";
  }
  LORRY_RETURN_IF_ERROR(ApplyAdd(provider, subscriber, names, plans, options.insert_only, options.truncate, spec));

  int added = 0;
  for (const auto& p : plans) {
    if (p.done()) {
      out << fmt::format("{}: already replicated{}", p.table->name.Display(), p.insert_only ? " (insert-only)" : "")
          << "\n";
      continue;
    }
    ++added;
    std::string rows = p.table->rows_estimate >= 0 ? fmt::format(", about {} rows", p.table->rows_estimate) : "";
    if (p.table->partitioned())
      rows += fmt::format(", through its root: {} partition{}", p.table->leaf_partitions,
                          p.table->leaf_partitions == 1 ? "" : "s");
    std::string what = p.insert_only ? "insert-only: INSERT and TRUNCATE"
                       : spec.ops_given ? "operations: " + spec.ops.PublishList()
                                        : "all operations";
    if (!p.shape.where.empty()) what += ", rows where " + p.shape.where;
    if (!p.shape.columns.empty()) what += ", columns " + p.shape.columns;
    out << fmt::format("added {} ({}{})", p.table->name.Display(), what, rows) << "\n";
  }
  LORRY_RETURN_IF_ERROR(RecordSequences(subscriber, names.name, free_sequences, out));
  for (const auto& n : notes) out << "note: " << n << "\n";
  for (const auto& s : skipped) out << "skipped " << s << "\n";
  if (added > 0) {
    LORRY_ASSIGN_OR_RETURN(bool running, RunIsActive(subscriber, names.name));
    if (running)
      out << "lorry run is active: it picks the new tables up (copy, then catch-up) without a restart\n";
    else
      out << "start `lorry run` to copy the new tables and replicate their changes\n";
  }
  return Status::Ok();
}

namespace {

// Matches each name with a replicated table. Names are matched, not looked
// up, so that a table already dropped on either side can still be removed;
// an unqualified name is the replicated table of that name if there is
// exactly one, else what the provider's search_path finds.
Result<std::vector<pg::QualifiedName>> ResolveReplicated(pg::PgConn& provider, const std::vector<std::string>& tables,
                                                         const std::vector<PublicationMember>& members,
                                                         const std::vector<TableState>& states,
                                                         const std::string& subscription,
                                                         std::vector<std::string>* problems) {
  std::set<pg::QualifiedName> replicated;
  for (const auto& m : members) replicated.insert(m.table);
  for (const auto& s : states) replicated.insert(s.name);
  std::vector<pg::QualifiedName> out;
  for (const auto& text : tables) {
    auto name = pg::ParseQualifiedName(text);
    if (!name.ok()) {
      problems->push_back(name.status().message());
      continue;
    }
    pg::QualifiedName n = *name;
    if (n.schema.empty()) {
      std::vector<pg::QualifiedName> matches;
      for (const auto& r : replicated)
        if (r.name == n.name) matches.push_back(r);
      if (matches.size() == 1) {
        n = matches.front();
      } else {
        LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(provider, n));
        if (info) n = info->name;
      }
    }
    if (!replicated.count(n)) {
      problems->push_back(fmt::format("table {} is not replicated by subscription \"{}\"", n.Display(), subscription));
      continue;
    }
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

}  // namespace

Status Remove(const Config& config, const std::vector<std::string>& tables, std::ostream& out) {
  if (tables.empty()) return Status::Usage("name the tables to remove");
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto provider, ConnectProvider(config));
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  StateStore store(&subscriber, names.name);
  LORRY_ASSIGN_OR_RETURN(bool installed, store.IsInstalled());
  if (!installed) return NotInitialised(names.name);
  LORRY_ASSIGN_OR_RETURN(auto members, ListPublicationMembers(provider, names));
  LORRY_ASSIGN_OR_RETURN(auto states, store.ListTables());

  std::vector<std::string> problems;
  LORRY_ASSIGN_OR_RETURN(auto resolved, ResolveReplicated(provider, tables, members, states, names.name, &problems));
  if (!problems.empty()) return Refusal("remove", "removed", problems);

  // The clear point: every transaction committed before it is still applied
  // to the removed tables, none after (see lorry.removed_tables). Read before
  // the publications change, which stops the provider sending them.
  LORRY_ASSIGN_OR_RETURN(auto at, provider.QueryValue("SELECT pg_current_wal_insert_lsn()::text"));
  Lsn remove_lsn = Lsn::Parse(at.value_or("")).value_or(Lsn());
  LORRY_ASSIGN_OR_RETURN(bool running, RunIsActive(subscriber, names.name));
  for (const auto& n : resolved) {
    for (const auto& m : members) {
      if (!(m.table == n)) continue;
      const std::string& pub = m.publication;
      LORRY_RETURN_IF_ERROR(
          provider.Exec(fmt::format("ALTER PUBLICATION {} DROP TABLE {}", pg::QuoteIdent(pub), n.Quoted())).status());
    }
    LORRY_RETURN_IF_ERROR(store.RemoveTableAt(n, remove_lsn));
    out << fmt::format("removed {} at provider LSN {}: its changes committed before that are applied, none after "
                       "(its rows stay on the subscriber)",
                       n.Display(), remove_lsn.ToString())
        << "\n";
  }
  if (!running)
    out << "the next `lorry run` applies what it has not applied yet of the changes before that point\n";
  return Status::Ok();
}

Status RemoveSequences(const Config& config, const std::vector<std::string>& sequences, std::ostream& out) {
  auto names = SubscriptionNames::For(config.name);
  LORRY_ASSIGN_OR_RETURN(auto subscriber, ConnectSubscriber(config));
  LORRY_ASSIGN_OR_RETURN(bool installed, StateStore(&subscriber, names.name).IsInstalled());
  if (!installed) return NotInitialised(names.name);
  // Matched by name, not looked up: the sequence may be gone on either side.
  std::vector<pg::QualifiedName> found;
  std::vector<std::string> problems;
  for (const auto& text : sequences) {
    auto name = pg::ParseQualifiedName(text);
    if (!name.ok()) {
      problems.push_back(name.status().message());
      continue;
    }
    LORRY_ASSIGN_OR_RETURN(auto r, subscriber.ExecParams("SELECT nspname, relname FROM lorry.sequences WHERE "
                                                         "subscription = $1 AND relname = $2 AND "
                                                         "($3::text IS NULL OR nspname = $3)",
                                                         {names.name, name->name,
                                                          name->schema.empty() ? pg::Param() : pg::Param(name->schema)}));
    if (r.rows() != 1) {
      problems.push_back(fmt::format("sequence {} {}", name->Display(),
                                     r.rows() == 0 ? "was not added with `lorry add --sequence`"
                                                   : "is ambiguous: qualify it with its schema"));
      continue;
    }
    found.push_back({std::string(r.Get(0, 0)), std::string(r.Get(0, 1))});
  }
  if (!problems.empty()) return Refusal("remove", "removed", problems);
  for (const auto& q : found) {
    LORRY_RETURN_IF_ERROR(subscriber
                              .ExecParams("DELETE FROM lorry.sequences WHERE subscription = $1 AND nspname = $2 AND "
                                          "relname = $3",
                                          {names.name, q.schema, q.name})
                              .status());
    out << fmt::format("removed sequence {} (its value stays on the subscriber)", q.Display()) << "\n";
  }
  return Status::Ok();
}

}  // namespace lorry::admin
