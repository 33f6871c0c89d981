// Content comparison for the demo: each table's row count and the md5 of all
// its rows' text forms, in order, computed on both servers.
//
// Both sessions use the same text settings (lorry's plus TimeZone=UTC), so a
// row reads as the same text on both sides exactly when its values are equal.
// REQUIRES: the provider is quiet (the demo's workload has stopped), otherwise
// the two sides are read at different points.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "pg/quote.h"

namespace lorry::demo {

struct TableComparison {
  pg::QualifiedName table;
  int64_t provider_rows = 0;
  int64_t subscriber_rows = 0;
  std::string provider_md5;
  std::string subscriber_md5;
  bool equal() const { return provider_rows == subscriber_rows && provider_md5 == subscriber_md5; }
};

Result<std::vector<TableComparison>> CompareTables(const std::string& provider_conninfo,
                                                   const std::string& subscriber_conninfo,
                                                   const std::vector<pg::QualifiedName>& tables);

}  // namespace lorry::demo
