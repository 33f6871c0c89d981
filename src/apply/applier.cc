#include "apply/applier.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "catalog/apply_traits.h"
#include "common/fault.h"
#include "apply/lorry_message.h"
#include "common/log.h"
#include "protocol/walsender.h"

namespace lorry::apply {

using protocol::TupleColumn;
using protocol::TupleData;

Applier::Applier(pg::PgConn* conn, std::string origin, TableFilter filter, int statement_cache_size,
                 GroupLimits limits)
    : conn_(conn),
      pipeline_(conn),
      origin_(std::move(origin)),
      filter_(std::move(filter)),
      statement_cache_size_(statement_cache_size),
      limits_(limits) {}

Status Applier::Setup() {
  if (!origin_.empty())
    LORRY_RETURN_IF_ERROR(
        conn_->ExecParams("SELECT pg_replication_origin_session_setup($1)", {origin_})
            .status()
            .WithContext(fmt::format("binding the apply session to replication origin {}", origin_)));
  // Changes were checked by the provider's constraints and triggers already;
  // replica mode also lets rows arrive in an order foreign keys dislike.
  auto role = conn_->Exec("SET session_replication_role = replica");
  batching_allowed_ = role.ok();
  if (!role.ok())
    spdlog::warn("cannot SET session_replication_role = replica on the subscriber ({}); "
                 "triggers will fire for replicated changes, and changes are not batched", role.status().message());
  // Rows are found by their key: a generic plan chosen while a table was
  // tiny (just copied) must not stay a sequential scan as it grows.
  LORRY_RETURN_IF_ERROR(conn_->Exec("SET enable_seqscan = off").status());
  // That makes a plan that must scan (a table without a usable index, e.g.
  // REPLICA IDENTITY FULL) cost over 10^10, far above jit_above_cost: every
  // execution of a one-row statement would be JIT-compiled (~100 ms). Apply
  // statements are tiny; JIT never pays off for them.
  LORRY_RETURN_IF_ERROR(conn_->Exec("SET jit = off").status());
  // As PostgreSQL's own apply worker: the commit does not wait for the WAL
  // flush. The origin's progress is flushed with the commit record it is
  // part of, and lorry confirms to the provider only what
  // pg_replication_origin_progress(origin, true) reports flushed (daemon.cc).
  return conn_->Exec("SET synchronous_commit = off").status();
}

Status Applier::Handle(const protocol::PgOutputMessage& msg) {
  return std::visit(
      [&](const auto& m) -> Status {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::BeginMsg>) return OnBegin(m);
        else if constexpr (std::is_same_v<T, protocol::CommitMsg>) return OnCommit(m);
        else if constexpr (std::is_same_v<T, protocol::RelationMsg>) return OnRelation(m);
        else if constexpr (std::is_same_v<T, protocol::InsertMsg>) return OnInsert(m);
        else if constexpr (std::is_same_v<T, protocol::UpdateMsg>) return OnUpdate(m);
        else if constexpr (std::is_same_v<T, protocol::DeleteMsg>) return OnDelete(m);
        else if constexpr (std::is_same_v<T, protocol::TruncateMsg>) return OnTruncate(m);
        else if constexpr (std::is_same_v<T, protocol::OriginMsg> || std::is_same_v<T, protocol::TypeMsg>)
          return Status::Ok();  // origin: informational; types: we use the text format
        else if constexpr (std::is_same_v<T, protocol::LogicalMessageMsg>)
          return OnMessage(m);
        else
          return Status::Protocol(fmt::format("unexpected {} message: lorry did not ask for streaming or "
                                              "two-phase transactions",
                                              protocol::MessageName(msg)));
      },
      msg);
}

Status Applier::OnBegin(const protocol::BeginMsg& m) {
  if (in_remote_xact_) return Status::Protocol("BEGIN inside a transaction");
  in_remote_xact_ = true;
  skip_rest_of_xact_ = false;
  xact_final_lsn_ = m.final_lsn;
  // The commit LSN names the transaction (`lorry skip --lsn` takes it); its
  // commit time helps find it in the provider's logs.
  xact_lsn_text_ = m.final_lsn.ToString() + " committed at " + protocol::FormatPgMicros(m.commit_time);
  xact_commit_time_ = m.commit_time;
  xact_changes_ = 0;
  careful_ = careful_until_.valid() && m.final_lsn <= careful_until_;
  commit_alone_ = false;
  return Status::Ok();
}

