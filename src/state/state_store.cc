#include "state/state_store.h"

#include <unistd.h>

#include <fmt/format.h>

#include "state/names.h"

namespace lorry {

namespace {

// Version 1 of the lorry schema. Later versions append migrations; Install()
// applies whichever are missing, in one transaction.
constexpr const char* kSchemaV1 = R"sql(
CREATE SCHEMA IF NOT EXISTS lorry;
COMMENT ON SCHEMA lorry IS 'lorry logical replication state (do not edit by hand)';
CREATE TABLE IF NOT EXISTS lorry.schema_version (version int NOT NULL);
CREATE TABLE IF NOT EXISTS lorry.subscriptions (
  name              text PRIMARY KEY,
  slot_name         text NOT NULL,
  publication       text NOT NULL,
  insert_only_publication text NOT NULL,
  origin            text NOT NULL,
  consistent_lsn    pg_lsn,
  proto_version     int,
  confirmed_lsn     pg_lsn,
  last_commit_lsn   pg_lsn,
  last_commit_time  timestamptz,
  last_applied_at   timestamptz,
  xacts_applied     bigint NOT NULL DEFAULT 0,
  changes_applied   bigint NOT NULL DEFAULT 0,
  paused            boolean NOT NULL DEFAULT false,
  run_host          text,
  run_pid           int,
  heartbeat_at      timestamptz,
  last_error        text,
  last_error_at     timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS lorry.tables (
  subscription      text NOT NULL REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  nspname           text NOT NULL,
  relname           text NOT NULL,
  state             text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending','copying','catching_up','ready','error','paused')),
  insert_only       boolean NOT NULL DEFAULT false,
  sync_lsn          pg_lsn,
  rows_copied       bigint NOT NULL DEFAULT 0,
  bytes_copied      bigint NOT NULL DEFAULT 0,
  rows_estimate     bigint,
  error             text,
  added_at          timestamptz NOT NULL DEFAULT now(),
  state_changed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription, nspname, relname)
);
)sql";

// Version 2: copy progress and indexes deferred during a table's copy.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS copy_started_at timestamptz;
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS copy_finished_at timestamptz;
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS bytes_estimate bigint;
-- `lorry add --truncate`: empty the subscriber table before copying into it.
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS truncate_before_copy boolean NOT NULL DEFAULT false;
-- An index or constraint dropped before a table's copy and not yet rebuilt.
-- The row is deleted in the same transaction that rebuilds it, so a crash at
-- any moment leaves every dropped index either here or back on its table.
CREATE TABLE IF NOT EXISTS lorry.deferred_indexes (
  subscription      text NOT NULL REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  nspname           text NOT NULL,
  relname           text NOT NULL,
  index_name        text NOT NULL,
  constraint_name   text,          -- set for PRIMARY KEY / UNIQUE / EXCLUDE constraints
  definition        text NOT NULL, -- CREATE INDEX ... or ALTER TABLE ... ADD CONSTRAINT ...
  deferred_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription, nspname, relname, index_name)
);
)sql";

// Version 3: the run lease (one applying `lorry run` per subscription;
// others stand by and take over), and provider transactions skipped on
// purpose (`lorry skip --lsn`). See daemon/run_lease.h.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS lease_owner text;          -- host:pid:nonce of the applying run
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS lease_since timestamptz;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;  -- renewed every second
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS lease_pids int[];          -- its subscriber sessions
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS takeovers bigint NOT NULL DEFAULT 0;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS standby_host text;         -- a run waiting to take over
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS standby_pid int;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS standby_since timestamptz;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS standby_seen_at timestamptz;
-- Fencing: called by an apply transaction right before COMMIT. It fails
-- unless the run still holds the lease, and locks the row FOR SHARE so that
-- a takeover (an UPDATE of the row) waits until this transaction has ended.
CREATE OR REPLACE FUNCTION lorry.check_lease(p_subscription text, p_owner text) RETURNS void
LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM 1 FROM lorry.subscriptions s WHERE s.name = p_subscription AND s.lease_owner = p_owner FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'lorry run % no longer holds the lease of subscription %: another run took over',
      p_owner, p_subscription USING ERRCODE = 'LR001';
  END IF;
