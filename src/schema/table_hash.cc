#include "schema/table_hash.h"

#include <map>

#include <fmt/format.h>

namespace lorry::schema {

namespace {

// Ranges holding at most this many rows on both sides are listed key by key.
constexpr int64_t kLeafRows = 64;

using Key = std::vector<std::string>;  // key values in text form

std::string From(const HashSpec& spec, bool provider) {
  return fmt::format("{}{}", (provider ? spec.provider_only : spec.subscriber_only) ? "ONLY " : "",
                     spec.table.Quoted());
}

std::string RowText(const HashSpec& spec) {
  std::string cols;
  for (const auto& c : spec.columns) cols += (cols.empty() ? "" : ", ") + pg::QuoteIdent(c);
  return fmt::format("hashtextextended(ROW({})::text, 0)", cols);
}

std::string KeyExpr(const HashSpec& spec, size_t i) {
  return pg::QuoteIdent(spec.key[i]) + (spec.key_collatable[i] ? " COLLATE \"C\"" : "");
}

std::string KeyList(const HashSpec& spec, bool as_text) {
  std::string s;
  for (size_t i = 0; i < spec.key.size(); ++i)
    // As text, aliased: ORDER BY "id" would otherwise sort by the text output column.
    s += (i ? ", " : "") + (as_text ? fmt::format("{}::text AS lorry_key_{}", pg::QuoteIdent(spec.key[i]), i)
                                    : KeyExpr(spec, i));
  return s;
}

// "ROW(k1 COLLATE "C", k2) >= ROW($1::t1, $2::t2) AND ... < ...", params appended.
std::string RangeCondition(const HashSpec& spec, bool provider, const std::optional<Key>& lo,
                           const std::optional<Key>& hi, std::vector<pg::Param>* params) {
  const auto& types = provider ? spec.provider_key_types : spec.subscriber_key_types;
  std::string cond = "true";
  auto bound = [&](const Key& k, const char* op) {
    std::string row;
    for (size_t i = 0; i < k.size(); ++i) {
      params->push_back(k[i]);
      row += fmt::format("{}${}::{}", i ? ", " : "", params->size(), types[i]);
    }
    cond += fmt::format(" AND ROW({}) {} ROW({})", KeyList(spec, false), op, row);
  };
  if (lo) bound(*lo, ">=");
  if (hi) bound(*hi, "<");
  return cond;
}

struct Range {
  std::optional<Key> lo, hi;  // lo inclusive, hi exclusive; nullopt: unbounded
};

Result<TableSum> SumRange(pg::PgConn& conn, const HashSpec& spec, bool provider, const Range& r) {
  std::vector<pg::Param> params;
  std::string where = RangeCondition(spec, provider, r.lo, r.hi, &params);
  LORRY_ASSIGN_OR_RETURN(auto res, conn.ExecParams(fmt::format("SELECT count(*), coalesce(sum({}::numeric), 0)::text "
                                                               "FROM {} WHERE {}",
                                                               RowText(spec), From(spec, provider), where),
                                                   params));
  return TableSum{res.GetInt(0, 0), std::string(res.Get(0, 1))};
}

Result<Key> KeyAt(pg::PgConn& conn, const HashSpec& spec, bool provider, const Range& r, int64_t offset) {
  std::vector<pg::Param> params;
  std::string where = RangeCondition(spec, provider, r.lo, r.hi, &params);
  LORRY_ASSIGN_OR_RETURN(auto res, conn.ExecParams(fmt::format("SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {} LIMIT 1",
                                                               KeyList(spec, true), From(spec, provider), where,
                                                               KeyList(spec, false), offset),
                                                   params));
  if (res.rows() == 0) return Status::Internal("key range shrank while reading it");
  Key k;
  for (int i = 0; i < res.columns(); ++i) k.push_back(std::string(res.Get(0, i)));
  return k;
}

Result<std::map<Key, std::string>> RowHashes(pg::PgConn& conn, const HashSpec& spec, bool provider, const Range& r) {
  std::vector<pg::Param> params;
  std::string where = RangeCondition(spec, provider, r.lo, r.hi, &params);
  LORRY_ASSIGN_OR_RETURN(auto res, conn.ExecParams(fmt::format("SELECT {}, {}::text FROM {} WHERE {}",
                                                               KeyList(spec, true), RowText(spec), From(spec, provider), where),
                                                   params));
  std::map<Key, std::string> out;
  int n = static_cast<int>(spec.key.size());
  for (int i = 0; i < res.rows(); ++i) {
    Key k;
    for (int j = 0; j < n; ++j) k.push_back(std::string(res.Get(i, j)));
    out[std::move(k)] = res.Get(i, n);
  }
  return out;
}

std::string ShowKey(const HashSpec& spec, const Key& k) {
  std::string names, values;
  for (size_t i = 0; i < k.size(); ++i) {
    names += (i ? ", " : "") + pg::QuoteIdentIfNeeded(spec.key[i]);
    values += (i ? ", " : "") + k[i];
  }
  return fmt::format("({})=({})", names, values);
}

}  // namespace

Result<HashSpec> MakeHashSpec(pg::PgConn& provider, const catalog::TableInfo& prov, const catalog::TableInfo& sub,
                              std::vector<std::string>* notes) {
  HashSpec spec;
  spec.table = prov.name;
  spec.provider_only = prov.relkind != 'p';
  spec.subscriber_only = sub.relkind != 'p';
  for (const auto& c : prov.columns) {
    if (c.generated) continue;
    const catalog::ColumnInfo* s = sub.FindColumn(c.name);
    if (s == nullptr || s->generated) {
      notes->push_back(fmt::format("column {} is not compared: missing on the subscriber", pg::QuoteIdentIfNeeded(c.name)));
      continue;
    }
    spec.columns.push_back(c.name);
  }
  LORRY_ASSIGN_OR_RETURN(
      auto key, provider.ExecParams(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcollation <> 0 "
                    "FROM (SELECT * FROM pg_index WHERE indrelid = $1 AND (indisprimary OR indisreplident) "
                    "      ORDER BY indisprimary DESC LIMIT 1) i "
                    "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, pos) "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                    "JOIN pg_type t ON t.oid = a.atttypid "
                    "WHERE k.pos <= i.indnkeyatts ORDER BY k.pos",
                    {std::to_string(prov.oid)}));
  for (int i = 0; i < key.rows(); ++i) {
    std::string name(key.Get(i, 0));
    const catalog::ColumnInfo* s = sub.FindColumn(name);
    if (s == nullptr) {  // no usable key on the subscriber's side
      spec.key.clear();
      spec.provider_key_types.clear();
      spec.subscriber_key_types.clear();
      spec.key_collatable.clear();
      break;
    }
    spec.key.push_back(name);
    spec.provider_key_types.push_back(std::string(key.Get(i, 1)));
    spec.subscriber_key_types.push_back(s->type);
    spec.key_collatable.push_back(key.GetBool(i, 2));
  }
  return spec;
}

Result<TableSum> SumTable(pg::PgConn& conn, const HashSpec& spec, bool provider) {
  return SumRange(conn, spec, provider, Range{});
}

Result<std::vector<RowDifference>> NarrowRows(pg::PgConn& provider, pg::PgConn& subscriber, const HashSpec& spec,
                                              size_t limit, bool* more) {
  std::vector<RowDifference> out;
  *more = false;
  std::vector<Range> todo = {Range{}};
  for (int steps = 0; !todo.empty(); ++steps) {
    // Each split shrinks a range; this only guards against a key order the
    // two sides do not share (ranges would then not shrink as expected).
    if (steps > 1000000) return Status::Internal("narrowing rows did not converge for " + spec.table.Display());
    Range r = std::move(todo.back());
    todo.pop_back();
    LORRY_ASSIGN_OR_RETURN(auto p, SumRange(provider, spec, true, r));
    LORRY_ASSIGN_OR_RETURN(auto s, SumRange(subscriber, spec, false, r));
    if (p == s) continue;
    if (std::max(p.rows, s.rows) > kLeafRows) {
      // Split at the median key of the side with more rows: both halves hold
      // fewer of its rows, so this ends.
      bool on_provider = p.rows >= s.rows;
      LORRY_ASSIGN_OR_RETURN(auto mid, KeyAt(on_provider ? provider : subscriber, spec, on_provider, r,
                                             (on_provider ? p.rows : s.rows) / 2));
      todo.push_back(Range{mid, r.hi});
      todo.push_back(Range{r.lo, mid});  // the lower half first: keys come out in order
      continue;
    }
    LORRY_ASSIGN_OR_RETURN(auto prows, RowHashes(provider, spec, true, r));
    LORRY_ASSIGN_OR_RETURN(auto srows, RowHashes(subscriber, spec, false, r));
    auto pi = prows.begin();
    auto si = srows.begin();
    while (pi != prows.end() || si != srows.end()) {
      if (out.size() >= limit) {
        *more = true;
        return out;
      }
      if (si == srows.end() || (pi != prows.end() && pi->first < si->first)) {
        out.push_back({ShowKey(spec, pi->first), "only on the provider"});
        ++pi;
      } else if (pi == prows.end() || si->first < pi->first) {
        out.push_back({ShowKey(spec, si->first), "only on the subscriber"});
        ++si;
      } else {
        if (pi->second != si->second) out.push_back({ShowKey(spec, pi->first), "differs"});
        ++pi;
        ++si;
      }
    }
  }
  return out;
}

}  // namespace lorry::schema
