#include "apply/lorry_message.h"

#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "state/names.h"
#include "state/state_store.h"

namespace lorry::apply {

bool LorryMessage::IsFor(const std::string& subscription) const {
  for (const auto& s : for_subscriptions)
    if (s == subscription) return true;
  return false;
}

std::string EncodeLorryMessage(const LorryMessage& m) {
  nlohmann::json j;
  j["lorry"] = 1;
  j["kind"] = m.kind == LorryMessage::Kind::kExecute ? "execute" : "ddl";
  j["for"] = m.for_subscriptions;
  j["sql"] = m.sql;
  j["search_path"] = m.search_path;
  nlohmann::json add = nlohmann::json::array();
  for (const auto& t : m.add) add.push_back({t.schema, t.name});
  j["add"] = add;
  return j.dump();
}

Result<LorryMessage> DecodeLorryMessage(std::string_view payload) {
  auto bad = [&](const std::string& why) {
    return Status::Protocol(fmt::format("lorry message not understood ({}); was it written by a newer lorry? "
                                        "payload: {}",
                                        why, payload.substr(0, 200)));
  };
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("lorry") || !j["lorry"].is_number_integer() || j["lorry"].get<int>() != 1)
    return bad("payload version is not 1");
  LorryMessage m;
  if (!j.contains("kind") || !j["kind"].is_string()) return bad("no kind");
  std::string kind = j["kind"].get<std::string>();
  if (kind == "execute") m.kind = LorryMessage::Kind::kExecute;
  else if (kind == "ddl") m.kind = LorryMessage::Kind::kDdl;
  else return bad("unknown kind " + kind);
  if (!j.contains("sql") || !j["sql"].is_string()) return bad("no sql");
  m.sql = j["sql"].get<std::string>();
  if (j.contains("for") && j["for"].is_array())
    for (const auto& s : j["for"])
      if (s.is_string()) m.for_subscriptions.push_back(s.get<std::string>());
  if (j.contains("search_path") && j["search_path"].is_string()) m.search_path = j["search_path"].get<std::string>();
  if (j.contains("add") && j["add"].is_array()) {
    for (const auto& t : j["add"]) {
      if (!t.is_array() || t.size() != 2 || !t[0].is_string() || !t[1].is_string()) return bad("bad add entry");
      m.add.push_back({t[0].get<std::string>(), t[1].get<std::string>()});
    }
  }
  return m;
}

bool IsPartitionDdl(std::string_view sql) {
  static const std::regex kPartition(R"(\b(partition\s+of|attach\s+partition|detach\s+partition)\b)",
                                     std::regex::icase);
  return std::regex_search(sql.begin(), sql.end(), kPartition);
}

Status RunLorryMessage(pg::PgConn& conn, const std::string& subscription, const LorryMessage& m) {
  LORRY_ASSIGN_OR_RETURN(auto old_path, conn.QueryValue("SELECT current_setting('search_path')"));
  if (!m.search_path.empty())
    LORRY_RETURN_IF_ERROR(conn.ExecParams("SELECT set_config('search_path', $1, true)", {m.search_path}).status());
  // One simple query: the script may hold several statements.
  if (m.kind == LorryMessage::Kind::kDdl && IsPartitionDdl(m.sql)) {
    // A subscriber whose table is not partitioned (or partitioned
    // otherwise) holds the partition's rows without it: the captured
    // CREATE TABLE ... PARTITION OF / ATTACH / DETACH is not needed there.
    LORRY_RETURN_IF_ERROR(conn.Exec("SAVEPOINT lorry_partition_ddl").status());
    auto r = conn.Exec(m.sql);
    // "... is not partitioned": wrong_object_type (ATTACH, DETACH) or
    // invalid_object_definition (CREATE TABLE ... PARTITION OF).
    const std::string& state = conn.last_sqlstate();
    if (!r.ok() && (state == "42809" || state == "42P17")) {
      LORRY_RETURN_IF_ERROR(conn.Exec("ROLLBACK TO SAVEPOINT lorry_partition_ddl").status());
      spdlog::warn("sub={} ddl skipped reason=\"the subscriber's table is not partitioned\" error=\"{}\"",
                   subscription, r.status().message());
    } else {
      LORRY_RETURN_IF_ERROR(r.status());
    }
    LORRY_RETURN_IF_ERROR(conn.Exec("RELEASE SAVEPOINT lorry_partition_ddl").status());
  } else {
    LORRY_RETURN_IF_ERROR(conn.Exec(m.sql).status());
  }
  LORRY_RETURN_IF_ERROR(
      conn.ExecParams("SELECT set_config('search_path', $1, true)", {old_path.value_or("")}).status());
  StateStore store(&conn, subscription);
  for (const auto& t : m.add) LORRY_RETURN_IF_ERROR(store.AddTable(t, false, std::nullopt, true));
  return Status::Ok();
}

