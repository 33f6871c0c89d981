#include "schema/table_diff.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

#include <fmt/format.h>

namespace lorry::schema {

namespace {

struct TypeName {
  std::string base;               // "character varying"
  std::vector<int> mods;          // (20) -> {20}; (10,2) -> {10,2}
  std::string suffix;             // " with time zone", "[]"
};

// Splits format_type() output: "numeric(10,2)", "timestamp(3) with time zone", "integer[]".
TypeName SplitType(const std::string& t) {
  TypeName n;
  auto open = t.find('(');
  if (open == std::string::npos) {
    auto bracket = t.find('[');
    n.base = t.substr(0, bracket);
    if (bracket != std::string::npos) n.suffix = t.substr(bracket);
    return n;
  }
  auto close = t.find(')', open);
  n.base = t.substr(0, open);
  std::string inner = t.substr(open + 1, close - open - 1);
  for (size_t p = 0; p < inner.size();) {
    n.mods.push_back(std::atoi(inner.c_str() + p));
    auto comma = inner.find(',', p);
    if (comma == std::string::npos) break;
    p = comma + 1;
  }
  n.suffix = close == std::string::npos ? "" : t.substr(close + 1);
  return n;
}

// Types each of which takes every value of the ones before it, in text form.
const std::vector<std::vector<std::string>> kWidening = {
    {"smallint", "integer", "bigint", "numeric"},
    {"real", "double precision"},
    {"smallint", "integer", "double precision"},
    {"date", "timestamp without time zone"},
    {"json", "jsonb"},
};

bool Widens(const std::string& from, const std::string& to) {
  for (const auto& chain : kWidening) {
    auto f = std::find(chain.begin(), chain.end(), from), t = std::find(chain.begin(), chain.end(), to);
    if (f != chain.end() && t != chain.end() && f < t) return true;
  }
  return false;
}

bool IsUnboundedText(const TypeName& n) {
  return n.suffix.empty() && (n.base == "text" || (n.base == "character varying" && n.mods.empty()));
}

}  // namespace

TypeFit FitType(const std::string& provider_type, const std::string& subscriber_type, std::string* why) {
  if (provider_type == subscriber_type) return TypeFit::kSame;
  TypeName p = SplitType(provider_type), s = SplitType(subscriber_type);
  if (p.base == s.base && p.suffix == s.suffix) {
    if (s.mods.empty()) {
      *why = "the subscriber's type has no limit";
      return TypeFit::kHarmless;
    }
    if (p.base == "numeric" && !p.mods.empty()) {
      int pp = p.mods[0], ps = p.mods.size() > 1 ? p.mods[1] : 0, sp = s.mods[0], ss = s.mods.size() > 1 ? s.mods[1] : 0;
      if (ss >= ps && sp - ss >= pp - ps) {
        *why = "every provider value fits";
        return TypeFit::kHarmless;
      }
      *why = "provider values may not fit (numeric field overflow) or are rounded";
      return TypeFit::kBreaking;
    }
    if (p.base.rfind("time", 0) == 0 || p.base == "interval") {
      *why = "values are rounded to the subscriber's precision";
      return TypeFit::kHarmless;
    }
    if (!p.mods.empty() && s.mods[0] >= p.mods[0]) {
      *why = "every provider value fits";
      return TypeFit::kHarmless;
    }
    *why = "longer provider values would fail (value too long)";
    return TypeFit::kBreaking;
  }
  if (p.suffix == s.suffix && Widens(p.base, s.base)) {
    *why = "every provider value fits";
    return TypeFit::kHarmless;
  }
  if (IsUnboundedText(s)) {
    *why = "values are stored in their text form";
    return TypeFit::kHarmless;
  }
  *why = "provider values may be rejected or changed";
  return TypeFit::kBreaking;
}

namespace {

// Index signatures ("UNIQUE btree (a, lower(b)) WHERE (c > 0)") by index name.
Result<std::map<std::string, std::string>> IndexSignatures(pg::PgConn& conn, Oid table) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn.ExecParams(
                  "SELECT c.relname, CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || am.amname || ' (' || "
                  "  array_to_string(ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) "
                  "                        FROM generate_series(1, i.indnkeyatts) k), ', ') || ')' || "
                  "  coalesce(' WHERE ' || pg_get_expr(i.indpred, i.indrelid, true), '') "
                  "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                  "WHERE i.indrelid = $1",
                  {std::to_string(table)}));
  std::map<std::string, std::string> out;
  for (int i = 0; i < r.rows(); ++i) out[std::string(r.Get(i, 0))] = r.Get(i, 1);
  return out;
}

