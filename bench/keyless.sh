#!/usr/bin/env bash
# bench/keyless.sh — applying updates and deletes to tables without a key
# (REPLICA IDENTITY FULL, no index), next to PostgreSQL's own logical
# replication (CREATE SUBSCRIPTION).
#
# Two local PostgreSQL servers (bench/lib.sh). On the provider, table f
# (a int, b int, c text) REPLICA IDENTITY FULL with --rows rows and no
# index; replicated into two subscriber databases: sub_lorry (lorry) and
# sub_native (a subscription to a publication of f). Then, for --runs
# rounds, with both paused (lorry stopped, the subscription disabled):
# --updates single-row UPDATEs (each its own transaction, rows picked in
# turn) and --deletes single-row DELETE + INSERT pairs, then one marker
# transaction; each method then consumes the same backlog, timed from its
# start until it has applied up to the marker (lorry: `lorry wait`;
# native: its origin's progress), order rotating. The round ends with the
# tables compared (count and sum) on all three sides.
#
# Usage: bench/keyless.sh [--rows N] [--updates N] [--deletes N] [--runs N] [--record] [--keep]
# Environment: LORRY_BIN (default build/lorry), PG_BINDIR (default /usr/lib/postgresql/15/bin).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
ORIG_CMDLINE="bench/keyless.sh${*:+ $*}"
ROWS=50 UPDATES=3000 DELETES=500 RUNS=3 RECORD=0 KEEP=0
LORRY_BIN=${LORRY_BIN:-$REPO/build/lorry}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
die() { echo "keyless: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
while [ $# -gt 0 ]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --updates) UPDATES=$2; shift 2 ;;
    --deletes) DELETES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --record) RECORD=1; shift ;;
    --keep) KEEP=1; shift ;;
    *) sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
[ -x "$LORRY_BIN" ] || die "no lorry binary at $LORRY_BIN (make build, or set LORRY_BIN)"
LORRY_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)

# shellcheck source=bench/lib.sh
. "$SCRIPT_DIR/lib.sh"
bench_temp_dir keyless
SERVER_CONF="log_min_messages = warning"
start_both_servers

pp postgres -c "CREATE DATABASE bench"
for db in sub_lorry sub_native; do ps_ postgres -c "CREATE DATABASE $db"; done
TABLE="CREATE TABLE f (a int, b int, c text)"
pp bench -c "$TABLE" -c "ALTER TABLE f REPLICA IDENTITY FULL" \
  -c "INSERT INTO f SELECT g, 0, repeat('x', 20) FROM generate_series(1, $ROWS) g" \
  -c "CREATE PUBLICATION native_pub FOR TABLE f"
for db in sub_lorry sub_native; do ps_ "$db" -c "$TABLE"; done
ps_ sub_native -c "CREATE SUBSCRIPTION bench_native CONNECTION '$(pconn bench)' PUBLICATION native_pub"
LOPTS=(--provider "$(pconn bench)" --subscriber "$(sconn sub_lorry)" --name bench)
"$LORRY_BIN" init "${LOPTS[@]}" >/dev/null
"$LORRY_BIN" add f "${LOPTS[@]}" >/dev/null

lorry_start() { "$LORRY_BIN" run "${LOPTS[@]}" >>"$TMP/logs/run.log" 2>&1 & LPID=$!; BG_PIDS+=("$LPID"); }
lorry_stop() { kill -TERM "$LPID"; wait "$LPID" || true; forget "$LPID"; }
lorry_wait() { "$LORRY_BIN" wait "${LOPTS[@]}" --timeout 1800 >/dev/null; }
native_origin() { ps_ sub_native -At -c "SELECT coalesce(pg_replication_origin_progress('pg_' || oid, false), '0/0') FROM pg_subscription WHERE subname = 'bench_native'"; }
native_wait() { # lsn
  while [ "$(ps_ sub_native -At -c "SELECT '$(native_origin)'::pg_lsn >= '$1'::pg_lsn")" != t ]; do sleep 0.01; done
}
native_disable() {
  ps_ sub_native -c "ALTER SUBSCRIPTION bench_native DISABLE"
  while [ -n "$(ps_ sub_native -At -c "SELECT pid FROM pg_stat_subscription WHERE subname = 'bench_native' AND pid IS NOT NULL")" ]; do sleep 0.05; done
}
sig() { local side=$1 db=$2; "$side" "$db" -At -c "SELECT count(*) || ' ' || coalesce(sum(a::bigint * 1000003 + b), 0) FROM f"; }
now() { date +%s.%N; }

