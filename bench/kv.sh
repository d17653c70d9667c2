#!/usr/bin/env bash
# bench/kv.sh: GET /v1/kv/{key} with wrk against apiary on the memory backend, apiary on the Redis
# backend and aiohttp + redis.asyncio on the same Redis, in one run. The server under test runs alone
# on CPU 0; wrk and the private redis-server share CPU 1 (see bench/README.md, "kv.sh", for why).
# Reports req/s, p50/p99, the server's CPU time per request and Redis's CPU time per request.
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s), CONNS (64),
# OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1), REDIS_CPU (1),
# REDIS_SERVER (/usr/bin/redis-server).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNS="${CONNS:-64}"
WRK_CPU="${WRK_CPU:-1}"
REDIS_CPU="${REDIS_CPU:-1}"
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/redis-server}"
CLK_TCK="$(getconf CLK_TCK)"
AIOHTTP="$BENCH_DIR/aiohttp_kv.py"
KEY=bench
# A small document of every JSON kind; stored as this exact compact text by all three servers.
VALUE='{"id":12345,"name":"apiary bench","tags":["a","b","c"],"active":true,"score":9.5,"parent":null}'
EXPECTED="{\"key\":\"$KEY\",\"value\":$VALUE,\"ttl\":null}"
APIARY_BASE='"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}'

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
[[ -x "$REDIS_SERVER" ]] || die "redis-server not found at $REDIS_SERVER: apt-get install -y redis-server"
command -v redis-cli >/dev/null || die "redis-cli not found: apt-get install -y redis-tools"
"$PY" -c 'import aiohttp, redis.asyncio' 2>/dev/null \
    || die "aiohttp_kv.py needs Debian's python3-aiohttp and python3-redis:" \
        "apt-get install -y python3-aiohttp python3-redis"

bench_init
MANIFEST="$BENCH_TMP/manifest.tsv"
COMMANDS="$BENCH_TMP/commands.txt"
: >"$MANIFEST"
: >"$COMMANDS"

# ---- the private Redis ----------------------------------------------------------------------------