Status Applier::EnsureSubscriberTransaction() {
  if (in_local_xact_) return Status::Ok();
  LORRY_RETURN_IF_ERROR(pipeline_.SendQuery("BEGIN", "BEGIN"));
  in_local_xact_ = true;
  return Status::Ok();
}

Status Applier::OnCommit(const protocol::CommitMsg& m) {
  if (!in_remote_xact_) return Status::Protocol("COMMIT without BEGIN");
  if (m.commit_lsn != xact_final_lsn_)
    return Status::Protocol(fmt::format("COMMIT at {} does not match BEGIN's final LSN {}", m.commit_lsn.ToString(),
                                        xact_final_lsn_.ToString()));
  in_remote_xact_ = false;
  skip_rest_of_xact_ = false;
  if (!in_local_xact_) {
    // Nothing of it applied and no group open: nothing to make durable.
    last_commit_end_ = m.end_lsn;
    last_commit_time_ = m.commit_time;
    return Status::Ok();
  }
  if (group_xacts_ == 0) group_started_ = std::chrono::steady_clock::now();
  group_end_ = m.end_lsn;
  group_commit_time_ = m.commit_time;
  group_xacts_ += xact_changes_ > 0 ? 1 : 0;
  group_changes_ += xact_changes_;
  if (careful_ || commit_alone_ || group_changes_ >= limits_.max_changes ||
      std::chrono::steady_clock::now() - group_started_ >= std::chrono::milliseconds(limits_.max_delay_ms))
    return CommitGroup();
  return Status::Ok();
}

Status Applier::CommitGroup() {
  if (!group_pending()) return Status::Ok();
  if (Status s = FlushBatches(); !s.ok()) {
    Rollback();
    return s;
  }
  // The origin's progress commits atomically with the data: after a crash
  // lorry resumes right after the group's last transaction, never before or
  // past it.
  std::string context = fmt::format("commit of provider transactions ending at {}", group_end_.ToString());
  std::string setup = fmt::format(
      "SELECT pg_replication_origin_xact_setup('{}', timestamptz '2000-01-01 00:00:00+00' + "
      "make_interval(secs => {:.6f}))",
      group_end_.ToString(), static_cast<double>(group_commit_time_) / 1e6);
  // Fencing hook (daemon/run_lease.h): fails, and so rolls the group back,
  // unless this run still holds its lease; a takeover waits for the commit.
  Status s = commit_guard_.empty() ? Status::Ok() : pipeline_.SendQuery(commit_guard_, "checking the run lease");
  if (s.ok() && !origin_.empty()) s = pipeline_.SendQuery(setup, context);
  if (s.ok() && commit_hook_) s = pipeline_.SendQuery(commit_hook_(group_end_), context);
  if (s.ok()) s = pipeline_.SendQuery("COMMIT", context);
  if (s.ok()) s = pipeline_.Sync();
  in_local_xact_ = false;
  if (!s.ok()) {
    (void)pipeline_.Sync();
    (void)conn_->Exec("ROLLBACK");
    group_xacts_ = group_changes_ = 0;
    return s;
  }
  stats_.xacts += group_xacts_;
  stats_.changes += group_changes_;
  last_commit_end_ = group_end_;
  last_group_end_ = group_end_;
  last_commit_time_ = group_commit_time_;
  group_xacts_ = group_changes_ = 0;
  return Status::Ok();
}

void Applier::Rollback() {
  for (Oid relid : batched_) relations_[relid].batch.Clear();
  batched_.clear();
  batch_bytes_ = 0;
  (void)pipeline_.Sync();
  if (in_local_xact_) (void)conn_->Exec("ROLLBACK");
  in_local_xact_ = false;
  in_remote_xact_ = false;
  group_xacts_ = group_changes_ = 0;
}

Status Applier::OnRelation(const protocol::RelationMsg& m) {
  auto& rel = relations_[m.relid];
  // Rows held back were decoded with the previous definition.
  if (!rel.batch.empty()) LORRY_RETURN_IF_ERROR(FlushRelation(&rel));
  int generation = rel.generation + 1;
  rel.remote = m;
  rel.display = pg::QualifiedName{m.nspname, m.relname}.Display();
  rel.local.reset();
  rel.generation = generation;
  return Status::Ok();
}

