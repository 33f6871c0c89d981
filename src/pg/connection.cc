#include "pg/connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "common/log.h"

#include "pg/conninfo.h"

namespace lorry::pg {

namespace {

std::string TrimMessage(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return RedactSecrets(s);
}

// Builds "role (host=... port=... dbname=... user=...)" from the live connection.
std::string MakeLabel(PGconn* conn, const std::string& role) {
  std::string out = role + " (";
  auto add = [&](const char* key, const char* value) {
    if (value && *value) out += fmt::format("{}{}={}", out.back() == '(' ? "" : " ", key, value);
  };
  const char* host = PQhost(conn);
  add("host", host);
  add("port", PQport(conn));
  add("dbname", PQdb(conn));
  add("user", PQuser(conn));
  out += ")";
  return out;
}

// The cancel handles of open connections: PQcancel may be called from any
// thread, and the mutex keeps a handle from being freed while it is used.
std::mutex g_cancel_mu;
std::set<PGcancel*>& CancelHandles() {
  static std::set<PGcancel*> handles;
  return handles;
}

}  // namespace

void CancelRunningQueries() {
  std::lock_guard<std::mutex> l(g_cancel_mu);
  char error[256];
  for (PGcancel* c : CancelHandles()) PQcancel(c, error, sizeof error);
}

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (res_) PQclear(res_);
    res_ = o.res_;
    o.res_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (res_) PQclear(res_);
}

int PgResult::rows() const { return res_ ? PQntuples(res_) : 0; }
int PgResult::columns() const { return res_ ? PQnfields(res_) : 0; }
bool PgResult::IsNull(int row, int col) const { return PQgetisnull(res_, row, col) != 0; }
std::string_view PgResult::Get(int row, int col) const {
  return std::string_view(PQgetvalue(res_, row, col), PQgetlength(res_, row, col));
}
std::optional<std::string> PgResult::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return std::string(Get(row, col));
}
int64_t PgResult::GetInt(int row, int col) const { return std::strtoll(PQgetvalue(res_, row, col), nullptr, 10); }
bool PgResult::GetBool(int row, int col) const { return PQgetvalue(res_, row, col)[0] == 't'; }
int PgResult::ColumnIndex(const char* name) const { return PQfnumber(res_, name); }
int64_t PgResult::AffectedRows() const {
  const char* n = res_ ? PQcmdTuples(res_) : "";
  return *n ? std::strtoll(n, nullptr, 10) : 0;
}

PgConn::PgConn(PgConn&& o) noexcept
    : conn_(o.conn_), cancel_(o.cancel_), label_(std::move(o.label_)), last_sqlstate_(std::move(o.last_sqlstate_)) {
  o.conn_ = nullptr;
  o.cancel_ = nullptr;
}

PgConn& PgConn::operator=(PgConn&& o) noexcept {
  if (this != &o) {
    Close();
    conn_ = o.conn_;
    cancel_ = o.cancel_;
    label_ = std::move(o.label_);
    last_sqlstate_ = std::move(o.last_sqlstate_);
    o.conn_ = nullptr;
    o.cancel_ = nullptr;
  }
  return *this;
}

PgConn::~PgConn() { Close(); }

