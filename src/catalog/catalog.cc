#include "catalog/catalog.h"

#include <fmt/format.h>

namespace lorry::catalog {

const ColumnInfo* TableInfo::FindColumn(std::string_view column) const {
  for (const auto& c : columns)
    if (c.name == column) return &c;
  return nullptr;
}

Result<std::optional<TableInfo>> LookupTable(pg::PgConn& conn, const pg::QualifiedName& name) {
  // to_regclass parses a quoted name and follows search_path when unqualified.
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams(
                  "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, "
                  "  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
                  "  coalesce((SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
                  "            WHERE i.indrelid = c.oid AND ((c.relreplident = 'i' AND i.indisreplident) OR "
                  "                  (c.relreplident = 'd' AND i.indisprimary))), ''), "
                  "  c.reltuples::bigint, pg_table_size(c.oid), pg_relation_size(c.oid) "
                  "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                  {name.Quoted()}));
  if (r.rows() == 0) return std::optional<TableInfo>();
  TableInfo t;
  t.oid = static_cast<Oid>(r.GetInt(0, 0));
  t.name = {std::string(r.Get(0, 1)), std::string(r.Get(0, 2))};
  t.relkind = r.Get(0, 3)[0];
  t.replica_identity = r.Get(0, 4)[0];
  t.has_primary_key = r.GetBool(0, 5);
  t.identity_index = r.Get(0, 6);
  t.rows_estimate = r.GetInt(0, 7);
  t.bytes_estimate = r.GetInt(0, 8);
  t.heap_bytes = r.GetInt(0, 9);

  LORRY_ASSIGN_OR_RETURN(
      auto cols,
      conn.ExecParams(
          "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull, a.atthasdef, "
          "  a.attgenerated <> '', "
          "  coalesce(a.attnum = ANY ((SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = a.attrelid "
          "     AND ((c.relreplident = 'i' AND i.indisreplident) OR (c.relreplident = 'd' AND i.indisprimary)) "
          "     LIMIT 1)::int2[]), false), "
          // Equality by a default btree opclass of the column's own (base) type;
          // polymorphic ones (arrays, enums, ranges, records) are left out on
          // purpose: callers compare those through their text form.
          "  EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod "
          "          JOIN pg_type t ON t.oid = a.atttypid "
          "          WHERE oc.opcdefault AND am.amname = 'btree' AND "
          "                oc.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) "
          "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
          "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
          {std::to_string(t.oid)}));
  for (int i = 0; i < cols.rows(); ++i) {
    ColumnInfo c;
    c.name = cols.Get(i, 0);
    c.type = cols.Get(i, 1);
    c.type_oid = static_cast<Oid>(cols.GetInt(i, 2));
    c.not_null = cols.GetBool(i, 3);
    c.has_default = cols.GetBool(i, 4);
    c.generated = cols.GetBool(i, 5);
    c.identity_key = cols.GetBool(i, 6) || t.replica_identity == 'f';
    c.has_equality = cols.GetBool(i, 7);
    t.columns.push_back(std::move(c));
  }
  return std::optional<TableInfo>(std::move(t));
}

Result<std::vector<pg::QualifiedName>> ListUserTables(pg::PgConn& conn, const std::string& schema) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams(
                  "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'r' AND NOT c.relispartition AND "
                  "  n.nspname NOT IN ('pg_catalog', 'information_schema', 'lorry', 'lorry_ddl') AND "
                  "  n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND "
                  "  ($1::text IS NULL OR n.nspname = $1) "
                  "ORDER BY 1, 2",
                  {schema.empty() ? pg::Param() : pg::Param(schema)}));
  std::vector<pg::QualifiedName> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({std::string(r.Get(i, 0)), std::string(r.Get(i, 1))});
  return out;
}

}  // namespace lorry::catalog
