#!/usr/bin/env bash
# bench/initial_copy.sh — how fast is lorry's initial copy, next to its peers?
#
# Builds two local PostgreSQL 15 servers (a provider and a subscriber, same
# settings, loopback TCP only, under a temp dir that is removed at exit), loads
# a dataset on the provider and then, in ONE run, times each method several
# times, interleaved (round 1: every method, round 2: every method, ...; the
# order rotates from round to round so no method always goes first):
#
#   lorry        build-bench/lorry: init; add (keyless tables --insert-only);
#                time = `run --jobs J` start .. `lorry wait` returned AND every
#                index of the provider is valid on the subscriber (deferred
#                index rebuilds may outlast `wait`: reported); then stop run
#                (SIGTERM), `lorry drop`.
#   native       CREATE PUBLICATION FOR ALL TABLES; CREATE SUBSCRIPTION
#                WITH (copy_data = true), max_sync_workers_per_subscription = J;
#                time = CREATE SUBSCRIPTION .. every pg_subscription_rel row 'r'
#                (wal_retrieve_retry_interval = 100ms: PG 15's launcher would
#                otherwise wait up to 5 s before starting the workers).
#   pgcopydb *   pgcopydb clone --table-jobs J --index-jobs J (Debian 0.10, its
#                defaults otherwise: no same-table split, VACUUM ANALYZE after).
#   dump_restore *  pg_dump -Fd -j J -Z0 to a temp dir, then pg_restore -j J;
#                both phases timed together (-Z0: no gzip, which on 2 cores
#                would only slow it down; see --dump-compress).
#   hw_proxy     the hardware-limit proxy: the rows are staged beforehand in
#                local files (COPY TO; tables over --split-mb split by ctid
#                into J files); timed: COPY FROM into unindexed tables with J
#                parallel psql sessions, then the indexes and constraints with
#                J parallel sessions (work dealt biggest first).
#
# Every run starts from a freshly created, EMPTY subscriber database. lorry and
# native get the provider's schema (`pg_dump --schema-only`, indexes included,
# as a user would have it) restored before the clock starts; hw_proxy gets
# the pre-data section only (tables, no indexes); the methods marked * get no
# schema at all, they create it themselves (and their time includes that).
# After each run the result is checked cheaply: the number of tables, of valid
# indexes, the row count of the biggest table and the total row count must
# equal the provider's. Servers are CHECKPOINTed before each timed run.
#
# Datasets (--dataset, default all):
#   pgbench  pgbench -i -s SCALE (default 50: pgbench_accounts ~640 MB + PK)
#   many     TABLES small tables (default 250 x 5000 rows, PK + secondary
#            index) and wide_docs (20000 rows x 8 kB random text, TOASTed)
#
# Usage: bench/initial_copy.sh [options]
#   --dataset pgbench|many|all  (default all)
#   --runs N          timed runs per method and dataset (default 3)
#   --runs-many N     override --runs for the many dataset
#   --jobs J          parallelism for every method (default 4)
#   --methods LIST    comma list from lorry,native,pgcopydb,dump_restore,hw_proxy
#                     (default all; ratios need lorry)
#   --scale S         pgbench scale (default 50)
#   --tables N        small tables in "many" (default 250)
#   --rows N          rows per small table (default 5000)
#   --wide-rows N     rows of wide_docs (default 20000)
#   --wide-kb N       kB of text per wide row (default 8)
#   --split-mb N      hw_proxy splits tables bigger than this into J files (default 64)
#   --dump-compress N pg_dump -Z level (default 0)
#   --pgcopydb-args "ARGS"  extra arguments for pgcopydb clone (default none)
#   --timeout SEC     give up on one timed run after SEC seconds (default 1800)
#   --build           (re)build $LORRY_BIN's build dir first (Release)
#   --record          append the results to bench/RESULTS.md (otherwise the
#                     script writes nothing inside the repository)
#   --keep            keep the temp dir (server logs, tool logs) at exit
#
# Environment: LORRY_BIN (default /work/main/build-bench/lorry, built with
# cmake -DCMAKE_BUILD_TYPE=Release if missing), PG_BINDIR (default
# /usr/lib/postgresql/15/bin), BENCH_TMPDIR (parent of the temp dir, /tmp).
#
# Installs what it needs with apt-get (postgresql-15, postgresql-client-15,
# pgcopydb), idempotently; uses sudo when not root. As root the servers run as
# the `postgres` user. The output is one table per dataset: median, min and max
# seconds per method and lorry's ratio to each peer, peer_median / lorry_median
# (> 1 means lorry is faster), and "paired": the median over rounds of
# peer_time / lorry_time within the same round (steadier under drifting load).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
ORIG_CMDLINE="bench/initial_copy.sh${*:+ $*}"