END
$f$;
CREATE TABLE IF NOT EXISTS lorry.skips (
  subscription      text NOT NULL REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  commit_lsn        pg_lsn NOT NULL,   -- the provider transaction's commit LSN (as apply errors show it)
  requested_at      timestamptz NOT NULL DEFAULT now(),
  requested_by      text NOT NULL,     -- OS user@host of `lorry skip`, and the database user
  skipped_at        timestamptz,       -- when `lorry run` skipped it
  end_lsn           pg_lsn,
  commit_time       timestamptz,       -- the provider transaction's commit time
  changes           jsonb,             -- changes not applied, per table: {"public.t": 3}
  PRIMARY KEY (subscription, commit_lsn)
);
)sql";
// Version 4: what a table's publication carries (PostgreSQL 15+ for the
// filter and columns; see catalog/publications.h), and the sequences added
// by name (`lorry add --sequence`; those owned by replicated tables are found
// on the provider each time, see sync/sequence_sync.h).
constexpr const char* kSchemaV4 = R"sql(
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS row_filter text;   -- add --where, as given
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS column_list text;  -- add --columns, as given
ALTER TABLE lorry.tables ADD COLUMN IF NOT EXISTS ops text;          -- add --ops, e.g. 'insert, update'
CREATE TABLE IF NOT EXISTS lorry.sequences (
  subscription      text NOT NULL REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  nspname           text NOT NULL,
  relname           text NOT NULL,
  added_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription, nspname, relname)
);
-- Subscriber time at which the last complete sequence sync began (every
-- provider value it used was read after that moment).
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS sequences_synced_at timestamptz;
)sql";

// Version 5: what `lorry run` samples for SQL users (lorry.run_stats, written
// by the run's sampler every few seconds) and the views over it all:
// lorry.status (one row per subscription) and lorry.table_progress (one row
// per table, with copy and index build progress). The run lock's class
// (67445 = kRunLockClass) is in lorry.status's `running`.
constexpr const char* kSchemaV5 = R"sql(
CREATE TABLE IF NOT EXISTS lorry.run_stats (
  subscription        text PRIMARY KEY REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  sampled_at          timestamptz NOT NULL,
  provider_lsn        pg_lsn,
  received_lsn        pg_lsn,
  applied_lsn         pg_lsn,
  lag_bytes           bigint,
  lag_seconds         float8,
  xacts_per_second    float8,
  changes_per_second  float8,
  slot_active         boolean,
  slot_retained_bytes bigint,
  reconnects          bigint
);
CREATE OR REPLACE VIEW lorry.table_progress AS
SELECT t.subscription, t.nspname, t.relname,
  quote_ident(t.nspname) || '.' || quote_ident(t.relname) AS table_name,
  t.state, t.insert_only, t.rows_copied, t.rows_estimate, t.bytes_copied, t.bytes_estimate,
  CASE WHEN t.state IN ('catching_up', 'ready') THEN 1.0::float8
       WHEN t.state = 'copying' AND t.bytes_estimate > 0
         THEN least(0.99, t.bytes_copied::float8 / t.bytes_estimate) END AS copy_fraction,
  c.seconds AS copy_seconds,
  CASE WHEN c.seconds > 0 AND t.bytes_copied > 0 THEN t.bytes_copied / c.seconds END AS copy_bytes_per_second,
  CASE WHEN t.state = 'copying' AND c.seconds > 0 AND t.bytes_copied > 0 AND t.bytes_estimate IS NOT NULL
    THEN greatest(0, (t.bytes_estimate - t.bytes_copied) / (t.bytes_copied / c.seconds)) END AS copy_seconds_left,
  (SELECT count(*) FROM lorry.deferred_indexes d WHERE d.subscription = t.subscription
     AND d.nspname = t.nspname AND d.relname = t.relname) AS indexes_to_rebuild,
  ib.index_name AS index_building, ib.phase AS index_build_phase, ib.fraction AS index_build_fraction,
  t.sync_lsn, t.error, t.state_changed_at
FROM lorry.tables t
CROSS JOIN LATERAL (SELECT extract(epoch FROM coalesce(t.copy_finished_at, clock_timestamp())
                                              - t.copy_started_at)::float8 AS seconds) c
