#!/usr/bin/env bash
# bench/sql.sh: TechEmpower's single query (/v1/db) and multiple queries (/v1/queries?queries=20) with
# wrk against apiary on MariaDB, aiohttp + aiomysql (a pool of 64) on the same MariaDB, and apiary on
# its embedded SQLite, in one run. The server under test runs alone on CPU 0 (apiary --threads 1, the
# Python server one event loop); wrk and the private mariadbd share CPU 1. Reports req/s, p50/p99,
# errors, the server's CPU time per request and the database server's CPU time per request (both
# from /proc/PID/stat).
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s), CONNS (64),
# OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1), DB_CPU (1), POOL (64: aiomysql's
# pool), APIARY_CONNS (apiary's sql.connections_per_loop, 16).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-64}"
WRK_CPU="${WRK_CPU:-1}"
DB_CPU="${DB_CPU:-1}"
POOL="${POOL:-64}"
APIARY_CONNS="${APIARY_CONNS:-16}"
CLK_TCK="$(getconf CLK_TCK)"
MARIADBD="${MARIADBD:-/usr/sbin/mariadbd}"
AIOHTTP="$BENCH_DIR/aiohttp_db.py"
PATHS=("/v1/db" "/v1/queries?queries=20")
APIARY_BASE='"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}'

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
[[ -x "$MARIADBD" ]] || die "mariadbd not found at $MARIADBD: apt-get install -y mariadb-server"
command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found: apt-get install -y mariadb-server"
"$PY" -c 'import aiohttp, aiomysql' 2>/dev/null \
    || die "aiohttp_db.py needs Debian's python3-aiohttp and python3-aiomysql:" \
        "apt-get install -y python3-aiohttp python3-aiomysql"

bench_init
MANIFEST="$BENCH_TMP/manifest.tsv"
COMMANDS="$BENCH_TMP/commands.txt"
: >"$MANIFEST"
: >"$COMMANDS"

# ---- the private MariaDB ------------------------------------------------------------------------

DB_PORT="$(free_port)"
DB_DIR="$BENCH_TMP/mariadb"
mkdir -p "$DB_DIR"
as_root=()
[[ $(id -u) -eq 0 ]] && as_root=(--user=root)
mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --auth-root-authentication-method=normal \
    --skip-test-db "${as_root[@]}" >"$DB_DIR/install.log" 2>&1 || die "mariadb-install-db failed: $DB_DIR/install.log"
DB_ARGS=(--no-defaults --datadir="$DB_DIR/data" --socket="$DB_DIR/sock" --port="$DB_PORT" --bind-address=127.0.0.1
         --skip-grant-tables --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=128M
         --max-connections=500 --log-error="$DB_DIR/error.log" "${as_root[@]}")
DB_CMD="taskset -c $DB_CPU $MARIADBD ${DB_ARGS[*]}"
taskset -c "$DB_CPU" "$MARIADBD" "${DB_ARGS[@]}" </dev/null >/dev/null 2>&1 &
DB_PID=$!
BENCH_PIDS+=("$DB_PID")
for ((i = 0; i < 300; i++)); do
    mariadb --no-defaults -h127.0.0.1 -P"$DB_PORT" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$DB_PID" 2>/dev/null || die "mariadbd exited at start; see $DB_DIR/error.log"
    sleep 0.1
done
DB_URL="mysql://bench:bench@127.0.0.1:$DB_PORT/hello_world"
log "mariadbd: pid $DB_PID on 127.0.0.1:$DB_PORT (cpus $(taskset -cp "$DB_PID" | sed 's/.*: //'))"

# ---- one measured run -------------------------------------------------------------------------------

server_alive() {  # NAME PID LOG WHEN
    kill -0 "$2" 2>/dev/null && return 0
    log "$1 (pid $2) died $4; last lines of its log:"
    tail -20 "$3" | sed 's/^/    /' >&2 || true
    exit 1
}

