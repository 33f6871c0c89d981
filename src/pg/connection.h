// RAII wrappers around libpq: PgResult, PgConn and the COPY streams.
//
// libpq is used only inside src/pg/. Connections and results are move-only;
// every result's status is checked and turned into a Status that names the
// server (by its redacted conninfo label), the SQLSTATE and libpq's message.
// A PgConn is used by one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct pg_conn;
struct pg_result;
struct pg_cancel;

namespace lorry::pg {

// A query parameter: nullopt is SQL NULL; values are sent in text format.
using Param = std::optional<std::string_view>;

// Text output settings for every connection that reads or writes row values
// (the walsender, copy and apply sessions), so that both servers agree on the
// text form of every type. Passed as libpq's `options`.
inline constexpr const char* kTextSessionOptions =
    "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* res) : res_(res) {}
  PgResult(PgResult&& o) noexcept : res_(o.res_) { o.res_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const;
  int columns() const;
  bool IsNull(int row, int col) const;
  // Text value (empty for NULL); valid while this PgResult lives.
  std::string_view Get(int row, int col) const;
  std::optional<std::string> GetOptional(int row, int col) const;
  int64_t GetInt(int row, int col) const;   // REQUIRES: an integer value
  bool GetBool(int row, int col) const;     // 't' is true
  int ColumnIndex(const char* name) const;  // -1 if absent
  // Rows affected by INSERT/UPDATE/DELETE/COPY, or 0.
  int64_t AffectedRows() const;
  pg_result* get() const { return res_; }

 private:
  pg_result* res_ = nullptr;
};

// Params as the const char* array libpq takes, with the text kept alive
// (and NULs added) for as long as this object lives.
class ParamValues {
 public:
  explicit ParamValues(const std::vector<Param>& params) {
    storage_.reserve(params.size());  // no reallocation: c_str() pointers stay valid
    values_.reserve(params.size());
    for (const auto& p : params) {
      if (p) {
        storage_.emplace_back(*p);
        values_.push_back(storage_.back().c_str());
      } else {
        values_.push_back(nullptr);
      }
    }
  }
  const char* const* data() const { return values_.data(); }
  int size() const { return static_cast<int>(values_.size()); }

 private:
  std::vector<std::string> storage_;
  std::vector<const char*> values_;
};

struct ConnectOptions {
  // Extra libpq keywords, applied over those of the conninfo string, e.g.
  // {"replication", "database"} or {"application_name", "lorry"}.
  std::vector<std::pair<std::string, std::string>> overrides;
  // Short human name used in errors and logs ("provider", "subscriber").
  std::string role = "server";
  // Left out of CancelRunningQueries(): for a session that must still work
  // while the process stops (releasing the run lease).
  bool keep_running_on_stop = false;
};

// Asks the server of every open connection (but those made with
// keep_running_on_stop) to cancel the statement it runs, if any: how a stop
// request (SIGTERM) ends waits no flag can reach, on a lock, a COPY or an
// index build. A connection that is idle is not affected. Thread-safe.
void CancelRunningQueries();

class PgConn {
 public:
  PgConn() = default;
  PgConn(PgConn&& o) noexcept;
  PgConn& operator=(PgConn&& o) noexcept;
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;
  ~PgConn();

  // Connects; errors are kConnection with the redacted conninfo and libpq's message.
  static Result<PgConn> Connect(const std::string& conninfo, const ConnectOptions& options = {});

  bool connected() const { return conn_ != nullptr; }
  // Like "provider (host=127.0.0.1 port=5432 dbname=app user=lorry)": never a password.
  const std::string& label() const { return label_; }
  int server_version() const;  // e.g. 150004
  int backend_pid() const;     // the server process of this session (pg_backend_pid())
  int socket() const;          // the connection's socket, -1 when not connected

  // Runs one or more statements without parameters; returns the last result.
  Result<PgResult> Exec(std::string_view sql);
  // One statement with text parameters.
  Result<PgResult> ExecParams(std::string_view sql, const std::vector<Param>& params);
  // Like ExecParams, but gives up after `timeout` without a complete answer
  // (kConnection; the connection is then unusable: drop it). For calls that
  // must not hang on a server that stopped answering without closing the
  // connection (a network that drops packets).
  Result<PgResult> ExecParamsWithin(std::string_view sql, const std::vector<Param>& params,
                                    std::chrono::milliseconds timeout);
  // Convenience: first column of first row, nullopt for NULL or no rows.
  Result<std::optional<std::string>> QueryValue(std::string_view sql, const std::vector<Param>& params = {});

  Status Prepare(const std::string& name, std::string_view sql, int nparams);
  Result<PgResult> ExecPrepared(const std::string& name, const std::vector<Param>& params);

  // COPY ... TO STDOUT: call StartCopyOut, then GetCopyData until it returns
  // false (end), then the COPY's final status is returned by EndCopyOut.
  Status StartCopyOut(std::string_view sql);
  // Sets *chunk to the next row chunk (owned by the caller afterwards). Returns
  // false at the end of data.
  Result<bool> GetCopyData(std::string* chunk);
  // COPY ... FROM STDIN
  Status StartCopyIn(std::string_view sql);
  Status PutCopyData(std::string_view data);
  // Ends COPY IN; error_message non-empty aborts the COPY with that message.
  Result<PgResult> EndCopyIn(const char* error_message = nullptr);

  // Makes a Status from the connection's current error, with context.
  Status ConnectionError(std::string_view what) const;
  // Status kConnection if the connection is gone, else kServer. Records the
  // error's SQLSTATE (last_sqlstate).
  Status ResultError(const pg_result* res, std::string_view sql) const;
  // The SQLSTATE of the last statement that failed on this connection ("" if
  // none or unknown): to tell error kinds apart without reading messages.
  const std::string& last_sqlstate() const { return last_sqlstate_; }

  // Sends a cancel request for the running query (thread-safe with respect to
  // the thread running the query).
  void Cancel();

  pg_conn* raw() const { return conn_; }

 private:
  void Close();
  pg_conn* conn_ = nullptr;
  pg_cancel* cancel_ = nullptr;  // registered for CancelRunningQueries(), or null
  std::string label_;
  mutable std::string last_sqlstate_;
};

}  // namespace lorry::pg
