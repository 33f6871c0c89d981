#include "pg/pipeline.h"

#include <libpq-fe.h>

#include <fmt/format.h>

namespace lorry::pg {

Status Pipeline::Enter() {
  if (active_) return Status::Ok();
  if (PQenterPipelineMode(conn_->raw()) != 1) return conn_->ConnectionError("entering pipeline mode");
  active_ = true;
  return Status::Ok();
}


Status Pipeline::SendPrepare(const std::string& name, const std::string& sql, int nparams, std::string context) {
  LORRY_RETURN_IF_ERROR(Enter());
  if (PQsendPrepare(conn_->raw(), name.c_str(), sql.c_str(), nparams, nullptr) != 1)
    return conn_->ConnectionError("sending PREPARE").WithContext(context);
  queue_.push_back({std::move(context), nullptr});
  return Status::Ok();
}

Status Pipeline::SendPrepared(const std::string& name, const std::vector<Param>& params, std::string context,
                              OnResult on_result) {
  LORRY_RETURN_IF_ERROR(Enter());
  ParamValues values(params);
  if (PQsendQueryPrepared(conn_->raw(), name.c_str(), values.size(), values.data(), nullptr, nullptr, 0) != 1)
    return conn_->ConnectionError("sending a statement").WithContext(context);
  queue_.push_back({std::move(context), std::move(on_result)});
  return Status::Ok();
}

Status Pipeline::SendQuery(const std::string& sql, std::string context) {
  LORRY_RETURN_IF_ERROR(Enter());
  if (PQsendQueryParams(conn_->raw(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
    return conn_->ConnectionError("sending a statement").WithContext(context);
  queue_.push_back({std::move(context), nullptr});
  return Status::Ok();
}

Status Pipeline::Sync() {
  if (!active_) return Status::Ok();
  PGconn* c = conn_->raw();
  if (PQpipelineSync(c) != 1) return conn_->ConnectionError("sending a pipeline sync");
  Status first;
  // Each queued statement yields one result followed by a NULL; the sync
  // point yields PGRES_PIPELINE_SYNC.
  while (true) {
    PGresult* res = PQgetResult(c);
    if (res == nullptr) {
      if (PQstatus(c) == CONNECTION_BAD) {
        queue_.clear();
        active_ = false;
        return conn_->ConnectionError("reading pipeline results");
      }
      continue;  // end of one statement's results
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      break;
    }
    Entry entry = queue_.empty() ? Entry{"(unexpected result)", nullptr} : std::move(queue_.front());
    if (!queue_.empty()) queue_.pop_front();
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      PgResult r(res);
      if (entry.on_result && first.ok()) entry.on_result(r);
    } else if (st == PGRES_PIPELINE_ABORTED) {
      PQclear(res);  // skipped because an earlier statement failed
    } else {
      if (first.ok()) first = conn_->ResultError(res, "").WithContext(entry.context);
      PQclear(res);
    }
  }
  queue_.clear();
  if (PQexitPipelineMode(c) != 1) {
    active_ = false;
    return first.ok() ? conn_->ConnectionError("leaving pipeline mode") : first;
  }
  active_ = false;
  return first;
}

}  // namespace lorry::pg
