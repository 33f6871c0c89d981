// `lorry add --create`: creating tables missing on the subscriber from the
// provider's definitions, with pg_dump --schema-only (never hand-written DDL).
//
// What is created, in one subscriber transaction (all or nothing):
// - the missing schemas of the tables and of the types they use;
// - the enum, composite, domain and range types the tables' columns use,
//   directly or through arrays, domains, composites and ranges, when
//   missing on the subscriber (pg_dump -t dumps no types, see the .cc);
// - the tables with their defaults, constraints (CHECK, NOT NULL, primary
//   key, unique, exclusion, foreign keys), indexes, owned sequences and
//   comments; a partitioned table with all its partitions, at every level
//   (or, `standalone_partitions`, leaf partitions as tables of their own);
// - the sequences the columns' defaults use that no table owns.
// Triggers, rules, row security policies, owners and privileges are left
// out: they name functions and roles the subscriber may lack, and triggers
// would fire on replicated rows. Views, materialized views, functions and
// triggers of the tables' schemas are named in CreateReport::left_out.
//
// pg_dump reaches the provider through a temporary service file (mode 0600,
// PGSERVICEFILE), so the conninfo and its password never appear on a
// command line.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::schema {

// The pg_dump to run: `flag` if not empty, else $LORRY_PG_DUMP if set, else
// "pg_dump" from PATH. pg_restore is taken from the same directory.
std::string PgDumpProgram(const std::string& flag);

struct CreateRequest {
  std::string provider_conninfo;
  std::string pg_dump;  // as PgDumpProgram returns
  std::vector<pg::QualifiedName> tables;  // qualified, on the provider, missing on the subscriber
  // Partitions named in `tables` are created as plain tables, not attached
  // to a root (`add --partitions leaves`).
  bool standalone_partitions = false;
  // Sequences to create too (free-standing ones, missing on the subscriber).
  std::vector<pg::QualifiedName> sequences;
};

// What was created, for the user: "schema app", "type app.mood", "table app.t".
struct CreateReport {
  std::vector<std::string> created;
  // One line naming what the tables' schemas hold that was not created
  // (views, materialized views, functions, triggers); empty when nothing.
  std::string left_out;
};

// Creates the tables on `subscriber` (its own session, one transaction).
// Errors: kPrecondition when pg_dump is missing or older than the provider
// (saying how to point lorry at a newer one) or fails; kServer naming the
// object being created when the subscriber refuses a statement.
Result<CreateReport> CreateTables(pg::PgConn& provider, pg::PgConn& subscriber, const CreateRequest& request);

}  // namespace lorry::schema
