#include "sync/sequence_sync.h"

#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "state/names.h"

namespace lorry::sync {

namespace {

struct SequenceValue {
  int64_t last = 0;
  bool called = false;
};

Result<std::optional<SequenceValue>> ReadSequence(pg::PgConn& conn, const pg::QualifiedName& seq) {
  LORRY_ASSIGN_OR_RETURN(auto exists, conn.QueryValue("SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND "
                                                      "relkind = 'S'",
                                                      {seq.Quoted()}));
  if (!exists) return std::optional<SequenceValue>();
  LORRY_ASSIGN_OR_RETURN(auto r, conn.Exec(fmt::format("SELECT last_value, is_called FROM {}", seq.Quoted())));
  return std::optional<SequenceValue>(SequenceValue{r.GetInt(0, 0), r.GetBool(0, 1)});
}

// The sequences the given tables use, on the provider: those owned by their
// serial or identity columns, and those their column defaults call
// (nextval('s'), a dependency of the default).
Result<std::vector<pg::QualifiedName>> UsedSequences(pg::PgConn& provider,
                                                     const std::vector<pg::QualifiedName>& tables) {
  if (tables.empty()) return std::vector<pg::QualifiedName>();
  nlohmann::json list = nlohmann::json::array();
  for (const auto& t : tables) list.push_back({t.schema, t.name});
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "           WHERE (n.nspname, c.relname) IN "
                  "                 (SELECT x->>0, x->>1 FROM jsonb_array_elements($1::jsonb) x)), "
                  "used AS (SELECT d.objid AS seq FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
                  "           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
                  "           AND d.refobjid IN (SELECT oid FROM t) "
                  "         UNION SELECT d.refobjid FROM pg_attrdef ad JOIN pg_depend d "
                  "           ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid "
                  "           AND d.refclassid = 'pg_class'::regclass WHERE ad.adrelid IN (SELECT oid FROM t)) "
                  "SELECT DISTINCT sn.nspname, s.relname FROM used u "
                  "JOIN pg_class s ON s.oid = u.seq AND s.relkind = 'S' "
                  "JOIN pg_namespace sn ON sn.oid = s.relnamespace ORDER BY 1, 2",
                  {list.dump()}));
  std::vector<pg::QualifiedName> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({std::string(r.Get(i, 0)), std::string(r.Get(i, 1))});
  return out;
}

Result<SequenceSyncResult> SyncLocked(pg::PgConn& provider, pg::PgConn& subscriber, const std::string& subscription,
                                      const std::string& started_at) {
  SequenceSyncResult result;
  LORRY_ASSIGN_OR_RETURN(auto tables, subscriber.ExecParams("SELECT nspname, relname FROM lorry.tables "
                                                            "WHERE subscription = $1",
                                                            {subscription}));
  std::vector<pg::QualifiedName> replicated;
  for (int i = 0; i < tables.rows(); ++i)
    replicated.push_back({std::string(tables.Get(i, 0)), std::string(tables.Get(i, 1))});
  LORRY_ASSIGN_OR_RETURN(auto owned, UsedSequences(provider, replicated));
  LORRY_ASSIGN_OR_RETURN(auto added, ListAddedSequences(subscriber, subscription));
  std::set<pg::QualifiedName> explicit_ones(added.begin(), added.end());
  std::set<pg::QualifiedName> all(owned.begin(), owned.end());
  all.insert(added.begin(), added.end());

  for (const auto& seq : all) {
    bool named = explicit_ones.count(seq) > 0;
    LORRY_ASSIGN_OR_RETURN(auto prov, ReadSequence(provider, seq));
    if (!prov) {
      if (named)
        result.problems.push_back(fmt::format("sequence {} no longer exists on the provider: `lorry remove "
                                              "--sequence {}`",
                                              seq.Display(), seq.Display()));
      continue;
    }
    LORRY_ASSIGN_OR_RETURN(auto sub, ReadSequence(subscriber, seq));
    if (!sub) {
      if (named)
        result.problems.push_back(fmt::format("sequence {} is missing on the subscriber: create it there "
                                              "(CREATE SEQUENCE {} ...)",
                                              seq.Display(), seq.Quoted()));
      continue;
    }
    result.sequences++;
    LORRY_ASSIGN_OR_RETURN(auto shape, subscriber.ExecParams("SELECT seqincrement, seqcycle FROM pg_sequence "
                                                             "WHERE seqrelid = to_regclass($1)",
                                                             {seq.Quoted()}));
    int64_t increment = shape.rows() > 0 ? shape.GetInt(0, 0) : 1;
    // A cycling sequence has no "ahead" once it wrapped around: it takes
    // the provider's value whenever it differs.
    bool cycles = shape.rows() > 0 && shape.GetBool(0, 1);
    bool differs = sub->last != prov->last || sub->called != prov->called;
    if (cycles ? !differs : !SequenceAhead(sub->last, sub->called, prov->last, prov->called, increment)) continue;
    LORRY_RETURN_IF_ERROR(subscriber
                              .ExecParams("SELECT setval(to_regclass($1), $2::bigint, $3::bool)",
                                          {seq.Quoted(), std::to_string(prov->last), prov->called ? "true" : "false"})
                              .status()
                              .WithContext("setting sequence " + seq.Display() + " on the subscriber"));
    result.advanced++;
    SPDLOG_DEBUG("sub={} sequence={} set to {} (is_called={})", subscription, seq.Display(), prov->last,
                 prov->called);
  }
  LORRY_RETURN_IF_ERROR(subscriber
                            .ExecParams("UPDATE lorry.subscriptions SET sequences_synced_at = $2::timestamptz "
                                        "WHERE name = $1",
                                        {subscription, started_at})
                            .status());
  return result;
}

}  // namespace

