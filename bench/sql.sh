#!/usr/bin/env bash
# bench/sql.sh: TechEmpower's database tests (/v1/db, /v1/queries?queries=20, /v1/updates?queries=20)
# with wrk against apiary and the reference servers of ../shared/peers/db/ (db-peers.sh), on the same
# private database, in one run: on MariaDB apiary and Go + go-sql-driver (go_mysql); on PostgreSQL
# apiary, Go + pgx (go_pgx) and aiohttp + asyncpg (aiohttp_asyncpg). Each server runs alone on
# SERVER_CPU (apiary --threads 1, the Go peers GOMAXPROCS=1, the Python one one event loop); wrk and
# the database share DB_CPU/WRK_CPU. Reports req/s, p50/p99, errors, the server's CPU time per request
# and the database's (every process of it) per request, both from /proc/PID/stat, and each server's
# ratios to the strongest peer on that route. The runs and the report are bench/run.sh's; this file is
# the suite's tables; the servers take turns on each route (SERVERS_TOGETHER=1). DB=both runs the MariaDB suite, then the PostgreSQL one, and prints both reports.
#
# Environment: DB (both | mariadb | postgres), SERVERS_TOGETHER (1; 0: one server at a time), APIARY_BIN (default build-release/apiary), DURATION
# (10s), WARMUP (2s), CONNS (64), ROUNDS (1), OUT (also write the report there), SERVER_CPU (0),
# WRK_CPU (1), DB_CPU (1), POOL (32: the peers' pools), APIARY_CONNS (apiary's sql.connections_per_loop:
# 16 on MariaDB, 4 on PostgreSQL), APIARY_DEPTH (sql.pipeline_depth on both: statements in flight per
# connection, 32; on MariaDB only plaintext connections pipeline, docs/sql.md), GOMAXPROCS (1), DB_RELAXED (1: relaxed
# commits on both sides, db-peers.sh's), PEERS_DIR (../shared/peers/db next to the repository).
set -euo pipefail

DB="${DB:-both}"
case $DB in
    both)
        # Two suites, one after the other, each with its own database; one report of both.
        here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
        out="${OUT:-}"
        reports="$(mktemp -d "${TMPDIR:-/tmp}/apiary-sql-bench.XXXXXX")"
        trap 'rm -rf "$reports"' EXIT
        OUT="" DB=mariadb "$here/sql.sh" >"$reports/mariadb.md"
        OUT="" DB=postgres "$here/sql.sh" >"$reports/postgres.md"
        cat "$reports/mariadb.md" <(echo) "$reports/postgres.md" | tee "$reports/both.md"
        [[ -z "$out" ]] || { cp "$reports/both.md" "$out"; echo "[bench] report written to $out" >&2; }
        exit 0
        ;;
    mariadb | postgres) ;;
    *) echo "bench/sql.sh: DB must be both, mariadb or postgres, not '$DB'" >&2; exit 2 ;;
esac

# All servers run throughout and take turns on each route, the first alternating (run.sh): on a shared
# machine slow drift then favours none of them.
SERVERS_TOGETHER="${SERVERS_TOGETHER:-1}"
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 10s 2s 1 64
DB_CPU="${DB_CPU:-1}"
POOL="${POOL:-32}"
GOMAXPROCS="${GOMAXPROCS:-1}"
PEERS_DIR="${PEERS_DIR:-$REPO_DIR/../shared/peers/db}"
DB_PEERS="$PEERS_DIR/db-peers.sh"
PEERS_BUILD="${DB_PEERS_BUILD:-/tmp/apiary-db-peers/build}"
PEERS_PY=/usr/bin/python3 # db-peers.sh's: Debian's python3-asyncpg and -uvloop
APIARY_BASE='"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}'

[[ -x "$DB_PEERS" ]] || die "db-peers.sh not found at $DB_PEERS (set PEERS_DIR)"
# Builds the Go peers once (nothing when they are up to date); db-peers.sh deps installs what it needs.
DB_PEERS_BUILD="$PEERS_BUILD" "$DB_PEERS" build >&2 || die "db-peers.sh build failed: run $DB_PEERS deps"
if [[ $DB == postgres ]]; then
    "$PEERS_PY" -c 'import aiohttp, asyncpg' 2>/dev/null || die "aiohttp_asyncpg needs python3-asyncpg: $DB_PEERS deps"
fi

bench_init
# The database is started by db-peers.sh (not a child of this shell): stopped by PID through it, before
# bench_cleanup removes its data directory. PostgreSQL runs as the postgres user when this runs as root,
# so the temp dir must be traversable.
chmod 755 "$BENCH_TMP"
DB_PID=""
sql_cleanup() {
    local rc=$?
    [[ -z $DB_PID ]] || "$DB_PEERS" stop "$DB_PID" || true
    bench_cleanup
    return "$rc"
}
trap sql_cleanup EXIT

