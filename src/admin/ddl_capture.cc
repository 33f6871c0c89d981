#include "admin/ddl_capture.h"

#include <fmt/format.h>

namespace lorry::admin {

namespace {

// Two functions: capture(), the event trigger's, runs as the DDL's own user
// and only reads that session's search_path (a function with its own
// search_path setting cannot see the caller's); send(), SECURITY DEFINER
// with a fixed search_path, does the rest, so the DDL's user needs no right
// to emit messages. send() only works inside an event trigger
// (pg_event_trigger_ddl_commands() refuses other callers). Any failure only
// warns: a user's DDL on the provider must never fail because of lorry (the
// subscriber then stops at the first change it cannot apply, naming the
// missing column).
constexpr const char* kInstall = R"sql(
CREATE SCHEMA IF NOT EXISTS lorry_ddl;
COMMENT ON SCHEMA lorry_ddl IS 'lorry: DDL capture for logical replication (lorry init --capture-ddl)';
GRANT USAGE ON SCHEMA lorry_ddl TO PUBLIC;
CREATE TABLE IF NOT EXISTS lorry_ddl.subscriptions (name text PRIMARY KEY);
CREATE OR REPLACE FUNCTION lorry_ddl.send(caller_search_path text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $lorry$
DECLARE
  targets text[];
  query text := current_query();
  marker text;
BEGIN
  IF current_setting('lorry.executing', true) = 'on' THEN RETURN; END IF;  -- lorry execute sends its own
  SELECT array_agg(DISTINCT s.name ORDER BY s.name) INTO targets
  FROM pg_event_trigger_ddl_commands() c
  JOIN pg_publication_rel pr
    ON c.classid = 'pg_class'::regclass
   -- The table itself, or (a partition: CREATE TABLE ... PARTITION OF) a
   -- published ancestor (pg_partition_ancestors lists none for a table
   -- that is not a partition).
   AND (pr.prrelid = coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.objid), c.objid)
        OR pr.prrelid IN (SELECT a.relid FROM pg_partition_ancestors(
             coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.objid), c.objid)) a))
  JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN lorry_ddl.subscriptions s ON p.pubname ~ ('^lorry_' || s.name || '(_insert_only|_ops_i?u?d?t?)?$');
  IF targets IS NULL OR query IS NULL THEN RETURN; END IF;
  -- Once per query string (one string may run several commands).
  marker := md5(query) || statement_timestamp()::text;
  IF current_setting('lorry.ddl_sent', true) IS NOT DISTINCT FROM marker THEN RETURN; END IF;
  PERFORM set_config('lorry.ddl_sent', marker, true);
  -- The subscriber replays it inside its apply transaction.
  IF query ~* '\mconcurrently\M' AND query ~* '^\s*(create|drop|reindex)\M' THEN
    query := regexp_replace(query, '\mconcurrently\M', '', 'gi');
  END IF;
  PERFORM pg_logical_emit_message(true, 'lorry', json_build_object(
    'lorry', 1, 'kind', 'ddl', 'for', targets, 'sql', query,
    'search_path', caller_search_path)::text);
END
$lorry$;
CREATE OR REPLACE FUNCTION lorry_ddl.capture() RETURNS event_trigger LANGUAGE plpgsql AS $lorry$
BEGIN
  PERFORM lorry_ddl.send(pg_catalog.current_setting('search_path'));
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'lorry: could not send this DDL to the subscriber (%); run it there yourself', SQLERRM;
END
$lorry$;
)sql";

}  // namespace

Status InstallDdlCapture(pg::PgConn& provider, const SubscriptionNames& names, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto trigger, provider.QueryValue("SELECT 1 FROM pg_event_trigger WHERE evtname = "
                                                           "'lorry_capture_ddl'"));
  LORRY_RETURN_IF_ERROR(provider.Exec("BEGIN").status());
  auto body = [&]() -> Status {
    LORRY_RETURN_IF_ERROR(provider.Exec(kInstall).status());
    if (!trigger)
      LORRY_RETURN_IF_ERROR(provider
                                .Exec("CREATE EVENT TRIGGER lorry_capture_ddl ON ddl_command_end "
                                      "EXECUTE FUNCTION lorry_ddl.capture()")
                                .status());
    return provider
        .ExecParams("INSERT INTO lorry_ddl.subscriptions VALUES ($1) ON CONFLICT DO NOTHING", {names.name})
        .status();
  };
  Status s = body();
  if (!s.ok()) {
    (void)provider.Exec("ROLLBACK");
    return s.WithContext("installing DDL capture on the provider");
  }
  LORRY_RETURN_IF_ERROR(provider.Exec("COMMIT").status());
  out << fmt::format("{}provider: event trigger lorry_capture_ddl (DDL on tables of subscription \"{}\" is sent "
                     "to the subscriber)",
                     trigger ? "present  " : "created  ", names.name)
      << "\n";
  return Status::Ok();
}

Status UninstallDdlCapture(pg::PgConn& provider, const SubscriptionNames& names, std::ostream& out) {
  LORRY_ASSIGN_OR_RETURN(auto table, provider.QueryValue("SELECT to_regclass('lorry_ddl.subscriptions')::text"));
  if (!table) return Status::Ok();
  LORRY_ASSIGN_OR_RETURN(auto r, provider.ExecParams("DELETE FROM lorry_ddl.subscriptions WHERE name = $1 "
                                                     "RETURNING 1",
                                                     {names.name}));
  if (r.rows() > 0) out << fmt::format("dropped DDL capture of subscription \"{}\" (provider)", names.name) << "\n";
  LORRY_ASSIGN_OR_RETURN(auto left, provider.QueryValue("SELECT count(*) FROM lorry_ddl.subscriptions"));
  if (left && *left != "0") return Status::Ok();
  LORRY_RETURN_IF_ERROR(provider.Exec("DROP EVENT TRIGGER IF EXISTS lorry_capture_ddl").status()
                            .WithContext("dropping the DDL capture event trigger (needs a superuser)"));
  LORRY_RETURN_IF_ERROR(provider.Exec("DROP SCHEMA lorry_ddl CASCADE").status());
  out << "dropped event trigger lorry_capture_ddl and schema lorry_ddl (provider)\n";
  return Status::Ok();
}

}  // namespace lorry::admin
