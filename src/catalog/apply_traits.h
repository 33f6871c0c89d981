// What the applier needs to know about a subscriber table to decide whether
// its changes may be sent as set-based batches (see apply/row_batch.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"

namespace lorry::catalog {

struct ApplyTraits {
  // Column name -> the type each batched text value is cast to: the column's
  // type without typmod, as a quoted name ("pg_catalog"."varchar").
  std::map<std::string, std::string> cast_types;
  // Unique indexes (partial or on expressions included) and exclusion
  // constraints other than one on exactly the key columns: rows with
  // different keys can then conflict, so their order matters.
  int competing_unique = 0;
  // Triggers and rules that fire for replicated changes (ENABLE ALWAYS or
  // ENABLE REPLICA): they see every row change, so none may be merged.
  int replica_triggers = 0;
};

// `key_columns`: the columns that identify a row in replicated changes.
Result<ApplyTraits> LookupApplyTraits(pg::PgConn& conn, Oid table, const std::vector<std::string>& key_columns);

}  // namespace lorry::catalog
