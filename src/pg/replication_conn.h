// ReplicationConn: a walsender connection (replication=database) and the
// commands lorry sends on it: IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT with an
// exported snapshot, START_REPLICATION and the COPY BOTH stream that follows.
//
// Reads wait at most the given timeout, so the caller's loop can send
// feedback, notice a stop request and do its periodic work.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"

namespace lorry::pg {

struct CreatedSlot {
  std::string name;
  Lsn consistent_point;
  std::string snapshot;  // valid until the next command on the same connection
};

class ReplicationConn {
 public:
  // Connects with replication=database and session settings that make the
  // text output of values unambiguous for the subscriber.
  static Result<ReplicationConn> Connect(const std::string& conninfo, const std::string& role);

  int server_version() const { return conn_.server_version(); }
  const std::string& label() const { return conn_.label(); }

  // CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput EXPORT_SNAPSHOT.
  // `failover` (PostgreSQL 17+, ignored before; never with `temporary`): a
  // failover slot, which standbys with sync_replication_slots = on keep in
  // step so that it survives the promotion of one of them.
  Result<CreatedSlot> CreateSlot(const std::string& name, bool temporary, bool failover = false);

  // ALTER_REPLICATION_SLOT name (FAILOVER true): a slot created before (by
  // an older lorry, or on PostgreSQL 16 before an upgrade) becomes a
  // failover slot. REQUIRES: PostgreSQL 17+, the slot inactive.
  Status MakeFailoverSlot(const std::string& name);

  // START_REPLICATION SLOT name LOGICAL start (options...). Enters COPY BOTH.
  Status StartReplication(const std::string& slot, Lsn start, const std::string& options);

  // Next CopyData message, or nullopt if none arrived within timeout.
  // kConnection when the stream ends or the connection breaks.
  Result<std::optional<std::string>> Read(std::chrono::milliseconds timeout);
  // Sends a CopyData message (e.g. a standby status update) and flushes.
  Status Send(std::string_view data);

  PgConn& conn() { return conn_; }

 private:
  PgConn conn_;
};

}  // namespace lorry::pg