Result<std::vector<std::string>> DownstreamSubscriptions(pg::PgConn& conn) {
  // `lorry init` creates lorry_<name> and lorry_<name>_insert_only together.
  LORRY_ASSIGN_OR_RETURN(auto r, conn.Exec("SELECT substr(p.pubname, 7) FROM pg_publication p "
                                           "WHERE p.pubname LIKE 'lorry\\_%' AND EXISTS (SELECT 1 FROM "
                                           "pg_publication q WHERE q.pubname = p.pubname || '_insert_only') "
                                           "ORDER BY 1"));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

Status ForwardLorryMessage(pg::PgConn& conn, const LorryMessage& m, const std::vector<std::string>& downstream) {
  if (downstream.empty()) return Status::Ok();
  LorryMessage forwarded = m;
  forwarded.for_subscriptions = downstream;
  return conn
      .ExecParams("SELECT pg_logical_emit_message(true, $1, $2)", {kLorryMessagePrefix, EncodeLorryMessage(forwarded)})
      .status()
      .WithContext(fmt::format("forwarding the message to the subscriptions of this database ({})",
                               fmt::join(downstream, ", ")));
}

Status PublishAddedForDownstream(pg::PgConn& conn, const LorryMessage& m, const std::vector<std::string>& downstream) {
  for (const auto& name : downstream) {
    auto names = SubscriptionNames::For(name);
    for (const auto& t : m.add) {
      LORRY_ASSIGN_OR_RETURN(
          auto r, conn.ExecParams("SELECT c.relkind::text, EXISTS (SELECT 1 FROM pg_publication_rel pr "
                                  "  JOIN pg_publication p ON p.oid = pr.prpubid "
                                  "  WHERE pr.prrelid = c.oid AND p.pubname IN ($2, $3)) "
                                  "FROM pg_class c WHERE c.oid = to_regclass($1)",
                                  {t.Quoted(), names.publication, names.insert_only_publication}));
      if (r.rows() == 0 || r.GetBool(0, 1)) continue;  // no such table: the run of that subscription says so
      LORRY_RETURN_IF_ERROR(conn.Exec(fmt::format("ALTER PUBLICATION {} ADD TABLE {}{}",
                                                  pg::QuoteIdent(names.publication),
                                                  r.Get(0, 0) == "p" ? "" : "ONLY ", t.Quoted()))
                                .status()
                                .WithContext(fmt::format("adding {} for subscription {} downstream", t.Display(),
                                                         name)));
    }
  }
  return Status::Ok();
}

Status RequireMessageSupport(int provider_version_num, std::string_view what) {
  if (provider_version_num >= 140000) return Status::Ok();
  return Status::Precondition(fmt::format(
      "{} needs PostgreSQL 14 or later on the provider (the change stream carries lorry's messages from 14 on); "
      "the provider runs {}.{}. Run the script on the provider and on the subscriber yourself, with `lorry run` "
      "stopped at a quiet moment",
      what, provider_version_num / 10000, provider_version_num % 10000));
}

}  // namespace lorry::apply