// Whether an index of the table (without predicate) has all the `key`
// columns among its columns.
Result<bool> HasKeyIndex(pg::PgConn& conn, Oid table, const std::vector<std::string>& key) {
  // Names are passed as a text[] literal; quote " and \ inside.
  std::string cols = "{";
  for (size_t i = 0; i < key.size(); ++i) {
    std::string e;
    for (char c : key[i]) {
      if (c == '"' || c == '\\') e += '\\';
      e += c;
    }
    cols += (i ? ",\"" : "\"") + e + "\"";
  }
  cols += "}";
  LORRY_ASSIGN_OR_RETURN(
      auto v, conn.QueryValue(
                  "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1 AND i.indpred IS NULL AND "
                  "  (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
                  "   WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]) AND a.attnum > 0) @> $2::text[])",
                  {std::to_string(table), cols}));
  return v && *v == "t";
}

}  // namespace

Result<TableDiff> DiffTable(pg::PgConn& provider, pg::PgConn& subscriber, const catalog::TableInfo& prov,
                            const catalog::TableInfo& sub, bool insert_only) {
  TableDiff d;
  for (const auto& c : prov.columns) {
    if (c.generated) continue;  // never sent by the provider
    std::string col = pg::QuoteIdentIfNeeded(c.name);
    const catalog::ColumnInfo* s = sub.FindColumn(c.name);
    if (s == nullptr) {
      d.breaking.push_back(fmt::format("column {} ({}) is missing on the subscriber. Fix: ALTER TABLE {} ADD COLUMN {} {};",
                                       col, c.type, sub.name.Quoted(), pg::QuoteIdent(c.name), c.type));
      continue;
    }
    if (s->generated) {
      d.breaking.push_back(fmt::format("column {} is generated on the subscriber but not on the provider: replicated "
                                       "values cannot be stored in it",
                                       col));
      continue;
    }
    std::string why;
    switch (FitType(c.type, s->type, &why)) {
      case TypeFit::kSame:
        break;
      case TypeFit::kHarmless:
        d.harmless.push_back(fmt::format("column {} is {} on the provider and {} on the subscriber: {}", col, c.type,
                                         s->type, why));
        break;
      case TypeFit::kBreaking:
        d.breaking.push_back(fmt::format("column {} is {} on the provider and {} on the subscriber: {}. Fix: ALTER "
                                         "TABLE {} ALTER COLUMN {} TYPE {};",
                                         col, c.type, s->type, why, sub.name.Quoted(), pg::QuoteIdent(c.name), c.type));
        break;
    }
  }
  for (const auto& s : sub.columns) {
    const catalog::ColumnInfo* p = prov.FindColumn(s.name);
    if (p != nullptr && !p->generated) continue;
    std::string col = pg::QuoteIdentIfNeeded(s.name);
    if (s.generated || s.has_default || !s.not_null)
      d.harmless.push_back(fmt::format("column {} exists only on the subscriber ({}): it gets {}", col, s.type,
                                       s.generated ? "its generated value" : s.has_default ? "its default" : "NULL"));
    else
      d.breaking.push_back(fmt::format("column {} exists only on the subscriber and is NOT NULL without a default: "
                                       "replicated rows cannot be inserted. Fix: ALTER TABLE {} ALTER COLUMN {} DROP "
                                       "NOT NULL; (or SET DEFAULT ...)",
                                       col, sub.name.Quoted(), pg::QuoteIdent(s.name)));
  }
  std::vector<std::string> key;
  for (const auto& c : prov.columns)
    if (c.identity_key && prov.replica_identity != 'f') key.push_back(c.name);
  if (!insert_only && !prov.HasUsableIdentity()) {
    d.breaking.push_back(fmt::format(
        "no usable key on the provider (no primary key, REPLICA IDENTITY {}): UPDATE and DELETE on it fail there "
        "once it is published. Fix: add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL, or replicate it "
        "with `lorry add --insert-only`",
        prov.replica_identity == 'n' ? "NOTHING" : "DEFAULT", prov.name.Quoted()));
  } else if (!insert_only && !key.empty()) {
    LORRY_ASSIGN_OR_RETURN(bool indexed, HasKeyIndex(subscriber, sub.oid, key));
    if (!indexed)
      d.harmless.push_back("no index on the key columns on the subscriber: each replicated UPDATE and DELETE scans "
                           "the table");
  }
  LORRY_ASSIGN_OR_RETURN(auto pidx, IndexSignatures(provider, prov.oid));
  LORRY_ASSIGN_OR_RETURN(auto sidx, IndexSignatures(subscriber, sub.oid));
  std::multiset<std::string> psig, ssig;
  for (const auto& [n, sig] : pidx) psig.insert(sig);
  for (const auto& [n, sig] : sidx) ssig.insert(sig);
  for (const auto& [n, sig] : sidx)
    if (!psig.count(sig))
      d.harmless.push_back(fmt::format("index {} ({}) exists only on the subscriber{}", pg::QuoteIdentIfNeeded(n), sig,
                                       sig.rfind("UNIQUE", 0) == 0 ? " (a provider row that collides with it would "
                                                                     "stop replication)"
                                                                   : ""));
  for (const auto& [n, sig] : pidx)
    if (!ssig.count(sig))
      d.harmless.push_back(fmt::format("index {} ({}) of the provider is missing on the subscriber",
                                       pg::QuoteIdentIfNeeded(n), sig));
  return d;
}

}  // namespace lorry::schema
