// Pipeline: libpq pipeline mode on a PgConn, so that statements are sent
// without waiting for each result (no per-row round trips).
//
// Statements are queued with Send*; their results are read, in order, by
// Sync(), which sends a sync point and waits for everything queued. Inside an
// explicit transaction a sync point does not commit. After an error the
// server skips the rest of the queue up to the sync point; Sync() returns the
// first error with the context given when that statement was queued.
// Between Sync() and the next Send*, the connection is out of pipeline mode
// and ordinary PgConn calls work.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"

namespace lorry::pg {

class Pipeline {
 public:
  // Called with the result of a statement that succeeded.
  using OnResult = std::function<void(const PgResult&)>;

  // REQUIRES: conn outlives the pipeline.
  explicit Pipeline(PgConn* conn) : conn_(conn) {}
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  Status SendPrepare(const std::string& name, const std::string& sql, int nparams, std::string context);
  Status SendPrepared(const std::string& name, const std::vector<Param>& params, std::string context,
                      OnResult on_result = nullptr);
  // One statement without parameters (extended protocol: no multi-statement strings).
  Status SendQuery(const std::string& sql, std::string context);

  // Waits for every queued result; leaves pipeline mode.
  Status Sync();
  // Statements queued and not yet synced.
  size_t pending() const { return queue_.size(); }

 private:
  struct Entry {
    std::string context;
    OnResult on_result;
  };
  Status Enter();

  PgConn* conn_;
  bool active_ = false;
  std::deque<Entry> queue_;
};

}  // namespace lorry::pg