DATASET=all RUNS=3 RUNS_MANY="" JOBS=4 METHODS="lorry,native,pgcopydb,dump_restore,hw_proxy"
SCALE=50 TABLES=250 ROWS=5000 WIDE_ROWS=20000 WIDE_KB=8 SPLIT_MB=64 DUMP_Z=0
PGCOPYDB_ARGS="" TIMEOUT=1800 BUILD=0 RECORD=0 KEEP=0
LORRY_BIN=${LORRY_BIN:-$REPO/build-bench/lorry}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

usage() { sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' | sed '$d'; }
die() { echo "initial_copy: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dataset) DATASET=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --runs-many) RUNS_MANY=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --tables) TABLES=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --wide-rows) WIDE_ROWS=$2; shift 2 ;;
    --wide-kb) WIDE_KB=$2; shift 2 ;;
    --split-mb) SPLIT_MB=$2; shift 2 ;;
    --dump-compress) DUMP_Z=$2; shift 2 ;;
    --pgcopydb-args) PGCOPYDB_ARGS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --build) BUILD=1; shift ;;
    --record) RECORD=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
case "$DATASET" in pgbench) DATASETS=(pgbench) ;; many) DATASETS=(many) ;; all) DATASETS=(pgbench many) ;;
  *) die "--dataset must be pgbench, many or all" ;; esac
for n in RUNS JOBS SCALE TABLES ROWS WIDE_ROWS WIDE_KB SPLIT_MB DUMP_Z TIMEOUT; do
  f=${n,,}; f=${f//_/-}; [ "$n" != DUMP_Z ] || f=dump-compress
  [[ ${!n} =~ ^[0-9]+$ ]] || die "--$f needs a number, got '${!n}'"
done
[ -z "$RUNS_MANY" ] || [[ $RUNS_MANY =~ ^[0-9]+$ ]] || die "--runs-many needs a number"
[ "$RUNS" -ge 1 ] && [ "$JOBS" -ge 1 ] || die "--runs and --jobs must be >= 1"
IFS=, read -r -a METHOD_LIST <<<"$METHODS"
for m in "${METHOD_LIST[@]}"; do
  case "$m" in lorry|native|pgcopydb|dump_restore|hw_proxy) ;; *) die "unknown method '$m'" ;; esac
done

# ---------------------------------------------------------------- installing
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
for p in postgresql-15 postgresql-client-15 pgcopydb cmake; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
export PATH="$PG_BINDIR:$PATH"
if [ "$BUILD" = 1 ] || [ ! -x "$LORRY_BIN" ]; then
  if [[ " ${METHOD_LIST[*]} " == *" lorry "* ]]; then
    bdir=$(dirname "$LORRY_BIN")
    log "building $LORRY_BIN (Release) in $bdir"
    "$REPO/scripts/bootstrap"
    blog=$(mktemp "${BENCH_TMPDIR:-/tmp}/lorry-bench-build.XXXXXX.log")
    if ! { cmake -S "$REPO" -B "$bdir" -DCMAKE_BUILD_TYPE=Release &&
           cmake --build "$bdir" -j"$(nproc)" --target lorry; } >"$blog" 2>&1; then
      tail -30 "$blog" >&2; rm -f "$blog"; die "building lorry failed"
    fi
    rm -f "$blog"
  fi
fi
LORRY_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- src CMakeLists.txt 2>/dev/null)" ]; then
  LORRY_COMMIT="$LORRY_COMMIT+uncommitted changes in src/"
fi
if [[ " ${METHOD_LIST[*]} " == *" lorry "* ]] && [ -x "$LORRY_BIN" ] &&
   [ -n "$(find "$REPO/src" "$REPO/CMakeLists.txt" -newer "$LORRY_BIN" -print -quit 2>/dev/null)" ]; then
  log "warning: $LORRY_BIN is older than the sources (use --build); the commit shown may not be what is measured"
  LORRY_COMMIT="$LORRY_COMMIT (binary older than the tree)"
fi

# ------------------------------------------------------------ temp dir, trap
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"
bench_temp_dir bench

# ------------------------------------------------------------------ servers
SERVER_CONF="max_logical_replication_workers = $((JOBS + 4))
max_sync_workers_per_subscription = $JOBS
max_worker_processes = $((JOBS + 16))"
start_both_servers
puri() { echo "postgres://postgres@127.0.0.1:$PPORT/$1"; }
suri() { echo "postgres://postgres@127.0.0.1:$SPORT/$1"; }

USER_RELS="c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema','lorry') AND n.nspname !~ '^pg_toast'"

