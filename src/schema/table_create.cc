// How the definitions are obtained (see table_create.h for what is created):
//
// 1. Types. `pg_dump -t` dumps a table's own objects but not the types its
//    columns use. We find those in the provider's catalogs, following
//    pg_attribute.atttypid through array element types (typelem), domain
//    base types (typbasetype), composite types' attributes and range
//    subtypes (pg_range), and keep the user-defined ones missing on the
//    subscriber. They are dumped with `pg_dump --schema-only -n <schema>`
//    of their schemas; `pg_restore -l` lists that archive's entries with
//    their catalog OIDs, and `pg_restore -L` turns only the entries of those
//    types (pg_type, 1247) and of the missing schemas (pg_namespace, 2615)
//    into SQL, in pg_dump's dependency order.
// 2. Tables. `pg_dump --schema-only -t <table>...` in archive format; its
//    list is filtered the same way to drop triggers, rules, row security
//    and policies, and foreign keys to tables the subscriber will not have.
// Both SQL texts run on the subscriber in one transaction, entry by entry, so
// that an error names the entry pg_restore was creating.
#include "schema/table_create.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/lsn.h"
#include "common/subprocess.h"
#include "pg/service_file.h"

namespace lorry::schema {

namespace {

constexpr Oid kPgNamespaceOid = 2615;
constexpr Oid kPgTypeOid = 1247;
constexpr Oid kPgConstraintOid = 2606;

std::string PgRestoreProgram(const std::string& pg_dump) {
  auto slash = pg_dump.rfind('/');
  return slash == std::string::npos ? "pg_restore" : pg_dump.substr(0, slash + 1) + "pg_restore";
}

// "pg_dump (PostgreSQL) 15.14 (Debian ...)" -> 15.
Status CheckPgDumpVersion(const std::string& pg_dump, int server_version) {
  LORRY_ASSIGN_OR_RETURN(auto v, RunProgram({pg_dump, "--version"}));
  int major = 0;
  auto pos = v.out.find("(PostgreSQL) ");
  if (v.exit_code == 0 && pos != std::string::npos) major = std::atoi(v.out.c_str() + pos + 13);
  if (major == 0)
    return Status::Precondition(fmt::format("cannot tell the version of {} (`{} --version` said: {})", pg_dump,
                                            pg_dump, v.out + v.err));
  int server_major = server_version / 10000;
  if (major < server_major)
    return Status::Precondition(fmt::format(
        "{} is version {}, which cannot dump the provider's PostgreSQL {} server. Install the PostgreSQL {} client "
        "programs and point lorry at that pg_dump: `lorry add --create --pg-dump /usr/lib/postgresql/{}/bin/pg_dump "
        "...` or LORRY_PG_DUMP=/usr/lib/postgresql/{}/bin/pg_dump (pg_restore is taken from the same directory)",
        pg_dump, major, server_major, server_major, server_major, server_major));
  return Status::Ok();
}

// A directory removed with everything in it when this goes out of scope.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lorry-dump-XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Status WriteFile(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f || chmod(path.c_str(), mode) != 0) return Status::Internal("cannot write " + path);
  return Status::Ok();
}

// Runs a pg_dump/pg_restore; its failure is kPrecondition with its stderr.
Result<std::string> Run(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env) {
  LORRY_ASSIGN_OR_RETURN(auto r, RunProgram(argv, env));
  if (r.exit_code != 0)
    return Status::Precondition(fmt::format("{} failed (exit {}): {}", argv[0], r.exit_code, r.err));
  return std::move(r.out);
}

// One line of `pg_restore -l`: "12; 1247 16390 TYPE app mood postgres".
struct TocEntry {
  std::string line;
  Oid catalog = 0;
  Oid oid = 0;
  std::string rest;  // "TYPE app mood postgres": the kind first
};

std::vector<TocEntry> ParseToc(const std::string& list) {
  std::vector<TocEntry> out;
  std::istringstream in(list);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ';') continue;
    TocEntry e;
    e.line = line;
    unsigned long cat = 0, oid = 0;
    int consumed = 0;
    if (std::sscanf(line.c_str(), "%*d; %lu %lu %n", &cat, &oid, &consumed) < 2) continue;
    e.catalog = static_cast<Oid>(cat);
    e.oid = static_cast<Oid>(oid);
    e.rest = line.substr(static_cast<size_t>(consumed));
    out.push_back(std::move(e));
  }
  return out;
}