Status Applier::EnsureLocal(Relation* rel) {
  if (rel->local) return Status::Ok();
  // Catalog queries cannot run in pipeline mode: read what is queued first.
  LORRY_RETURN_IF_ERROR(pipeline_.Sync());
  pg::QualifiedName name{rel->remote.nspname, rel->remote.relname};
  LORRY_ASSIGN_OR_RETURN(auto info, catalog::LookupTable(*conn_, name));
  if (!info)
    return Status::Precondition(fmt::format("table {} is missing on the subscriber: create it there, or "
                                            "`lorry remove {}`",
                                            name.Display(), name.Display()));
  for (const auto& c : rel->remote.columns) {
    const auto* local = info->FindColumn(c.name);
    if (!local || local->generated)
      return Status::Precondition(fmt::format(
          "column {} of table {} is missing on the subscriber: add it there "
          "(ALTER TABLE {} ADD COLUMN {} ...), then lorry goes on where it stopped",
          pg::QuoteIdent(c.name), name.Display(), name.Quoted(), pg::QuoteIdent(c.name)));
  }
  rel->local = std::move(info);
  rel->columns.clear();
  rel->key.clear();
  rel->always_identity.clear();
  std::vector<std::string> key_names;
  for (size_t i = 0; i < rel->remote.columns.size(); ++i) {
    const auto& c = rel->remote.columns[i];
    rel->columns.push_back({c.name, "", !rel->local->FindColumn(c.name)->has_equality});
    rel->always_identity.push_back(rel->local->FindColumn(c.name)->identity == 'a');
    if (c.is_key()) {
      rel->key.push_back(i);
      key_names.push_back(c.name);
    }
  }
  LORRY_ASSIGN_OR_RETURN(auto traits, catalog::LookupApplyTraits(*conn_, rel->local->oid, key_names));
  for (auto& c : rel->columns) c.cast_type = traits.cast_types[c.name];
  char identity = rel->remote.replica_identity;
  if (traits.replica_triggers > 0)
    rel->batching = Batching::kNone;  // triggers see each change
  else if ((identity == 'd' || identity == 'i') && !rel->key.empty() && traits.competing_unique == 0)
    rel->batching = Batching::kCollapse;
  else
    rel->batching = Batching::kInsertRuns;
  rel->batch = RowBatch(rel->batching == Batching::kCollapse);
  SPDLOG_DEBUG("table {}: batching {}", rel->display, static_cast<int>(rel->batching));
  return Status::Ok();
}

Result<Applier::Relation*> Applier::Target(Oid relid, const char* op) {
  if (!in_remote_xact_) return Status::Protocol(fmt::format("{} outside a transaction", op));
  auto it = relations_.find(relid);
  if (it == relations_.end())
    return Status::Protocol(fmt::format("{} for relation OID {} before its RELATION message", op, relid));
  Relation* rel = &it->second;
  if (skip_rest_of_xact_) return static_cast<Relation*>(nullptr);
  if (!filter_({rel->remote.nspname, rel->remote.relname}, xact_final_lsn_)) return static_cast<Relation*>(nullptr);
  if (Status s = EnsureLocal(rel); !s.ok()) return s.WithContext(Where(*rel, op, ""));
  LORRY_RETURN_IF_ERROR(EnsureSubscriberTransaction());
  return rel;
}

Status Applier::Execute(const std::string& cache_key, const std::function<std::string()>& build,
                        const std::vector<pg::Param>& params, std::string context, pg::Pipeline::OnResult on_result) {
  auto it = statements_.find(cache_key);
  if (it == statements_.end()) {
    if (static_cast<int>(statements_.size()) >= statement_cache_size_) {
      LORRY_RETURN_IF_ERROR(pipeline_.SendQuery("DEALLOCATE ALL", "DEALLOCATE ALL"));
      statements_.clear();
    }
    std::string name = fmt::format("lorry_{}", next_statement_++);
    std::string sql = build();
    SPDLOG_DEBUG("prepare {}: {}", name, sql);
    LORRY_RETURN_IF_ERROR(pipeline_.SendPrepare(name, sql, static_cast<int>(params.size()), context));
    it = statements_.emplace(cache_key, name).first;
  }
  LORRY_RETURN_IF_ERROR(pipeline_.SendPrepared(it->second, params, std::move(context), std::move(on_result)));
  if (pipeline_.pending() >= kMaxPipelined) return pipeline_.Sync();
  return Status::Ok();
}

pg::Pipeline::OnResult Applier::MissingRowCheck(const char* op, const Relation& rel, const std::string& key_shown) {
  return [this, op, table = rel.display, key = key_shown,
          lsn = xact_final_lsn_](const pg::PgResult& r) {
    if (r.AffectedRows() != 0) return;
    stats_.missing_rows++;
    spdlog::warn("conflict={}_missing table={} key=({}) lsn={}: the row is not on the subscriber; change skipped",
                 op, table, key, lsn.ToString());
  };
}

