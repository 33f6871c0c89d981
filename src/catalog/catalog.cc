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
                  // A partitioned table holds no rows itself: its leaves' sums.
                  "  CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(CASE WHEN bool_and(l.reltuples < 0) THEN -1 "
                  "       ELSE sum(greatest(l.reltuples, 0)) END, 0)::bigint "
                  "       FROM pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf) "
                  "       ELSE c.reltuples::bigint END, "
                  "  CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint "
                  "       FROM pg_partition_tree(c.oid) t WHERE t.isleaf) ELSE pg_table_size(c.oid) END, "
                  "  CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_relation_size(t.relid)), 0)::bigint "
                  "       FROM pg_partition_tree(c.oid) t WHERE t.isleaf) ELSE pg_relation_size(c.oid) END, "
                  "  c.relispartition, "
                  "  CASE WHEN c.relkind = 'p' THEN (SELECT count(*) FROM pg_partition_tree(c.oid) t "
                  "       JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf AND l.relkind = 'r') ELSE 0 END "
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
  t.is_partition = r.GetBool(0, 10);
  t.leaf_partitions = static_cast<int>(r.GetInt(0, 11));

  LORRY_ASSIGN_OR_RETURN(
      auto cols,
      conn.ExecParams(
          "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull, a.atthasdef, "
          "  a.attgenerated <> '', a.attidentity, "
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
    c.identity = cols.Get(i, 6).empty() ? '\0' : cols.Get(i, 6)[0];
    c.identity_key = cols.GetBool(i, 7) || t.replica_identity == 'f';
    c.has_equality = cols.GetBool(i, 8);
    t.columns.push_back(std::move(c));
  }
  return std::optional<TableInfo>(std::move(t));
}

namespace {
// User schemas `n` (pg_namespace; $1: one schema, or null for all).
constexpr const char* kUserSchemas =
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'lorry', 'lorry_ddl') AND "
    "n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

std::vector<pg::QualifiedName> Names(const pg::PgResult& r) {
  std::vector<pg::QualifiedName> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({std::string(r.Get(i, 0)), std::string(r.Get(i, 1))});
  return out;
}
}  // namespace

Result<std::vector<pg::QualifiedName>> ListUserTables(pg::PgConn& conn, const std::string& schema,
                                                      PartitionMode mode) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams(
                  "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE CASE WHEN $2 THEN c.relkind = 'r' "
                  "           ELSE c.relkind IN ('r', 'p') AND NOT c.relispartition END AND "
                  "  " + std::string(kUserSchemas) + " AND "
                  "  ($1::text IS NULL OR n.nspname = $1) "
                  "ORDER BY 1, 2",
                  {schema.empty() ? pg::Param() : pg::Param(schema), mode == PartitionMode::kLeaves ? "t" : "f"}));
  return Names(r);
}

Result<std::vector<pg::QualifiedName>> ListFreeSequences(pg::PgConn& conn, const std::string& schema) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams(
                  "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'S' AND "
                  "  " + std::string(kUserSchemas) + " AND "
                  "  ($1::text IS NULL OR n.nspname = $1) AND "
                  "  NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
                  "              AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e')) "
                  "ORDER BY 1, 2",
                  {schema.empty() ? pg::Param() : pg::Param(schema)}));
  return Names(r);
}

Result<std::vector<pg::QualifiedName>> ListLeaves(pg::PgConn& conn, Oid partitioned) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams("SELECT n.nspname, c.relname FROM pg_partition_tree($1::oid) t "
                              "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE t.isleaf AND c.relkind = 'r' ORDER BY 1, 2",
                              {std::to_string(partitioned)}));
  return Names(r);
}

Result<std::optional<pg::QualifiedName>> PartitionRoot(pg::PgConn& conn, Oid table) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams("SELECT n.nspname, c.relname FROM pg_partition_ancestors($1::oid) a "
                              "JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE a.relid <> $1::oid AND NOT c.relispartition",
                              {std::to_string(table)}));
  if (r.rows() == 0) return std::optional<pg::QualifiedName>();
  return std::optional<pg::QualifiedName>(pg::QualifiedName{std::string(r.Get(0, 0)), std::string(r.Get(0, 1))});
}

}  // namespace lorry::catalog
