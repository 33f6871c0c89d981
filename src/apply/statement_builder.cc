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

}  // namespace

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
  return fmt::format("INSERT INTO {} ({}) VALUES ({})", table.Quoted(), cols, params);
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