// Built for every statement queued (the pipeline reports errors late), so
// it only concatenates strings prepared once per relation and transaction.
std::string Applier::Where(const Relation& rel, const char* op, const std::string& key_shown) const {
  std::string out = "apply ";
  out.reserve(32 + rel.display.size() + key_shown.size());
  out += op;
  out += ' ';
  out += rel.display;
  if (!key_shown.empty()) {
    out += " key=(";
    out += key_shown;
    out += ')';
  }
  out += " lsn=";
  out += xact_lsn_text_;
  return out;
}

Status Applier::OnInsert(const protocol::InsertMsg& m) {
  LORRY_ASSIGN_OR_RETURN(Relation * rel, Target(m.relid, "INSERT"));
  if (!rel) return Status::Ok();
  const auto& cols = rel->remote.columns;
  if (m.new_tuple.columns.size() != cols.size())
    return Status::Protocol(fmt::format("INSERT has {} columns, relation has {}", m.new_tuple.columns.size(),
                                        cols.size()));
  xact_changes_++;
  if (Batches(*rel)) {
    LORRY_ASSIGN_OR_RETURN(auto values, Values(m.new_tuple));
    return AddToBatch(rel, BatchOp::kInsert, std::move(values));
  }
  if (!rel->batch.empty()) LORRY_RETURN_IF_ERROR(FlushRelation(rel));
  std::vector<std::string> names;
  std::vector<pg::Param> params;
  std::string shape = fmt::format("I{}.{}:", m.relid, rel->generation);
  for (size_t i = 0; i < cols.size(); ++i) {
    const auto& v = m.new_tuple.columns[i];
    if (v.kind == TupleColumn::Kind::kUnchanged) continue;  // never in INSERT, but never overwrite either
    if (v.kind == TupleColumn::Kind::kBinary) return Status::Protocol("binary column value not requested");
    names.push_back(cols[i].name);
    params.push_back(v.kind == TupleColumn::Kind::kNull ? pg::Param() : pg::Param(v.value));
    shape += std::to_string(i) + ",";
  }
  pg::QualifiedName table{rel->remote.nspname, rel->remote.relname};
  return Execute(shape, [&] { return BuildInsert(table, names); }, params,
                 Where(*rel, "INSERT", InsertKeyShown(*rel, m.new_tuple)), nullptr);
}

// The new row's replica identity columns, for messages (empty without one).
std::string Applier::InsertKeyShown(const Relation& rel, const TupleData& tuple) const {
  std::string shown;
  const auto& cols = rel.remote.columns;
  for (size_t i = 0; i < cols.size() && i < tuple.columns.size() && shown.size() < 200; ++i) {
    if (!cols[i].is_key()) continue;
    const auto& v = tuple.columns[i];
    if (!shown.empty()) shown += ", ";
    shown += v.kind == TupleColumn::Kind::kNull ? "NULL" : std::string(v.value.substr(0, 64));
  }
  return shown;
}

Result<std::vector<BatchValue>> Applier::Values(const TupleData& tuple) {
  std::vector<BatchValue> out;
  out.reserve(tuple.columns.size());
  for (const auto& c : tuple.columns) {
    if (c.kind == TupleColumn::Kind::kBinary) return Status::Protocol("binary column value not requested");
    out.push_back({c.kind, std::string(c.value)});
  }
  return out;
}

std::string Applier::KeyOf(const Relation& rel, const std::vector<BatchValue>& values) const {
  std::string key;
  if (!rel.batch.collapsing()) return key;
  for (size_t i : rel.key) EncodeKeyPart(&key, values[i]);
  return key;
}