# Synced: native's initial copy, lorry's.
lorry_start; lorry_wait; lorry_stop
until [ "$(ps_ sub_native -At -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.1; done
native_disable

# The backlog of one round: single-row transactions.
for i in $(seq 1 "$UPDATES"); do echo "UPDATE f SET b = b + 1 WHERE a = $(( (i - 1) % ROWS + 1 ));"; done >"$TMP/updates.sql"
for i in $(seq 1 "$DELETES"); do
  a=$(( (i - 1) % ROWS + 1 ))
  echo "BEGIN; DELETE FROM f WHERE a = $a; INSERT INTO f VALUES ($a, $i, repeat('y', 20)); COMMIT;"
done >"$TMP/deletes.sql"

declare -A T
for r in $(seq 1 "$RUNS"); do
  pp bench -f "$TMP/updates.sql" >/dev/null
  pp bench -f "$TMP/deletes.sql" >/dev/null
  pp bench -c "UPDATE f SET b = b WHERE a = 1" >/dev/null
  target=$(pp bench -At -c "SELECT pg_current_wal_insert_lsn()")
  order=(lorry native); [ $((r % 2)) = 0 ] && order=(native lorry)
  for m in "${order[@]}"; do
    t0=$(now)
    if [ "$m" = lorry ]; then lorry_start; lorry_wait; t1=$(now); lorry_stop
    else ps_ sub_native -c "ALTER SUBSCRIPTION bench_native ENABLE"; native_wait "$target"; t1=$(now); native_disable; fi
    T[$m.$r]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    log "round $r $m: ${T[$m.$r]} s"
  done
  p=$(sig pp bench) l=$(sig ps_ sub_lorry) n=$(sig ps_ sub_native)
  [ "$p" = "$l" ] && [ "$p" = "$n" ] || die "round $r: tables differ: provider $p, lorry $l, native $n"
done

med() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lv=(); nv=(); for r in $(seq 1 "$RUNS"); do lv+=("${T[lorry.$r]}"); nv+=("${T[native.$r]}"); done
lm=$(med "${lv[@]}"); nm=$(med "${nv[@]}")
report=$(cat <<REPORT

### keyless apply, $(date -u '+%Y-%m-%d %H:%M') UTC, lorry $LORRY_COMMIT, $(nproc) cores

\`$ORIG_CMDLINE\` — REPLICA IDENTITY FULL table of $ROWS rows without an index; per round $UPDATES single-row UPDATEs and $DELETES DELETE+INSERT transactions, consumed by each method from paused; seconds until applied (median of $RUNS rounds; rounds: lorry ${lv[*]}, native ${nv[*]}).

| method | median s | tx/s |
|---|---:|---:|
| lorry | $lm | $(awk -v s="$lm" -v n=$((UPDATES + DELETES + 1)) 'BEGIN { printf "%.0f", n / s }') |
| native | $nm | $(awk -v s="$nm" -v n=$((UPDATES + DELETES + 1)) 'BEGIN { printf "%.0f", n / s }') |

native/lorry time ratio (> 1: lorry is faster): $(awk -v a="$nm" -v b="$lm" 'BEGIN { printf "%.2f", a / b }')
REPORT
)
echo "$report"
[ "$RECORD" = 0 ] || echo "$report" >>"$REPO/bench/RESULTS.md"
