#include "catalog/apply_traits.h"

#include "apply/row_batch.h"
#include "pg/quote.h"

namespace lorry::catalog {

Result<ApplyTraits> LookupApplyTraits(pg::PgConn& conn, Oid table, const std::vector<std::string>& key_columns) {
  ApplyTraits traits;
  std::string key_array = "{";
  for (size_t i = 0; i < key_columns.size(); ++i)
    apply::AppendArrayElement(&key_array, {protocol::TupleColumn::Kind::kText, key_columns[i]}, i == 0);
  key_array += "}";
  std::string oid = std::to_string(table);
  LORRY_ASSIGN_OR_RETURN(
      auto counts,
      conn.ExecParams(
          "SELECT (SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::oid AND (i.indisunique OR i.indisexclusion) "
          "          AND (i.indisexclusion OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL OR "
          "               (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a "
          "                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) "
          "               IS DISTINCT FROM (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))), "
          "       (SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::oid AND NOT tgisinternal "
          "          AND tgenabled IN ('A', 'R')) + "
          "       (SELECT count(*) FROM pg_rewrite WHERE ev_class = $1::oid AND rulename <> '_RETURN' "
          "          AND ev_enabled IN ('A', 'R'))",
          {oid, key_array}));
  traits.competing_unique = static_cast<int>(counts.GetInt(0, 0));
  traits.replica_triggers = static_cast<int>(counts.GetInt(0, 1));
  LORRY_ASSIGN_OR_RETURN(
      auto types, conn.ExecParams("SELECT a.attname, n.nspname, t.typname "
                                  "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                                  "JOIN pg_namespace n ON n.oid = t.typnamespace "
                                  "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped",
                                  {oid}));
  for (int i = 0; i < types.rows(); ++i) 
    traits.cast_types[std::string(types.Get(i, 0))] =
        pg::QuoteIdent(types.Get(i, 1)) + "." + pg::QuoteIdent(types.Get(i, 2));
  return traits;
}

}  // namespace lorry::catalog
