#!/usr/bin/env bash
# bench/apply.sh — how fast and how cheaply does lorry apply a change stream,
# next to PostgreSQL's own logical replication (CREATE SUBSCRIPTION)?
#
# Builds two local PostgreSQL 15 servers (provider and subscriber, same
# settings, loopback TCP only, under a temp dir removed at exit), loads
# `pgbench -i -s SCALE` on the provider and replicates it, synced, into two
# databases of the subscriber: sub_lorry (lorry, subscription name `bench`)
# and sub_native (CREATE SUBSCRIPTION bench_native to a FOR ALL TABLES
# publication). Then, in ONE run, for ROUNDS rounds:
#
# catch-up round (every round):
#   both paused (lorry: `lorry run` stopped with SIGTERM; native: ALTER
#   SUBSCRIPTION ... DISABLE), two extra pgoutput slots created for the decode
#   ceiling, then `pgbench -n -c C -j J -t N/C` (N transactions) on the
#   provider, then one marker transaction (an UPDATE of one pgbench_branches
#   row) so that a replicated commit exists past the target LSN T (the
#   provider's insert LSN right after pgbench). The SAME backlog is then
#   consumed by each of these, one after the other (the order rotates from
#   round to round):
#     lorry          start `lorry run`; time until the subscriber's origin
#                    lorry_bench has applied up to T (see "done" below); also
#                    the time `lorry wait` (started with `run`) took to return
#     native         ALTER SUBSCRIPTION bench_native ENABLE; time until its
#                    origin pg_<oid> has applied up to T
#     lorry_decode   `lorry decode --slot ... --until T` (receive + decode,
#                    no apply), wall clock of the whole command
#     pg_recvlogical `pg_recvlogical --start --endpos T -f /dev/null` with
#                    the same pgoutput options (proto_version 3, the same
#                    publication), wall clock of the whole command
#   "done" = pg_replication_origin_progress(origin, false) >= T on the
#   subscriber, polled every 10 ms by one session for both methods (it
#   commits between polls, so it holds back no xmin). Every pgbench commit
#   ends at or before T and the marker's commit after it, so this is true
#   once the whole backlog is applied and visible.
#   Also measured: peak RSS of `lorry run` (VmHWM at the end of the catch-up),
#   CPU seconds (utime+stime from /proc/PID/stat, whole process lifetimes:
#   every process involved starts with the resume) of `lorry run`, of its
#   subscriber backends (application_name lorry_apply, lorry_control) and of
#   native's apply worker, and of the provider walsender each one uses.
#   The round ends with a check that pgbench's tables are equal (sums and
#   counts) on the provider and in both subscriber databases.
#
# steady-lag round (the first LAG_RUNS rounds, unless --lag-seconds 0):
#   for each method (rotating order), with the other paused: synced, then
#   `pgbench -n -c C -j J -R RATE -T SECONDS` while the provider's
#   pg_current_wal_lsn() and the slot's confirmed_flush_lsn are sampled
#   every --lag-interval s, and the subscriber's origin progress is traced
#   every 2 ms. Lag of a sample = time from the sample until the subscriber
#   had applied past the sampled LSN (ms; resolution ~2 ms, plus the time to
#   the provider's next commit, ~1 ms at 1000 tx/s), and bytes from the
#   sampled LSN to the slot's confirmed_flush_lsn. p50/p99/max over the
#   samples inside the pgbench window; and CPU per 100k transactions applied
#   during the window.
#
# big transaction (only with --big-rows N): lorry alone applies one
#   provider transaction inserting N rows into a new table; peak RSS of
#   `lorry run` and time until `lorry wait` returns.
#
# Usage: bench/apply.sh [options]
#   --transactions N  catch-up backlog, pgbench transactions (default 100000)
#   --clients C       pgbench -c (default 4)
#   --threads J       pgbench -j (default 2)
#   --scale S         pgbench -i -s (default 10)
#   --runs N          rounds (default 3)
#   --lag-runs N      rounds that also measure steady lag (default: --runs)
#   --lag-seconds S   pgbench -T of a steady-lag run (default 60; 0: skip)
#   --lag-rate R      pgbench -R of a steady-lag run (default 1000)
#   --lag-interval S  provider lag sampling interval (default 0.5)
#   --no-decode       skip the decode ceiling (lorry decode, pg_recvlogical)
#   --big-rows N      also the one-transaction memory test with N rows (default 0: skip)
#   --timeout SEC     give up on one timed step after SEC seconds (default 900)
#   --build           (re)build $LORRY_BIN's build dir first (Release)
#   --from-head       with --build: build the committed HEAD (a `git archive`
#                     export under $BENCH_TMPDIR), not the working tree, which
#                     others may be editing; the report then names that commit
#   --record          append the results to bench/RESULTS.md (otherwise the
#                     script writes nothing inside the repository)
#   --keep            keep the temp dir (server logs, tool logs, samples) at exit
#   --profile         diagnosis, not for the record: `perf record` (flat, 999 Hz)
#                     of `lorry run` + its backends + its walsender, and of
#                     native's apply worker + walsender, during each catch-up;
#                     pg_stat_statements (with planning time) on the subscriber;
#                     the top symbols and statements are printed
#
# Environment: LORRY_BIN (default /work/main/build-bench2/lorry, built with
# cmake -DCMAKE_BUILD_TYPE=Release if missing), PG_BINDIR (default
# /usr/lib/postgresql/15/bin), BENCH_TMPDIR (parent of the temp dir, /tmp).
#
# Installs what it needs with apt-get (postgresql-15, postgresql-client-15),
# idempotently; uses sudo when not root. As root the servers run as the
# `postgres` user. Ratios are lorry/peer for rates (> 1: lorry is faster) and
# lorry/peer for costs (< 1: lorry is cheaper); "paired" = median over the
# rounds of the ratio within the round.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
ORIG_CMDLINE="bench/apply.sh${*:+ $*}"

NTX=100000 CLIENTS=4 THREADS=2 SCALE=10 RUNS=3 LAG_RUNS="" LAG_SECONDS=60 LAG_RATE=1000 LAG_INTERVAL=0.5
DECODE=1 BIG_ROWS=0 TIMEOUT=900 BUILD=0 FROM_HEAD=0 RECORD=0 KEEP=0 PROFILE=0
LORRY_BIN=${LORRY_BIN:-$REPO/build-bench2/lorry}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