struct Dumper {
  std::string pg_dump;
  std::string dir;
  std::vector<std::pair<std::string, std::string>> env;
  int next = 0;

  // Dumps with `selection` (-n/-t arguments) and returns the SQL of the
  // entries `keep` accepts.
  template <typename Keep>
  Result<std::string> DumpSql(const std::vector<std::string>& selection, Keep keep) {
    std::string archive = fmt::format("{}/dump{}.archive", dir, next);
    std::string list = fmt::format("{}/dump{}.list", dir, next++);
    std::vector<std::string> argv = {pg_dump, "--schema-only", "--format=custom", "--no-owner", "--no-privileges",
                                     "--no-publications", "--no-subscriptions", "--file", archive};
    argv.insert(argv.end(), selection.begin(), selection.end());
    LORRY_RETURN_IF_ERROR(Run(argv, env).status());
    std::string restore = PgRestoreProgram(pg_dump);
    LORRY_ASSIGN_OR_RETURN(auto toc, Run({restore, "--list", archive}, env));
    std::string kept;
    for (const auto& e : ParseToc(toc))
      if (keep(e)) kept += e.line + "\n";
    if (kept.empty()) return std::string();
    LORRY_RETURN_IF_ERROR(WriteFile(list, kept, 0600));
    return Run({restore, "--no-owner", "--no-privileges", "--use-list", list, "--file", "-", archive}, env);
  }
};

bool StartsWithAny(const std::string& s, std::initializer_list<const char*> prefixes) {
  for (const char* p : prefixes)
    if (s.rfind(p, 0) == 0) return true;
  return false;
}

// pg_restore output is meant for psql: recent versions wrap it in
// `\restrict KEY` ... `\unrestrict KEY`, psql meta-commands that stop psql from
// running other meta-commands hidden in the dump. We send the text to the
// server, which runs no meta-commands at all, so those two lines are dropped.
std::string WithoutPsqlRestrict(const std::string& sql) {
  std::string out;
  std::istringstream in(sql);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("\\restrict ", 0) != 0 && line.rfind("\\unrestrict ", 0) != 0) out += line + "\n";
  return out;
}

// Runs pg_restore's SQL entry by entry ("--\n-- Name: t; Type: TABLE; ...").
Status ExecuteScript(pg::PgConn& conn, const std::string& script) {
  std::string sql = WithoutPsqlRestrict(script);
  static const std::string kHeader = "\n--\n-- Name: ";
  size_t pos = 0;
  while (pos < sql.size()) {
    size_t next = sql.find(kHeader, pos + 1);
    std::string chunk = sql.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    std::string what = "the dump's session settings";
    if (chunk.rfind(kHeader, 0) == 0) {
      size_t end = chunk.find('\n', kHeader.size());
      what = chunk.substr(kHeader.size(), end - kHeader.size());  // "t; Type: TABLE; Schema: app; Owner: -"
    }
    LORRY_RETURN_IF_ERROR(conn.Exec(chunk).status().WithContext("creating " + what + " on the subscriber"));
    if (next == std::string::npos) break;
    pos = next;
  }
  return Status::Ok();
}

std::string OidArray(const std::vector<Oid>& oids) {
  std::string s = "{";
  for (size_t i = 0; i < oids.size(); ++i) s += (i ? "," : "") + std::to_string(oids[i]);
  return s + "}";
}

struct Partition {
  Oid root = 0;  // the table of the request it belongs to
  Oid oid = 0;
  pg::QualifiedName name;
};

// Every partition under the given tables, at every level (partitioned ones
// too), in name order; foreign-table partitions are not created.
Result<std::vector<Partition>> PartitionsOf(pg::PgConn& provider, const std::vector<Oid>& tables) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams("SELECT r.oid, t.relid, n.nspname, c.relname FROM unnest($1::oid[]) r(oid), "
                                  "LATERAL pg_partition_tree(r.oid) t JOIN pg_class c ON c.oid = t.relid "
                                  "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE t.relid <> r.oid AND c.relkind IN ('r', 'p') ORDER BY 3, 4",
                                  {OidArray(tables)}));
  std::vector<Partition> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({static_cast<Oid>(r.GetInt(i, 0)), static_cast<Oid>(r.GetInt(i, 1)),
                   {std::string(r.Get(i, 2)), std::string(r.Get(i, 3))}});
  return out;
}

