#include "catalog/publications.h"

#include <cctype>

#include <fmt/format.h>

#include "pg/quote.h"

namespace lorry::catalog {

namespace {
std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}
}  // namespace

std::string Ops::Letters() const {
  std::string out;
  if (insert) out += 'i';
  if (update) out += 'u';
  if (del) out += 'd';
  if (truncate) out += 't';
  return out;
}

std::string Ops::PublishList() const {
  std::string out;
  auto add = [&](bool on, const char* what) {
    if (!on) return;
    if (!out.empty()) out += ", ";
    out += what;
  };
  add(insert, "insert");
  add(update, "update");
  add(del, "delete");
  add(truncate, "truncate");
  return out;
}

Result<Ops> ParseOps(std::string_view text) {
  Ops ops{false, false, false, false};
  size_t start = 0;
  bool any = false;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string word(Trim(text.substr(start, comma - start)));
    for (auto& ch : word) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (word == "insert") ops.insert = true;
    else if (word == "update") ops.update = true;
    else if (word == "delete") ops.del = true;
    else if (word == "truncate") ops.truncate = true;
    else
      return Status::Usage(fmt::format("--ops: unknown operation \"{}\" in \"{}\" (valid: insert, update, delete, "
                                       "truncate, separated by commas)",
                                       word, text));
    any = true;
    start = comma + 1;
  }
  if (!any) return Status::Usage("--ops: name at least one operation (insert, update, delete, truncate)");
  return ops;
}

std::string PublicationFor(const SubscriptionNames& names, const Ops& ops, bool insert_only) {
  if (insert_only) return names.insert_only_publication;
  if (ops.all()) return names.publication;
  return names.publication + "_ops_" + ops.Letters();
}

std::string PublicationOptions(std::string_view publish, int provider_version_num) {
  return fmt::format("publish = {}{}", pg::QuoteLiteral(std::string(publish)),
                     provider_version_num >= 130000 ? ", publish_via_partition_root = true" : "");
}

Status PublishViaRoot(pg::PgConn& provider, const std::string& publication) {
  if (provider.server_version() < 130000) return Status::Ok();
  LORRY_ASSIGN_OR_RETURN(auto via, provider.QueryValue("SELECT pubviaroot FROM pg_publication WHERE pubname = $1",
                                                       {publication}));
  if (!via || *via == "t") return Status::Ok();
  return provider
      .Exec(fmt::format("ALTER PUBLICATION {} SET (publish_via_partition_root = true)", pg::QuoteIdent(publication)))
      .status()
      .WithContext("publication " + publication);
}

namespace {
// The subscription's publications in pg_publication `p` (subscription names
// are [a-z0-9_]: safe inside the pattern); $1, $2: the two of `init`.
constexpr const char* kOwnPublications =
    "(p.pubname IN ($1, $2) OR p.pubname ~ ('^' || $1 || '_ops_i?u?d?t?$'))";
constexpr const char* kPublicationOrder = "p.pubname <> $1, p.pubname <> $2, p.pubname";
}  // namespace

Result<std::vector<std::string>> ListPublications(pg::PgConn& provider, const SubscriptionNames& names) {
  LORRY_ASSIGN_OR_RETURN(auto r, provider.ExecParams(fmt::format("SELECT p.pubname FROM pg_publication p WHERE {} "
                                                                 "ORDER BY {}",
                                                                 kOwnPublications, kPublicationOrder),
                                                     {names.publication, names.insert_only_publication}));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

Result<std::vector<PublicationTables>> ListPublicationTables(pg::PgConn& provider, const SubscriptionNames& names) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(fmt::format("SELECT p.pubname, t.schemaname, t.tablename FROM pg_publication p "
                                              "LEFT JOIN pg_publication_tables t USING (pubname) WHERE {} "
                                              "ORDER BY {}, t.schemaname, t.tablename",
                                              kOwnPublications, kPublicationOrder),
                                  {names.publication, names.insert_only_publication}));
  std::vector<PublicationTables> out;
  for (int i = 0; i < r.rows(); ++i) {
    if (out.empty() || out.back().name != r.Get(i, 0)) out.push_back({std::string(r.Get(i, 0)), {}});
    if (!r.IsNull(i, 1)) out.back().tables.push_back({std::string(r.Get(i, 1)), std::string(r.Get(i, 2))});
  }
  return out;
}

Status RequireRowFilterSupport(int provider_version_num, std::string_view option) {
  if (provider_version_num >= 150000) return Status::Ok();
  return Status::Precondition(fmt::format(
      "{} needs PostgreSQL 15 or later on the provider (row filters and column lists of publications); the "
      "provider runs {}.{}. Replicate the whole table, or upgrade the provider",
      option, provider_version_num / 10000, provider_version_num % 10000));
}