usage() { sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' | sed '$d'; }
die() { echo "apply: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --transactions) NTX=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --lag-runs) LAG_RUNS=$2; shift 2 ;;
    --lag-seconds) LAG_SECONDS=$2; shift 2 ;;
    --lag-rate) LAG_RATE=$2; shift 2 ;;
    --lag-interval) LAG_INTERVAL=$2; shift 2 ;;
    --no-decode) DECODE=0; shift ;;
    --big-rows) BIG_ROWS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --build) BUILD=1; shift ;;
    --from-head) FROM_HEAD=1; shift ;;
    --record) RECORD=1; shift ;;
    --profile) PROFILE=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
[ -n "$LAG_RUNS" ] || LAG_RUNS=$RUNS
for n in NTX CLIENTS THREADS SCALE RUNS LAG_RUNS LAG_SECONDS LAG_RATE BIG_ROWS TIMEOUT; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "--${n,,} needs a whole number, got '${!n}'"
done
[[ $LAG_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || die "--lag-interval needs a number of seconds"
[ "$RUNS" -ge 1 ] && [ "$CLIENTS" -ge 1 ] && [ "$THREADS" -ge 1 ] || die "--runs, --clients, --threads must be >= 1"
[ "$NTX" -ge "$CLIENTS" ] || die "--transactions must be at least --clients"
[ "$LAG_RUNS" -le "$RUNS" ] || LAG_RUNS=$RUNS
[ "$PROFILE" = 0 ] || [ "$RECORD" = 0 ] || die "--profile perturbs what is measured: not with --record"
[ "$PROFILE" = 0 ] || command -v perf >/dev/null || die "--profile needs perf (apt-get install linux-perf)"
PER_CLIENT=$((NTX / CLIENTS)); NTX=$((PER_CLIENT * CLIENTS))   # pgbench -t is per client

# ---------------------------------------------------------------- installing
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
for p in postgresql-15 postgresql-client-15 cmake; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
export PATH="$PG_BINDIR:$PATH"
BDIR=$(dirname "$LORRY_BIN")
if [ "$BUILD" = 1 ] || [ ! -x "$LORRY_BIN" ]; then
  src=$REPO
  if [ "$FROM_HEAD" = 1 ]; then
    sha=$(git -C "$REPO" rev-parse HEAD)
    src=${BENCH_TMPDIR:-/tmp}/lorry-src-${sha:0:12}
    if [ ! -f "$src/CMakeLists.txt" ]; then mkdir -p "$src"; git -C "$REPO" archive HEAD | tar -x -C "$src"; fi
  fi
  log "building $LORRY_BIN (Release) from $src"
  [ ! -x "$REPO/scripts/bootstrap" ] || "$REPO/scripts/bootstrap"
  # a build dir configured for another source tree must be configured afresh
  if [ -f "$BDIR/CMakeCache.txt" ] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$BDIR/CMakeCache.txt"; then
    rm -rf "$BDIR/CMakeCache.txt" "$BDIR/CMakeFiles"
  fi
  cmake -S "$src" -B "$BDIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BDIR" -j"$(nproc)" --target lorry >/dev/null
  if [ "$FROM_HEAD" = 1 ]; then echo "$sha" >"$BDIR/lorry.source"; else rm -f "$BDIR/lorry.source"; fi
fi
if [ -s "$BDIR/lorry.source" ]; then
  LORRY_COMMIT="$(cut -c1-7 "$BDIR/lorry.source") (clean export of that commit)"
  [ "$(git -C "$REPO" rev-parse HEAD 2>/dev/null)" = "$(cat "$BDIR/lorry.source")" ] ||
    log "warning: $LORRY_BIN was built from commit $(cut -c1-7 "$BDIR/lorry.source"), HEAD has moved since (use --build --from-head)"
else
  LORRY_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- src CMakeLists.txt 2>/dev/null)" ]; then
    LORRY_COMMIT="$LORRY_COMMIT+uncommitted changes in src/"
  fi
  if [ -n "$(find "$REPO/src" "$REPO/CMakeLists.txt" -newer "$LORRY_BIN" -print -quit 2>/dev/null)" ]; then
    log "warning: $LORRY_BIN is older than the sources (use --build); the commit shown may not be what is measured"
    LORRY_COMMIT="$LORRY_COMMIT (binary older than the tree)"
  fi
fi
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------ temp dir, trap
# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"
bench_temp_dir apply
mkdir -p "$TMP/samples"; chmod 777 "$TMP/samples"
LIMIT=(timeout --foreground --signal=TERM)   # + $TIMEOUT: one step at most that long

# ------------------------------------------------------------------ servers
# fsync and synchronous_commit stay at their defaults (on). Native
# subscriptions apply with their own default synchronous_commit = off.
SERVER_CONF="max_logical_replication_workers = 8
max_sync_workers_per_subscription = 2
max_worker_processes = 20
log_min_messages = warning"
if [ "$PROFILE" = 1 ]; then
  SERVER_CONF+="
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on"
fi
start_both_servers
L=("$LORRY_BIN")
LOPTS=(--provider "$(pconn bench)" --subscriber "$(sconn sub_lorry)" --name bench)
lorry() { local cmd=$1; shift; "${L[@]}" "$cmd" "${LOPTS[@]}" "$@"; }

# ----------------------------------------------------------------- helpers
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
cpu_ticks() { # pid -> utime+stime in ticks ("" if gone)
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
  s=${s##*) }   # fields after "(comm) "; utime, stime are fields 14, 15 overall = 12, 13 here
  awk '{ print $12 + $13 }' <<<"$s"
}
cpu_sum() { # pids... -> seconds (sum)
  local t=0 p c
  for p in "$@"; do c=$(cpu_ticks "$p"); [ -z "$c" ] || t=$((t + c)); done
  awk -v t="$t" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}
vm_hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo ""; }

NATIVE_ORIGIN=""
LORRY_ORIGIN=lorry_bench
insert_lsn() { pp bench -At -c "SELECT pg_current_wal_insert_lsn()"; }
marker() { pp bench -c "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1"; }

# Blocks until the origin has applied up to the LSN (commits between polls,
# so that it holds back no xmin on the subscriber).
poll_origin() { # db origin lsn
  "${LIMIT[@]}" "$TIMEOUT" "${PSQL_S[@]}" -d "$1" -c "DO \$\$
BEGIN
  LOOP
    EXIT WHEN coalesce(pg_replication_origin_progress('$2', false), '0/0'::pg_lsn) >= '$3'::pg_lsn;
    COMMIT;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
\$\$"
}

RUN_PID=""
lorry_start() { # log (the binary itself in the background: $! is its pid)
  "${L[@]}" run "${LOPTS[@]}" >>"$1" 2>&1 &
  RUN_PID=$!
  BG_PIDS+=("$RUN_PID")
}
lorry_stop() {
  [ -n "$RUN_PID" ] || return 0
  kill -TERM "$RUN_PID" 2>/dev/null || true
  local rc=0; wait "$RUN_PID" 2>/dev/null || rc=$?
  forget "$RUN_PID"; RUN_PID=""
  [ "$rc" = 0 ] || [ "$rc" = 143 ] || log "warning: lorry run exited with $rc"
}
native_enable() { ps_ sub_native -c "ALTER SUBSCRIPTION bench_native ENABLE"; }
native_disable() {
  ps_ sub_native -c "ALTER SUBSCRIPTION bench_native DISABLE"
  # until the worker is gone and the provider's slot is free again
  ps_ sub_native -c "DO \$\$ BEGIN WHILE EXISTS (SELECT 1 FROM pg_stat_subscription WHERE subname = 'bench_native' AND pid IS NOT NULL)
                     LOOP PERFORM pg_sleep(0.01); END LOOP; END \$\$"
  pp bench -c "DO \$\$ BEGIN WHILE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'bench_native' AND active)
               LOOP PERFORM pg_sleep(0.01); END LOOP; END \$\$"
}
lorry_backends() { ps_ sub_lorry -At -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity
                                      WHERE datname = 'sub_lorry' AND application_name IN ('lorry_apply', 'lorry_control')"; }
native_worker() { ps_ sub_native -At -c "SELECT pid FROM pg_stat_subscription WHERE subname = 'bench_native' AND relid IS NULL AND pid IS NOT NULL"; }
walsender_of() { pp bench -At -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$1' AND active"; }

# Brings a paused method up to date with the provider, then pauses it again
# (untimed).
sync_method() { # lorry|native
  local t; marker; t=$(insert_lsn)
  if [ "$1" = lorry ]; then
    lorry_start "$TMP/logs/lorry-run.sync.log"
    poll_origin sub_lorry "$LORRY_ORIGIN" "$t" >/dev/null
    lorry_stop
  else
    native_enable
    poll_origin sub_native "$NATIVE_ORIGIN" "$t" >/dev/null
    native_disable
  fi
}

SIG_SQL="SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '/' || (SELECT sum(tbalance) FROM pgbench_tellers) || '/' ||
 (SELECT sum(bbalance) FROM pgbench_branches) || '/' || (SELECT count(*) || ':' || coalesce(sum(delta), 0) FROM pgbench_history)"
verify() { # label: provider == sub_lorry == sub_native for the pgbench tables
  local a b c
  a=$(pp bench -At -c "$SIG_SQL"); b=$(ps_ sub_lorry -At -c "$SIG_SQL"); c=$(ps_ sub_native -At -c "$SIG_SQL")
  if [ "$a" = "$b" ] && [ "$a" = "$c" ]; then
    log "$1: tables equal on provider, sub_lorry, sub_native ($a)"
  else
    log "$1: DIFFERENT: provider $a, sub_lorry $b, sub_native $c"
    ANOMALIES+="$1: tables differ (provider $a, sub_lorry $b, sub_native $c)"$'\n'
  fi
}

tidy() { # vacuum + checkpoint everywhere (untimed, before each round)
  pp bench -c "VACUUM ANALYZE" -c CHECKPOINT
  ps_ sub_lorry -c "VACUUM ANALYZE"; ps_ sub_native -c "VACUUM ANALYZE" -c CHECKPOINT
}

# ------------------------------------------------------------------- setup
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ANOMALIES=""
log "lorry $LORRY_BIN (commit $LORRY_COMMIT), $("$PG_BINDIR/postgres" --version)"
pp postgres -c "CREATE DATABASE bench"
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PPORT" -U postgres bench >"$TMP/logs/pgbench-init.log" 2>&1 ||
  { tail "$TMP/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
pp bench -c "CREATE PUBLICATION bench_pub FOR ALL TABLES"
pg_dump --schema-only --no-publications --no-subscriptions -h 127.0.0.1 -p "$PPORT" -U postgres bench >"$TMP/schema.sql"
for db in sub_lorry sub_native; do
  ps_ postgres -c "CREATE DATABASE $db"
  ps_ "$db" -f "$TMP/schema.sql" >/dev/null
done
[ "$PROFILE" = 0 ] || ps_ sub_lorry -c "CREATE EXTENSION pg_stat_statements"

log "initial sync: lorry"
{ lorry init && lorry add --insert-only public.pgbench_history && lorry add --all; } >>"$TMP/logs/lorry-setup.log" 2>&1 ||
  { tail -20 "$TMP/logs/lorry-setup.log" >&2; die "lorry init/add failed"; }
lorry_start "$TMP/logs/lorry-run.setup.log"
"${LIMIT[@]}" "$TIMEOUT" "${L[@]}" wait "${LOPTS[@]}" --timeout "$TIMEOUT" >>"$TMP/logs/lorry-setup.log" 2>&1 ||
  { tail -20 "$TMP/logs/lorry-setup.log" "$TMP/logs/lorry-run.setup.log" >&2; die "lorry's initial sync failed"; }
lorry_stop

log "initial sync: native"
ps_ sub_native -c "CREATE SUBSCRIPTION bench_native CONNECTION '$(pconn bench)' PUBLICATION bench_pub"
"${LIMIT[@]}" "$TIMEOUT" "${PSQL_S[@]}" -d sub_native -c "DO \$\$ BEGIN
  WHILE NOT EXISTS (SELECT 1 FROM pg_subscription_rel) OR EXISTS (SELECT 1 FROM pg_subscription_rel WHERE srsubstate <> 'r')
  LOOP COMMIT; PERFORM pg_sleep(0.05); END LOOP; END \$\$"
NATIVE_ORIGIN=pg_$(ps_ sub_native -At -c "SELECT oid FROM pg_subscription WHERE subname = 'bench_native'")
marker; tgt=$(insert_lsn)
poll_origin sub_native "$NATIVE_ORIGIN" "$tgt"
native_disable
sync_method lorry
verify "after the initial sync"

# ------------------------------------------------------- --profile helpers
PERF_PID=""
profile_start() { # name pids...
  [ "$PROFILE" = 1 ] || return 0
  local name=$1 list; shift
  list=$(printf '%s,' "$@"); list=${list%,}
  perf record -q -F 999 -o "$TMP/perf.$name.data" -p "$list" >/dev/null 2>&1 &
  PERF_PID=$!; BG_PIDS+=("$PERF_PID")
}
profile_stop() { # name
  [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; forget "$PERF_PID"; PERF_PID=""
  local f=$TMP/logs/perf.$1.txt pid
  : >"$f"
  # one flat profile per process (PROFILE_NAMES: "pid=role ...")
  for pid in $(perf report -i "$TMP/perf.$1.data" --no-children --sort pid --stdio 2>/dev/null |
               sed -n 's/^ *\([0-9.]*%\) *\([0-9]*\):.*/\2/p'); do
    {
      echo "-- pid $pid ($(tr ' ' '\n' <<<"$PROFILE_NAMES" | sed -n "s/^$pid=//p")), share of all samples / top symbols:"
      perf report -i "$TMP/perf.$1.data" --no-children --pid "$pid" --sort dso,symbol --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//; s/[[:space:]]*$//' | head -25
    } >>"$f"
  done
  log "profile $1 (flat, per process; postgres from Debian has no debug symbols, some show as addresses):"
  cat "$f" >&2
}
PROFILE_NAMES=""
wait_for_pids() { # side(p|s) db sql -> output once the query returns a non-empty value (up to 5 s)
  local i out fn=ps_
  [ "$1" = s ] || fn=pp
  for i in $(seq 100); do out=$($fn "$2" -At -c "$3"); [ -z "$out" ] || { echo "$out"; return; }; sleep 0.05; done
}
pgss_top() { # label
  [ "$PROFILE" = 1 ] || return 0
  ps_ sub_lorry -c "SELECT calls, round(total_plan_time) AS plan_ms, round(total_exec_time) AS exec_ms, rows,
                           round((total_exec_time / greatest(calls, 1))::numeric, 3) AS ms_per_call,
                           left(regexp_replace(query, '\s+', ' ', 'g'), 140) AS query
                    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'sub_lorry')
                    ORDER BY total_plan_time + total_exec_time DESC LIMIT 15" >"$TMP/logs/pgss.$1.txt"
  log "pg_stat_statements on sub_lorry, $1:"; cat "$TMP/logs/pgss.$1.txt" >&2
}

# -------------------------------------------------------------- the rounds
declare -A V   # V[metric.round] = value
CONSUMERS=(lorry native)
[ "$DECODE" = 0 ] || CONSUMERS+=(lorry_decode pg_recvlogical)

catchup_lorry() { # r T
  local r=$1 T=$2 logf=$TMP/logs/lorry-run.catchup.$1.log t0 t1 t2 rc=0 wpid ppid back
  poll_origin sub_lorry "$LORRY_ORIGIN" "$T" >/dev/null &
  ppid=$!; BG_PIDS+=("$ppid")
  [ "$PROFILE" = 0 ] || ps_ sub_lorry -c "SELECT pg_stat_statements_reset()" >/dev/null
  t0=$EPOCHREALTIME
  lorry_start "$logf"
  "${L[@]}" wait "${LOPTS[@]}" --timeout "$TIMEOUT" >>"$logf.wait" 2>&1 &
  wpid=$!; BG_PIDS+=("$wpid")
  if [ "$PROFILE" = 1 ]; then
    local ap ws
    ap=$(wait_for_pids s sub_lorry "SELECT string_agg(pid || '=' || application_name, ' ') FROM pg_stat_activity
        WHERE datname = 'sub_lorry' AND application_name IN ('lorry_apply', 'lorry_control')
        HAVING bool_or(application_name = 'lorry_apply')")
    ws=$(wait_for_pids p bench "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'lorry_bench' AND active")
    PROFILE_NAMES="$RUN_PID=lorry_run $ap $ws=walsender"
    # shellcheck disable=SC2046
    profile_start "lorry.$r" "$RUN_PID" $(sed 's/=[a-z_]*//g' <<<"$ap") $ws
  fi
  wait "$ppid" || rc=$?
  t1=$EPOCHREALTIME; forget "$ppid"
  profile_stop "lorry.$r"; pgss_top "lorry.$r"
  back=$(lorry_backends)
  # shellcheck disable=SC2086
  V[lorry.cpu_sub.$r]=$(cpu_sum $back)
  V[lorry.cpu_proc.$r]=$(cpu_sum "$RUN_PID")
  V[lorry.cpu_wal.$r]=$(cpu_sum "$(walsender_of lorry_bench)")
  V[lorry.rss.$r]=$(vm_hwm_mib "$RUN_PID")
  wait "$wpid" || rc=$((rc ? rc : 1))
  t2=$EPOCHREALTIME; forget "$wpid"
  lorry_stop
  [ "$rc" = 0 ] || { log "round $r lorry: FAILED ($rc); see $logf*"; tail -5 "$logf" "$logf.wait" >&2; return 1; }
  V[lorry.secs.$r]=$(elapsed "$t0" "$t1")
  V[lorry.wait_secs.$r]=$(elapsed "$t0" "$t2")
  V[lorry.cpu.$r]=$(awk -v a="${V[lorry.cpu_sub.$r]}" -v b="${V[lorry.cpu_proc.$r]}" 'BEGIN { printf "%.2f", a + b }')
  log "round $r lorry: ${V[lorry.secs.$r]} s applied (lorry wait returned at ${V[lorry.wait_secs.$r]} s);" \
      "CPU lorry ${V[lorry.cpu_proc.$r]} s + backends ${V[lorry.cpu_sub.$r]} s, walsender ${V[lorry.cpu_wal.$r]} s; VmHWM ${V[lorry.rss.$r]} MiB"
}

catchup_native() { # r T
  local r=$1 T=$2 t0 t1 rc=0 ppid w
  poll_origin sub_native "$NATIVE_ORIGIN" "$T" >/dev/null &
  ppid=$!; BG_PIDS+=("$ppid")
  t0=$EPOCHREALTIME
  native_enable
  if [ "$PROFILE" = 1 ]; then
    local wk ws
    wk=$(wait_for_pids s sub_native "SELECT pid FROM pg_stat_subscription
        WHERE subname = 'bench_native' AND relid IS NULL AND pid IS NOT NULL")
    ws=$(wait_for_pids p bench "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'bench_native' AND active")
    PROFILE_NAMES="$wk=apply_worker $ws=walsender"
    profile_start "native.$r" $wk $ws
  fi
  wait "$ppid" || rc=$?
  t1=$EPOCHREALTIME; forget "$ppid"
  profile_stop "native.$r"
  w=$(native_worker)
  V[native.cpu.$r]=$(cpu_sum $w)
  V[native.cpu_wal.$r]=$(cpu_sum "$(walsender_of bench_native)")
  native_disable
  [ "$rc" = 0 ] || { log "round $r native: FAILED ($rc)"; return 1; }
  V[native.secs.$r]=$(elapsed "$t0" "$t1")
  log "round $r native: ${V[native.secs.$r]} s applied; CPU apply worker ${V[native.cpu.$r]} s, walsender ${V[native.cpu_wal.$r]} s"
}

catchup_lorry_decode() { # r T
  local r=$1 T=$2 t0 t1 out rc=0
  t0=$EPOCHREALTIME
  out=$("${LIMIT[@]}" "$TIMEOUT" "${L[@]}" decode --provider "$(pconn bench)" --slot bench_dec_lorry \
          --publications bench_pub --until "$T" 2>>"$TMP/logs/lorry-decode.$r.log") || rc=$?
  t1=$EPOCHREALTIME
  echo "$out" >>"$TMP/logs/lorry-decode.$r.log"
  [ "$rc" = 0 ] || { log "round $r lorry_decode: FAILED ($rc)"; tail -5 "$TMP/logs/lorry-decode.$r.log" >&2; return 1; }
  V[lorry_decode.secs.$r]=$(elapsed "$t0" "$t1")
  V[lorry_decode.self.$r]=$out
  V[decode_changes.$r]=$(sed -n 's/^decoded \([0-9]*\) transactions, \([0-9]*\) changes.*/\1 \2/p' <<<"$out")
  log "round $r lorry_decode: ${V[lorry_decode.secs.$r]} s ($out)"
}

catchup_pg_recvlogical() { # r T
  local r=$1 T=$2 t0 t1 rc=0
  t0=$EPOCHREALTIME
  "${LIMIT[@]}" "$TIMEOUT" pg_recvlogical -d "$(pconn bench)" --slot bench_dec_recv --start --no-loop -f /dev/null \
    -o proto_version=3 -o publication_names=bench_pub --endpos="$T" >>"$TMP/logs/pg_recvlogical.$r.log" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  [ "$rc" = 0 ] || { log "round $r pg_recvlogical: FAILED ($rc)"; tail -5 "$TMP/logs/pg_recvlogical.$r.log" >&2; return 1; }
  V[pg_recvlogical.secs.$r]=$(elapsed "$t0" "$t1")
  log "round $r pg_recvlogical: ${V[pg_recvlogical.secs.$r]} s"
}

# Steady lag of one method (the other one is paused): sets V[lag.*.$m.$r].
steady_lag() { # m r
  local m=$1 r=$2 db origin slot d=$TMP/samples pids=() t0 t1 tr_pid pv_pid back="" c0 c1 out ntx
  if [ "$m" = lorry ]; then db=sub_lorry origin=$LORRY_ORIGIN slot=lorry_bench; else db=sub_native origin=$NATIVE_ORIGIN slot=bench_native; fi
  pp bench -c CHECKPOINT; ps_ "$db" -c CHECKPOINT
  local T; marker; T=$(insert_lsn)
  if [ "$m" = lorry ]; then lorry_start "$TMP/logs/lorry-run.lag.$r.log"; else native_enable; fi
  poll_origin "$db" "$origin" "$T" >/dev/null
  sleep 1
  if [ "$m" = lorry ]; then back="$RUN_PID $(lorry_backends)"; else back=$(native_worker); fi
  # subscriber: origin progress every 2 ms, a row whenever it moved
  "${PSQL_S[@]}" -d "$db" -At -F ' ' -o "$d/trace.$m.$r" >/dev/null 2>>"$TMP/logs/samplers.log" <<SQL &
CREATE TEMP TABLE tr (t float8, l numeric);
DO \$\$
DECLARE ts float8[] := '{}'; ls numeric[] := '{}'; cur pg_lsn; prev pg_lsn;
        deadline timestamptz := clock_timestamp() + interval '$((LAG_SECONDS + 4)) seconds';
BEGIN
  WHILE clock_timestamp() < deadline LOOP
    cur := coalesce(pg_replication_origin_progress('$origin', false), '0/0');
    IF prev IS NULL OR cur <> prev THEN
      ts := ts || extract(epoch FROM clock_timestamp())::float8; ls := ls || (cur - '0/0'::pg_lsn); prev := cur;
    END IF;
    COMMIT;
    PERFORM pg_sleep(0.002);
  END LOOP;
  INSERT INTO tr SELECT * FROM unnest(ts, ls);
END
\$\$;
SELECT to_char(t, 'FM9999999999.999999'), l FROM tr ORDER BY t;
SQL
  tr_pid=$!
  # provider: LSN and the slot's confirmed_flush_lsn every LAG_INTERVAL s
  "${PSQL_P[@]}" -d bench -At -F ' ' -o "$d/prov.$m.$r" >/dev/null 2>>"$TMP/logs/samplers.log" <<SQL &
CREATE TEMP TABLE pv (t float8, l numeric, c numeric);
DO \$\$
DECLARE ts float8[] := '{}'; ls numeric[] := '{}'; cs numeric[] := '{}'; nxt timestamptz := clock_timestamp();
        deadline timestamptz := clock_timestamp() + interval '$((LAG_SECONDS + 2)) seconds';
BEGIN
  WHILE clock_timestamp() < deadline LOOP
    ts := ts || extract(epoch FROM clock_timestamp())::float8;
    ls := ls || (pg_current_wal_lsn() - '0/0'::pg_lsn);
    cs := cs || (SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$slot');
    COMMIT;
    nxt := nxt + interval '$LAG_INTERVAL seconds';
    PERFORM pg_sleep(greatest(0, extract(epoch FROM nxt - clock_timestamp())));
  END LOOP;
  INSERT INTO pv SELECT * FROM unnest(ts, ls, cs);
END
\$\$;
SELECT to_char(t, 'FM9999999999.999999'), l, c FROM pv ORDER BY t;
SQL
  pv_pid=$!
  BG_PIDS+=("$tr_pid" "$pv_pid")
  sleep 0.5
  # shellcheck disable=SC2086
  c0=$(cpu_sum $back)
  t0=$EPOCHREALTIME
  out=$(pgbench -n -c "$CLIENTS" -j "$THREADS" -R "$LAG_RATE" -T "$LAG_SECONDS" -h 127.0.0.1 -p "$PPORT" -U postgres bench 2>&1) ||
    { log "pgbench -R failed: $out"; return 1; }
  t1=$EPOCHREALTIME
  # shellcheck disable=SC2086
  c1=$(cpu_sum $back)
  wait "$tr_pid" "$pv_pid" || true; forget "$tr_pid" "$pv_pid"
  echo "$out" >"$TMP/logs/pgbench-lag.$m.$r.log"
  ntx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  V[lag.tps.$m.$r]=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
  V[lag.cpu.$m.$r]=$(awk -v a="$c0" -v b="$c1" -v n="$ntx" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) * 100000 / n : 0) }')
  # per sample: ms until the subscriber's origin passed the sampled LSN; bytes to confirmed_flush
  awk -v ws="$t0" -v we="$t1" '
    BEGIN { j = 1 }
    FILENAME == ARGV[1] { n++; tt[n] = $1; tl[n] = $2; next }
    $1 >= ws && $1 <= we && n > 0 {
      while (j <= n && tl[j] < $2) j++
      if (j <= n) ms = (tt[j] - $1) * 1000; else { ms = (tt[n] - $1) * 1000; cens++ }
      if (ms < 0) ms = 0
      printf "%.3f %.0f\n", ms, $2 - $3
    }
    END { if (cens) printf "%d samples not applied before the trace ended (counted as the trace end)\n", cens > "/dev/stderr" }' \
    "$d/trace.$m.$r" "$d/prov.$m.$r" >"$d/lag.$m.$r" 2>"$d/lag.$m.$r.err"
  [ ! -s "$d/lag.$m.$r.err" ] || ANOMALIES+="round $r steady lag $m: $(cat "$d/lag.$m.$r.err")"$'\n'
  if [ "$m" = lorry ]; then lorry_stop; else native_disable; fi
  local q
  q=$(awk '{ print $1 }' "$d/lag.$m.$r" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - - 0"; exit }
        i50 = int(0.5 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
        printf "%.1f %.1f %.1f %d", v[i50], v[i99], v[NR], NR }')
  read -r "V[lag.p50.$m.$r]" "V[lag.p99.$m.$r]" "V[lag.max.$m.$r]" "V[lag.n.$m.$r]" <<<"$q"
  q=$(awk '{ print $2 }' "$d/lag.$m.$r" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        i50 = int(0.5 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
        printf "%.0f %.0f %.0f", v[i50] / 1024, v[i99] / 1024, v[NR] / 1024 }')
  read -r "V[lag.kb50.$m.$r]" "V[lag.kb99.$m.$r]" "V[lag.kbmax.$m.$r]" <<<"$q"
  log "round $r steady lag $m: pgbench ${V[lag.tps.$m.$r]} tx/s; lag ms p50 ${V[lag.p50.$m.$r]} p99 ${V[lag.p99.$m.$r]}" \
      "max ${V[lag.max.$m.$r]} (${V[lag.n.$m.$r]} samples); kB p50 ${V[lag.kb50.$m.$r]} p99 ${V[lag.kb99.$m.$r]}" \
      "max ${V[lag.kbmax.$m.$r]}; CPU ${V[lag.cpu.$m.$r]} s per 100k tx"
}

for ((r = 1; r <= RUNS; r++)); do
  log "round $r/$RUNS: catch-up of $NTX transactions"
  tidy
  if [ "$DECODE" = 1 ]; then
    pp bench -c "SELECT pg_create_logical_replication_slot('bench_dec_lorry', 'pgoutput')" \
             -c "SELECT pg_create_logical_replication_slot('bench_dec_recv', 'pgoutput')" >/dev/null
  fi
  out=$(pgbench -n -c "$CLIENTS" -j "$THREADS" -t "$PER_CLIENT" -h 127.0.0.1 -p "$PPORT" -U postgres bench 2>&1) ||
    { echo "$out" >&2; die "pgbench failed"; }
  echo "$out" >"$TMP/logs/pgbench.$r.log"
  V[pgbench_tps.$r]=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
  T=$(insert_lsn); marker
  V[backlog_mb.$r]=$(pp bench -At -c "SELECT round((pg_current_wal_insert_lsn() - confirmed_flush_lsn) / 1048576.0, 1)
                                     FROM pg_replication_slots WHERE slot_name = 'bench_native'")
  log "round $r: pgbench ${V[pgbench_tps.$r]} tx/s; backlog ${V[backlog_mb.$r]} MB of WAL up to $T"
  pp bench -c CHECKPOINT; ps_ postgres -c CHECKPOINT
  n=${#CONSUMERS[@]}
  for ((i = 0; i < n; i++)); do
    c=${CONSUMERS[$(((i + r - 1) % n))]}
    "catchup_$c" "$r" "$T" || ANOMALIES+="round $r: $c failed"$'\n'
  done
  if [ "$DECODE" = 1 ]; then
    pp bench -c "SELECT pg_drop_replication_slot('bench_dec_lorry')" -c "SELECT pg_drop_replication_slot('bench_dec_recv')" >/dev/null
  fi
  verify "round $r"
  if [ "$PROFILE" = 1 ]; then
    for db in sub_lorry sub_native; do
      log "$db pages: $(ps_ "$db" -At -c "SELECT string_agg(relname || ' ' || pg_relation_size(oid) / 8192, ', ' ORDER BY relname)
                                          FROM pg_class WHERE relname IN ('pgbench_branches', 'pgbench_tellers', 'pgbench_accounts')")"
    done
  fi
  if [ "$LAG_SECONDS" -gt 0 ] && [ "$r" -le "$LAG_RUNS" ]; then
    order=(lorry native); [ $((r % 2)) = 1 ] || order=(native lorry)
    for m in "${order[@]}"; do
      log "round $r: steady lag of $m at pgbench -R $LAG_RATE for $LAG_SECONDS s"
      steady_lag "$m" "$r" || ANOMALIES+="round $r: steady lag $m failed"$'\n'
    done
    sync_method lorry; sync_method native
    verify "round $r after the steady-lag runs"
  fi
done

# ------------------------------------------------- optional big transaction
BIG=""
if [ "$BIG_ROWS" -gt 0 ]; then
  log "big transaction: $BIG_ROWS rows in one provider transaction, lorry only"
  pp bench -c "CREATE TABLE big_tx (id bigint PRIMARY KEY, v text NOT NULL)"
  ps_ sub_lorry -c "CREATE TABLE big_tx (id bigint PRIMARY KEY, v text NOT NULL)"
  lorry add public.big_tx >>"$TMP/logs/lorry-setup.log" 2>&1
  lorry_start "$TMP/logs/lorry-run.big.log"
  "${L[@]}" wait "${LOPTS[@]}" --timeout "$TIMEOUT" >>"$TMP/logs/lorry-setup.log" 2>&1
  lorry_stop
  pp bench -c "INSERT INTO big_tx SELECT g, md5(g::text) FROM generate_series(1, $BIG_ROWS) g"
  T=$(insert_lsn); marker
  t0=$EPOCHREALTIME
  lorry_start "$TMP/logs/lorry-run.big.log"
  brc=0
  poll_origin sub_lorry "$LORRY_ORIGIN" "$T" >/dev/null || brc=$?
  t1=$EPOCHREALTIME
  bh=$(vm_hwm_mib "$RUN_PID"); bc=$(cpu_sum "$RUN_PID")
  lorry_stop
  bn=$(ps_ sub_lorry -At -c "SELECT count(*) FROM big_tx")
  BIG="one transaction of $BIG_ROWS rows ($(pp bench -At -c "SELECT pg_size_pretty(pg_total_relation_size('big_tx'))") on the provider, PK + text): lorry applied it in $(elapsed "$t0" "$t1") s (poll exit $brc), $bn rows on the subscriber; peak RSS of \`lorry run\` $bh MiB, its CPU $bc s."
  log "$BIG"
fi

# ---------------------------------------------------------------- reporting
mmm() { # values... -> "median min max" (or "- - -")
  [ $# -gt 0 ] || { echo "- - -"; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.6g %.6g %.6g", m, v[1], v[NR] }'
}
vals() { # key-prefix (e.g. lorry.secs) [transform: rate|none] -> values over the rounds
  local k=$1 how=${2:-none} r out=()
  for ((r = 1; r <= RUNS; r++)); do
    [ -n "${V[$k.$r]:-}" ] || continue
    case "$how" in
      rate) out+=("$(awk -v s="${V[$k.$r]}" -v n="$NTX" 'BEGIN { printf "%.0f", n / s }')") ;;
      per100k) out+=("$(awk -v s="${V[$k.$r]}" -v n="$NTX" 'BEGIN { printf "%.2f", s * 100000 / n }')") ;;
      *) out+=("${V[$k.$r]}") ;;
    esac
  done
  echo "${out[@]}"
}
paired() { # num-key den-key how(rate: den_secs/num_secs; cost: num/den) -> median over rounds
  local a=$1 b=$2 how=$3 r out=()
  for ((r = 1; r <= RUNS; r++)); do
    [ -n "${V[$a.$r]:-}" ] && [ -n "${V[$b.$r]:-}" ] || continue
    if [ "$how" = rate ]; then out+=("$(awk -v x="${V[$a.$r]}" -v y="${V[$b.$r]}" 'BEGIN { printf "%.4f", y / x }')")
    else out+=("$(awk -v x="${V[$a.$r]}" -v y="${V[$b.$r]}" 'BEGIN { printf "%.4f", (y > 0 ? x / y : 0) }')"); fi
  done
  [ ${#out[@]} -gt 0 ] || { echo "-"; return; }
  # shellcheck disable=SC2068
  mmm ${out[@]} | awk '{ printf "%.2f", $1 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
med() { cut -d' ' -f1 <<<"$1"; }
verdict() { # value op target
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { if (v == "-") { print "-"; exit }
    ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "met" : "MISSED" }'
}

# shellcheck disable=SC2046
{
R_L=$(mmm $(vals lorry.secs rate)); R_LW=$(mmm $(vals lorry.wait_secs rate)); R_N=$(mmm $(vals native.secs rate))
R_D=$(mmm $(vals lorry_decode.secs rate)); R_R=$(mmm $(vals pg_recvlogical.secs rate))
C_L=$(mmm $(vals lorry.cpu per100k)); C_LP=$(mmm $(vals lorry.cpu_proc per100k)); C_LS=$(mmm $(vals lorry.cpu_sub per100k))
C_N=$(mmm $(vals native.cpu per100k)); W_L=$(mmm $(vals lorry.cpu_wal per100k)); W_N=$(mmm $(vals native.cpu_wal per100k))
RSS=$(mmm $(vals lorry.rss)); PGB=$(mmm $(vals pgbench_tps)); BACKLOG=$(mmm $(vals backlog_mb))
}
CPT=4   # row changes per tpcb-like transaction (3 UPDATE + 1 INSERT)
if [ -n "${V[decode_changes.1]:-}" ]; then
  CPT=$(awk -v s="${V[decode_changes.1]}" 'BEGIN { split(s, a, " "); printf "%.2f", (a[1] > 0 ? a[2] / a[1] : 4) }')
fi
chg() { awk -v r="$(med "$1")" -v c="$CPT" 'BEGIN { if (r == "-") print "-"; else printf "%.0f", r * c }'; }

rate_vs_native=$(ratio "$(med "$R_L")" "$(med "$R_N")")
rate_vs_ceiling=$(ratio "$(med "$R_L")" "$(med "$R_R")")
decode_vs_recv=$(ratio "$(med "$R_D")" "$(med "$R_R")")
cost_vs_native=$(ratio "$(med "$C_L")" "$(med "$C_N")")
p_rate=$(paired lorry.secs native.secs rate); p_ceil=$(paired lorry.secs pg_recvlogical.secs rate)
p_dec=$(paired lorry_decode.secs pg_recvlogical.secs rate); p_cost=$(paired lorry.cpu native.cpu cost)

row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
REPORT=""
REPORT+="#### Catch-up: $NTX pgbench transactions (\`pgbench -n -c $CLIENTS -j $THREADS -t $PER_CLIENT\`, scale $SCALE), $RUNS rounds"$'\n\n'
REPORT+="pgbench on the provider: median $(med "$PGB") tx/s; backlog median $(med "$BACKLOG") MB of WAL; $CPT row changes per transaction."$'\n\n'
REPORT+="| method | median tx/s | min | max | row changes/s | lorry/peer | paired |"$'\n'"|---|---:|---:|---:|---:|---:|---:|"$'\n'
read -r a b c <<<"$R_L"; REPORT+=$(row "lorry (applied)" "$a" "$b" "$c" "$(chg "$R_L")" "-" "-")$'\n'
read -r a b c <<<"$R_LW"; REPORT+=$(row "lorry (until \`lorry wait\` returned)" "$a" "$b" "$c" "$(chg "$R_LW")" "-" "-")$'\n'
read -r a b c <<<"$R_N"; REPORT+=$(row "native (applied)" "$a" "$b" "$c" "$(chg "$R_N")" "$rate_vs_native" "$p_rate")$'\n'
if [ "$DECODE" = 1 ]; then
  read -r a b c <<<"$R_D"; REPORT+=$(row "lorry decode (no apply)" "$a" "$b" "$c" "$(chg "$R_D")" "$decode_vs_recv (vs pg_recvlogical)" "$p_dec")$'\n'
  read -r a b c <<<"$R_R"; REPORT+=$(row "pg_recvlogical (decode ceiling)" "$a" "$b" "$c" "$(chg "$R_R")" "$rate_vs_ceiling (lorry applied vs this)" "$p_ceil")$'\n'
fi
REPORT+=$'\n'"Rounds (s; order of the consumers rotates): "
for ((r = 1; r <= RUNS; r++)); do
  REPORT+="round $r: lorry ${V[lorry.secs.$r]:-x} (wait ${V[lorry.wait_secs.$r]:-x}), native ${V[native.secs.$r]:-x}"
  [ "$DECODE" = 0 ] || REPORT+=", lorry decode ${V[lorry_decode.secs.$r]:-x}, pg_recvlogical ${V[pg_recvlogical.secs.$r]:-x}"
  REPORT+="; "
done
REPORT+=$'\n\n'"#### Cost and memory during the catch-up"$'\n\n'
REPORT+="| measure | median | min | max | lorry/native | paired |"$'\n'"|---|---:|---:|---:|---:|---:|"$'\n'
read -r a b c <<<"$C_L"; REPORT+="| lorry: subscriber-side CPU s per 100k tx (process + backends) | $a | $b | $c | $cost_vs_native | $p_cost |"$'\n'
read -r a b c <<<"$C_LP"; REPORT+="| … of which the \`lorry run\` process | $a | $b | $c | | |"$'\n'
read -r a b c <<<"$C_LS"; REPORT+="| … of which its backends (lorry_apply, lorry_control) | $a | $b | $c | | |"$'\n'
read -r a b c <<<"$C_N"; REPORT+="| native: apply worker CPU s per 100k tx | $a | $b | $c | | |"$'\n'
read -r a b c <<<"$W_L"; REPORT+="| provider walsender CPU s per 100k tx, lorry's | $a | $b | $c | $(ratio "$(med "$W_L")" "$(med "$W_N")") | |"$'\n'
read -r a b c <<<"$W_N"; REPORT+="| provider walsender CPU s per 100k tx, native's | $a | $b | $c | | |"$'\n'
read -r a b c <<<"$RSS"; REPORT+="| peak RSS of \`lorry run\` (VmHWM), MiB | $a | $b | $c | | |"$'\n'
if [ "$LAG_SECONDS" -gt 0 ]; then
  REPORT+=$'\n'"#### Steady lag: \`pgbench -n -c $CLIENTS -j $THREADS -R $LAG_RATE -T $LAG_SECONDS\`, sampled every $LAG_INTERVAL s, $LAG_RUNS rounds"$'\n\n'
  REPORT+="Per method: medians over the rounds of each round's p50 / p99 / max (ms until applied; kB between the provider's LSN and the slot's confirmed_flush_lsn), and subscriber-side CPU per 100k transactions during the window."$'\n\n'
  REPORT+="| method | achieved tx/s | lag p50 ms | p99 ms | max ms | kB p50 | kB p99 | kB max | CPU s /100k tx | rounds (p99 ms) |"$'\n'"|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"$'\n'
  for m in lorry native; do
    lagv() { local k=$1 r out=(); for ((r = 1; r <= LAG_RUNS; r++)); do [ -z "${V[lag.$k.$m.$r]:-}" ] || [ "${V[lag.$k.$m.$r]}" = - ] || out+=("${V[lag.$k.$m.$r]}"); done
             # shellcheck disable=SC2068
             med "$(mmm ${out[@]})"; }
    rs=""; for ((r = 1; r <= LAG_RUNS; r++)); do rs+="${rs:+ }${V[lag.p99.$m.$r]:-x}"; done
    REPORT+="| $m | $(lagv tps) | $(lagv p50) | $(lagv p99) | $(lagv max) | $(lagv kb50) | $(lagv kb99) | $(lagv kbmax) | $(lagv cpu) | $rs |"$'\n'
    [ "$m" = lorry ] && LAG_P99_L=$(lagv p99) || LAG_P99_N=$(lagv p99)
  done
fi
[ -z "$BIG" ] || REPORT+=$'\n'"#### One big transaction"$'\n\n'"$BIG"$'\n'
REPORT+=$'\n'"#### Against the targets of issue 4"$'\n\n'"| target | measured | |"$'\n'"|---|---:|---|"$'\n'
REPORT+="| catch-up ≥ 1.0× native | $rate_vs_native× | $(verdict "$rate_vs_native" ">=" 1.0) |"$'\n'
if [ "$DECODE" = 1 ]; then
  REPORT+="| catch-up ≥ 0.93× the decode ceiling (pg_recvlogical) | $rate_vs_ceiling× | $(verdict "$rate_vs_ceiling" ">=" 0.93) |"$'\n'
  REPORT+="| decode-only ≥ 0.95× pg_recvlogical | $decode_vs_recv× | $(verdict "$decode_vs_recv" ">=" 0.95) |"$'\n'
fi
REPORT+="| subscriber CPU per tx ≤ 0.7× native | $cost_vs_native× | $(verdict "$cost_vs_native" "<=" 0.7) |"$'\n'
REPORT+="| peak RSS ≤ 64 MiB (catch-up) | $(med "$RSS") MiB | $(verdict "$(med "$RSS")" "<=" 64) |"$'\n'
if [ "$LAG_SECONDS" -gt 0 ]; then
  lt=$(awk -v n="${LAG_P99_N:--}" 'BEGIN { if (n == "-") print "-"; else printf "%.1f", n + 5 }')
  REPORT+="| steady-lag p99 ≤ native p99 + 5 ms at $LAG_RATE tx/s | ${LAG_P99_L:--} ms vs ${lt} ms | $(verdict "${LAG_P99_L:--}" "<=" "$lt") |"$'\n'
fi
[ -z "$ANOMALIES" ] || REPORT+=$'\n'"Problems during the run:"$'\n'"$(sed 's/^/- /' <<<"${ANOMALIES%$'\n'}")"$'\n'

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "lorry apply benchmark, $START_DATE, lorry commit $LORRY_COMMIT, $(nproc) cores, load average $LOAD_START at start, $LOAD_END at end"
echo
printf '%s' "$REPORT"

if [ "$RECORD" = 1 ]; then
  RES=$REPO/bench/RESULTS.md
  {
    echo
    echo "## Apply: $START_DATE — lorry $LORRY_COMMIT"
    echo
    echo "Command: \`$ORIG_CMDLINE\` (\`bench/apply.sh\`; see its header for the method)"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GB RAM; $("$PG_BINDIR/postgres" --version); load average (1, 5, 15 min) $LOAD_START at start, $LOAD_END at end."
    echo "Rates are transactions/s until the subscriber's origin had applied the whole backlog (both methods polled alike); lorry/peer > 1 means lorry is faster, for costs < 1 means lorry is cheaper."
    echo "Native applies with the subscription default synchronous_commit = off; lorry commits its apply transactions with synchronous_commit = on."
    echo
    printf '%s' "$REPORT"
  } >>"$RES"
  log "appended to $RES"
fi
