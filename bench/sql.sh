#!/usr/bin/env bash
# bench/sql.sh: TechEmpower's single query (/v1/db) and multiple queries (/v1/queries?queries=20) with
# wrk against apiary on MariaDB, aiohttp + aiomysql (a pool of 64) on the same MariaDB, and apiary on
# its embedded SQLite, in one run. The server under test runs alone on CPU 0 (apiary --threads 1, the
# Python server one event loop); wrk and the private mariadbd share CPU 1. Reports req/s, p50/p99,
# errors, the server's CPU time per request and the database server's CPU time per request (both
# from /proc/PID/stat). The runs and the report are bench/run.sh's; this file is the suite's tables.
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s), CONNS (64),
# ROUNDS (1), OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1), DB_CPU (1), POOL (64:
# aiomysql's pool), APIARY_CONNS (apiary's sql.connections_per_loop, 16), MARIADBD (/usr/sbin/mariadbd).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 10s 2s 1 64
DB_CPU="${DB_CPU:-1}"
POOL="${POOL:-64}"
APIARY_CONNS="${APIARY_CONNS:-16}"
MARIADBD="${MARIADBD:-/usr/sbin/mariadbd}"
APIARY_BASE='"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}'

[[ -x "$MARIADBD" ]] || die "mariadbd not found at $MARIADBD: apt-get install -y mariadb-server"
command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found: apt-get install -y mariadb-server"
"$PY" -c 'import aiohttp, aiomysql' 2>/dev/null \
    || die "aiohttp_db.py needs Debian's python3-aiohttp and python3-aiomysql:" \
        "apt-get install -y python3-aiohttp python3-aiomysql"

bench_init

# One private MariaDB for the whole run; apiary creates and fills hello_world.world on its first start.
DB_PORT="$(free_port)"
DB_DIR="$BENCH_TMP/mariadb"
mkdir -p "$DB_DIR"
as_root=()
[[ $(id -u) -eq 0 ]] && as_root=(--user=root)
mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --auth-root-authentication-method=normal \
    --skip-test-db "${as_root[@]}" >"$DB_DIR/install.log" 2>&1 || die "mariadb-install-db failed: $DB_DIR/install.log"
start_aux mariadbd "mariadb --no-defaults -h127.0.0.1 -P$DB_PORT -uroot -e 'SELECT 1'" -- \
    taskset -c "$DB_CPU" "$MARIADBD" --no-defaults --datadir="$DB_DIR/data" --socket="$DB_DIR/sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-grant-tables --skip-name-resolve --skip-log-bin \
    --innodb-buffer-pool-size=128M --max-connections=500 --log-error="$DB_DIR/error.log" "${as_root[@]}"
DB_URL="mysql://bench:bench@127.0.0.1:$DB_PORT/hello_world"

# the password is masked in the report
redact() { sed 's/bench:bench@/bench:***@/g'; }

suite_check() {
    local body
    body="$(curl -s -m 5 "$2" || true)"
    [[ "$body" == *'"randomNumber":'* ]] || log "warning: $1 $2 answers '${body:0:200}'"
}

# label | role | ready path | start
SERVERS=(
    "apiary-mariadb|subject|/readyz|apiary {$APIARY_BASE,\"sql\":{\"url\":\"$DB_URL\",\"connections_per_loop\":$APIARY_CONNS}}"
    "aiohttp-aiomysql|peer||cmd $PY $BENCH_DIR/aiohttp_db.py 127.0.0.1:{port} --mysql $DB_URL --pool $POOL"
    "apiary-sqlite|subject||apiary {$APIARY_BASE,\"sql\":{\"url\":\"sqlite:$BENCH_TMP/bench.db\"},\"pool\":{\"threads\":1,\"nice\":0}}"
)

# label | path | connections | wrk script | script args
WORKLOADS=(
    "/v1/db|/v1/db|$CONNS||"
    "/v1/queries?queries=20|/v1/queries?queries=20|$CONNS||"
)

SUITE_TITLE="sql.sh: /v1/db and /v1/queries?queries=20, apiary (MariaDB, SQLite) vs aiohttp + aiomysql"
SUITE_ABOUT="$("$MARIADBD" --version | sed 's/.*Ver /MariaDB /; s/ for.*//')"
SUITE_SETUP+=("apiary --threads 1 with sql.connections_per_loop $APIARY_CONNS; aiohttp one event loop, aiomysql pool $POOL; mariadbd on CPU $DB_CPU (shared with wrk). apiary-sqlite: one worker thread (it shares CPU $SERVER_CPU with the loop).")
SUITE_NOTES+=("For apiary-sqlite the mariadbd column shows mariadbd idle.")
run_suite
