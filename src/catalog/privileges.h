// The privileges lorry's users need on one table, on each side, and the
// statements that grant the missing ones. `lorry add` checks them for every
// table before it changes anything (README: least privilege).
//
// Provider (`add` and `run`'s copy, `compare`):
//   USAGE on the table's schema, SELECT on the table, and ownership of it:
//   ALTER PUBLICATION ... ADD TABLE needs it on every PostgreSQL version.
// Subscriber (`run`):
//   USAGE on the schema; SELECT (the copy checks the table is empty, FULL
//   identity matches rows), INSERT and TRUNCATE (the copy: TRUNCATE + COPY
//   FREEZE, and replicated TRUNCATEs), UPDATE and DELETE when they are
//   replicated; ownership of the table and CREATE on its schema: the copy
//   drops the indexes and keys and builds them again once the rows are in.
// A superuser has them all. Only pg_catalog is read.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::catalog {

// What a user lacks on one table of one side, as one line for a refusal:
// "provider table public.t: user lorry does not own it (...). As a
// superuser or the owner: ALTER TABLE ...;" Empty when nothing is missing.
struct MissingPrivileges {
  std::vector<std::string> missing;  // "does not own it (add: ALTER PUBLICATION ... ADD TABLE)"
  std::vector<std::string> fixes;    // "ALTER TABLE \"public\".\"t\" OWNER TO lorry;"
  std::string user;                  // the connection's user
  bool empty() const { return missing.empty(); }
  std::string Describe(std::string_view side, const pg::QualifiedName& table) const;
};

// REQUIRES: the table exists on that side.
Result<MissingPrivileges> ProviderTablePrivileges(pg::PgConn& provider, const pg::QualifiedName& table);
Result<MissingPrivileges> SubscriberTablePrivileges(pg::PgConn& subscriber, const pg::QualifiedName& table,
                                                    bool update, bool del);

}  // namespace lorry::catalog