LEFT JOIN LATERAL (
  SELECT CASE WHEN p.index_relid <> 0 THEN p.index_relid::regclass::text END AS index_name, p.phase,
         CASE WHEN p.blocks_total > 0 THEN p.blocks_done::float8 / p.blocks_total
              WHEN p.tuples_total > 0 THEN p.tuples_done::float8 / p.tuples_total END AS fraction
  FROM pg_stat_progress_create_index p
  WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND p.relid = to_regclass(quote_ident(t.nspname) || '.' || quote_ident(t.relname))
  LIMIT 1) ib ON true;
CREATE OR REPLACE VIEW lorry.status AS
SELECT s.name AS subscription,
  CASE WHEN s.paused THEN 'paused'
       WHEN NOT r.running THEN 'stopped'
       WHEN s.last_error IS NOT NULL THEN 'retrying'
       WHEN tc.copying > 0 OR tc.pending > 0 THEN 'copying'
       ELSE 'streaming' END AS state,
  r.running, s.run_host, s.run_pid,
  extract(epoch FROM clock_timestamp() - s.heartbeat_at)::float8 AS heartbeat_age_seconds,
  st.provider_lsn,
  coalesce(greatest(s.last_commit_lsn, s.confirmed_lsn), s.consistent_lsn) AS applied_lsn,
  s.confirmed_lsn,
  CASE WHEN r.running THEN st.lag_bytes END AS lag_bytes,
  CASE WHEN r.running THEN st.lag_seconds + CASE WHEN st.lag_seconds > 0
       THEN extract(epoch FROM clock_timestamp() - st.sampled_at)::float8 ELSE 0 END END AS lag_seconds,
  CASE WHEN r.running THEN st.xacts_per_second END AS xacts_per_second,
  CASE WHEN r.running THEN st.changes_per_second END AS changes_per_second,
  s.xacts_applied, s.changes_applied, s.last_commit_time,
  st.slot_active, st.slot_retained_bytes, st.reconnects,
  extract(epoch FROM clock_timestamp() - st.sampled_at)::float8 AS stats_age_seconds,
  tc.tables, tc.ready, tc.copying, tc.catching_up, tc.pending, tc.errors,
  s.last_error, s.last_error_at,
  s.lease_owner, extract(epoch FROM s.lease_expires_at - clock_timestamp())::float8 AS lease_expires_in_seconds,
  s.takeovers,
  -- a standby run waiting to take over (seen in the last 5 s), as `lorry status` shows it
  CASE WHEN sb.live THEN s.standby_host END AS standby_host,
  CASE WHEN sb.live THEN s.standby_pid END AS standby_pid,
  CASE WHEN sb.live THEN s.standby_since END AS standby_since
FROM lorry.subscriptions s
CROSS JOIN LATERAL (SELECT coalesce(s.standby_seen_at > clock_timestamp() - interval '5 s', false) AS live) sb
CROSS JOIN LATERAL (
  SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid::bigint = 67445 AND l.objid::bigint = (hashtext(s.name)::bigint & 4294967295)
    AND l.objsubid = 2) AS running) r
LEFT JOIN lorry.run_stats st ON st.subscription = s.name
CROSS JOIN LATERAL (
  SELECT count(*) AS tables,
         count(*) FILTER (WHERE t.state = 'ready') AS ready,
         count(*) FILTER (WHERE t.state = 'copying') AS copying,
         count(*) FILTER (WHERE t.state = 'catching_up') AS catching_up,
         count(*) FILTER (WHERE t.state = 'pending') AS pending,
         count(*) FILTER (WHERE t.state = 'error') AS errors
  FROM lorry.tables t WHERE t.subscription = s.name) tc;
)sql";
static_assert(kRunLockClass == 67445, "kSchemaV5's lorry.status view spells the run lock's class");

// Version 6: `lorry compare`'s hold request to `lorry run` (state/compare_hold.h).
constexpr const char* kSchemaV6 = R"sql(
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS hold_lsn pg_lsn;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS hold_until timestamptz;
ALTER TABLE lorry.subscriptions ADD COLUMN IF NOT EXISTS held_lsn pg_lsn;
)sql";

