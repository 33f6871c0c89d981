// Row counts and content hashes of a table, computed inside the server, and
// the narrowing of a difference down to keys (`lorry compare [--rows]`).
//
// The hash: for each row, the 64-bit hashtextextended(ROW(c1, ..., cn)::text, 0)
// over the columns both sides have, in the provider's column order; the
// table's hash is the sum of these (as numeric, so it never overflows) and
// the row count. The sum is independent of row order and physical layout,
// and a changed, missing or extra row changes it (except for a 64-bit hash
// collision). The row's text form is the same on both sides when both
// sessions use the same output settings (pg::kTextSessionOptions and
// TimeZone UTC, which the caller sets) and the column types print alike.
//
// Narrowing: a range of the key (primary key, else the replica identity
// index) whose hashes differ is split at the median key of the side with
// more rows, recursively, until a range holds few rows on both sides; those
// keys and row hashes are then read and compared. Key ranges use the "C"
// collation for text-like key columns so that both sides order keys alike.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/status.h"
#include "pg/connection.h"

namespace lorry::schema {

// What to hash of one table, on both sides.
struct HashSpec {
  pg::QualifiedName table;
  bool provider_only = true, subscriber_only = true;  // FROM ONLY (not for a partitioned table)
  std::vector<std::string> columns;        // compared columns, provider order
  std::vector<std::string> key;            // key columns (empty: no key)
  std::vector<std::string> provider_key_types, subscriber_key_types;  // format_type() of each key column
  std::vector<bool> key_collatable;        // whether COLLATE "C" applies
};

// Builds the spec: the columns both sides have (generated ones left out) and
// the provider's key. `notes` gets the columns left out.
Result<HashSpec> MakeHashSpec(pg::PgConn& provider, const catalog::TableInfo& prov, const catalog::TableInfo& sub,
                              std::vector<std::string>* notes);

struct TableSum {
  int64_t rows = 0;
  std::string hash;  // the sum, as text
  bool operator==(const TableSum&) const = default;
};

// Count and hash of the whole table on one side.
Result<TableSum> SumTable(pg::PgConn& conn, const HashSpec& spec, bool provider);

struct RowDifference {
  std::string key;   // "(id)=(42)"
  std::string what;  // "only on the provider", "only on the subscriber", "differs"
};

// Lists the keys whose rows differ. REQUIRES: !spec.key.empty(). Stops after
// `limit` differences (`*more` is then true).
Result<std::vector<RowDifference>> NarrowRows(pg::PgConn& provider, pg::PgConn& subscriber, const HashSpec& spec,
                                              size_t limit, bool* more);

}  // namespace lorry::schema
