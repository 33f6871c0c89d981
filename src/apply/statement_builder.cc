#include "apply/statement_builder.h"

#include <fmt/format.h>

namespace lorry::apply {

namespace {

// "k1 = $3 AND k2 IS NULL AND k3::text = $4", numbering from *next.
std::string WhereClause(const std::vector<KeyColumn>& key, int* next) {
  std::string out;
  for (const auto& k : key) {
    if (!out.empty()) out += " AND ";
    if (k.is_null)
      out += pg::QuoteIdent(k.name) + " IS NULL";
    else if (k.by_text)
      out += fmt::format("{}::text = ${}", pg::QuoteIdent(k.name), (*next)++);
    else
      out += fmt::format("{} = ${}", pg::QuoteIdent(k.name), (*next)++);
  }
  return out;
}

std::string RowCondition(const pg::QualifiedName& table, const std::vector<KeyColumn>& key, bool one_row,
                         int* next) {
  std::string where = WhereClause(key, next);
  if (!one_row) return where;
  return fmt::format("ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)", table.Quoted(), where);
}

// "unnest($1::text[], $2::text[]) AS v(a1, a2)" for n columns.
std::string Unnest(size_t n) {
  std::string arrays, names;
  for (size_t i = 1; i <= n; ++i) {
    if (i > 1) {
      arrays += ", ";
      names += ", ";
    }
    arrays += fmt::format("${}::text[]", i);
    names += fmt::format("a{}", i);
  }
  return fmt::format("unnest({}) AS v({})", arrays, names);
}

// "t."k1" = v.a1::T AND t."k2"::text = v.a2"
std::string BatchKeyMatch(const std::vector<BatchColumn>& key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    if (i) out += " AND ";
    if (key[i].by_text)
      out += fmt::format("t.{}::text = v.a{}", pg::QuoteIdent(key[i].name), i + 1);
    else
      out += fmt::format("t.{} = v.a{}::{}", pg::QuoteIdent(key[i].name), i + 1, key[i].cast_type);
  }
  return out;
}

}  // namespace

std::string BuildBatchInsert(const pg::QualifiedName& table, const std::vector<BatchColumn>& columns) {
  std::string names, values;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i) {
      names += ", ";
      values += ", ";
    }
    names += pg::QuoteIdent(columns[i].name);
    values += fmt::format("v.a{}::{}", i + 1, columns[i].cast_type);
  }
  return fmt::format("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}", table.Quoted(), names, values,
                     Unnest(columns.size()));
}

std::string BuildBatchUpdate(const pg::QualifiedName& table, const std::vector<BatchColumn>& key,
                             const std::vector<BatchColumn>& set) {
  std::string assignments;
  for (size_t i = 0; i < set.size(); ++i) {
    if (i) assignments += ", ";
    assignments += fmt::format("{} = v.a{}::{}", pg::QuoteIdent(set[i].name), key.size() + i + 1, set[i].cast_type);
  }
  return fmt::format("UPDATE {} AS t SET {} FROM {} WHERE {}", table.Quoted(), assignments,
                     Unnest(key.size() + set.size()), BatchKeyMatch(key));
}

std::string BuildBatchDelete(const pg::QualifiedName& table, const std::vector<BatchColumn>& key) {
  return fmt::format("DELETE FROM {} AS t USING {} WHERE {}", table.Quoted(), Unnest(key.size()),
                     BatchKeyMatch(key));
}

std::string BuildInsert(const pg::QualifiedName& table, const std::vector<std::string>& columns) {
  std::string cols, params;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i) {
      cols += ", ";
      params += ", ";
    }
    cols += pg::QuoteIdent(columns[i]);
    params += fmt::format("${}", i + 1);
  }
  if (columns.empty()) return fmt::format("INSERT INTO {} DEFAULT VALUES", table.Quoted());
  return fmt::format("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})", table.Quoted(), cols, params);
}

std::string BuildUpdate(const pg::QualifiedName& table, const std::vector<std::string>& set_columns,
                        const std::vector<KeyColumn>& key, bool one_row) {
  std::string set;
  int next = 1;
  for (const auto& c : set_columns) {
    if (!set.empty()) set += ", ";
    set += fmt::format("{} = ${}", pg::QuoteIdent(c), next++);
  }
  return fmt::format("UPDATE {} SET {} WHERE {}", table.Quoted(), set, RowCondition(table, key, one_row, &next));
}

std::string BuildDelete(const pg::QualifiedName& table, const std::vector<KeyColumn>& key, bool one_row) {
  int next = 1;
  return fmt::format("DELETE FROM {} WHERE {}", table.Quoted(), RowCondition(table, key, one_row, &next));
}

std::string BuildTruncate(const std::vector<pg::QualifiedName>& tables, bool restart_identity, bool cascade) {
  std::string list;
  for (const auto& t : tables) {
    if (!list.empty()) list += ", ";
    list += t.Quoted();
  }
  return fmt::format("TRUNCATE {}{}{}", list, restart_identity ? " RESTART IDENTITY" : "",
                     cascade ? " CASCADE" : "");
}

}  // namespace lorry::apply