void PgConn::Close() {
  if (cancel_) {
    std::lock_guard<std::mutex> l(g_cancel_mu);
    CancelHandles().erase(cancel_);
    PQfreeCancel(cancel_);
    cancel_ = nullptr;
  }
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

const char* const kServerKeepaliveSql =
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; "
    "SET tcp_user_timeout = 30000";

Result<PgConn> PgConn::Connect(const std::string& conninfo, const ConnectOptions& options) {
  // The conninfo string is expanded as "dbname" (expand_dbname=1); later
  // keywords override what it says, which is how replication=database and
  // session options are added without editing the user's string.
  // connect_timeout comes first so that the user's own value wins.
  // So do TCP keepalives and tcp_user_timeout: a server behind a network
  // that silently drops packets is noticed within about 30 s (keepalive
  // probes after 10 s idle, every 5 s, 3 lost = dead; unacknowledged data
  // for 30 s = dead) instead of the kernel's two hours. Values written in
  // the connection string win.
  const char* timeout = std::getenv("PGCONNECT_TIMEOUT") ? std::getenv("PGCONNECT_TIMEOUT") : "10";
  std::vector<const char*> keys{"connect_timeout", "keepalives",          "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                "fallback_application_name", "dbname"};
  std::vector<const char*> values{timeout, "1", "10", "5", "3", "30000", "lorry", conninfo.c_str()};
  for (const auto& [k, v] : options.overrides) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), 1);
  if (conn == nullptr) return Status::Connection(fmt::format("{}: out of memory connecting", options.role));
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = TrimMessage(PQerrorMessage(conn));
    PQfinish(conn);
    std::string hint;
    // Refused credentials or a missing database do not fix themselves:
    // retrying would only hide the cause.
    bool refused = false;
    if (msg.find("password authentication failed") != std::string::npos) {
      hint = "; check the password in the connection string, PGPASSWORD or ~/.pgpass";
      refused = true;
    } else if (msg.find("no password supplied") != std::string::npos) {
      // libpq's own "fe_sendauth: no password supplied": the server wants one.
      hint = "; give the password in ~/.pgpass (or the file PGPASSFILE names) or PGPASSWORD";
      refused = true;
    } else if (msg.find("no pg_hba.conf entry") != std::string::npos ||
               msg.find("authentication failed") != std::string::npos ||
               (msg.find("FATAL") != std::string::npos && msg.find("does not exist") != std::string::npos)) {
      refused = true;
    } else if (msg.find("Connection refused") != std::string::npos) {
      hint = "; is the server running and accepting TCP connections on that host and port?";
    }
    std::string text =
        fmt::format("cannot connect to {} ({}): {}{}", options.role, RedactConninfo(conninfo), msg, hint);
    return refused ? Status::Auth(text) : Status::Connection(text);
  }
  // Server NOTICEs ("truncate cascades to ...") are not for the user's
  // terminal; keep them for debugging.
  PQsetNoticeProcessor(
      conn, [](void*, const char* message) { SPDLOG_DEBUG("server notice: {}", TrimMessage(message)); }, nullptr);
  // The same on the server's side of a TCP connection: a lorry session
  // whose client vanished behind such a network (holding the run lock, the
  // lease row or a slot) is ended by the server within about 30 s too,
  // instead of after the kernel's two hours. Best effort (a pooler may refuse).
  const char* host = PQhost(conn);
  if (host && *host && *host != '/') {
    PGresult* set = PQexec(conn, kServerKeepaliveSql);
    if (PQresultStatus(set) != PGRES_COMMAND_OK)
      SPDLOG_DEBUG("{}: server keepalive settings not taken: {}", options.role,
                   TrimMessage(PQresultErrorMessage(set)));
    PQclear(set);
  }
  PgConn c;
  c.conn_ = conn;
  c.label_ = MakeLabel(conn, options.role);
  if (!options.keep_running_on_stop) {
    c.cancel_ = PQgetCancel(conn);
    std::lock_guard<std::mutex> l(g_cancel_mu);
    if (c.cancel_) CancelHandles().insert(c.cancel_);
  }
  return c;
}

int PgConn::server_version() const { return conn_ ? PQserverVersion(conn_) : 0; }
int PgConn::backend_pid() const { return conn_ ? PQbackendPID(conn_) : 0; }
int PgConn::socket() const { return conn_ ? PQsocket(conn_) : -1; }

Status PgConn::ConnectionError(std::string_view what) const {
  std::string msg = conn_ ? TrimMessage(PQerrorMessage(conn_)) : "not connected";
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD)
    return Status::Connection(fmt::format("{}: {}: {}", label_, what, msg));
  return Status::Server(fmt::format("{}: {}: {}", label_, what, msg));
}

Status PgConn::ResultError(const pg_result* res, std::string_view sql) const {
  std::string msg = TrimMessage(res ? PQresultErrorMessage(res) : PQerrorMessage(conn_));
  if (msg.empty()) msg = TrimMessage(PQerrorMessage(conn_));
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  last_sqlstate_ = state ? state : "";
  std::string shown(sql.substr(0, 200));
  if (sql.size() > 200) shown += "...";
  std::string text = fmt::format("{}: {}{}", label_, msg, state ? fmt::format(" (SQLSTATE {})", state) : "");
  if (!shown.empty()) text += fmt::format(" [while running: {}]", shown);
  // Class 08 is connection exception; 57P01..57P03 are admin shutdown / crash / cannot connect now.
  bool conn_lost = PQstatus(conn_) == CONNECTION_BAD ||
                   (state && (std::strncmp(state, "08", 2) == 0 || std::strncmp(state, "57P", 3) == 0));
  return conn_lost ? Status::Connection(text) : Status::Server(text);
}

namespace {
Result<PgResult> Check(const PgConn& c, PGresult* res, std::string_view sql) {
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_OUT || st == PGRES_COPY_IN ||
      st == PGRES_COPY_BOTH || st == PGRES_EMPTY_QUERY)
    return PgResult(res);
  Status s = c.ResultError(res, sql);
  if (res) PQclear(res);
  return s;
}
}  // namespace

Result<PgResult> PgConn::Exec(std::string_view sql) {
  if (!conn_) return Status::Connection(label_ + ": not connected");
  std::string q(sql);
  return Check(*this, PQexec(conn_, q.c_str()), sql);
}