# measure NAME PID PORT LOG PATH: checks the body's shape, warms up, then the measured run bracketed by
# CPU readings of the server and of mariadbd.
measure() {
    local name=$1 pid=$2 port=$3 slog=$4 path=$5 url body out cmd s0 s1 d0 d1
    url="http://127.0.0.1:$port$path"
    body="$(curl -s -m 5 "$url" || true)"
    [[ "$body" == *'"randomNumber":'* ]] || log "warning: $name $path answers '${body:0:200}'"
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    server_alive "$name" "$pid" "$slog" "during the warm-up"
    out="$BENCH_TMP/wrk.$name.$(echo "$path" | tr -c 'a-z0-9' '_').txt"
    cmd="taskset -c $WRK_CPU wrk -t1 -c$CONNS -d$DURATION --latency $url"
    s0="$(cpu_ticks "$pid")"
    d0="$(cpu_ticks "$DB_PID")"
    $cmd >"$out" 2>&1 || log "wrk exited non-zero for $name (output kept in the report)"
    s1="$(cpu_ticks "$pid")"
    d1="$(cpu_ticks "$DB_PID")"
    server_alive "$name" "$pid" "$slog" "during the run"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$out" "$((s1 - s0))" "$((d1 - d0))" >>"$MANIFEST"
    printf '%s\n' "$cmd" >>"$COMMANDS"
    log "$name $path: $(grep -E 'requests in|Requests/sec|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
}

wait_sql_ready() {  # NAME PORT
    local i
    for ((i = 0; i < 150; i++)); do
        [[ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$2/readyz" || true)" == 200 ]] && return 0
        sleep 0.1
    done
    die "$1 did not become ready (GET /readyz)"
}

# ---- the servers, one at a time ----------------------------------------------------------------------

MARIADB_CONFIG="{$APIARY_BASE,\"sql\":{\"url\":\"$DB_URL\",\"connections_per_loop\":$APIARY_CONNS}}"
start_apiary apiary-mariadb "$MARIADB_CONFIG"
printf '%s (%s)\n' "$APIARY_CMD" "${MARIADB_CONFIG//bench:bench/bench:***}" >>"$COMMANDS"
wait_sql_ready apiary-mariadb "$APIARY_PORT"
for path in "${PATHS[@]}"; do measure apiary-mariadb "$APIARY_PID" "$APIARY_PORT" "$APIARY_LOG" "$path"; done
stop_pid "$APIARY_PID"

AIO_DIR="$BENCH_TMP/aiohttp"
mkdir -p "$AIO_DIR"
AIO_PORT="$(free_port)"
AIO_CMD="taskset -c $SERVER_CPU $PY $AIOHTTP 127.0.0.1:$AIO_PORT --mysql $DB_URL --pool $POOL"
# shellcheck disable=SC2086
$AIO_CMD </dev/null >"$AIO_DIR/stdout.log" 2>"$AIO_DIR/stderr.log" &
AIO_PID=$!
BENCH_PIDS+=("$AIO_PID")
wait_ready aiohttp "$AIO_PID" "$AIO_PORT" "$AIO_DIR/stderr.log"
printf '%s\n' "${AIO_CMD//bench:bench/bench:***}" >>"$COMMANDS"
log "aiohttp: pid $AIO_PID on 127.0.0.1:$AIO_PORT (cpus $(taskset -cp "$AIO_PID" | sed 's/.*: //'))"
for path in "${PATHS[@]}"; do measure aiohttp-aiomysql "$AIO_PID" "$AIO_PORT" "$AIO_DIR/stderr.log" "$path"; done
AIO_BANNER="$(head -1 "$AIO_DIR/stdout.log")"
stop_pid "$AIO_PID"