Status Applier::AddToBatch(Relation* rel, BatchOp op, std::vector<BatchValue> values) {
  if (rel->batch.empty()) {
    batched_.push_back(rel->remote.relid);
    rel->batch_first_lsn = xact_final_lsn_;
  }
  rel->batch_last_lsn = xact_final_lsn_;
  size_t rows_before = rel->batch.size(), bytes_before = rel->batch.bytes();
  std::string key = KeyOf(*rel, values);
  auto add = [&](std::string k, std::vector<BatchValue> v) {
    switch (op) {
      case BatchOp::kInsert: return rel->batch.AddInsert(std::move(k), std::move(v));
      case BatchOp::kUpdate: return rel->batch.AddUpdate(std::move(k), std::move(v));
      case BatchOp::kDelete: return rel->batch.AddDelete(std::move(k), std::move(v));
      case BatchOp::kReplace: break;
    }
    return false;
  };
  if (!add(key, values)) {
    // Cannot merge with what is pending for this key: send that first, so
    // the change applies in its original order.
    LORRY_RETURN_IF_ERROR(FlushRelation(rel));
    batched_.push_back(rel->remote.relid);
    rel->batch_first_lsn = rel->batch_last_lsn = xact_final_lsn_;
    rows_before = bytes_before = 0;
    if (!add(std::move(key), std::move(values)))
      return Status::Internal(fmt::format("{}: a change could not be added to an empty batch", rel->display));
  }
  if (rel->batch.size() == rows_before) stats_.merged_rows++;
  batch_bytes_ += rel->batch.bytes() - std::min(rel->batch.bytes(), bytes_before);
  if (rel->batch.size() >= kMaxBatchRows) return FlushRelation(rel);
  if (batch_bytes_ >= kMaxBatchBytes) return FlushBatches();
  return Status::Ok();
}

Status Applier::FlushBatches() {
  // Relations in the order their batches began: the first change held back
  // is sent first.
  std::vector<Oid> order;
  order.swap(batched_);
  for (Oid relid : order) {
    auto it = relations_.find(relid);
    if (it == relations_.end() || it->second.batch.empty()) continue;
    LORRY_RETURN_IF_ERROR(FlushRelation(&it->second));
  }
  batched_.clear();
  batch_bytes_ = 0;
  return Status::Ok();
}

Status Applier::FlushRelation(Relation* rel) {
  if (rel->batch.empty()) return Status::Ok();
  FaultPoint("apply_batch");
  std::erase(batched_, rel->remote.relid);
  batch_bytes_ -= std::min(batch_bytes_, rel->batch.bytes());
  std::vector<const BatchRow*> deletes, inserts;
  std::map<std::vector<size_t>, std::vector<const BatchRow*>> updates;  // by the columns they set
  for (const auto& row : rel->batch.rows()) {
    if (row.dead) {
      continue;
    } else if (row.op == BatchOp::kInsert) {
      inserts.push_back(&row);
    } else if (row.op == BatchOp::kDelete) {
      deletes.push_back(&row);
    } else if (row.op == BatchOp::kReplace) {
      deletes.push_back(&row);
      inserts.push_back(&row);
    } else {
      std::vector<size_t> set;
      for (size_t i = 0; i < row.values.size(); ++i)
        if (row.values[i].kind != TupleColumn::Kind::kUnchanged && !rel->always_identity[i] &&
            std::find(rel->key.begin(), rel->key.end(), i) == rel->key.end())
          set.push_back(i);
      updates[set].push_back(&row);
    }
  }
  pg::QualifiedName table{rel->remote.nspname, rel->remote.relname};
  std::vector<BatchColumn> key_columns;
  for (size_t i : rel->key) key_columns.push_back(rel->columns[i]);
  std::string gen = fmt::format("{}.{}", rel->remote.relid, rel->generation);
  Status s;
  // Deletes first: a key deleted and inserted again (a replace) must be free
  // when its insert comes. Keys differ otherwise, so the rest is unordered.
  if (!deletes.empty())
    s = SendBatch(rel, "DELETE", "BD" + gen, key_columns, rel->key, deletes,
                  [&] { return BuildBatchDelete(table, key_columns); }, true);
  for (const auto& [set, rows] : updates) {
    if (!s.ok()) break;
    if (set.empty()) continue;  // only the key or unchanged TOAST values: nothing to write
    std::vector<BatchColumn> set_columns;
    std::vector<size_t> index = rel->key;
    std::string shape = "BU" + gen + ":";
    for (size_t i : set) {
      set_columns.push_back(rel->columns[i]);
      index.push_back(i);
      shape += std::to_string(i) + ",";
    }
    std::vector<BatchColumn> all = key_columns;
    all.insert(all.end(), set_columns.begin(), set_columns.end());
    s = SendBatch(rel, "UPDATE", shape, all, index, rows,
                  [&] { return BuildBatchUpdate(table, key_columns, set_columns); }, true);
  }
  if (s.ok() && !inserts.empty()) {
    std::vector<size_t> index(rel->columns.size());
    for (size_t i = 0; i < index.size(); ++i) index[i] = i;
    s = SendBatch(rel, "INSERT", "BI" + gen, rel->columns, index, inserts,
                  [&] { return BuildBatchInsert(table, rel->columns); }, false);
  }
  rel->batch.Clear();
  return s;
}