# --------------------------------------------------------------- datasets
load_pgbench() {
  pp postgres -c "CREATE DATABASE bench_pgbench"
  pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PPORT" -U postgres bench_pgbench >"$TMP/logs/pgbench-init.log" 2>&1 ||
    { tail "$TMP/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
}

load_many() {
  pp postgres -c "CREATE DATABASE bench_many"
  local wide_chunks=$(( (WIDE_KB * 1024 + 31) / 32 ))
  pp bench_many <<SQL
DO \$\$
BEGIN
  FOR i IN 1..$TABLES LOOP
    EXECUTE format('CREATE TABLE public.%I (id bigint PRIMARY KEY, k integer NOT NULL, label text NOT NULL,
                      amount numeric(12,2), created timestamptz NOT NULL DEFAULT now())', 'small_' || lpad(i::text, 4, '0'));
    EXECUTE format('INSERT INTO public.%I SELECT g, (random() * 100000)::int, md5(g::text || %L),
                      round((random() * 10000)::numeric, 2), now() - g * interval ''1 second''
                    FROM generate_series(1, $ROWS) g', 'small_' || lpad(i::text, 4, '0'), i);
    EXECUTE format('CREATE INDEX %I ON public.%I (k)', 'small_' || lpad(i::text, 4, '0') || '_k_idx', 'small_' || lpad(i::text, 4, '0'));
  END LOOP;
END
\$\$;
CREATE TABLE public.wide_docs (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL);
INSERT INTO public.wide_docs
SELECT g, 'document ' || g,
       left((SELECT string_agg(md5(random()::text || g || s), '') FROM generate_series(1, $wide_chunks) s), $WIDE_KB * 1024)
FROM generate_series(1, $WIDE_ROWS) g;
VACUUM ANALYZE;
SQL
}

# Facts about a database, one line: "tables=.. indexes=.. biggest=T rows(T)=.. rows=.."
# (valid indexes only; lorry's own schema excluded). $2: the biggest table.
signature() { # side db biggest
  local fn=pp; [ "$1" = sub ] && fn=ps_
  $fn "$2" -At -F ' ' <<SQL
SELECT 'tables=' || (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $USER_RELS),
       'indexes=' || (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $USER_RELS AND i.indisvalid),
       'rows($3)=' || (SELECT count(*) FROM $3),
       'rows=' || (SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass),
                                                                             false, true, '')))[1]::text::bigint), 0)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $USER_RELS AND c.relkind = 'r');
SQL
}

# Prepares what the methods need from a dataset: schema files, table lists,
# the staged files and work lists of hw_proxy.
prepare_dataset() { # ds
  local ds=$1 db=bench_$1 d=$TMP/$1
  mkdir -p "$d"; chmod 777 "$d"
  pg_dump --schema-only --no-publications --no-subscriptions -h 127.0.0.1 -p "$PPORT" -U postgres "$db" >"$d/schema_full.sql"
  pg_dump --schema-only --section=pre-data --no-publications --no-subscriptions -h 127.0.0.1 -p "$PPORT" -U postgres "$db" >"$d/schema_pre.sql"
  # tables: "qualified_name<TAB>has_identity<TAB>bytes"
  pp "$db" -At -F $'\t' >"$d/tables.tsv" <<SQL
SELECT c.oid::regclass::text,
       c.relreplident = 'f'
         OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
         OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)),
       pg_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE $USER_RELS AND c.relkind = 'r' AND NOT c.relispartition
