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
  char identity = '\0';    // 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT: gets a value when none is given
  bool identity_key = false;  // part of the replica identity (or the primary key for DEFAULT)
  bool has_equality = false;  // the type has a default btree or hash equality operator
};

struct TableInfo {
  pg::QualifiedName name;
  Oid oid = 0;
  char relkind = 'r';    // 'r' table, 'p' partitioned table (a root, or a partitioned partition)
  bool is_partition = false;  // a partition of another table (pg_class.relispartition)
  int leaf_partitions = 0;    // for a partitioned table: its leaf partitions, at every level
  // 'd' default (primary key), 'n' nothing, 'f' full, 'i' index.
  char replica_identity = 'd';
  bool has_primary_key = false;
  std::string identity_index;  // for 'i': the index name; for 'd': the primary key's index
  std::vector<ColumnInfo> columns;  // attnum order, dropped columns excluded
  // For a partitioned table: the sums over its leaf partitions.
  int64_t rows_estimate = -1;       // pg_class.reltuples (-1: never analysed)
  int64_t bytes_estimate = 0;       // pg_table_size: heap and TOAST (what a copy moves)
  int64_t heap_bytes = 0;           // pg_relation_size: the heap alone (what ctid ranges split)

  bool partitioned() const { return relkind == 'p'; }

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

// How partitioned tables are replicated: through their root (one table, the
// publication's publish_via_partition_root; PostgreSQL 13+), or each leaf
// partition as a table of its own.
enum class PartitionMode { kRoot, kLeaves };

// The tables of every user schema (or of `schema` when not empty), as they
// are replicated in `mode`: ordinary tables that are not partitions, and
// partitioned roots (kRoot) or leaf partitions (kLeaves). pg_catalog,
// information_schema, pg_toast*, pg_temp*, lorry (the state of a subscriber
// that is also a provider: a cascade) and lorry_ddl (DDL capture) are skipped.
Result<std::vector<pg::QualifiedName>> ListUserTables(pg::PgConn& conn, const std::string& schema = "",
                                                      PartitionMode mode = PartitionMode::kRoot);

// The leaf partitions (ordinary tables) under a partitioned table, at every
// level, in name order. Foreign-table partitions are not leaves here: they
// hold no rows of the provider's own.
Result<std::vector<pg::QualifiedName>> ListLeaves(pg::PgConn& conn, Oid partitioned);

// The sequences of every user schema (or of `schema`) that no column owns
// (not serial, not identity): created standalone, used through defaults or
// by the application. Same schemas skipped as ListUserTables.
Result<std::vector<pg::QualifiedName>> ListFreeSequences(pg::PgConn& conn, const std::string& schema = "");

// The topmost partitioned ancestor of a partition (nullopt for a table that
// is not a partition).
Result<std::optional<pg::QualifiedName>> PartitionRoot(pg::PgConn& conn, Oid table);

}  // namespace lorry::catalog