Status Applier::SendBatch(Relation* rel, const char* op, const std::string& cache_key,
                          const std::vector<BatchColumn>& columns, const std::vector<size_t>& column_index,
                          const std::vector<const BatchRow*>& rows, const std::function<std::string()>& build,
                          bool check_missing) {
  // One text array per column, elements in row order.
  std::vector<std::string> arrays(columns.size());
  for (size_t c = 0; c < columns.size(); ++c) {
    std::string& a = arrays[c];
    a.reserve(rows.size() * 8 + 2);
    a += '{';
    for (size_t r = 0; r < rows.size(); ++r) AppendArrayElement(&a, rows[r]->values[column_index[c]], r == 0);
    a += '}';
  }
  std::vector<pg::Param> params(arrays.begin(), arrays.end());
  stats_.batched_rows += static_cast<int64_t>(rows.size());
  std::string context =
      rel->batch_first_lsn == rel->batch_last_lsn
          ? fmt::format("apply batched {} of {} rows in {} lsn={}", op, rows.size(), rel->display,
                        rel->batch_first_lsn.ToString())
          : fmt::format("apply batched {} of {} rows in {} (provider transactions with commit LSNs {} to {})", op,
                        rows.size(), rel->display, rel->batch_first_lsn.ToString(), rel->batch_last_lsn.ToString());
  pg::Pipeline::OnResult on_result;
  if (check_missing)
    on_result = [this, op, table = rel->display, expected = static_cast<int64_t>(rows.size()),
                 first = rel->batch_first_lsn, last = rel->batch_last_lsn](const pg::PgResult& r) {
      int64_t missing = expected - r.AffectedRows();
      if (missing <= 0) return;
      stats_.missing_rows += missing;
      spdlog::warn("conflict={}_missing table={} rows={} of {} lsn={}..{}: rows not on the subscriber; changes "
                   "skipped",
                   op == std::string_view("DELETE") ? "delete" : "update", table, missing, expected,
                   first.ToString(), last.ToString());
    };
  return Execute(cache_key, build, params, std::move(context), std::move(on_result));
}

Status Applier::KeyFrom(const Relation& rel, const TupleData& tuple, std::vector<KeyColumn>* key,
                        std::vector<pg::Param>* params, std::string* shape, std::string* shown) const {
  const auto& cols = rel.remote.columns;
  if (tuple.columns.size() != cols.size())
    return Status::Protocol(fmt::format("tuple has {} columns, relation has {}", tuple.columns.size(), cols.size()));
  for (size_t i = 0; i < cols.size(); ++i) {
    if (!cols[i].is_key()) continue;
    const auto& v = tuple.columns[i];
    if (v.kind == TupleColumn::Kind::kUnchanged) continue;  // unknown value: cannot compare
    if (v.kind == TupleColumn::Kind::kBinary) return Status::Protocol("binary column value not requested");
    const auto* local = rel.local->FindColumn(cols[i].name);
    KeyColumn k{cols[i].name, v.kind == TupleColumn::Kind::kNull, !(local && local->has_equality)};
    *shape += fmt::format("{}{},", i, k.is_null ? "n" : (k.by_text ? "t" : "v"));
    if (!k.is_null) params->push_back(v.value);
    if (shown->size() < 200) {
      if (!shown->empty()) *shown += ", ";
      *shown += k.is_null ? "NULL" : std::string(v.value.substr(0, 64));
    }
    key->push_back(std::move(k));
  }
  if (key->empty())
    return Status::Protocol(fmt::format("no replica identity columns for {}.{}", rel.remote.nspname,
                                        rel.remote.relname));
  return Status::Ok();
}