// Version 7: `lorry remove` at a clear point of the stream.
constexpr const char* kSchemaV7 = R"sql(
-- A table removed while the stream applied it: its transactions committed
-- before remove_lsn (the provider's WAL position when `remove` began) are
-- still applied, none after; the row goes once the stream is past it.
CREATE TABLE IF NOT EXISTS lorry.removed_tables (
  subscription      text NOT NULL REFERENCES lorry.subscriptions(name) ON DELETE CASCADE,
  nspname           text NOT NULL,
  relname           text NOT NULL,
  apply_from        pg_lsn,        -- it was catching_up: its copy holds what is before this
  remove_lsn        pg_lsn NOT NULL,
  removed_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription, nspname, relname)
);
)sql";

// Version 8: why a deferred index's rebuild failed (kept until it succeeds,
// so that `lorry status` shows it between the retries).
constexpr const char* kSchemaV8 = R"sql(
ALTER TABLE lorry.deferred_indexes ADD COLUMN IF NOT EXISTS last_error text;
ALTER TABLE lorry.deferred_indexes ADD COLUMN IF NOT EXISTS failed_at timestamptz;
)sql";

// Migrations in order; migration i brings the schema to version i + 1.
constexpr const char* kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3, kSchemaV4,
                                       kSchemaV5, kSchemaV6, kSchemaV7, kSchemaV8};

std::optional<Lsn> LsnOrNull(const pg::PgResult& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return Lsn::Parse(r.Get(row, col));
}

std::optional<std::string> LsnParam(std::optional<Lsn> lsn) {
  if (!lsn) return std::nullopt;
  return lsn->ToString();
}

}  // namespace

const char* TableStateName(TableStateKind s) {
  switch (s) {
    case TableStateKind::kPending: return "pending";
    case TableStateKind::kCopying: return "copying";
    case TableStateKind::kCatchingUp: return "catching_up";
    case TableStateKind::kReady: return "ready";
    case TableStateKind::kError: return "error";
    case TableStateKind::kPaused: return "paused";
  }
  return "?";
}

std::optional<TableStateKind> ParseTableState(std::string_view s) {
  for (auto k : {TableStateKind::kPending, TableStateKind::kCopying, TableStateKind::kCatchingUp,
                 TableStateKind::kReady, TableStateKind::kError, TableStateKind::kPaused})
    if (s == TableStateName(k)) return k;
  return std::nullopt;
}

