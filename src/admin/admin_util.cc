#include "admin/admin_util.h"

#include <cctype>

#include <fmt/format.h>

#include "catalog/publications.h"

namespace lorry::admin {

namespace {
Result<pg::PgConn> ConnectSide(const std::string& conninfo, const char* side, const char* key) {
  if (conninfo.empty())
    return Status::Usage(fmt::format("no {0} connection string: set `{0}` in lorry.toml or pass --{0}", key));
  LORRY_ASSIGN_OR_RETURN(auto conn, pg::PgConn::Connect(conninfo, {{}, side}));
  // The commands print their own report; NOTICEs of idempotent DDL
  // ("already exists, skipping") would only add noise on stderr.
  LORRY_RETURN_IF_ERROR(conn.Exec("SET client_min_messages = warning").status());
  return conn;
}
}  // namespace

Result<pg::PgConn> ConnectProvider(const Config& config) {
  return ConnectSide(config.provider, "provider", "provider");
}

Result<pg::PgConn> ConnectSubscriber(const Config& config) {
  return ConnectSide(config.subscriber, "subscriber", "subscriber");
}

Result<bool> RunIsActive(pg::PgConn& subscriber, const std::string& name) {
  // A two-key advisory lock shows key1 in classid and key2 in objid (both oid,
  // i.e. unsigned 32-bit), objsubid 2. hashtext() may be negative, hence the mask.
  LORRY_ASSIGN_OR_RETURN(
      auto v, subscriber.QueryValue(
                  "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                  "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                  "AND classid::bigint = $1::bigint AND objid::bigint = (hashtext($2)::bigint & 4294967295) "
                  "AND objsubid = 2)",
                  {std::to_string(kRunLockClass), name}));
  return v && *v == "t";
}

std::string RunHolder(pg::PgConn& subscriber, const std::string& name) {
  auto r = subscriber.ExecParams(
      "SELECT run_pid, run_host FROM lorry.subscriptions WHERE name = $1 AND run_pid IS NOT NULL", {name});
  if (!r.ok() || r->rows() == 0) return "";
  return fmt::format("pid {} on host {}", r->Get(0, 0), r->Get(0, 1));
}

std::optional<Lsn> OriginProgress(pg::PgConn& subscriber, const std::string& origin, bool flush) {
  // pg_replication_origin_progress() fails for an unknown origin, and for users
  // without EXECUTE on it (PG 14+) or who are not superusers (PG 12-13): the
  // callers then fall back to the positions recorded in lorry.subscriptions.
  auto v = subscriber.QueryValue(
      "SELECT CASE WHEN pg_replication_origin_oid($1) IS NOT NULL "
      "THEN pg_replication_origin_progress($1, $2::bool) END",
      {origin, flush ? "true" : "false"});
  if (!v.ok() || !v.value()) return std::nullopt;
  auto lsn = Lsn::Parse(*v.value());
  if (!lsn || !lsn->valid()) return std::nullopt;
  return lsn;
}

Result<bool> PublicationExists(pg::PgConn& provider, const std::string& publication) {
  LORRY_ASSIGN_OR_RETURN(auto v,
                         provider.QueryValue("SELECT 1 FROM pg_publication WHERE pubname = $1", {publication}));
  return v.has_value();
}

Result<std::vector<PublicationMember>> ListPublicationMembers(pg::PgConn& provider, const SubscriptionNames& names) {
  LORRY_ASSIGN_OR_RETURN(auto publications, catalog::ListPublications(provider, names));
  std::string list;
  for (const auto& p : publications) list += (list.empty() ? "" : ",") + pg::QuoteIdent(p);
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "SELECT n.nspname, c.relname, p.pubname = $1, p.pubname FROM pg_publication_rel pr "
                  "JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid "
                  "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = ANY ($2::text[]) "
                  "ORDER BY 1, 2",
                  {names.insert_only_publication, "{" + list + "}"}));
  std::vector<PublicationMember> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))}, r.GetBool(i, 2), std::string(r.Get(i, 3))});
  return out;
}

Status NotInitialised(const std::string& name) {
  return Status::Precondition(fmt::format(
      "subscription \"{}\" is not initialised on the subscriber: run `lorry init` first", name));
}

std::string ShellQuote(const std::string& word) {
  bool plain = !word.empty();
  for (unsigned char c : word)
    if (!(std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '/' || c == '=' || c == ':')) plain = false;
  if (plain) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 0) bytes = 0;
  if (bytes < 10 * 1024) return fmt::format("{} bytes", bytes);
  double v = static_cast<double>(bytes) / 1024;
  for (const char* unit : {"kB", "MB", "GB"}) {
    if (v < 1024) return fmt::format("{:.1f} {}", v, unit);
    v /= 1024;
  }
  return fmt::format("{:.1f} TB", v);
}

namespace {
// LIKE/glob match of a whole name, by backtracking on the last wildcard.
bool Like(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '%' || p[pi] == '*')) {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && (p[pi] == '_' || p[pi] == '?')) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '\\' && pi + 1 < p.size() && p[pi + 1] == s[si]) {
      pi += 2;
      ++si;
    } else if (pi < p.size() && p[pi] != '\\' && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && (p[pi] == '%' || p[pi] == '*')) ++pi;
  return pi == p.size();
}
}  // namespace

bool NameMatches(std::string_view pattern, const pg::QualifiedName& name) {
  // The dot between schema and table: the first one not escaped.
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') {
      ++i;
      continue;
    }
    if (pattern[i] == '.') return Like(pattern.substr(0, i), name.schema) && Like(pattern.substr(i + 1), name.name);
  }
  return Like(pattern, name.name);
}

}  // namespace lorry::admin
