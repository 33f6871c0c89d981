#include "catalog/server_identity.h"

#include <fmt/format.h>

#include "pg/quote.h"

namespace lorry::catalog {

Result<ServerIdentity> IdentifyServer(pg::PgConn& conn) {
  LORRY_ASSIGN_OR_RETURN(auto r, conn.Exec("SELECT (SELECT system_identifier::text FROM pg_control_system()), "
                                           "extract(epoch FROM pg_postmaster_start_time())::text, d.oid::text, "
                                           "d.datname FROM pg_database d WHERE d.datname = current_database()"));
  if (r.rows() != 1) return Status::Internal(conn.label() + ": cannot read the current database from pg_database");
  return ServerIdentity{std::string(r.Get(0, 0)), std::string(r.Get(0, 1)), std::string(r.Get(0, 2)),
                        std::string(r.Get(0, 3))};
}

Status RequireDistinctDatabases(const ServerIdentity& provider, const ServerIdentity& subscriber) {
  if (!provider.SameDatabase(subscriber)) return Status::Ok();
  return Status::Precondition(fmt::format(
      "the provider and the subscriber are the same database ({} on the server with system identifier {}), "
      "however their connection strings are written: lorry replicates from one database into another. Point "
      "--subscriber (or subscriber in lorry.toml) at the target database",
      pg::QuoteIdentIfNeeded(provider.database), provider.system_identifier));
}

}  // namespace lorry::catalog
