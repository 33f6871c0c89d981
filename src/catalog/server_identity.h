// Which server and database a connection reaches, as the servers themselves
// tell it: never by how connection strings spell them (a URI or key=value,
// localhost or 127.0.0.1, a socket or TCP, a pooler in between).
//
// A cluster's system identifier is shared by its physical copies (standbys,
// clones restored from a base backup), so the postmaster's start time tells
// a copy from its original; within a server, a database is its OID.
#pragma once

#include <string>

#include "common/status.h"
#include "pg/connection.h"

namespace lorry::catalog {

struct ServerIdentity {
  std::string system_identifier;  // pg_control_system()
  std::string started;            // pg_postmaster_start_time(), seconds since the epoch
  std::string database_oid;
  std::string database;  // its name, for messages

  bool SameServer(const ServerIdentity& o) const {
    return system_identifier == o.system_identifier && started == o.started;
  }
  bool SameDatabase(const ServerIdentity& o) const { return SameServer(o) && database_oid == o.database_oid; }
};

// Reads it; any user may (pg_control_system and pg_postmaster_start_time are public).
Result<ServerIdentity> IdentifyServer(pg::PgConn& conn);

// kPrecondition when `provider` and `subscriber` are one database (a table
// would be both the source and the target of its copy: the copy's two
// sessions lock each other out, and every change would loop).
Status RequireDistinctDatabases(const ServerIdentity& provider, const ServerIdentity& subscriber);

}  // namespace lorry::catalog