Status Applier::OnUpdate(const protocol::UpdateMsg& m) {
  LORRY_ASSIGN_OR_RETURN(Relation * rel, Target(m.relid, "UPDATE"));
  if (!rel) return Status::Ok();
  const auto& cols = rel->remote.columns;
  if (m.new_tuple.columns.size() != cols.size())
    return Status::Protocol(fmt::format("UPDATE has {} columns, relation has {}", m.new_tuple.columns.size(),
                                        cols.size()));
  xact_changes_++;
  // The row keeps its key (no old key sent): it can be merged and batched.
  if (!m.old_kind && Batches(*rel) && rel->batch.collapsing()) {
    LORRY_ASSIGN_OR_RETURN(auto values, Values(m.new_tuple));
    return AddToBatch(rel, BatchOp::kUpdate, std::move(values));
  }
  if (!rel->batch.empty()) LORRY_RETURN_IF_ERROR(FlushRelation(rel));
  bool one_row = rel->remote.replica_identity == 'f';
  std::vector<std::string> set;
  std::vector<pg::Param> params;
  std::string shape = fmt::format("U{}.{}:", m.relid, rel->generation);
  for (size_t i = 0; i < cols.size(); ++i) {
    const auto& v = m.new_tuple.columns[i];
    // An unchanged TOASTed value is not sent: leave the subscriber's as is.
    if (v.kind == TupleColumn::Kind::kUnchanged) continue;
    if (v.kind == TupleColumn::Kind::kBinary) return Status::Protocol("binary column value not requested");
    if (rel->always_identity[i]) {
      // Without an old tuple the key is unchanged; a non-key identity value
      // is taken as unchanged too (the provider can only have set it to
      // DEFAULT, a fresh value of its own sequence).
      bool in_old = m.old_kind == 'O' || std::find(rel->key.begin(), rel->key.end(), i) != rel->key.end();
      bool changed = m.old_kind && in_old && i < m.old_tuple.columns.size() &&
                     m.old_tuple.columns[i].kind != TupleColumn::Kind::kUnchanged &&
                     (m.old_tuple.columns[i].kind != v.kind || m.old_tuple.columns[i].value != v.value);
      if (!changed) continue;
      return Status::Precondition(fmt::format(
          "column {} of table {} is GENERATED ALWAYS AS IDENTITY on the subscriber and was changed on the provider: "
          "an UPDATE may only set it to DEFAULT there. Fix: on the subscriber, ALTER TABLE {} ALTER COLUMN {} SET "
          "GENERATED BY DEFAULT; then lorry goes on where it stopped",
          pg::QuoteIdent(cols[i].name), rel->display, pg::QualifiedName{rel->remote.nspname, rel->remote.relname}.Quoted(),
          pg::QuoteIdent(cols[i].name)));
    }
    set.push_back(cols[i].name);
    params.push_back(v.kind == TupleColumn::Kind::kNull ? pg::Param() : pg::Param(v.value));
    shape += std::to_string(i) + ",";
  }
  shape += "|";
  std::vector<KeyColumn> key;
  std::string shown;
  // The old key is sent when the key changed (or always, for FULL);
  // otherwise the new row's key columns identify the row.
  const TupleData& key_tuple = m.old_kind ? m.old_tuple : m.new_tuple;
  if (Status s = KeyFrom(*rel, key_tuple, &key, &params, &shape, &shown); !s.ok())
    return s.WithContext(Where(*rel, "UPDATE", ""));
  if (set.empty()) return Status::Ok();  // only unchanged TOAST values: nothing to write
  pg::QualifiedName table{rel->remote.nspname, rel->remote.relname};
  return Execute(shape, [&] { return BuildUpdate(table, set, key, one_row); }, params,
                 Where(*rel, "UPDATE", shown), MissingRowCheck("update", *rel, shown));
}

Status Applier::OnDelete(const protocol::DeleteMsg& m) {
  LORRY_ASSIGN_OR_RETURN(Relation * rel, Target(m.relid, "DELETE"));
  if (!rel) return Status::Ok();
  xact_changes_++;
  if (Batches(*rel) && rel->batch.collapsing()) {
    if (m.old_tuple.columns.size() != rel->remote.columns.size())
      return Status::Protocol(fmt::format("DELETE has {} columns, relation has {}", m.old_tuple.columns.size(),
                                          rel->remote.columns.size()));
    LORRY_ASSIGN_OR_RETURN(auto values, Values(m.old_tuple));
    return AddToBatch(rel, BatchOp::kDelete, std::move(values));
  }
  if (!rel->batch.empty()) LORRY_RETURN_IF_ERROR(FlushRelation(rel));
  bool one_row = rel->remote.replica_identity == 'f';
  std::vector<KeyColumn> key;
  std::vector<pg::Param> params;
  std::string shape = fmt::format("D{}.{}:", m.relid, rel->generation), shown;
  if (Status s = KeyFrom(*rel, m.old_tuple, &key, &params, &shape, &shown); !s.ok())
    return s.WithContext(Where(*rel, "DELETE", ""));
  pg::QualifiedName table{rel->remote.nspname, rel->remote.relname};
  return Execute(shape, [&] { return BuildDelete(table, key, one_row); }, params, Where(*rel, "DELETE", shown),
                 MissingRowCheck("delete", *rel, shown));
}