Status StateStore::Install() {
  auto names = SubscriptionNames::For(sub_);
  LORRY_RETURN_IF_ERROR(conn_->Exec("BEGIN").status());
  auto body = [&]() -> Status {
    // Serialises concurrent installs of the same database.
    LORRY_RETURN_IF_ERROR(conn_->Exec(fmt::format("SELECT pg_advisory_xact_lock({}, 1)", kSchemaLockClass)).status());
    LORRY_RETURN_IF_ERROR(conn_->Exec(kSchemaV1).status());
    LORRY_ASSIGN_OR_RETURN(auto v, conn_->QueryValue("SELECT max(version) FROM lorry.schema_version"));
    int version = v ? std::stoi(*v) : 1;
    if (version > kSchemaVersion)
      return Status::Precondition(fmt::format(
          "the lorry schema on the subscriber is version {}, newer than this lorry understands ({}); upgrade lorry",
          version, kSchemaVersion));
    for (int i = version; i < kSchemaVersion; ++i) LORRY_RETURN_IF_ERROR(conn_->Exec(kMigrations[i]).status());
    LORRY_RETURN_IF_ERROR(conn_->Exec("DELETE FROM lorry.schema_version").status());
    LORRY_RETURN_IF_ERROR(
        conn_->Exec(fmt::format("INSERT INTO lorry.schema_version VALUES ({})", kSchemaVersion)).status());
    return conn_
        ->ExecParams("INSERT INTO lorry.subscriptions (name, slot_name, publication, insert_only_publication, origin) "
                     "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                     {names.name, names.slot, names.publication, names.insert_only_publication, names.origin})
        .status();
  };
  Status s = body();
  if (!s.ok()) {
    (void)conn_->Exec("ROLLBACK");
    return s;
  }
  return conn_->Exec("COMMIT").status();
}

Result<bool> StateStore::IsInstalled() {
  LORRY_ASSIGN_OR_RETURN(auto reg, conn_->QueryValue("SELECT to_regclass('lorry.subscriptions')::text"));
  if (!reg) return false;
  LORRY_ASSIGN_OR_RETURN(auto row, conn_->QueryValue("SELECT 1 FROM lorry.subscriptions WHERE name = $1", {sub_}));
  return row.has_value();
}

Status StateStore::Uninstall() {
  LORRY_ASSIGN_OR_RETURN(bool installed, IsInstalled());
  if (!installed) return Status::Ok();
  LORRY_RETURN_IF_ERROR(conn_->ExecParams("DELETE FROM lorry.subscriptions WHERE name = $1", {sub_}).status());
  LORRY_ASSIGN_OR_RETURN(auto others, conn_->QueryValue("SELECT count(*) FROM lorry.subscriptions"));
  if (others && *others == "0") LORRY_RETURN_IF_ERROR(conn_->Exec("DROP SCHEMA lorry CASCADE").status());
  return Status::Ok();
}

Result<SubscriptionRow> StateStore::LoadSubscription() {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn_->ExecParams(
                  "SELECT name, consistent_lsn, confirmed_lsn, last_commit_lsn, last_commit_time::text, "
                  "last_applied_at::text, xacts_applied, changes_applied, coalesce(proto_version, 0), "
                  "heartbeat_at::text, extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, "
                  "last_error, last_error_at::text, paused "
                  "FROM lorry.subscriptions WHERE name = $1",
                  {sub_}));
  if (r.rows() == 0)
    return Status::Precondition(
        fmt::format("subscription \"{}\" is not initialised on the subscriber; run `lorry init` first", sub_));
  SubscriptionRow s;
  s.name = r.Get(0, 0);
  s.consistent_lsn = LsnOrNull(r, 0, 1);
  s.confirmed_lsn = LsnOrNull(r, 0, 2);
  s.last_commit_lsn = LsnOrNull(r, 0, 3);
  s.last_commit_time = r.Get(0, 4);
  s.last_applied_at = r.Get(0, 5);
  s.xacts_applied = r.GetInt(0, 6);
  s.changes_applied = r.GetInt(0, 7);
  s.proto_version = static_cast<int>(r.GetInt(0, 8));
  s.heartbeat_at = r.Get(0, 9);
  if (!r.IsNull(0, 10)) s.heartbeat_age_seconds = std::stod(std::string(r.Get(0, 10)));
  s.last_error = r.Get(0, 11);
  s.last_error_at = r.Get(0, 12);
  s.paused = r.GetBool(0, 13);
  return s;
}

namespace {
TableState TableFromRow(const pg::PgResult& r, int i) {
  TableState t;
  t.name = {std::string(r.Get(i, 0)), std::string(r.Get(i, 1))};
  t.state = ParseTableState(r.Get(i, 2)).value_or(TableStateKind::kError);
  t.insert_only = r.GetBool(i, 3);
  t.sync_lsn = LsnOrNull(r, i, 4);
  t.rows_copied = r.GetInt(i, 5);
  t.bytes_copied = r.GetInt(i, 6);
  if (!r.IsNull(i, 7)) t.rows_estimate = r.GetInt(i, 7);
  t.error = r.Get(i, 8);
  t.state_changed_at = r.Get(i, 9);
  if (!r.IsNull(i, 10)) t.bytes_estimate = r.GetInt(i, 10);
  if (!r.IsNull(i, 11)) t.copy_seconds = std::stod(std::string(r.Get(i, 11)));
  t.deferred_indexes = r.GetInt(i, 12);
  t.row_filter = r.Get(i, 13);
  t.column_list = r.Get(i, 14);
  t.ops = r.Get(i, 15);
  t.index_rebuild_error = r.Get(i, 16);
  return t;
}
constexpr const char* kTableColumns =
    "nspname, relname, state, insert_only, sync_lsn, rows_copied, bytes_copied, rows_estimate, "
    "coalesce(error, ''), state_changed_at::text, bytes_estimate, "
    "extract(epoch FROM coalesce(copy_finished_at, clock_timestamp()) - copy_started_at)::float8, "
    "(SELECT count(*) FROM lorry.deferred_indexes d WHERE d.subscription = t.subscription "
    " AND d.nspname = t.nspname AND d.relname = t.relname), "
    "coalesce(row_filter, ''), coalesce(column_list, ''), coalesce(ops, ''), "
    "coalesce((SELECT 'index ' || quote_ident(d.index_name) || ': ' || d.last_error || ' (at ' || d.failed_at || ')' "
    "  FROM lorry.deferred_indexes d WHERE d.subscription = t.subscription AND d.nspname = t.nspname "
    "  AND d.relname = t.relname AND d.last_error IS NOT NULL ORDER BY d.failed_at DESC LIMIT 1), '')";
}  // namespace