std::vector<int> VarAttnos(std::string_view node_tree) {
  std::vector<int> out;
  constexpr std::string_view kKey = ":varattno ";
  size_t pos = 0;
  while ((pos = node_tree.find(kKey, pos)) != std::string_view::npos) {
    pos += kKey.size();
    bool neg = pos < node_tree.size() && node_tree[pos] == '-';
    if (neg) pos++;
    int v = 0;
    bool digits = false;
    while (pos < node_tree.size() && std::isdigit(static_cast<unsigned char>(node_tree[pos]))) {
      v = v * 10 + (node_tree[pos++] - '0');
      digits = true;
    }
    if (digits) out.push_back(neg ? -v : v);
  }
  return out;
}

namespace {
Status FilterRefused(const pg::QualifiedName& table, std::string_view where, const std::string& why) {
  return Status::Usage(fmt::format("--where {} for table {} is not one boolean SQL expression on the table's columns "
                                   "that a publication accepts: {}. Nothing was changed; give e.g. --where \"id > "
                                   "1000\" (immutable built-in operators and functions on its columns only)",
                                   pg::QuoteLiteral(where), table.Display(), why));
}
}  // namespace

Result<PublishShape> CheckPublishShape(pg::PgConn& provider, const std::string& probe, const pg::QualifiedName& table,
                                       bool partitioned, std::string_view where,
                                       const std::vector<std::string>& columns) {
  std::string column_sql;
  for (const auto& c : columns) column_sql += (column_sql.empty() ? "" : ", ") + pg::QuoteIdent(c);
  // The filter on lines of its own: a "--" comment in it ends with its line.
  std::string filter = where.empty() ? "" : fmt::format("(\n{}\n)", where);
  if (!where.empty()) {
    // Parsed and analysed by the server as one expression, never run: a
    // text that closes the parenthesis to add a clause, or a second
    // statement, fails here.
    Status one = provider.Prepare("", fmt::format("SELECT {}::boolean FROM ONLY {}", filter, table.Quoted()), 0);
    if (!one.ok()) return FilterRefused(table, where, one.message());
  }
  LORRY_RETURN_IF_ERROR(provider.Exec("BEGIN").status());
  auto tried = [&]() -> Result<PublishShape> {
    // The publication's own rules (immutable built-ins, no subqueries,
    // system or generated columns...), applied by CREATE PUBLICATION.
    Status created = provider
                         .ExecParams(fmt::format("CREATE PUBLICATION {} FOR TABLE {}{}{}{}", pg::QuoteIdent(probe),
                                                 partitioned ? "" : "ONLY ", table.Quoted(),
                                                 column_sql.empty() ? "" : " (" + column_sql + ")",
                                                 filter.empty() ? "" : " WHERE " + filter),
                                     {})
                         .status();
    if (!created.ok() && created.kind() == Status::Kind::kConnection) return created;
    if (!created.ok()) {
      if (where.empty()) return Status::Usage(fmt::format("--columns for table {}: {}", table.Display(), created.message()));
      return FilterRefused(table, where, created.message());
    }
    LORRY_ASSIGN_OR_RETURN(
        auto r, provider.ExecParams(
                    "SELECT pr.prrelid = $2::regclass, pg_get_expr(pr.prqual, pr.prrelid), "
                    "  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a "
                    "   WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)), "
                    "  (SELECT count(*) FROM pg_publication_namespace pn WHERE pn.pnpubid = p.oid) "
                    "FROM pg_publication p LEFT JOIN pg_publication_rel pr ON pr.prpubid = p.oid WHERE p.pubname = $1",
                    {probe, table.Quoted()}));
    if (r.rows() != 1 || r.IsNull(0, 0) || !r.GetBool(0, 0) || r.GetInt(0, 3) != 0)
      return FilterRefused(table, where, "it names more than the one table");
    return PublishShape{r.IsNull(0, 1) ? "" : std::string(r.Get(0, 1)), r.IsNull(0, 2) ? "" : std::string(r.Get(0, 2))};
  }();
  Status rolled_back = provider.Exec("ROLLBACK").status();
  if (!tried.ok()) return tried.status();
  LORRY_RETURN_IF_ERROR(rolled_back);
  return tried;
}

Result<std::vector<std::string>> ParseColumnList(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  bool quoted = false;
  auto flush = [&]() -> Status {
    auto name = pg::ParseQualifiedName(Trim(current));
    if (!name.ok() || !name->schema.empty())
      return Status::Usage(fmt::format("--columns: \"{}\" is not a column name (give names separated by commas, "
                                       "e.g. --columns id,name)",
                                       Trim(current)));
    out.push_back(name->name);
    current.clear();
    return Status::Ok();
  };
  for (char ch : text) {
    if (ch == '"') quoted = !quoted;
    if (ch == ',' && !quoted) {
      LORRY_RETURN_IF_ERROR(flush());
      continue;
    }
    current += ch;
  }
  LORRY_RETURN_IF_ERROR(flush());
  return out;
}

}  // namespace lorry::catalog
