#include "catalog/privileges.h"

#include <fmt/format.h>

namespace lorry::catalog {

namespace {

// One row about the current user and the table. $1 schema, $2 table.
constexpr const char* kPrivileges = R"sql(
SELECT current_user, r.rolsuper,
       has_schema_privilege(n.oid, 'USAGE'), has_schema_privilege(n.oid, 'CREATE'),
       has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT'),
       has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'),
       has_table_privilege(c.oid, 'TRUNCATE'),
       pg_has_role(c.relowner, 'USAGE'), pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_roles r ON r.rolname = current_user
WHERE n.nspname = $1 AND c.relname = $2
)sql";

struct Row {
  std::string user;
  bool super, schema_usage, schema_create, select, insert, update, del, truncate, owner;
  std::string owner_name;
};

Result<Row> Read(pg::PgConn& conn, const pg::QualifiedName& table) {
  LORRY_ASSIGN_OR_RETURN(auto r, conn.ExecParams(kPrivileges, {table.schema, table.name}));
  if (r.rows() != 1)
    return Status::Precondition(fmt::format("{}: table {} not found", conn.label(), table.Display()));
  return Row{std::string(r.Get(0, 0)), r.GetBool(0, 1), r.GetBool(0, 2),  r.GetBool(0, 3),
             r.GetBool(0, 4),          r.GetBool(0, 5), r.GetBool(0, 6),  r.GetBool(0, 7),
             r.GetBool(0, 8),          r.GetBool(0, 9), std::string(r.Get(0, 10))};
}

void NeedSchemaUsage(const Row& row, const pg::QualifiedName& t, MissingPrivileges* m) {
  if (row.schema_usage) return;
  m->missing.push_back(fmt::format("has no USAGE on schema {}", pg::QuoteIdentIfNeeded(t.schema)));
  m->fixes.push_back(fmt::format("GRANT USAGE ON SCHEMA {} TO {};", pg::QuoteIdent(t.schema), pg::QuoteIdent(row.user)));
}

void NeedOwnership(const Row& row, const pg::QualifiedName& t, std::string_view why, MissingPrivileges* m) {
  if (row.owner) return;
  m->missing.push_back(fmt::format("does not own it (owner {}; {})", pg::QuoteIdentIfNeeded(row.owner_name), why));
  m->fixes.push_back(fmt::format("ALTER TABLE {} OWNER TO {};", t.Quoted(), pg::QuoteIdent(row.user)));
}

void NeedTablePrivileges(const Row& row, const pg::QualifiedName& t, const std::vector<std::pair<bool, const char*>>& need,
                         std::string_view why, MissingPrivileges* m) {
  std::string list;
  for (const auto& [has, name] : need)
    if (!has) list += (list.empty() ? "" : ", ") + std::string(name);
  if (list.empty()) return;
  m->missing.push_back(fmt::format("may not {} ({})", list, why));
  m->fixes.push_back(fmt::format("GRANT {} ON TABLE {} TO {};", list, t.Quoted(), pg::QuoteIdent(row.user)));
}

}  // namespace

std::string MissingPrivileges::Describe(std::string_view side, const pg::QualifiedName& table) const {
  std::string what, fix;
  for (const auto& s : missing) what += (what.empty() ? "" : "; ") + s;
  for (const auto& s : fixes) fix += (fix.empty() ? "" : " ") + s;
  return fmt::format("{} table {}: user {} {}. As a superuser or the table's owner, on the {}: {}", side,
                     table.Display(), pg::QuoteIdentIfNeeded(user), what, side, fix);
}

Result<MissingPrivileges> ProviderTablePrivileges(pg::PgConn& provider, const pg::QualifiedName& table) {
  LORRY_ASSIGN_OR_RETURN(Row row, Read(provider, table));
  MissingPrivileges m;
  m.user = row.user;
  if (row.super) return m;
  NeedSchemaUsage(row, table, &m);
  NeedTablePrivileges(row, table, {{row.select, "SELECT"}}, "the copy and compare read it", &m);
  NeedOwnership(row, table, "adding it to the publication needs that", &m);
  return m;
}

Result<MissingPrivileges> SubscriberTablePrivileges(pg::PgConn& subscriber, const pg::QualifiedName& table,
                                                    bool update, bool del) {
  LORRY_ASSIGN_OR_RETURN(Row row, Read(subscriber, table));
  MissingPrivileges m;
  m.user = row.user;
  if (row.super) return m;
  NeedSchemaUsage(row, table, &m);
  NeedTablePrivileges(row, table,
                      {{row.select, "SELECT"}, {row.insert, "INSERT"}, {!update || row.update, "UPDATE"},
                       {!del || row.del, "DELETE"}, {row.truncate, "TRUNCATE"}},
                      "the copy and the stream write it", &m);
  NeedOwnership(row, table, "the copy drops its indexes and keys and builds them again", &m);
  if (!row.schema_create) {
    m.missing.push_back(fmt::format("may not CREATE in schema {} (rebuilding the indexes after the copy needs it)",
                                    pg::QuoteIdentIfNeeded(table.schema)));
    m.fixes.push_back(
        fmt::format("GRANT CREATE ON SCHEMA {} TO {};", pg::QuoteIdent(table.schema), pg::QuoteIdent(row.user)));
  }
  return m;
}

}  // namespace lorry::catalog
