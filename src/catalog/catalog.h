// Catalog queries that lorry runs on either server: tables, columns, keys.
//
// The same functions serve the provider and the subscriber; they only read
// pg_catalog, so they need no privilege beyond connecting.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"

namespace lorry::catalog {

struct ColumnInfo {
  std::string name;
  std::string type;        // format_type(), e.g. "character varying(20)"
  Oid type_oid = 0;
  bool not_null = false;
  bool has_default = false;
  bool generated = false;  // GENERATED ALWAYS AS (...) STORED: never replicated
  bool identity_key = false;  // part of the replica identity (or the primary key for DEFAULT)
  bool has_equality = false;  // the type has a default btree or hash equality operator
};

struct TableInfo {
  pg::QualifiedName name;
  Oid oid = 0;
  char relkind = 'r';
  // 'd' default (primary key), 'n' nothing, 'f' full, 'i' index.
  char replica_identity = 'd';
  bool has_primary_key = false;
  std::string identity_index;  // for 'i': the index name; for 'd': the primary key's index
  std::vector<ColumnInfo> columns;  // attnum order, dropped columns excluded
  int64_t rows_estimate = -1;       // pg_class.reltuples (-1: never analysed)
  int64_t bytes_estimate = 0;       // pg_table_size: heap and TOAST (what a copy moves)
  int64_t heap_bytes = 0;           // pg_relation_size: the heap alone (what ctid ranges split)

  // Whether UPDATE and DELETE can be published: a primary key for DEFAULT,
  // an index for USING INDEX, or FULL.
  bool HasUsableIdentity() const {
    return replica_identity == 'f' || replica_identity == 'i' || (replica_identity == 'd' && has_primary_key);
  }
  const ColumnInfo* FindColumn(std::string_view column) const;
};

// Looks a table up. An unqualified name is resolved through the server's
// search_path. Returns nullopt when there is no such table.
Result<std::optional<TableInfo>> LookupTable(pg::PgConn& conn, const pg::QualifiedName& name);

// Every ordinary table of every user schema (or of `schema` when not empty);
// pg_catalog, information_schema, pg_toast*, pg_temp*, lorry (the state of a
// subscriber that is also a provider: a cascade) and lorry_ddl (DDL capture) are skipped.
Result<std::vector<pg::QualifiedName>> ListUserTables(pg::PgConn& conn, const std::string& schema = "");

}  // namespace lorry::catalog