bool SequenceAhead(int64_t sub_last, bool sub_called, int64_t prov_last, bool prov_called, int64_t increment) {
  // The value nextval() would return next, in 128 bits (no overflow at the ends).
  __int128 inc = increment == 0 ? 1 : increment;
  __int128 sub_next = static_cast<__int128>(sub_last) + (sub_called ? inc : 0);
  __int128 prov_next = static_cast<__int128>(prov_last) + (prov_called ? inc : 0);
  return inc > 0 ? prov_next > sub_next : prov_next < sub_next;
}

Result<std::vector<pg::QualifiedName>> ListAddedSequences(pg::PgConn& subscriber, const std::string& subscription) {
  LORRY_ASSIGN_OR_RETURN(auto r, subscriber.ExecParams("SELECT nspname, relname FROM lorry.sequences "
                                                       "WHERE subscription = $1 ORDER BY 1, 2",
                                                       {subscription}));
  std::vector<pg::QualifiedName> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({std::string(r.Get(i, 0)), std::string(r.Get(i, 1))});
  return out;
}

Result<SequenceSyncResult> SyncSequences(pg::PgConn& provider, pg::PgConn& subscriber,
                                         const std::string& subscription, bool wait_for_lock) {
  LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
  auto body = [&]() -> Result<SequenceSyncResult> {
    std::vector<pg::Param> lock{std::to_string(kSequenceLockClass), subscription};
    if (wait_for_lock) {
      LORRY_RETURN_IF_ERROR(subscriber.ExecParams("SELECT pg_advisory_xact_lock($1, hashtext($2))", lock).status());
    } else {
      LORRY_ASSIGN_OR_RETURN(auto locked,
                             subscriber.QueryValue("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", lock));
      if (locked != "t") {
        SequenceSyncResult busy;
        busy.busy = true;
        return busy;
      }
    }
    // Read after the lock is held: every provider value below is read later.
    LORRY_ASSIGN_OR_RETURN(auto started, subscriber.QueryValue("SELECT clock_timestamp()::text"));
    return SyncLocked(provider, subscriber, subscription, started.value_or(""));
  };
  auto r = body();
  if (!r.ok()) {
    (void)subscriber.Exec("ROLLBACK");
    return r.status().WithContext("sequence sync");
  }
  LORRY_RETURN_IF_ERROR(subscriber.Exec("COMMIT").status());
  return r;
}

}  // namespace lorry::sync