REDIS_PORT="$(free_port)"
REDIS_DIR="$BENCH_TMP/redis"
mkdir -p "$REDIS_DIR"
REDIS_CMD="taskset -c $REDIS_CPU $REDIS_SERVER --port $REDIS_PORT --bind 127.0.0.1 --save \"\" --appendonly no"
REDIS_CMD+=" --dir $REDIS_DIR"
taskset -c "$REDIS_CPU" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" </dev/null >/dev/null 2>&1 &
REDIS_PID=$!
BENCH_PIDS+=("$REDIS_PID")
for ((i = 0; i < 100; i++)); do
    [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start; see $REDIS_DIR/redis.log"
    sleep 0.1
done
[[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" == PONG ]] || die "redis-server did not answer PING"
redis-cli -p "$REDIS_PORT" set "apiary:kv:$KEY" "$VALUE" >/dev/null
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
log "redis-server: pid $REDIS_PID on 127.0.0.1:$REDIS_PORT (cpus $(taskset -cp "$REDIS_PID" | sed 's/.*: //'))"

# ---- one measured run -------------------------------------------------------------------------------

server_alive() {  # NAME PID LOG WHEN
    kill -0 "$2" 2>/dev/null && return 0
    log "$1 (pid $2) died $4; last lines of its log:"
    tail -20 "$3" | sed 's/^/    /' >&2 || true
    exit 1
}

# measure NAME PID PORT LOG: checks the body, warms up, then the measured run bracketed by CPU
# readings of the server and of Redis.
measure() {
    local name=$1 pid=$2 port=$3 slog=$4 url body out cmd s0 s1 r0 r1
    url="http://127.0.0.1:$port/v1/kv/$KEY"
    body="$(curl -s -m 5 "$url" || true)"
    [[ "$body" == "$EXPECTED" ]] || log "warning: $name answers '$body', not '$EXPECTED'"
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    server_alive "$name" "$pid" "$slog" "during the warm-up"
    out="$BENCH_TMP/wrk.$name.txt"
    cmd="taskset -c $WRK_CPU wrk -t1 -c$CONNS -d$DURATION --latency $url"
    s0="$(cpu_ticks "$pid")"
    r0="$(cpu_ticks "$REDIS_PID")"
    $cmd >"$out" 2>&1 || log "wrk exited non-zero for $name (output kept in the report)"
    s1="$(cpu_ticks "$pid")"
    r1="$(cpu_ticks "$REDIS_PID")"
    server_alive "$name" "$pid" "$slog" "during the run"
    printf '%s\t%s\t%s\t%s\n' "$name" "$out" "$((s1 - s0))" "$((r1 - r0))" >>"$MANIFEST"
    printf '%s\n' "$cmd" >>"$COMMANDS"
    log "$name: $(grep -E 'requests in|Requests/sec' "$out" | tr -s ' ' | tr '\n' ' ')"
}

# ---- the three servers, one at a time --------------------------------------------------------------

start_apiary apiary-memory "{$APIARY_BASE}"
printf '%s (%s)\n' "$APIARY_CMD" "{$APIARY_BASE}" >>"$COMMANDS"
code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' --data "$VALUE" \
    "http://127.0.0.1:$APIARY_PORT/v1/kv/$KEY")"
[[ "$code" == 201 ]] || die "apiary-memory: PUT /v1/kv/$KEY answered $code (no /v1/kv in this build?)"
measure apiary-memory "$APIARY_PID" "$APIARY_PORT" "$APIARY_LOG"
stop_pid "$APIARY_PID"

REDIS_CONFIG="{$APIARY_BASE,\"kv\":{\"backend\":\"redis\"},\"redis\":{\"url\":\"$REDIS_URL\"}}"
start_apiary apiary-redis "$REDIS_CONFIG"
printf '%s (%s)\n' "$APIARY_CMD" "$REDIS_CONFIG" >>"$COMMANDS"
measure apiary-redis "$APIARY_PID" "$APIARY_PORT" "$APIARY_LOG"
stop_pid "$APIARY_PID"

AIO_DIR="$BENCH_TMP/aiohttp"
mkdir -p "$AIO_DIR"
AIO_PORT="$(free_port)"
AIO_CMD="taskset -c $SERVER_CPU $PY $AIOHTTP 127.0.0.1:$AIO_PORT --redis $REDIS_URL"
# shellcheck disable=SC2086
$AIO_CMD </dev/null >"$AIO_DIR/stdout.log" 2>"$AIO_DIR/stderr.log" &
AIO_PID=$!
BENCH_PIDS+=("$AIO_PID")
wait_url aiohttp "$AIO_PID" "http://127.0.0.1:$AIO_PORT/v1/kv/$KEY" "$AIO_DIR/stderr.log" "$EXPECTED"
printf '%s\n' "$AIO_CMD" >>"$COMMANDS"
log "aiohttp: pid $AIO_PID on 127.0.0.1:$AIO_PORT (cpus $(taskset -cp "$AIO_PID" | sed 's/.*: //'))"
measure aiohttp "$AIO_PID" "$AIO_PORT" "$AIO_DIR/stderr.log"
AIO_BANNER="$(head -1 "$AIO_DIR/stdout.log")"
stop_pid "$AIO_PID"

# ---- report -----------------------------------------------------------------------------------------

REPORT="$BENCH_TMP/report.md"
{
    echo "## kv.sh: GET /v1/kv/{key}, apiary (memory, Redis) vs aiohttp + redis.asyncio"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%MZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)," \
        "$("$REDIS_SERVER" --version | cut -d' ' -f1-3)."
    echo "Servers on CPU $SERVER_CPU (alone, one loop / one event loop); wrk -t1 -c$CONNS on CPU $WRK_CPU; redis-server on CPU $REDIS_CPU (shared with wrk). $DURATION measured after a $WARMUP warm-up."
    echo "aiohttp: ${AIO_BANNER#listening on }."
    echo
    "$PY" -c '
import sys
sys.path.insert(0, sys.argv[3])
from wrk_report import parse_wrk
manifest, clk = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(manifest):
    name, out, sticks, rticks = line.rstrip("\n").split("\t")
    w = parse_wrk(open(out).read())
    n = w["requests"] or 0
    errs = sum(w["socket_errors"].values()) + w["non_2xx_3xx"]
    per = lambda ticks: (int(ticks) / clk / n * 1e6) if n else float("nan")
    lat = w["latency_s"]
    rows.append((name, w["rps"] or 0.0, lat.get("50"), lat.get("99"), per(sticks), per(rticks), errs))
def ms(v):
    return "-" if v is None else (f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s")
print("| server | req/s | p50 | p99 | server µs CPU/req | redis µs CPU/req | errors |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, rps, p50, p99, scpu, rcpu, errs in rows:
    print(f"| {name} | {rps:,.0f} | {ms(p50)} | {ms(p99)} | {scpu:.1f} | {rcpu:.1f} | {errs} |")
by = {r[0]: r for r in rows}
if "apiary-redis" in by and "aiohttp" in by and by["aiohttp"][1]:
    a, b = by["apiary-redis"], by["aiohttp"]
    print()
    print(f"apiary-redis / aiohttp: {a[1] / b[1]:.1f}x req/s, {b[4] / a[4]:.1f}x less server CPU per request.")
' "$MANIFEST" "$CLK_TCK" "$BENCH_DIR"
    echo
    echo "- **server µs CPU/req** = the server process's utime+stime over the measured run (/proc/PID/stat, all threads) ÷ requests wrk counted. **redis µs CPU/req** = the same for redis-server (it shares CPU $WRK_CPU with wrk; the memory row shows its idle cost). Errors = wrk socket errors + non-2xx/3xx."
    echo "- Every server answers the same body: \`$EXPECTED\` (checked before each run)."
    echo
    echo "Commands (each server started fresh, stopped after its run):"
    echo
    echo '```'
    echo "$REDIS_CMD"
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>raw wrk output</summary>"
    echo
    echo '```'
    while IFS=$'\t' read -r name out _ _; do
        echo "### $name"
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
