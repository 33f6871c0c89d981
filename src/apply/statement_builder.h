// SQL text for applying one change, built once per (table, operation, shape)
// and then prepared; values are always parameters, never inlined.
//
// Parameters are numbered in the order the builder lists them: first the
// SET/VALUES columns, then the WHERE columns that are not NULL.
#pragma once

#include <string>
#include <vector>

#include "pg/quote.h"

namespace lorry::apply {

// One column of a WHERE clause that identifies a row.
struct KeyColumn {
  std::string name;
  bool is_null = false;   // compared with IS NULL, takes no parameter
  bool by_text = false;   // the type has no equality operator: compare text forms
};

// INSERT INTO t (c1, c2) OVERRIDING SYSTEM VALUE VALUES ($1, $2): the
// provider's values also go into GENERATED ALWAYS identity columns, as
// PostgreSQL's own apply writes them (a no-op for other tables).
std::string BuildInsert(const pg::QualifiedName& table, const std::vector<std::string>& columns);

// UPDATE t SET a = $1 WHERE k = $2 ...
// With `one_row` (replica identity FULL, where rows may repeat) exactly one
// matching row is touched: WHERE ctid = (SELECT ctid ... LIMIT 1).
std::string BuildUpdate(const pg::QualifiedName& table, const std::vector<std::string>& set_columns,
                        const std::vector<KeyColumn>& key, bool one_row);

// DELETE FROM t WHERE k = $1 ...
std::string BuildDelete(const pg::QualifiedName& table, const std::vector<KeyColumn>& key, bool one_row);

// Set-based statements for a batch of rows (see row_batch.h): one text
// array parameter per column, $1 for the first column listed (key columns
// first), each element cast to the column's type without its typmod, so
// that the assignment to the column checks lengths as a single-row
// statement would (an explicit cast to varchar(n) would truncate).
struct BatchColumn {
  std::string name;
  std::string cast_type;  // e.g. "pg_catalog"."int4" (quoted: no SQL-standard typmod defaults)
  bool by_text = false;   // key column whose type has no equality: compare text forms
};

// INSERT INTO t (c1, c2) OVERRIDING SYSTEM VALUE SELECT v.a1::T1, v.a2::T2 FROM unnest($1::text[], $2::text[]) AS v(a1, a2)
std::string BuildBatchInsert(const pg::QualifiedName& table, const std::vector<BatchColumn>& columns);

// UPDATE t AS t SET c = v.a2::T FROM unnest($1::text[], $2::text[]) AS v(a1, a2) WHERE t.k = v.a1::K
std::string BuildBatchUpdate(const pg::QualifiedName& table, const std::vector<BatchColumn>& key,
                             const std::vector<BatchColumn>& set);

// DELETE FROM t AS t USING unnest($1::text[]) AS v(a1) WHERE t.k = v.a1::K
std::string BuildBatchDelete(const pg::QualifiedName& table, const std::vector<BatchColumn>& key);

// TRUNCATE t1, t2 [RESTART IDENTITY] [CASCADE]
std::string BuildTruncate(const std::vector<pg::QualifiedName>& tables, bool restart_identity, bool cascade);

}  // namespace lorry::apply
