#include "pg/replication_conn.h"

#include <libpq-fe.h>
#include <poll.h>

#include <fmt/format.h>

#include "pg/quote.h"

namespace lorry::pg {

Result<ReplicationConn> ReplicationConn::Connect(const std::string& conninfo, const std::string& role) {
  ConnectOptions o;
  o.role = role;
  o.overrides = {{"replication", "database"}, {"options", kTextSessionOptions}};
  LORRY_ASSIGN_OR_RETURN(PgConn c, PgConn::Connect(conninfo, o));
  ReplicationConn r;
  r.conn_ = std::move(c);
  return r;
}

Result<CreatedSlot> ReplicationConn::CreateSlot(const std::string& name, bool temporary, bool failover) {
  // The pre-15 syntax is accepted by every supported major version; the
  // FAILOVER option exists only in the options list (15+ syntax) from 17 on.
  std::string sql = fmt::format("CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput EXPORT_SNAPSHOT", QuoteIdent(name),
                                temporary ? "TEMPORARY " : "");
  if (failover && !temporary && server_version() >= 170000)
    sql = fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)",
                      QuoteIdent(name));
  auto r = conn_.Exec(sql);
  if (!r.ok()) return r.status().WithContext(fmt::format("creating replication slot {}", name));
  if (r->rows() != 1 || r->columns() < 3)
    return Status::Protocol(fmt::format("{}: unexpected reply to CREATE_REPLICATION_SLOT", label()));
  CreatedSlot s;
  s.name = r->Get(0, 0);
  auto lsn = Lsn::Parse(r->Get(0, 1));
  if (!lsn) return Status::Protocol(fmt::format("{}: bad consistent point '{}'", label(), r->Get(0, 1)));
  s.consistent_point = *lsn;
  s.snapshot = r->Get(0, 2);
  return s;
}

Status ReplicationConn::MakeFailoverSlot(const std::string& name) {
  return conn_.Exec(fmt::format("ALTER_REPLICATION_SLOT {} (FAILOVER true)", QuoteIdent(name)))
      .status()
      .WithContext(fmt::format("making replication slot {} a failover slot", name));
}

Status ReplicationConn::StartReplication(const std::string& slot, Lsn start, const std::string& options) {
  std::string sql =
      fmt::format("START_REPLICATION SLOT {} LOGICAL {} ({})", QuoteIdent(slot), start.ToString(), options);
  PGresult* res = PQexec(conn_.raw(), sql.c_str());
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_COPY_BOTH) {
    Status s = conn_.ResultError(res, sql);
    if (res) PQclear(res);
    return s;
  }
  PQclear(res);
  return Status::Ok();
}

Result<std::optional<std::string>> ReplicationConn::Read(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(conn_.raw(), &buf, 1);
    if (n > 0) {
      std::string out(buf, n);
      PQfreemem(buf);
      return std::optional<std::string>(std::move(out));
    }
    if (n == -1) {
      // The server ended the stream: its final result says why.
      PGresult* res = PQgetResult(conn_.raw());
      Status s = res && PQresultStatus(res) == PGRES_COMMAND_OK
                     ? Status::Connection(fmt::format("{}: replication stream ended by the server", label()))
                     : conn_.ResultError(res, "");
      if (res) PQclear(res);
      return s.kind() == Status::Kind::kServer ? Status::Connection(s.message()) : s;
    }
    if (n == -2) return conn_.ConnectionError("reading the replication stream");
    // n == 0: nothing buffered; wait for the socket (a zero timeout still
    // looks once at what the kernel has received).
    auto now = std::chrono::steady_clock::now();
    int ms = now >= deadline
                 ? 0
                 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    pollfd p{PQsocket(conn_.raw()), POLLIN, 0};
    int rc = poll(&p, 1, ms);
    if (rc < 0 && errno != EINTR) return conn_.ConnectionError("waiting for the replication stream");
    if (rc == 0 && std::chrono::steady_clock::now() >= deadline) return std::optional<std::string>();
    if (rc > 0 && PQconsumeInput(conn_.raw()) == 0) return conn_.ConnectionError("reading the replication stream");
  }
}

Status ReplicationConn::Send(std::string_view data) {
  if (PQputCopyData(conn_.raw(), data.data(), static_cast<int>(data.size())) != 1 || PQflush(conn_.raw()) != 0)
    return conn_.ConnectionError("sending to the replication stream");
  return Status::Ok();
}

}  // namespace lorry::pg
