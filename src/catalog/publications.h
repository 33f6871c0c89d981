// The subscription's publications on the provider, and what a table's
// publication may carry: operations, a row filter, a column list.
//
// `publish` is a property of a publication, not of a table, so lorry keeps
// one publication per distinct set of operations:
//   lorry_<name>               insert, update, delete, truncate (the default)
//   lorry_<name>_insert_only   insert, truncate (`add --insert-only`)
//   lorry_<name>_ops_<letters> the set of `add --ops`, letters from "iudt"
//                              in that order (e.g. lorry_main_ops_iu)
// Invariant: a table is in exactly one of them. pgoutput ORs the operations
// and row filters of every publication a table is in, and refuses differing
// column lists; with one publication per table none of that combining
// happens, so each table gets exactly the ops, filter and columns it was
// added with.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "pg/connection.h"
#include "pg/quote.h"
#include "state/names.h"

namespace lorry::catalog {

// A set of published operations.
struct Ops {
  bool insert = true, update = true, del = true, truncate = true;

  bool all() const { return insert && update && del && truncate; }
  // Whether the table must have a replica identity (UPDATE/DELETE published).
  bool needs_identity() const { return update || del; }
  // "iudt" letters of the set, in that order.
  std::string Letters() const;
  // "insert, update" (the publication's publish option).
  std::string PublishList() const;
  bool operator==(const Ops&) const = default;
};

// Parses "insert,update" (any order, spaces allowed); an unknown or empty
// operation is a usage error that lists the valid ones.
Result<Ops> ParseOps(std::string_view text);

// The publication that holds tables replicated with `ops`.
std::string PublicationFor(const SubscriptionNames& names, const Ops& ops, bool insert_only);

// The WITH (...) options of a new lorry publication: publish = `publish`,
// and on PostgreSQL 13+ publish_via_partition_root = true, so that the
// changes of every partition of a published partitioned table, present and
// future, are published as the root's (a leaf published by itself, without
// its root, is still published as itself).
std::string PublicationOptions(std::string_view publish, int provider_version_num);

// Sets publish_via_partition_root on a publication made without it (by an
// older lorry); nothing before PostgreSQL 13, or when it is set already.
Status PublishViaRoot(pg::PgConn& provider, const std::string& publication);

// Every lorry publication of the subscription that exists on the provider
// (the two of `init` first, then the ops ones by name).
Result<std::vector<std::string>> ListPublications(pg::PgConn& provider, const SubscriptionNames& names);

// Each of them with the tables it holds (pg_publication_tables).
struct PublicationTables {
  std::string name;
  std::vector<pg::QualifiedName> tables;
};
Result<std::vector<PublicationTables>> ListPublicationTables(pg::PgConn& provider, const SubscriptionNames& names);

// Row filters and column lists exist from PostgreSQL 15 on: a precondition
// error naming the provider's version otherwise.
Status RequireRowFilterSupport(int provider_version_num, std::string_view option);

// The attribute numbers that a stored expression tree (pg_publication_rel.
// prqual as text, nodeToString form) refers to: ":varattno N" of its VARs.
std::vector<int> VarAttnos(std::string_view node_tree);

// A table's row filter and column list as the provider itself reads them.
struct PublishShape {
  std::string where;    // pg_get_expr of the filter ("(id > 0)"), or empty
  std::string columns;  // "id, a, \"B c\"" in the table's column order, or empty
  bool operator==(const PublishShape&) const = default;
};

// Checks a row filter (SQL text as the user gave it) and a column list for
// `table` with the provider's own parser and publication rules, and returns
// them as the server prints them. Changes nothing: the filter is prepared
// (never run) as one expression of a SELECT, then tried in a publication
// named `probe` created and rolled back in one transaction; extended-protocol
// statements cannot carry a second command, and the probe must hold exactly
// this table. A refusal is kUsage naming the table and the server's reason.
// REQUIRES: `provider` is not in a transaction; PostgreSQL 15+.
Result<PublishShape> CheckPublishShape(pg::PgConn& provider, const std::string& probe, const pg::QualifiedName& table,
                                       bool partitioned, std::string_view where,
                                       const std::vector<std::string>& columns);

// Splits "a, b,\"C d\"" into column names (SQL identifier syntax: unquoted
// names are folded to lower case).
Result<std::vector<std::string>> ParseColumnList(std::string_view text);

}  // namespace lorry::catalog