DB_PORT="$(free_port)"
SUITE_SETUP+=("The database on CPU $DB_CPU, wrk on CPU $WRK_CPU. Peers: pool $POOL, /v1/updates batched (db-peers.sh UPDATES=batch), Go with GOMAXPROCS=$GOMAXPROCS; commits $([[ ${DB_RELAXED:-0} == 1 ]] && echo relaxed || echo durable) on the database.")
if [[ $DB == mariadb ]]; then
    APIARY_CONNS="${APIARY_CONNS:-16}"
    APIARY_DEPTH="${APIARY_DEPTH:-32}"
    DB_PID="$(DB_CPU="$DB_CPU" "$DB_PEERS" mariadb-start "$DB_PORT" "$BENCH_TMP/mariadb")" || die "mariadb-start failed"
    AUX_NAME=mariadbd
    DB_URL="mysql://apiary:secret@127.0.0.1:$DB_PORT/apiary"
    SERVERS=(
        "apiary-mariadb|subject|/readyz|apiary {$APIARY_BASE,\"sql\":{\"url\":\"$DB_URL\",\"connections_per_loop\":$APIARY_CONNS,\"pipeline_depth\":$APIARY_DEPTH}}"
        "go_mysql|peer|/v1/db|cmd env GOMAXPROCS=$GOMAXPROCS $PEERS_BUILD/go_mysql -pool $POOL -updates batch {port} $DB_PORT"
    )
    SUITE_ABOUT="$(/usr/sbin/mariadbd --version | sed 's/.*Ver /MariaDB /; s/ for.*//'), $(go version | cut -d' ' -f3)"
    SUITE_SETUP+=("apiary --threads 1, sql.connections_per_loop $APIARY_CONNS (opened as statements stack up), sql.pipeline_depth $APIARY_DEPTH.")
else
    APIARY_CONNS="${APIARY_CONNS:-4}"
    APIARY_DEPTH="${APIARY_DEPTH:-32}"
    DB_PID="$(DB_CPU="$DB_CPU" "$DB_PEERS" pg-start "$DB_PORT" "$BENCH_TMP/pg")" || die "pg-start failed"
    AUX_NAME=postgres
    DB_URL="postgres://apiary:secret@127.0.0.1:$DB_PORT/apiary"
    SERVERS=(
        "apiary-postgres|subject|/readyz|apiary {$APIARY_BASE,\"sql\":{\"url\":\"$DB_URL\",\"connections_per_loop\":$APIARY_CONNS,\"pipeline_depth\":$APIARY_DEPTH}}"
        "go_pgx|peer|/v1/db|cmd env GOMAXPROCS=$GOMAXPROCS $PEERS_BUILD/go_pgx -pool $POOL -updates batch {port} $DB_PORT"
        "aiohttp_asyncpg|peer|/v1/db|cmd $PEERS_PY $PEERS_DIR/servers/aiohttp_asyncpg.py {port} $DB_PORT --pool $POOL --updates batch"
    )
    SUITE_ABOUT="$(/usr/lib/postgresql/15/bin/postgres --version | sed 's/.*) /PostgreSQL /'), $(go version | cut -d' ' -f3)"
    SUITE_SETUP+=("apiary --threads 1, sql.connections_per_loop $APIARY_CONNS, sql.pipeline_depth $APIARY_DEPTH.")
    SUITE_NOTES+=("postgres µs CPU/req sums every process of the cluster: the postmaster's own and reaped children's time (utime, stime, cutime, cstime) and each live child's (the backends, one per connection; walwriter, checkpointer, ...).")
fi
AUX_PID=$DB_PID
SUITE_COMMANDS+=("DB_CPU=$DB_CPU $DB_PEERS $([[ $DB == mariadb ]] && echo mariadb-start || echo pg-start) $DB_PORT TMP/$DB    # pid $DB_PID")
log "$AUX_NAME: pid $DB_PID on 127.0.0.1:$DB_PORT (cpus $(taskset -cp "$DB_PID" | sed 's/.*: //'))"

# PostgreSQL is a process per connection: the database's CPU is the postmaster's (its own and what it
# reaped) plus every live child's. A child that exits mid-run moves its time into the postmaster's
# cutime/cstime, so nothing is lost or counted twice.
pg_ticks() {
    local stat rest f total c
    stat="$(<"/proc/$AUX_PID/stat")"
    rest="${stat##*) }"
    read -r -a f <<<"$rest"
    total=$((f[11] + f[12] + f[13] + f[14]))
    for c in $(pgrep -P "$AUX_PID" || true); do
        total=$((total + $(cpu_ticks "$c" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
[[ $DB == mariadb ]] || aux_ticks() { pg_ticks; }

# the password is masked in the report
redact() { sed 's/apiary:secret@/apiary:***@/g'; }

suite_check() {
    local body
    body="$(curl -s -m 5 "$2" || true)"
    [[ "$body" == *'"randomNumber":'* ]] || log "warning: $1 $2 answers '${body:0:200}'"
}

# label | path | connections | wrk script | script args
WORKLOADS=(
    "/v1/db|/v1/db|$CONNS||"
    "/v1/queries?queries=20|/v1/queries?queries=20|$CONNS||"
    "/v1/updates?queries=20|/v1/updates?queries=20|$CONNS||"
)

SUITE_TITLE="sql.sh on $([[ $DB == mariadb ]] && echo MariaDB || echo PostgreSQL): apiary vs $([[ $DB == mariadb ]] && echo go_mysql || echo 'go_pgx and aiohttp_asyncpg') (../shared/peers/db)"
run_suite