Result<std::vector<TableState>> StateStore::ListTables() {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn_->ExecParams(fmt::format("SELECT {} FROM lorry.tables t WHERE subscription = $1 "
                                            "ORDER BY nspname, relname",
                                            kTableColumns),
                                {sub_}));
  std::vector<TableState> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(TableFromRow(r, i));
  return out;
}

Result<std::optional<TableState>> StateStore::GetTable(const pg::QualifiedName& name) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn_->ExecParams(fmt::format("SELECT {} FROM lorry.tables t WHERE subscription = $1 "
                                            "AND nspname = $2 AND relname = $3",
                                            kTableColumns),
                                {sub_, name.schema, name.name}));
  if (r.rows() == 0) return std::optional<TableState>();
  return std::optional<TableState>(TableFromRow(r, 0));
}

Status StateStore::AddTable(const pg::QualifiedName& name, bool insert_only, std::optional<int64_t> rows_estimate,
                            bool truncate_before_copy) {
  std::optional<std::string> est;
  if (rows_estimate) est = std::to_string(*rows_estimate);
  return conn_
      ->ExecParams("INSERT INTO lorry.tables (subscription, nspname, relname, insert_only, rows_estimate, "
                   "truncate_before_copy) VALUES ($1, $2, $3, $4, $5, $6) "
                   "ON CONFLICT (subscription, nspname, relname) DO NOTHING",
                   {sub_, name.schema, name.name, insert_only ? "true" : "false", est,
                    truncate_before_copy ? "true" : "false"})
      .status();
}

