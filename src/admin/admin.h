// The administrative commands: everything but `run` and `demo`.
//
// Each function is what one CLI subcommand calls after parsing. They print
// human (or JSON) output to `out` and return a Status whose ExitCode() is the
// process exit status. Connection strings are never printed unredacted.
#pragma once

#include <iosfwd>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/status_check.h"
#include "common/lsn.h"
#include "common/status.h"
#include "config/config.h"
#include "pg/connection.h"

namespace lorry::admin {

struct InitOptions {
  // Install the provider's DDL capture event trigger (admin/ddl_capture.h).
  bool capture_ddl = false;
};
// Checks both servers (one line per check, with the fix when it fails) and
// installs the lorry schema, the origin and the publications. Idempotent.
Status Init(const Config& config, const InitOptions& options, std::ostream& out);

struct AddOptions {
  std::vector<std::string> tables;  // as typed by the user: qualified or not, SQL quoting allowed
  bool all = false;
  std::string schema;  // with --all: only this schema
  // With --all: tables (and free-standing sequences) to leave out, as
  // NameMatches patterns; schemas to take only / to leave out.
  std::vector<std::string> excludes;
  std::vector<std::string> include_schemas;
  std::vector<std::string> exclude_schemas;
  bool insert_only = false;
  bool truncate = false;  // empty the subscriber tables before their copy
  bool create = false;    // create tables missing on the subscriber (schema/table_create.h)
  std::string pg_dump;    // --pg-dump: the pg_dump for --create (default $LORRY_PG_DUMP, then PATH)
  // What the tables' publication carries (catalog/publications.h); filter
  // and columns need PostgreSQL 15+ on the provider.
  std::string where;    // row filter, SQL
  std::string columns;  // "a,b"
  std::string ops;      // "insert,update"
  std::vector<std::string> sequences;  // --sequence NAME: synced too (sync/sequence_sync.h)
  // --partitions root|leaves: a partitioned table through its root (the
  // default; PostgreSQL 13+ on the provider, its leaves on 12), or each leaf
  // partition as a table of its own.
  std::string partitions = "root";
};
Status Add(const Config& config, const AddOptions& options, std::ostream& out);
Status Remove(const Config& config, const std::vector<std::string>& tables, std::ostream& out);
// `remove --sequence NAME`: stops syncing sequences added with `add --sequence`.
Status RemoveSequences(const Config& config, const std::vector<std::string>& sequences, std::ostream& out);

struct ResyncOptions {
  std::vector<std::string> tables;  // replicated tables, qualified or not
  bool all = false;                 // every table of the subscription
};
// Marks tables to be emptied on the subscriber and copied again; the running
// (or next) `lorry run` copies them while the others keep replicating.
Status Resync(const Config& config, const ResyncOptions& options, std::ostream& out);

Status ShowStatus(const Config& config, bool json, std::ostream& out);
// The report `status --json` prints, over the given connections (provider
// null: one of its own; unreachable: said in the report).
Result<nlohmann::json> StatusReportJson(const Config& config, pg::PgConn& subscriber, pg::PgConn* provider);
// `status --check`: the report judged by admin/status_check.h (UNKNOWN
// when it cannot be made).
CheckResult CheckStatus(const Config& config, const CheckLimits& limits);
Status ShowTables(const Config& config, bool json, std::ostream& out);

// Blocks until every table is ready and everything the provider had committed
// when it started is applied; kTimeout (exit 1) with what is behind otherwise.
Status Wait(const Config& config, double timeout_seconds, std::ostream& out);

// The provider's position now, as `wait` and `run --until now` aim for: its
// WAL insert position (a standby's replay position), with WAL written past
// it so that the walsender's keepalives reach it even on an idle provider.
Result<Lsn> ProviderPositionNow(const Config& config);

Status Drop(const Config& config, std::ostream& out);

// `lorry missing`: provider tables not replicated, and replicated tables
// missing on the subscriber (or dropped on the provider). kNotTrue (exit 1)
// when anything is listed.
Status Missing(const Config& config, bool json, std::ostream& out);

// `lorry check [TABLE...]` (default: every replicated table): per table, the
// differences that break replication and the harmless ones
// (schema/table_diff.h). kNotTrue (exit 1) when any would break.
Status CheckTables(const Config& config, const std::vector<std::string>& tables, bool json, std::ostream& out);

struct ExecuteOptions {
  std::string file;              // the SQL script
  std::vector<std::string> add;  // tables the script creates, added to the subscription
};
// Runs the script on the provider in one transaction with a lorry message
// carrying it; the subscriber runs it at that point of the stream.
Status Execute(const Config& config, const ExecuteOptions& options, std::ostream& out);

// The first transaction control keyword (BEGIN, COMMIT, ...) that starts a
// statement of `sql`, skipping comments, literals and dollar quotes.
std::optional<std::string> FindTransactionControl(std::string_view sql);

// Records that `lorry run` must skip the provider transaction whose commit
// LSN is `lsn` (refused when already applied). See admin/skip.cc.
Status Skip(const Config& config, const std::string& lsn, std::ostream& out);

struct CompareOptions {
  std::vector<std::string> tables;  // default: every replicated table
  int jobs = 4;                     // connections per side
  bool rows = false;                // narrow differences down to keys
  bool json = false;
  int timeout_seconds = 60;         // for run to reach the point compared at
};
// `lorry compare`: row counts and content hashes of each table on both sides
// at one consistent point (admin/compare.cc). Needs a running `lorry run`.
// kNotTrue (exit 1) when any table differs.
Status Compare(const Config& config, const CompareOptions& options, std::ostream& out);

}  // namespace lorry::admin