SQLITE_CONFIG="{$APIARY_BASE,\"sql\":{\"url\":\"sqlite:$BENCH_TMP/bench.db\"},\"pool\":{\"threads\":1,\"nice\":0}}"
start_apiary apiary-sqlite "$SQLITE_CONFIG"
printf '%s (%s)\n' "$APIARY_CMD" "$SQLITE_CONFIG" >>"$COMMANDS"
for path in "${PATHS[@]}"; do measure apiary-sqlite "$APIARY_PID" "$APIARY_PORT" "$APIARY_LOG" "$path"; done
stop_pid "$APIARY_PID"

# ---- report -----------------------------------------------------------------------------------------

REPORT="$BENCH_TMP/report.md"
{
    echo "## sql.sh: /v1/db and /v1/queries?queries=20, apiary (MariaDB, SQLite) vs aiohttp + aiomysql"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%MZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)," \
        "$("$MARIADBD" --version | sed 's/.*Ver /MariaDB /; s/ for.*//')."
    echo "Servers on CPU $SERVER_CPU (alone: apiary --threads 1 with sql.connections_per_loop $APIARY_CONNS; aiohttp one event loop, aiomysql pool $POOL); wrk -t1 -c$CONNS on CPU $WRK_CPU; mariadbd on CPU $DB_CPU (shared with wrk). $DURATION measured after a $WARMUP warm-up. apiary-sqlite: one worker thread (it shares CPU $SERVER_CPU with the loop)."
    echo "aiohttp: ${AIO_BANNER#listening on }."
    echo
    "$PY" -c '
import sys
sys.path.insert(0, sys.argv[3])
from wrk_report import parse_wrk
manifest, clk = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(manifest):
    name, path, out, sticks, dticks = line.rstrip("\n").split("\t")
    w = parse_wrk(open(out).read())
    n = w["requests"] or 0
    errs = sum(w["socket_errors"].values()) + w["non_2xx_3xx"]
    per = lambda ticks: (int(ticks) / clk / n * 1e6) if n else float("nan")
    lat = w["latency_s"]
    rows.append((name, path, w["rps"] or 0.0, lat.get("50"), lat.get("99"), per(sticks), per(dticks), errs))
def ms(v):
    return "-" if v is None else (f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s")
print("| server | path | req/s | p50 | p99 | server µs CPU/req | mariadbd µs CPU/req | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for name, path, rps, p50, p99, scpu, dcpu, errs in rows:
    print(f"| {name} | `{path}` | {rps:,.0f} | {ms(p50)} | {ms(p99)} | {scpu:.1f} | {dcpu:.1f} | {errs} |")
by = {(r[0], r[1]): r for r in rows}
print()
for path in sorted({r[1] for r in rows}):
    a, b = by.get(("apiary-mariadb", path)), by.get(("aiohttp-aiomysql", path))
    if a and b and b[2] and a[5]:
        print(f"- `{path}`: apiary-mariadb / aiohttp-aiomysql = {a[2] / b[2]:.1f}x req/s, server CPU per request "
              f"{a[5] / b[5]:.2f}x, mariadbd CPU per request {a[6] / b[6]:.2f}x.")
' "$MANIFEST" "$CLK_TCK" "$BENCH_DIR"
    echo
    echo "- **server µs CPU/req** = the server process's utime+stime over the measured run (/proc/PID/stat, all threads) ÷ requests wrk counted; **mariadbd µs CPU/req** = the same for mariadbd (for apiary-sqlite it shows mariadbd idle). Errors = wrk socket errors + non-2xx/3xx."
    echo
    echo "Commands (each server started fresh, stopped after its runs; the password is masked here):"
    echo
    echo '```'
    echo "$DB_CMD"
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>raw wrk output</summary>"
    echo
    echo '```'
    while IFS=$'\t' read -r name path out _ _; do
        echo "### $name $path"
        cat "$out"
    done <"$MANIFEST"
    echo '```'
    echo
    echo "</details>"
} >"$REPORT"

cat "$REPORT"
if [[ -n "${OUT:-}" && "$OUT" != /dev/stdout ]]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
