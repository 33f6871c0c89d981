// `lorry check`: the differences between a table on the provider and on the
// subscriber, split into those that break replication and harmless ones.
//
// Breaking: a provider column missing on the subscriber; a subscriber-only
// column that is NOT NULL without a default, or generated where the provider
// sends values; a type that cannot take every provider value (other
// category, shorter length, smaller precision); no usable key on the
// provider for a table replicated with UPDATE and DELETE.
// Harmless: subscriber-only columns that are nullable or have a default;
// types that take every value (integer -> bigint, varchar(20) -> text);
// indexes only on one side; no index on the key columns on the subscriber
// (UPDATE and DELETE then scan the table).
#pragma once

#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/status.h"
#include "pg/connection.h"

namespace lorry::schema {

// A column that is GENERATED ALWAYS AS IDENTITY on the subscriber but
// takes other values on the provider (plain or BY DEFAULT there) and is
// not part of the key: inserts carry the provider's values (OVERRIDING
// SYSTEM VALUE), but an UPDATE may set it only to DEFAULT, so lorry
// leaves it out of UPDATEs and a change to it would be lost.
bool AlwaysIdentityMismatch(const catalog::ColumnInfo& provider, const catalog::ColumnInfo& subscriber);
// The problem, with the fix (`table` quoted, on the subscriber).
std::string AlwaysIdentityProblem(const std::string& column, const std::string& table_display,
                                  const std::string& table_quoted);

struct TableDiff {
  std::vector<std::string> breaking;
  std::vector<std::string> harmless;
};

// How a provider column type maps onto a subscriber column type. Values
// travel in text form, so equal names are always compatible.
enum class TypeFit { kSame, kHarmless, kBreaking };
// `*why` says what happens, for kHarmless and kBreaking.
TypeFit FitType(const std::string& provider_type, const std::string& subscriber_type, std::string* why);

// REQUIRES: both describe the same table, read from the two servers.
Result<TableDiff> DiffTable(pg::PgConn& provider, pg::PgConn& subscriber, const catalog::TableInfo& prov,
                            const catalog::TableInfo& sub, bool insert_only);

}  // namespace lorry::schema
