# bench/lib.sh — what the benchmarks share: a temp dir removed at exit, two
# throwaway PostgreSQL servers on free loopback ports, psql helpers.
# Sourced by bench/*.sh after they define die() and log() and set PG_BINDIR
# and KEEP.

# The temp dir ($TMP, with logs/), $AS_PG (runs the server binaries as the
# `postgres` user when root), and the exit trap that ends our background
# processes (BG_PIDS) and servers (SERVERS) and removes $TMP unless KEEP=1.
bench_temp_dir() { # name (of the temp dir: lorry-NAME.XXXXXX)
  TMP=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/lorry-$1.XXXXXX")
  chmod 755 "$TMP"
  AS_PG=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user (from postgresql-common)"
    AS_PG=(runuser -u postgres --)
    chown postgres: "$TMP"
  fi
  mkdir -p "$TMP/logs"; chmod 777 "$TMP/logs"
  BG_PIDS=()   # background processes of ours to end at exit
  SERVERS=()   # data directories of running servers
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${SERVERS[@]}"; do "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true; done
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}

forget() { # pids...: no longer ours to end at exit (they were waited for)
  local keep=() p q
  for p in "${BG_PIDS[@]}"; do
    for q in "$@"; do [ "$p" != "$q" ] || continue 2; done
    keep+=("$p")
  done
  BG_PIDS=("${keep[@]}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    [ "$p" != "${PPORT:-}" ] && port_free "$p" && { echo "$p"; return; }
  done
  die "no free port found"
}

# start_server NAME PORT: initdb + start, with settings identical on both
# servers (fsync stays on) and the caller's own lines ($SERVER_CONF) after them.
start_server() {
  local dir=$TMP/$1
  "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$TMP/logs/initdb-$1.log" 2>&1 ||
    { cat "$TMP/logs/initdb-$1.log" >&2; die "initdb $1 failed"; }
  cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$dir'
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 100
# PostgreSQL's logical replication launcher starts workers at most once per
# wal_retrieve_retry_interval (default 5 s): a new or re-enabled subscription
# could wait that long before anything happens. Not what is measured.
wal_retrieve_retry_interval = 100ms
${SERVER_CONF:-}
CONF
  SERVERS+=("$dir")
  "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$dir" -l "$TMP/logs/server-$1.log" -w start >/dev/null ||
    { tail -20 "$TMP/logs/server-$1.log" >&2; die "server $1 did not start"; }
}

# The provider and the subscriber ($PPORT, $SPORT), and psql on either:
# pp DB [psql args...] / ps_ DB [psql args...]; pconn/sconn DB: conninfo.
# (NOTICEs such as "database ... does not exist, skipping" are noise here.)
start_both_servers() {
  PPORT=$(pick_port); start_server provider "$PPORT"
  SPORT=$(pick_port); start_server subscriber "$SPORT"
  log "provider on 127.0.0.1:$PPORT, subscriber on 127.0.0.1:$SPORT, temp dir $TMP"
  PSQL_P=(env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PPORT" -U postgres)
  PSQL_S=(env PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SPORT" -U postgres)
}
pp() { local db=$1; shift; "${PSQL_P[@]}" -d "$db" "$@"; }
ps_() { local db=$1; shift; "${PSQL_S[@]}" -d "$db" "$@"; }
pconn() { echo "host=127.0.0.1 port=$PPORT user=postgres dbname=$1"; }
sconn() { echo "host=127.0.0.1 port=$SPORT user=postgres dbname=$1"; }