// The sequences that the tables' column defaults use (nextval('s')) and that
// no table of them owns, missing on the subscriber.
Result<std::vector<pg::QualifiedName>> DefaultSequences(pg::PgConn& provider, pg::PgConn& subscriber,
                                                        const std::vector<Oid>& tables) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "SELECT DISTINCT n.nspname, s.relname FROM pg_attrdef ad "
                  "JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid "
                  "JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' "
                  "JOIN pg_namespace n ON n.oid = s.relnamespace "
                  "WHERE ad.adrelid = ANY ($1::oid[]) AND NOT EXISTS (SELECT 1 FROM pg_depend o "
                  "  WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid AND o.deptype IN ('a', 'i') "
                  "    AND o.refclassid = 'pg_class'::regclass AND o.refobjid = ANY ($1::oid[])) "
                  "ORDER BY 1, 2",
                  {OidArray(tables)}));
  std::vector<pg::QualifiedName> out;
  for (int i = 0; i < r.rows(); ++i) {
    pg::QualifiedName q{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))};
    LORRY_ASSIGN_OR_RETURN(auto exists, subscriber.QueryValue("SELECT to_regclass($1)::oid", {q.Quoted()}));
    if (!exists) out.push_back(q);
  }
  return out;
}

// "left out (...): view app.v, materialized view app.mv, function app.f(),
// trigger t_upd on app.t": what the tables' schemas hold that --create does
// not make. Empty when nothing.
Result<std::string> LeftOut(pg::PgConn& provider, const std::vector<Oid>& tables) {
  // Before 13 a partition's trigger cloned from its root's is not marked.
  std::string cloned = provider.server_version() >= 130000 ? "AND t.tgparentid = 0" : "";
  LORRY_ASSIGN_OR_RETURN(
      auto r, provider.ExecParams(
                  "WITH s AS (SELECT DISTINCT relnamespace AS oid FROM pg_class WHERE oid = ANY ($1::oid[])), "
                  "left_out(k, what) AS ("
                  "  SELECT CASE c.relkind WHEN 'v' THEN 1 ELSE 2 END, "
                  "    CASE c.relkind WHEN 'v' THEN 'view ' ELSE 'materialized view ' END || "
                  "    quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                  "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "  WHERE c.relkind IN ('v', 'm') AND n.oid IN (SELECT oid FROM s) "
                  "    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e') "
                  "  UNION ALL "
                  "  SELECT 3, 'function ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || "
                  "    pg_get_function_identity_arguments(p.oid) || ')' "
                  "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.oid IN (SELECT oid FROM s) "
                  "    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e') "
                  "  UNION ALL "
                  "  SELECT 4, 'trigger ' || quote_ident(t.tgname) || ' on ' || quote_ident(n.nspname) || '.' || "
                  "    quote_ident(c.relname) "
                  "  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "  WHERE NOT t.tgisinternal AND t.tgrelid = ANY ($1::oid[]) " + cloned + ") "
                  "SELECT what FROM left_out ORDER BY k, what",
                  {OidArray(tables)}));
  std::string out;
  for (int i = 0; i < r.rows(); ++i) out += (out.empty() ? "" : ", ") + std::string(r.Get(i, 0));
  if (out.empty()) return out;
  return "left out (--create makes only what replication needs; `pg_dump --schema-only` copies a whole schema): " +
         out;
}

}  // namespace

std::string PgDumpProgram(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("LORRY_PG_DUMP");
  if (env != nullptr && *env != '\0') return env;
  return "pg_dump";
}