Result<PgResult> PgConn::ExecParams(std::string_view sql, const std::vector<Param>& params) {
  if (!conn_) return Status::Connection(label_ + ": not connected");
  ParamValues a(params);
  std::string q(sql);
  return Check(*this,
               PQexecParams(conn_, q.c_str(), static_cast<int>(params.size()), nullptr, a.data(), nullptr,
                            nullptr, 0),
               sql);
}

Result<PgResult> PgConn::ExecParamsWithin(std::string_view sql, const std::vector<Param>& params,
                                          std::chrono::milliseconds timeout) {
  if (!conn_) return Status::Connection(label_ + ": not connected");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  ParamValues a(params);
  std::string q(sql);
  if (PQsendQueryParams(conn_, q.c_str(), a.size(), nullptr, a.data(), nullptr, nullptr, 0) != 1 ||
      PQflush(conn_) != 0)
    return ConnectionError("sending a query");
  PGresult* last = nullptr;
  while (true) {
    while (!PQisBusy(conn_)) {
      PGresult* res = PQgetResult(conn_);
      if (res == nullptr) return Check(*this, last, sql);
      if (last) PQclear(last);
      last = res;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      if (last) PQclear(last);
      return Status::Connection(fmt::format("{}: no answer within {:.1f} s (network or server not responding)",
                                            label_, timeout.count() / 1000.0));
    }
    pollfd p{PQsocket(conn_), POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1);
    if ((rc < 0 && errno != EINTR) || (rc > 0 && PQconsumeInput(conn_) == 0)) {
      if (last) PQclear(last);
      return ConnectionError("waiting for an answer");
    }
  }
}

Result<std::optional<std::string>> PgConn::QueryValue(std::string_view sql, const std::vector<Param>& params) {
  LORRY_ASSIGN_OR_RETURN(PgResult r, ExecParams(sql, params));
  if (r.rows() == 0 || r.columns() == 0 || r.IsNull(0, 0)) return std::optional<std::string>();
  return std::optional<std::string>(std::string(r.Get(0, 0)));
}

Status PgConn::Prepare(const std::string& name, std::string_view sql, int nparams) {
  if (!conn_) return Status::Connection(label_ + ": not connected");
  std::string q(sql);
  auto r = Check(*this, PQprepare(conn_, name.c_str(), q.c_str(), nparams, nullptr), sql);
  return r.status();
}

Result<PgResult> PgConn::ExecPrepared(const std::string& name, const std::vector<Param>& params) {
  if (!conn_) return Status::Connection(label_ + ": not connected");
  ParamValues a(params);
  return Check(*this,
               PQexecPrepared(conn_, name.c_str(), static_cast<int>(params.size()), a.data(), nullptr,
                              nullptr, 0),
               name);
}

Status PgConn::StartCopyOut(std::string_view sql) {
  LORRY_ASSIGN_OR_RETURN(PgResult r, Exec(sql));
  if (PQresultStatus(r.get()) != PGRES_COPY_OUT)
    return Status::Internal(fmt::format("{}: expected COPY OUT from: {}", label_, sql));
  return Status::Ok();
}

Result<bool> PgConn::GetCopyData(std::string* chunk) {
  char* buf = nullptr;
  int n = PQgetCopyData(conn_, &buf, 0);
  if (n > 0) {
    chunk->assign(buf, n);
    PQfreemem(buf);
    return true;
  }
  if (n == -1) {
    // End of COPY: the final result tells whether it succeeded.
    PGresult* res = PQgetResult(conn_);
    auto checked = Check(*this, res, "COPY TO STDOUT");
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    if (!checked.ok()) return checked.status();
    return false;
  }
  return ConnectionError("reading COPY data");
}

Status PgConn::StartCopyIn(std::string_view sql) {
  LORRY_ASSIGN_OR_RETURN(PgResult r, Exec(sql));
  if (PQresultStatus(r.get()) != PGRES_COPY_IN)
    return Status::Internal(fmt::format("{}: expected COPY IN from: {}", label_, sql));
  return Status::Ok();
}

Status PgConn::PutCopyData(std::string_view data) {
  if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1)
    return ConnectionError("sending COPY data");
  return Status::Ok();
}

Result<PgResult> PgConn::EndCopyIn(const char* error_message) {
  if (PQputCopyEnd(conn_, error_message) != 1) return ConnectionError("ending COPY");
  PGresult* res = PQgetResult(conn_);
  auto checked = Check(*this, res, "COPY FROM STDIN");
  while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  return checked;
}

void PgConn::Cancel() {
  if (!conn_) return;
  PGcancel* c = PQgetCancel(conn_);
  if (!c) return;
  char err[256];
  PQcancel(c, err, sizeof(err));
  PQfreeCancel(c);
}

}  // namespace lorry::pg