Status Applier::OnTruncate(const protocol::TruncateMsg& m) {
  std::vector<pg::QualifiedName> tables;
  for (Oid relid : m.relids) {
    LORRY_ASSIGN_OR_RETURN(Relation * rel, Target(relid, "TRUNCATE"));
    if (rel) tables.push_back({rel->remote.nspname, rel->remote.relname});
  }
  if (tables.empty()) return Status::Ok();
  xact_changes_++;
  // TRUNCATE ... CASCADE reaches other tables too: everything held back goes first.
  LORRY_RETURN_IF_ERROR(FlushBatches());
  return pipeline_.SendQuery(BuildTruncate(tables, m.restart_identity(), m.cascade()),
                             fmt::format("apply TRUNCATE lsn={}", xact_final_lsn_.ToString()));
}

// A lorry message (apply/lorry_message.h) runs its SQL at exactly its point
// of the provider transaction: every statement queued before it is executed
// first (the pipeline is flushed), then the SQL runs in the same open
// subscriber transaction, so it commits (or rolls back) with the changes
// around it and with the origin's progress.
Status Applier::OnMessage(const protocol::LogicalMessageMsg& m) {
  if (subscription_.empty() || !m.transactional() || m.prefix != kLorryMessagePrefix) return Status::Ok();
  if (!in_remote_xact_) return Status::Protocol("transactional lorry message outside a transaction");
  LORRY_ASSIGN_OR_RETURN(auto msg, DecodeLorryMessage(m.content));
  if (!msg.IsFor(subscription_)) return Status::Ok();
  if (message_skipped_ && message_skipped_(xact_final_lsn_)) return Status::Ok();
  std::string first_line = msg.sql.substr(0, std::min(msg.sql.find('\n'), size_t{80}));
  // lsn= is the transaction's commit LSN, as in every apply error (`lorry skip --lsn`).
  std::string context = fmt::format("run {} SQL from the provider lsn={} message_lsn={} (\"{}\")",
                                    msg.kind == LorryMessage::Kind::kExecute ? "`lorry execute`" : "captured DDL",
                                    xact_lsn_text_, m.lsn.ToString(), first_line);
  // Flush: everything queued before the message executes before its SQL.
  LORRY_RETURN_IF_ERROR(EnsureSubscriberTransaction());
  LORRY_RETURN_IF_ERROR(FlushBatches());
  LORRY_RETURN_IF_ERROR(pipeline_.Sync());
  // A cascade: this database is the provider of other lorry subscriptions.
  LORRY_ASSIGN_OR_RETURN(auto downstream, DownstreamSubscriptions(*conn_));
  if (!downstream.empty() && msg.skips_rest_of_transaction()) {
    // Downstream, an execute script skips the rest of the subscriber
    // transaction it arrives in: that one must hold nothing but this
    // provider transaction. Transactions grouped before it commit first
    // (this one changed nothing yet: the message comes first), and it
    // commits alone.
    if (xact_changes_ == 0 && group_xacts_ > 0) {
      in_remote_xact_ = false;
      Status s = CommitGroup();
      in_remote_xact_ = true;
      LORRY_RETURN_IF_ERROR(s);
      LORRY_RETURN_IF_ERROR(EnsureSubscriberTransaction());
      LORRY_RETURN_IF_ERROR(pipeline_.Sync());
    }
    commit_alone_ = true;
  }
  LORRY_RETURN_IF_ERROR(ForwardLorryMessage(*conn_, msg, downstream).WithContext(context));
  LORRY_RETURN_IF_ERROR(RunLorryMessage(*conn_, subscription_, msg).WithContext(context));
  LORRY_RETURN_IF_ERROR(PublishAddedForDownstream(*conn_, msg, downstream).WithContext(context));
  // The subscriber's tables may have changed: their columns are read again
  // and statements prepared anew.
  for (auto& [relid, rel] : relations_) rel.local.reset();
  LORRY_RETURN_IF_ERROR(conn_->Exec("DEALLOCATE ALL").status());
  statements_.clear();
  xact_changes_++;
  skip_rest_of_xact_ = msg.skips_rest_of_transaction();
  spdlog::info("sub={} ran {} lsn={}", subscription_,
               msg.kind == LorryMessage::Kind::kExecute ? "execute script" : "captured DDL", m.lsn.ToString());
  return Status::Ok();
}

}  // namespace lorry::apply
