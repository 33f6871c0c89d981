// Automatic DDL capture (`lorry init --capture-ddl`): an event trigger on the
// provider that sends each DDL command touching a replicated table to the
// subscriber as a lorry message (apply/lorry_message.h, kind "ddl").
//
// Provider objects, shared by the lorry subscriptions of that database:
//   schema lorry_ddl, table lorry_ddl.subscriptions (which subscriptions
//   want their DDL captured), function lorry_ddl.capture() and the event
//   trigger lorry_capture_ddl (ON ddl_command_end).
// `lorry drop` removes the subscription's row, and the objects with the
// last one.
//
// What it covers: every command that pg_event_trigger_ddl_commands()
// reports at ddl_command_end with, as its object, a table in a lorry
// publication of a capturing subscription, or an index of such a table
// (ALTER TABLE in all its forms, CREATE INDEX, ALTER INDEX, COMMENT ON ...),
// or a partition of a published partitioned table: CREATE TABLE ...
// PARTITION OF, and ATTACH / DETACH PARTITION (an ALTER TABLE of the root).
// The query string the client sent is replayed (once per query string),
// with the provider session's search_path. Not covered: DROP TABLE / DROP
// INDEX (sql_drop does not name the table), tables not yet replicated
// (CREATE TABLE, unless a partition of a published root), other objects (types, functions, sequences), DDL of
// `lorry execute` (already sent), and DDL run while session_replication_role
// is replica (event triggers do not fire then).
#pragma once

#include <ostream>

#include "common/status.h"
#include "pg/connection.h"
#include "state/names.h"

namespace lorry::admin {

// Installs (or updates) the capture objects and records `names.name` as
// capturing. REQUIRES: a superuser on PostgreSQL 14+ (checked by init).
Status InstallDdlCapture(pg::PgConn& provider, const SubscriptionNames& names, std::ostream& out);

// Removes the subscription's row; the objects too once no subscription is left.
Status UninstallDdlCapture(pg::PgConn& provider, const SubscriptionNames& names, std::ostream& out);

}  // namespace lorry::admin