Result<CreateReport> CreateTables(pg::PgConn& provider, pg::PgConn& subscriber, const CreateRequest& request) {
  CreateReport report;
  if (request.tables.empty() && request.sequences.empty()) return report;
  LORRY_RETURN_IF_ERROR(CheckPgDumpVersion(request.pg_dump, provider.server_version()));

  std::vector<Oid> table_oids;
  std::set<std::string> creating;  // quoted names
  for (const auto& t : request.tables) {
    LORRY_ASSIGN_OR_RETURN(auto oid, provider.QueryValue("SELECT to_regclass($1)::oid", {t.Quoted()}));
    if (!oid) return Status::Precondition(fmt::format("table {} not found on the provider", t.Display()));
    table_oids.push_back(static_cast<Oid>(std::stoul(*oid)));
    creating.insert(t.Quoted());
  }
  std::vector<std::string> table_lines;  // "table public.t", "table public.p with its 12 partitions"
  std::vector<pg::QualifiedName> dump_tables = request.tables;
  LORRY_ASSIGN_OR_RETURN(auto parts, PartitionsOf(provider, table_oids));
  for (size_t i = 0; i < request.tables.size(); ++i) {
    int n = 0;
    for (const auto& p : parts)
      if (p.root == table_oids[i] && creating.insert(p.name.Quoted()).second) {
        dump_tables.push_back(p.name);
        table_oids.push_back(p.oid);
        ++n;
      }
    table_lines.push_back(n == 0 ? "table " + request.tables[i].Display()
                                 : fmt::format("table {} with its {} partition{}", request.tables[i].Display(), n,
                                               n == 1 ? "" : "s"));
  }
  // Sequences the defaults use that none of these tables owns (an owned
  // one is in its table's dump).
  LORRY_ASSIGN_OR_RETURN(auto seqs, DefaultSequences(provider, subscriber, table_oids));
  seqs.insert(seqs.end(), request.sequences.begin(), request.sequences.end());
  for (const auto& q : seqs) {
    if (!creating.insert(q.Quoted()).second) continue;
    dump_tables.push_back(q);
    report.created.push_back("sequence " + q.Display());
  }

  // The user-defined types the columns use, and the schemas of types and tables.
  LORRY_ASSIGN_OR_RETURN(
      auto types,
      provider.ExecParams(
          "WITH RECURSIVE deps(oid) AS ("
          "  SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = ANY ($1::oid[]) AND a.attnum > 0 "
          "    AND NOT a.attisdropped "
          "  UNION "
          "  SELECT x.oid FROM deps d JOIN pg_type t ON t.oid = d.oid, LATERAL ("
          "    SELECT t.typelem WHERE t.typcategory = 'A' AND t.typelem <> 0 "
          "    UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd' "
          "    UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE t.typtype = 'c' AND a.attrelid = t.typrelid "
          "      AND a.attnum > 0 AND NOT a.attisdropped "
          "    UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid) x(oid)) "
          "SELECT t.oid, n.nspname, t.typname FROM deps d JOIN pg_type t ON t.oid = d.oid "
          "JOIN pg_namespace n ON n.oid = t.typnamespace "
          "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.typtype IN ('e', 'd', 'c', 'r') "
          "  AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') "
          "ORDER BY 2, 3",
          {OidArray(table_oids)}));
  std::vector<Oid> type_oids;
  std::set<std::string> dump_schemas;  // names of schemas to dump with -n
  for (int i = 0; i < types.rows(); ++i) {
    pg::QualifiedName name{std::string(types.Get(i, 1)), std::string(types.Get(i, 2))};
    LORRY_ASSIGN_OR_RETURN(auto exists, subscriber.QueryValue("SELECT to_regtype($1)::oid", {name.Quoted()}));
    if (exists) continue;
    type_oids.push_back(static_cast<Oid>(types.GetInt(i, 0)));
    dump_schemas.insert(name.schema);
    report.created.push_back("type " + name.Display());
  }
  std::set<std::string> table_schemas;
  for (const auto& t : dump_tables) table_schemas.insert(t.schema);
  for (const auto& s : dump_schemas) table_schemas.insert(s);
  std::vector<Oid> schema_oids;
  for (const auto& s : table_schemas) {
    LORRY_ASSIGN_OR_RETURN(auto exists, subscriber.QueryValue("SELECT to_regnamespace($1)::oid", {pg::QuoteIdent(s)}));
    if (exists) continue;
    LORRY_ASSIGN_OR_RETURN(auto oid, provider.QueryValue("SELECT to_regnamespace($1)::oid", {pg::QuoteIdent(s)}));
    if (!oid) continue;
    schema_oids.push_back(static_cast<Oid>(std::stoul(*oid)));
    dump_schemas.insert(s);
    report.created.insert(report.created.begin(), "schema " + pg::QuoteIdentIfNeeded(s));
  }

  // Foreign keys to tables that will not exist on the subscriber are left out.
  LORRY_ASSIGN_OR_RETURN(auto fks, provider.ExecParams(
                                       "SELECT c.oid, c.conname, c.conrelid::regclass::text, n.nspname, r.relname "
                                       "FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid "
                                       "JOIN pg_namespace n ON n.oid = r.relnamespace "
                                       "WHERE c.contype = 'f' AND c.conrelid = ANY ($1::oid[])",
                                       {OidArray(table_oids)}));
  std::set<Oid> skipped_fks;
  for (int i = 0; i < fks.rows(); ++i) {
    pg::QualifiedName target{std::string(fks.Get(i, 3)), std::string(fks.Get(i, 4))};
    if (creating.count(target.Quoted())) continue;
    LORRY_ASSIGN_OR_RETURN(auto exists, subscriber.QueryValue("SELECT to_regclass($1)::oid", {target.Quoted()}));
    if (exists) continue;
    skipped_fks.insert(static_cast<Oid>(fks.GetInt(i, 0)));
    report.created.push_back(fmt::format("(foreign key {} of {} left out: it references {}, missing on the subscriber)",
                                         pg::QuoteIdentIfNeeded(fks.Get(i, 1)), fks.Get(i, 2), target.Display()));
  }

  TempDir dir;
  if (dir.path().empty()) return Status::Internal("cannot create a temporary directory for pg_dump");
  LORRY_ASSIGN_OR_RETURN(auto service, pg::ServiceFileText(request.provider_conninfo, "lorry_provider"));
  std::string service_file = dir.path() + "/pg_service.conf";
  LORRY_RETURN_IF_ERROR(WriteFile(service_file, service, 0600));
  Dumper dumper{request.pg_dump, dir.path(), {{"PGSERVICEFILE", service_file}, {"PGSERVICE", "lorry_provider"}}};

  std::string types_sql;
  if (!type_oids.empty() || !schema_oids.empty()) {
    std::vector<std::string> sel;
    for (const auto& s : dump_schemas) sel.push_back("--schema=" + pg::QuoteIdent(s));
    std::set<Oid> want_types(type_oids.begin(), type_oids.end()), want_schemas(schema_oids.begin(), schema_oids.end());
    LORRY_ASSIGN_OR_RETURN(types_sql, dumper.DumpSql(sel, [&](const TocEntry& e) {
      return (e.catalog == kPgTypeOid && want_types.count(e.oid)) ||
             (e.catalog == kPgNamespaceOid && want_schemas.count(e.oid));
    }));
  }
  std::vector<std::string> sel;
  for (const auto& t : dump_tables) sel.push_back("--table=" + t.Quoted());
  LORRY_ASSIGN_OR_RETURN(auto tables_sql, dumper.DumpSql(sel, [&](const TocEntry& e) {
    if (e.catalog == kPgConstraintOid && skipped_fks.count(e.oid)) return false;
    // A leaf created on its own is not attached to a root (nor its indexes
    // to the root's).
    if (request.standalone_partitions && StartsWithAny(e.rest, {"TABLE ATTACH ", "INDEX ATTACH "})) return false;
    return !StartsWithAny(e.rest, {"TRIGGER ", "RULE ", "POLICY ", "ROW SECURITY ", "EVENT TRIGGER ", "ACL "});
  }));
  for (const auto& t : table_lines) report.created.push_back(t);
  LORRY_ASSIGN_OR_RETURN(report.left_out, LeftOut(provider, table_oids));

  LORRY_RETURN_IF_ERROR(subscriber.Exec("BEGIN").status());
  Status s = ExecuteScript(subscriber, types_sql);
  if (s.ok()) s = ExecuteScript(subscriber, tables_sql);
  if (s.ok()) s = subscriber.Exec("COMMIT").status();
  if (!s.ok()) {
    (void)subscriber.Exec("ROLLBACK");
    return s.WithMessage(s.message() +
                         ". Nothing was created. Fix: create that object on the subscriber yourself (or remove what "
                         "is in its way there), then run `lorry add` again; the provider's definition is in "
                         "`pg_dump --schema-only` of the provider");
  }
  return report;
}

}  // namespace lorry::schema
