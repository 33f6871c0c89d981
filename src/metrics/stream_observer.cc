#include "metrics/stream_observer.h"

#include <type_traits>

namespace lorry::metrics {

void StreamObserver::OnMessage(const protocol::PgOutputMessage& msg) {
  std::visit(
      [this](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, protocol::BeginMsg>) {
          in_xact_ = true;
          xact_final_ = m.final_lsn;
          xact_commit_time_ = m.commit_time;
          xact_began_ = std::chrono::steady_clock::now();
        } else if constexpr (std::is_same_v<T, protocol::RelationMsg>) {
          auto& rel = relations_[m.relid];
          rel.name = {m.nspname, m.relname};
          rel.display = rel.name.Display();
          rel.decided_for = Lsn();
        } else if constexpr (std::is_same_v<T, protocol::InsertMsg>) {
          Count(m.relid, Op::kInsert);
        } else if constexpr (std::is_same_v<T, protocol::UpdateMsg>) {
          Count(m.relid, Op::kUpdate);
        } else if constexpr (std::is_same_v<T, protocol::DeleteMsg>) {
          Count(m.relid, Op::kDelete);
        } else if constexpr (std::is_same_v<T, protocol::TruncateMsg>) {
          for (Oid relid : m.relids) Count(relid, Op::kTruncate);
        } else if constexpr (std::is_same_v<T, protocol::CommitMsg>) {
          Pending p{m.end_lsn, m.commit_time, {}};
          for (Oid relid : touched_) {
            auto& rel = relations_[relid];
            p.counts.emplace_back(rel.display, rel.xact);
            rel.xact = {};
            rel.touched = false;
          }
          touched_.clear();
          pending_.push_back(std::move(p));
          timing_.push_back({m.end_lsn, xact_began_, m.commit_time});
          in_xact_ = false;
        }
      },
      msg);
}

void StreamObserver::Count(Oid relid, Op op) {
  auto it = relations_.find(relid);
  if (it == relations_.end() || !in_xact_) return;  // the applier rejects these as protocol errors
  Relation& rel = it->second;
  if (rel.decided_for != xact_final_) {
    rel.apply = filter_(rel.name, xact_final_);
    rel.decided_for = xact_final_;
  }
  if (!rel.apply) return;
  rel.xact[static_cast<size_t>(op)]++;
  if (!rel.touched) {
    rel.touched = true;
    touched_.push_back(relid);
  }
}

void StreamObserver::OnCommitted(Lsn committed) {
  if (timing_.empty() || timing_.front().end > committed) return;
  auto now = std::chrono::steady_clock::now();
  auto wall = std::chrono::system_clock::now();
  while (!timing_.empty() && timing_.front().end <= committed) {
    const Timing& t = timing_.front();
    sink_->ObserveTransaction(std::chrono::duration<double>(now - t.began).count(),
                              LagSeconds(t.commit_time, wall));
    timing_.pop_front();
  }
}

void StreamObserver::OnDurable(Lsn applied) {
  OnCommitted(applied);
  while (!pending_.empty() && pending_.front().end <= applied) {
    for (const auto& [table, counts] : pending_.front().counts) sink_->AddApplied(table, counts);
    pending_.pop_front();
  }
}

int64_t StreamObserver::OldestPendingCommitTime() const {
  if (!pending_.empty()) return pending_.front().commit_time;
  if (in_xact_) return xact_commit_time_;
  return 0;
}

}  // namespace lorry::metrics