ORDER BY pg_total_relation_size(c.oid) DESC, 1
SQL
  BIGGEST[$ds]=$(head -1 "$d/tables.tsv" | cut -f1)
  DBSIZE[$ds]=$(pp "$db" -At -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
  NTABLES[$ds]=$(wc -l <"$d/tables.tsv")
  EXPECT[$ds]=$(signature prov "$db" "${BIGGEST[$ds]}")
  local nidx; nidx=$(sed -n 's/.*indexes=\([0-9]*\).*/\1/p' <<<"${EXPECT[$ds]}")
  cat >"$d/indexes_wait.sql" <<SQL
DO \$\$
BEGIN
  WHILE (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE $USER_RELS AND i.indisvalid) < $nidx LOOP
    PERFORM pg_sleep(0.05);
  END LOOP;
END
\$\$;
SQL
  log "$ds: ${NTABLES[$ds]} tables, ${DBSIZE[$ds]}; provider: ${EXPECT[$ds]}"
  log "$ds: biggest table $(pp "$db" -At -c "SELECT format('%s: heap %s, TOAST %s, indexes %s', '${BIGGEST[$ds]}',
      pg_size_pretty(pg_relation_size('${BIGGEST[$ds]}')),
      pg_size_pretty(coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0)),
      pg_size_pretty(pg_indexes_size('${BIGGEST[$ds]}'))) FROM pg_class WHERE oid = '${BIGGEST[$ds]}'::regclass")"

  if [[ " ${METHOD_LIST[*]} " == *" hw_proxy "* ]]; then
    # Staged files: "bytes<TAB>COPY statement" (one per file), outside the timing.
    local stage=$d/stage; mkdir -p "$stage"; [ ${#AS_PG[@]} -eq 0 ] || chown postgres: "$stage"
    # (fields separated by \x1f: the WHERE field may be empty, tabs would merge)
    pp "$db" -At -F $'\x1f' >"$d/copy_specs.txt" <<SQL
WITH t AS (
  SELECT c.oid, c.oid::regclass::text AS name, pg_relation_size(c.oid) AS bytes,
         greatest(pg_relation_size(c.oid) / current_setting('block_size')::bigint, 1) AS blocks,
         (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS cols
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE $USER_RELS AND c.relkind = 'r' AND NOT c.relispartition)
SELECT t.name, t.cols, p.part,
       CASE WHEN p.parts = 1 THEN ''
            WHEN p.part = p.parts - 1 THEN format(' WHERE ctid >= ''(%s,0)''::tid', t.blocks * p.part / p.parts)
            ELSE format(' WHERE ctid >= ''(%s,0)''::tid AND ctid < ''(%s,0)''::tid',
                        t.blocks * p.part / p.parts, t.blocks * (p.part + 1) / p.parts) END,
       t.bytes / p.parts
FROM t, LATERAL (SELECT CASE WHEN t.bytes > $SPLIT_MB::bigint * 1048576 THEN $JOBS ELSE 1 END AS parts) pp,
     LATERAL (SELECT g AS part, pp.parts FROM generate_series(0, pp.parts - 1) g) p
ORDER BY 1, 3
SQL
    : >"$d/copy_work.tsv"
    local i=0 name cols where bytes file
    while IFS=$'\x1f' read -r name cols _ where bytes; do
      file=$stage/$i.copy; i=$((i + 1))
      pp "$db" -c "COPY (SELECT $cols FROM $name$where) TO '$file'"
      printf '%s\t%s\n' "$bytes" "COPY $name ($cols) FROM '$file';" >>"$d/copy_work.tsv"
    done <"$d/copy_specs.txt"
    # Indexes and constraints built after the data: "bytes<TAB>statement";
    # foreign keys last, in one session (none in the built-in datasets).
    pp "$db" -At -F $'\t' >"$d/index_work.tsv" <<SQL
SET search_path = '';
SELECT pg_relation_size(con.conrelid), format('ALTER TABLE %s ADD CONSTRAINT %I %s;', con.conrelid::regclass, con.conname, pg_get_constraintdef(con.oid))
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE $USER_RELS AND con.contype IN ('p', 'u', 'x')
UNION ALL
SELECT pg_relation_size(i.indrelid), pg_get_indexdef(i.indexrelid) || ';'
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE $USER_RELS AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x'))
SQL
    pp "$db" -At >"$d/fk_work.sql" <<SQL
SET search_path = '';
SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s;', con.conrelid::regclass, con.conname, pg_get_constraintdef(con.oid))
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE $USER_RELS AND con.contype = 'f'
SQL
    # Deal the work to J sessions, biggest first, each to the least loaded.
    deal "$d/copy_work.tsv" "$d/copy_session"
    deal "$d/index_work.tsv" "$d/index_session"
    log "$ds: hw_proxy staged $(wc -l <"$d/copy_work.tsv") files ($(du -sh "$stage" | cut -f1)), $(wc -l <"$d/index_work.tsv") index/constraint builds"
  fi
}

deal() { # work.tsv out_prefix: writes out_prefix.0 .. .J-1 (SQL)
  local k
  for ((k = 0; k < JOBS; k++)); do : >"$2.$k"; done
  sort -t $'\t' -k1,1nr "$1" | awk -F '\t' -v jobs="$JOBS" -v out="$2" '
    { best = 0; for (k = 1; k < jobs; k++) if (load[k] < load[best]) best = k
      load[best] += $1 + 8192; print $2 >> (out "." best) }'
}

# ------------------------------------------------------------- one timed run
# Each method function sets SECS to the elapsed seconds and returns non-zero
# on failure, with the reason on stderr. They run in this shell (not in a
# subshell), so that the exit trap knows every background process.
reset_target() { # db schema_file|"" : fresh empty subscriber db, optional schema, checkpoints
  ps_ postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  [ -z "$2" ] || ps_ "$1" -f "$2" >/dev/null
  ps_ postgres -c CHECKPOINT; pp postgres -c CHECKPOINT
}

elapsed() { SECS=$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'); }
LIMIT=(timeout --foreground --signal=TERM)   # + $TIMEOUT: one timed step at most that long


m_lorry() { # ds target_db log
  local db=bench_$1 t=$2 log=$3 d=$TMP/$1 rc=0
  local L=("$LORRY_BIN" --provider "$(pconn "$db")" --subscriber "$(sconn "$t")" --name bench)
  "${L[@]}" init >>"$log" 2>&1 || { echo "lorry init failed (see $log)" >&2; return 1; }
  local keyed=() keyless=() name ident bytes
  while IFS=$'\t' read -r name ident bytes; do
    if [ "$ident" = t ]; then keyed+=("$name"); else keyless+=("$name"); fi
  done <"$d/tables.tsv"
  if [ ${#keyless[@]} -gt 0 ]; then
    "${L[@]}" add --insert-only "${keyless[@]}" >>"$log" 2>&1 || { echo "lorry add --insert-only failed (see $log)" >&2; return 1; }
  fi
  if [ ${#keyed[@]} -gt 0 ]; then
    "${L[@]}" add "${keyed[@]}" >>"$log" 2>&1 || { echo "lorry add failed (see $log)" >&2; return 1; }
  fi
  local t0=$EPOCHREALTIME
  "${L[@]}" run --jobs "$JOBS" >>"$log.run" 2>&1 &
  local runpid=$!
  "${L[@]}" wait --timeout "$TIMEOUT" >>"$log" 2>&1 &
  local waitpid=$!
  BG_PIDS+=("$runpid" "$waitpid")
  local first=""
  wait -n -p first "$runpid" "$waitpid" || rc=$?
  local t1=$EPOCHREALTIME
  if [ "$first" = "$runpid" ]; then
    kill -TERM "$waitpid" 2>/dev/null || true; wait "$waitpid" 2>/dev/null || true
    forget "$runpid" "$waitpid"
    echo "lorry run exited ($rc) before wait returned; tail of $log.run:" >&2; tail -5 "$log.run" >&2
    "${L[@]}" drop >>"$log" 2>&1 || true
    return 1
  fi
  forget "$waitpid"
  # A replica is usable once its indexes are there too. Should `wait` return
  # while indexes are still being rebuilt (deferred), the time runs on until
  # every index of the provider is valid on the subscriber; stopping `run`
  # earlier would interrupt the rebuild.
  local t2=$t1 lagpid
  if [ "$rc" = 0 ]; then
    "${LIMIT[@]}" "$TIMEOUT" "${PSQL_S[@]}" -d "$t" >>"$log" 2>&1 <"$TMP/$1/indexes_wait.sql" &
    lagpid=$!
    BG_PIDS+=("$lagpid")
    first=""
    wait -n -p first "$runpid" "$lagpid" || rc=$?
    t2=$EPOCHREALTIME
    if [ "$first" = "$runpid" ]; then
      kill -TERM "$lagpid" 2>/dev/null || true; wait "$lagpid" 2>/dev/null || true
      forget "$runpid" "$lagpid"
      echo "lorry run exited ($rc) while the indexes were not all there yet; tail of $log.run:" >&2; tail -5 "$log.run" >&2
      "${L[@]}" drop >>"$log" 2>&1 || true
      return 1
    fi
    forget "$lagpid"
  fi
  kill -TERM "$runpid" 2>/dev/null || true
  wait "$runpid" 2>/dev/null || true
  forget "$runpid"
  "${L[@]}" drop >>"$log" 2>&1 || { echo "lorry drop failed (see $log)" >&2; return 1; }
  [ "$rc" = 0 ] || { echo "lorry wait (or the wait for its indexes) failed ($rc); tail of $log:" >&2; tail -5 "$log" >&2; return 1; }
  elapsed "$t0" "$t2"
  INDEX_LAG=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
}

m_native() {
  local db=bench_$1 t=$2 log=$3 rc=0 sql=$TMP/$1/native.sql
  pp "$db" -c "DROP PUBLICATION IF EXISTS bench_pub" -c "CREATE PUBLICATION bench_pub FOR ALL TABLES" >>"$log" 2>&1
  cat >"$sql" <<SQL
CREATE SUBSCRIPTION bench_sub CONNECTION '$(pconn "$db")' PUBLICATION bench_pub WITH (copy_data = true);
DO \$\$
BEGIN
  LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM pg_subscription_rel)
         AND NOT EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r');
    PERFORM pg_sleep(0.05);
  END LOOP;
END
\$\$;
SQL
  local t0=$EPOCHREALTIME
  "${LIMIT[@]}" "$TIMEOUT" "${PSQL_S[@]}" -d "$t" -f "$sql" >>"$log" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  ps_ "$t" -c "DROP SUBSCRIPTION IF EXISTS bench_sub" >>"$log" 2>&1 || rc=$((rc ? rc : 1))
  pp "$db" -c "DROP PUBLICATION IF EXISTS bench_pub" >>"$log" 2>&1 || true
  [ "$rc" = 0 ] || { echo "native replication failed ($rc); see $log and $TMP/logs/server-subscriber.log" >&2; return 1; }
  elapsed "$t0" "$t1"
}

m_pgcopydb() {
  local db=bench_$1 t=$2 log=$3 rc=0 dir=$TMP/pgcopydb.work extra=()
  rm -rf "$dir"
  [ -z "$PGCOPYDB_ARGS" ] || read -r -a extra <<<"$PGCOPYDB_ARGS"
  local t0=$EPOCHREALTIME
  "${LIMIT[@]}" "$TIMEOUT" pgcopydb clone --source "$(puri "$db")" --target "$(suri "$t")" --dir "$dir" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" "${extra[@]}" >>"$log" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  rm -rf "$dir"
  [ "$rc" = 0 ] || { echo "pgcopydb failed ($rc); tail of $log:" >&2; tail -5 "$log" >&2; return 1; }
  elapsed "$t0" "$t1"
}

m_dump_restore() {
  local db=bench_$1 t=$2 log=$3 rc=0 dir=$TMP/dump.work
  rm -rf "$dir"
  local t0=$EPOCHREALTIME
  "${LIMIT[@]}" "$TIMEOUT" pg_dump -Fd -j "$JOBS" -Z "$DUMP_Z" --no-publications --no-subscriptions -f "$dir" \
    -h 127.0.0.1 -p "$PPORT" -U postgres "$db" >>"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    "${LIMIT[@]}" "$TIMEOUT" pg_restore -j "$JOBS" --exit-on-error -d "$(sconn "$t")" "$dir" >>"$log" 2>&1 || rc=$?
  fi
  local t1=$EPOCHREALTIME
  rm -rf "$dir"
  [ "$rc" = 0 ] || { echo "pg_dump/pg_restore failed ($rc); tail of $log:" >&2; tail -5 "$log" >&2; return 1; }
  elapsed "$t0" "$t1"
}

parallel_sessions() { # target_db prefix log : one psql per non-empty prefix.K, all at once
  local t=$1 prefix=$2 log=$3 pids=() k p rc=0
  for ((k = 0; k < JOBS; k++)); do
    [ -s "$prefix.$k" ] || continue
    "${PSQL_S[@]}" -d "$t" -f "$prefix.$k" >>"$log.$k" 2>&1 &
    pids+=($!)
  done
  BG_PIDS+=("${pids[@]}")
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  forget "${pids[@]}"
  return $rc
}

m_hw_proxy() {
  local t=$2 log=$3 d=$TMP/$1 rc=0
  local t0=$EPOCHREALTIME
  parallel_sessions "$t" "$d/copy_session" "$log.copy" || rc=$?
  local tc=$EPOCHREALTIME
  [ "$rc" != 0 ] || parallel_sessions "$t" "$d/index_session" "$log.index" || rc=$?
  [ "$rc" != 0 ] || [ ! -s "$d/fk_work.sql" ] || ps_ "$t" -f "$d/fk_work.sql" >>"$log" 2>&1 || rc=$?
  local t1=$EPOCHREALTIME
  [ "$rc" = 0 ] || { echo "hw_proxy failed ($rc); see $log.*" >&2; return 1; }
  PHASES="COPY $(awk -v a="$t0" -v b="$tc" 'BEGIN { printf "%.2f", b - a }') s, then indexes $(awk -v a="$tc" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
  elapsed "$t0" "$t1"
}

# ---------------------------------------------------------------- reporting
declare -A BIGGEST DBSIZE NTABLES EXPECT TIMES FAILS LAGS ROUND
median_min_max() { # values... -> "median min max"
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f %.2f %.2f", m, v[1], v[NR] }'
}

REPORT_TXT=""   # plain text tables
REPORT_MD=""    # markdown tables
report_dataset() { # ds runs
  local ds=$1 runs=$2 m lorry_med="" desc
  case "$ds" in
    pgbench) desc="pgbench -i -s $SCALE" ;;
    many) desc="$TABLES tables x $ROWS rows (PK + index) + wide_docs $WIDE_ROWS rows x ${WIDE_KB} kB text" ;;
  esac
  local head="dataset $ds: $desc; ${NTABLES[$ds]} tables, provider db ${DBSIZE[$ds]}; --jobs $JOBS, $runs runs each"
  local txt md_rows=""
  txt=$(printf '%s\n%-14s %8s %8s %8s   %-10s %-8s\n' "$head" "method" "median" "min" "max" "peer/lorry" "paired")
  if [ -n "${TIMES[$ds.lorry]:-}" ]; then
    # shellcheck disable=SC2086
    lorry_med=$(median_min_max ${TIMES[$ds.lorry]} | cut -d' ' -f1)
  fi
  for m in "${METHOD_LIST[@]}"; do
    local label=$m ratio="-" paired="-" med mn mx r runs_s="" pr=""
    for ((r = 0; r < runs; r++)); do
      runs_s+="${runs_s:+ }${ROUND[$ds.$m.$r]:-x}"
      if [ "$m" != lorry ] && [ -n "${ROUND[$ds.$m.$r]:-}" ] && [ -n "${ROUND[$ds.lorry.$r]:-}" ]; then
        pr+=" $(awk -v p="${ROUND[$ds.$m.$r]}" -v l="${ROUND[$ds.lorry.$r]}" 'BEGIN { printf "%.4f", p / l }')"
      fi
    done
    # shellcheck disable=SC2086
    [ -z "$pr" ] || paired=$(median_min_max $pr | cut -d' ' -f1)
    case "$m" in pgcopydb|dump_restore) label="$m *" ;; esac
    if [ -z "${TIMES[$ds.$m]:-}" ]; then
      txt+=$(printf '\n%-14s %8s %8s %8s   %s' "$label" "failed" "" "" "${FAILS[$ds.$m]:-}")
      md_rows+="| $label | failed | | | | | ${FAILS[$ds.$m]:-} |"$'\n'
      continue
    fi
    # shellcheck disable=SC2086
    read -r med mn mx <<<"$(median_min_max ${TIMES[$ds.$m]})"
    if [ -n "$lorry_med" ] && [ "$m" != lorry ]; then
      ratio=$(awk -v p="$med" -v l="$lorry_med" 'BEGIN { printf "%.2f", p / l }')
    fi
    local note=""; [ -z "${FAILS[$ds.$m]:-}" ] || note="(also failed: ${FAILS[$ds.$m]})"
    txt+=$(printf '\n%-14s %8s %8s %8s   %-10s %-8s   rounds: %s %s' "$label" "$med" "$mn" "$mx" "$ratio" "$paired" "$runs_s" "$note")
    md_rows+="| $label | $med | $mn | $mx | $ratio | $paired | $runs_s $note |"$'\n'
  done
  txt+=$'\n'"* starts from an empty database without schema and creates it (its time includes that); lorry and native start with the schema and indexes in place, hw_proxy with the tables only."
  txt+=$'\n'"pgcopydb 0.10 also runs VACUUM ANALYZE on every table after its copy (0.10 has no option to skip it); dump_restore runs pg_dump -Z$DUMP_Z."
  if [ -n "${LAGS[$ds]:-}" ]; then
    local lagnote nlag
    nlag=$(wc -w <<<"${LAGS[$ds]}")
    lagnote="lorry: \`lorry wait\` returned before every index was valid on the subscriber in $nlag of its $(wc -w <<<"${TIMES[$ds.lorry]:-}") good runs (by ${LAGS[$ds]// /, } s); lorry's times run until the last index was valid."
    txt+=$'\n'"$lagnote"
    md_rows+=$'\n'"$lagnote"$'\n'
  fi
  REPORT_TXT+="$txt"$'\n\n'
  REPORT_MD+="#### $ds: $desc"$'\n\n'"${NTABLES[$ds]} tables, provider database ${DBSIZE[$ds]}; \`--jobs $JOBS\`, $runs runs per method."$'\n\n'
  REPORT_MD+="| method | median s | min s | max s | peer/lorry | paired | rounds (s) |"$'\n'"|---|---:|---:|---:|---:|---:|---|"$'\n'"$md_rows"$'\n'
  REPORT_MD+="\\* no schema on the subscriber beforehand: the tool creates it, and its time includes that. pgcopydb 0.10 also runs VACUUM ANALYZE on every table (no option to skip it in 0.10); dump_restore uses \`pg_dump -Z$DUMP_Z\`."$'\n\n'
}

# -------------------------------------------------------------------- main
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "lorry $LORRY_BIN (commit $LORRY_COMMIT), pgcopydb $(pgcopydb --version 2>/dev/null | sed -n 's/^pgcopydb version //p' | head -1), $("$PG_BINDIR/postgres" --version)"
for ds in "${DATASETS[@]}"; do
  runs=$RUNS; [ "$ds" != many ] || [ -z "$RUNS_MANY" ] || runs=$RUNS_MANY
  log "loading dataset $ds"
  "load_$ds"
  prepare_dataset "$ds"
  target=sub_$ds
  n=${#METHOD_LIST[@]}
  for ((r = 0; r < runs; r++)); do
    for ((i = 0; i < n; i++)); do
      m=${METHOD_LIST[$(((i + r) % n))]}
      case "$m" in
        lorry|native) schema=$TMP/$ds/schema_full.sql ;;
        hw_proxy) schema=$TMP/$ds/schema_pre.sql ;;
        *) schema="" ;;
      esac
      reset_target "$target" "$schema"
      logf=$TMP/logs/$ds.$m.$r.log
      SECS="" INDEX_LAG=0 PHASES=""
      if "m_$m" "$ds" "$target" "$logf"; then
        secs=$SECS
        got=$(signature sub "$target" "${BIGGEST[$ds]}")
        if [ "$got" = "${EXPECT[$ds]}" ]; then
          TIMES[$ds.$m]="${TIMES[$ds.$m]:+${TIMES[$ds.$m]} }$secs"
          ROUND[$ds.$m.$r]=$secs
          lag=""
          if [ "$m" = lorry ] && awk -v l="$INDEX_LAG" 'BEGIN { exit !(l >= 0.10) }'; then
            LAGS[$ds]="${LAGS[$ds]:+${LAGS[$ds]} }$INDEX_LAG"
            lag=", of which ${INDEX_LAG} s after \`lorry wait\` returned, until the last index was valid"
          fi
          log "$ds run $((r + 1))/$runs $m: $secs s$lag${PHASES:+ ($PHASES)} (ok: $got)"
        else
          FAILS[$ds.$m]+="run $((r + 1)): wrong result ($got) "
          log "$ds run $((r + 1))/$runs $m: $secs s but WRONG RESULT: $got, expected ${EXPECT[$ds]}"
        fi
      else
        FAILS[$ds.$m]+="run $((r + 1)) failed "
        log "$ds run $((r + 1))/$runs $m: FAILED (logs in $TMP/logs, use --keep to keep them)"
      fi
    done
  done
  ps_ postgres -c "DROP DATABASE IF EXISTS $target WITH (FORCE)"
  pp postgres -c "DROP DATABASE bench_$ds WITH (FORCE)"
  rm -rf "${TMP:?}/$ds/stage"
  report_dataset "$ds" "$runs"
done

echo
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
echo "lorry initial-copy benchmark, $START_DATE, lorry commit $LORRY_COMMIT, $(nproc) cores, load average $LOAD_START at start, $LOAD_END at end"
echo "peer/lorry = peer median / lorry median (> 1: lorry is faster); paired = median over rounds of peer/lorry within the round"
echo
printf '%s' "$REPORT_TXT"

if [ "$RECORD" = 1 ]; then
  RES=$REPO/bench/RESULTS.md
  if [ ! -f "$RES" ]; then
    cat >"$RES" <<'EOF'
# Initial copy benchmark results

Appended by `bench/initial_copy.sh --record` (see the script's header and the
README section "Benchmarks"). Each section is one invocation: the command, the
date, the lorry commit measured and the machine. Per dataset, one row per
method: the median, minimum and maximum of the timed runs in seconds (each run
from an empty subscriber database), and **peer/lorry** = that method's median
divided by lorry's median, so a value above 1 means lorry was faster;
**paired** = the median, over the rounds, of that method's time divided by
lorry's time in the same round (the methods run interleaved, one round after
the other, so this is less sensitive to load that drifts during the run);
**rounds** lists each round's time (`x`: failed or wrong result). Methods
marked `*` start without any schema on the subscriber and create it themselves
(their time includes that); lorry and native start with the full schema
(indexes included), `hw_proxy` with the tables only.

Methods: `lorry` (`run --jobs J` until `lorry wait` returns and every index
of the provider is valid on the subscriber: `wait` may return while deferred
indexes are still being rebuilt), `native`
(CREATE SUBSCRIPTION ... copy_data = true until every table is in state `r`),
`pgcopydb` (`clone --table-jobs J --index-jobs J`), `dump_restore`
(`pg_dump -Fd -j J -Z0` then `pg_restore -j J`), `hw_proxy` (COPY FROM
pre-staged local files into unindexed tables with J sessions, then the index
builds with J sessions: a proxy for what the hardware can do).
EOF
  fi
  {
    echo
    echo "## $START_DATE — lorry $LORRY_COMMIT"
    echo
    echo "Command: \`$ORIG_CMDLINE\`"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GB RAM; $("$PG_BINDIR/postgres" --version); pgcopydb $(pgcopydb --version 2>/dev/null | sed -n 's/^pgcopydb version //p' | head -1); load average (1, 5, 15 min) $LOAD_START at start, $LOAD_END at end."
    echo
    printf '%s' "$REPORT_MD"
  } >>"$RES"
  log "appended to $RES"
fi
