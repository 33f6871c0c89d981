#include "apply/applier.h"

#include <fmt/format.h>

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
  LORRY_RETURN_IF_ERROR(
      conn_->ExecParams("SELECT pg_replication_origin_session_setup($1)", {origin_})
          .status()
          .WithContext(fmt::format("binding the apply session to replication origin {}", origin_)));
  // Changes were checked by the provider's constraints and triggers already;
  // replica mode also lets rows arrive in an order foreign keys dislike.
  auto role = conn_->Exec("SET session_replication_role = replica");
  if (!role.ok())
    spdlog::warn("cannot SET session_replication_role = replica on the subscriber ({}); "
                 "triggers will fire for replicated changes", role.status().message());
  // Rows are found by their key: a generic plan chosen while a table was
  // tiny (just copied) must not stay a sequential scan as it grows.
  LORRY_RETURN_IF_ERROR(conn_->Exec("SET enable_seqscan = off").status());
  return conn_->Exec("SET synchronous_commit = on").status();
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
          return Status::Ok();  // not requested; harmless if sent
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
  xact_final_lsn_ = m.final_lsn;
  // The commit LSN names the transaction (`lorry skip --lsn` takes it); its
  // commit time helps find it in the provider's logs.
  xact_lsn_text_ = m.final_lsn.ToString() + " committed at " + protocol::FormatPgMicros(m.commit_time);
  xact_commit_time_ = m.commit_time;
  xact_changes_ = 0;
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
  if (group_changes_ >= limits_.max_changes ||
      std::chrono::steady_clock::now() - group_started_ >= std::chrono::milliseconds(limits_.max_delay_ms))
    return CommitGroup();
  return Status::Ok();
}

Status Applier::CommitGroup() {
  if (!group_pending()) return Status::Ok();
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
  if (s.ok()) s = pipeline_.SendQuery(setup, context);
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
  last_durable_end_ = group_end_;
  last_commit_time_ = group_commit_time_;
  group_xacts_ = group_changes_ = 0;
  return Status::Ok();
}

void Applier::Rollback() {
  (void)pipeline_.Sync();
  if (in_local_xact_) (void)conn_->Exec("ROLLBACK");
  in_local_xact_ = false;
  in_remote_xact_ = false;
  group_xacts_ = group_changes_ = 0;
}

Status Applier::OnRelation(const protocol::RelationMsg& m) {
  auto& rel = relations_[m.relid];
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
  return Status::Ok();
}

Result<Applier::Relation*> Applier::Target(Oid relid, const char* op) {
  if (!in_remote_xact_) return Status::Protocol(fmt::format("{} outside a transaction", op));
  auto it = relations_.find(relid);
  if (it == relations_.end())
    return Status::Protocol(fmt::format("{} for relation OID {} before its RELATION message", op, relid));
  Relation* rel = &it->second;
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
  xact_changes_++;
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
  bool one_row = rel->remote.replica_identity == 'f';
  std::vector<std::string> set;
  std::vector<pg::Param> params;
  std::string shape = fmt::format("U{}.{}:", m.relid, rel->generation);
  for (size_t i = 0; i < cols.size(); ++i) {
    const auto& v = m.new_tuple.columns[i];
    // An unchanged TOASTed value is not sent: leave the subscriber's as is.
    if (v.kind == TupleColumn::Kind::kUnchanged) continue;
    if (v.kind == TupleColumn::Kind::kBinary) return Status::Protocol("binary column value not requested");
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
  return pipeline_.SendQuery(BuildTruncate(tables, m.restart_identity(), m.cascade()),
                             fmt::format("apply TRUNCATE lsn={}", xact_final_lsn_.ToString()));
}

}  // namespace lorry::apply