Status StateStore::AllowTruncate(const pg::QualifiedName& name) {
  // A table refused for holding rows is copied again, emptied first.
  return conn_
      ->ExecParams("UPDATE lorry.tables SET truncate_before_copy = true, "
                   "state = CASE WHEN state = 'error' THEN 'pending' ELSE state END, "
                   "error = CASE WHEN state = 'error' THEN NULL ELSE error END "
                   "WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                   {sub_, name.schema, name.name})
      .status();
}

Status StateStore::RemoveTable(const pg::QualifiedName& name) {
  return conn_
      ->ExecParams("DELETE FROM lorry.tables WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                   {sub_, name.schema, name.name})
      .status();
}

Status StateStore::RemoveTableAt(const pg::QualifiedName& name, Lsn remove_lsn) {
  return conn_
      ->ExecParams("WITH gone AS (DELETE FROM lorry.tables WHERE subscription = $1 AND nspname = $2 AND "
                   "relname = $3 RETURNING state, sync_lsn) "
                   "INSERT INTO lorry.removed_tables (subscription, nspname, relname, apply_from, remove_lsn) "
                   "SELECT $1, $2, $3, CASE WHEN state = 'catching_up' THEN sync_lsn END, $4::pg_lsn FROM gone "
                   "WHERE state IN ('ready', 'catching_up') "
                   "ON CONFLICT (subscription, nspname, relname) DO UPDATE SET apply_from = excluded.apply_from, "
                   "remove_lsn = excluded.remove_lsn, removed_at = now()",
                   {sub_, name.schema, name.name, remove_lsn.ToString()})
      .status();
}

Result<std::vector<RemovedTable>> StateStore::ListRemovals() {
  LORRY_ASSIGN_OR_RETURN(auto r, conn_->ExecParams("SELECT nspname, relname, apply_from, remove_lsn FROM "
                                                   "lorry.removed_tables WHERE subscription = $1",
                                                   {sub_}));
  std::vector<RemovedTable> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({{std::string(r.Get(i, 0)), std::string(r.Get(i, 1))}, LsnOrNull(r, i, 2),
                   LsnOrNull(r, i, 3).value_or(Lsn())});
  return out;
}

Status StateStore::ForgetRemoval(const pg::QualifiedName& name) {
  return conn_
      ->ExecParams("DELETE FROM lorry.removed_tables WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                   {sub_, name.schema, name.name})
      .status();
}

Result<bool> StateStore::MarkForResync(const pg::QualifiedName& name, bool even_copying) {
  LORRY_ASSIGN_OR_RETURN(
      auto r, conn_->ExecParams("UPDATE lorry.tables SET state = 'pending', truncate_before_copy = true, error = NULL, "
                                "sync_lsn = NULL, copy_finished_at = NULL, state_changed_at = now() "
                                "WHERE subscription = $1 AND nspname = $2 AND relname = $3 "
                                "AND (state <> 'copying' OR $4::bool)",
                                {sub_, name.schema, name.name, even_copying ? "true" : "false"}));
  return r.AffectedRows() == 1;
}

Status StateStore::SetState(const pg::QualifiedName& name, TableStateKind state, std::optional<Lsn> sync_lsn,
                            const std::string& error) {
  std::optional<std::string> err;
  if (!error.empty()) err = error;
  return conn_
      ->ExecParams("UPDATE lorry.tables SET state = $4, sync_lsn = coalesce($5::pg_lsn, sync_lsn), error = $6, "
                   "state_changed_at = now() WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                   {sub_, name.schema, name.name, TableStateName(state), LsnParam(sync_lsn), err})
      .status();
}

Status StateStore::SetCopyProgress(const pg::QualifiedName& name, int64_t rows, int64_t bytes) {
  return conn_
      ->ExecParams("UPDATE lorry.tables SET rows_copied = $4, bytes_copied = $5 "
                   "WHERE subscription = $1 AND nspname = $2 AND relname = $3",
                   {sub_, name.schema, name.name, std::to_string(rows), std::to_string(bytes)})
      .status();
}

Status StateStore::SetConsistentPoint(Lsn lsn, int proto_version) {
  return conn_
      ->ExecParams("UPDATE lorry.subscriptions SET consistent_lsn = $2, proto_version = $3 WHERE name = $1",
                   {sub_, lsn.ToString(), std::to_string(proto_version)})
      .status();
}

Status StateStore::SetPaused(bool paused) {
  return conn_->ExecParams("UPDATE lorry.subscriptions SET paused = $2 WHERE name = $1",
                           {sub_, paused ? "true" : "false"})
      .status();
}

Status StateStore::Heartbeat(const Progress& p, bool running) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::optional<std::string> commit_time;
  if (p.last_commit_time_pg_us != 0)
    commit_time = fmt::format("{}", static_cast<double>(p.last_commit_time_pg_us) / 1e6);
  return conn_
      ->ExecParams(
          "UPDATE lorry.subscriptions SET "
          "confirmed_lsn = greatest(confirmed_lsn, $2::pg_lsn), "
          "last_commit_lsn = coalesce($3::pg_lsn, last_commit_lsn), "
          "last_commit_time = coalesce(timestamptz '2000-01-01 00:00:00+00' + make_interval(secs => $4::float8), "
          "last_commit_time), "
          "last_applied_at = CASE WHEN $3::pg_lsn IS DISTINCT FROM last_commit_lsn THEN now() "
          "ELSE last_applied_at END, "
          "xacts_applied = $5::bigint, changes_applied = $6::bigint, "
          "run_host = CASE WHEN $7::bool THEN $8::text END, run_pid = CASE WHEN $7::bool THEN $9::int END, "
          "heartbeat_at = CASE WHEN $7::bool THEN now() END "
          "WHERE name = $1",
          {sub_, LsnParam(p.confirmed_lsn), LsnParam(p.last_commit_lsn), commit_time,
           std::to_string(p.xacts_applied), std::to_string(p.changes_applied), running ? "true" : "false",
           std::string(host), std::to_string(getpid())})
      .status();
}

Status StateStore::RecordError(const std::string& error) {
  std::optional<std::string> e;
  if (!error.empty()) e = error;
  return conn_
      ->ExecParams("UPDATE lorry.subscriptions SET last_error = $2, "
                   "last_error_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END WHERE name = $1",
                   {sub_, e})
      .status();
}

}  // namespace lorry
