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
//   comments. Triggers, rules, row security policies, owners and privileges
//   are left out: they name functions and roles the subscriber may lack,
//   and triggers would fire on replicated rows.
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
};

// What was created, for the user: "schema app", "type app.mood", "table app.t".
struct CreateReport {
  std::vector<std::string> created;
};

// Creates the tables on `subscriber` (its own session, one transaction).
// Errors: kPrecondition when pg_dump is missing or older than the provider
// (saying how to point lorry at a newer one) or fails; kServer naming the
// object being created when the subscriber refuses a statement.
Result<CreateReport> CreateTables(pg::PgConn& provider, pg::PgConn& subscriber, const CreateRequest& request);

}  // namespace lorry::schema
