#!/usr/bin/env bash
# bench/sleep.sh: 10,000 concurrent keep-alive connections on GET /v1/sleep?ms=100 (each request
# waits 100 ms on a timer, then answers {"slept_ms":100}), apiary vs aiohttp in one run. It asks
# whether a server keeps 10,000 waiting requests going at the rate the sleep allows (10,000 / 0.1 s
# = 100,000 req/s) and how much memory a waiting connection costs. Servers on CPU 0, wrk on CPU 1.
# See bench/README.md, "sleep.sh".
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (15s), WARMUP (3s), CONNS (10000),
# SLEEP_MS (100), WRK_THREADS (1), WRK_TIMEOUT (10s), BACKLOG (16384), THREADS2 (1: also run apiary
# --threads 2 unpinned), APIARY_CONFIG (JSON; default below), OUT (also write the report there),
# BENCH_SELFTEST=1 (a second aiohttp stands in for apiary), SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS="${CONNS:-10000}"
SLEEP_MS="${SLEEP_MS:-100}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-3s}"
WRK_THREADS="${WRK_THREADS:-1}"
WRK_TIMEOUT="${WRK_TIMEOUT:-10s}"
WRK_CPU="${WRK_CPU:-1}"
BACKLOG="${BACKLOG:-16384}"
THREADS2="${THREADS2:-1}"
SELFTEST="${BENCH_SELFTEST:-0}"
# The config asked for, plus "backlog": aiohttp gets a listen backlog above 10,000 and so must
# apiary (its default is 511), or SYNs dropped while wrk opens its connections would cost apiary a
# 1 s retransmit on some of them and the comparison would be of backlogs, not servers.
DEFAULT_APIARY_CONFIG="{\"log_level\":\"warn\",\"backlog\":$BACKLOG,\"max_connections\":20000,\"limits\":{\"max_async_per_loop\":20000},\"timeouts\":{\"keepalive_ms\":600000,\"header_ms\":600000,\"request_ms\":60000}}"
APIARY_CONFIG="${APIARY_CONFIG:-$DEFAULT_APIARY_CONFIG}"
AIOHTTP="$BENCH_DIR/aiohttp_sleep.py"
RUNNER="$BENCH_DIR/sleep_run.py"
TARGET_FRAC=0.9     # req/s >= 90 % of ideal
TARGET_KIB=4        # RSS per waiting connection <= 4 KiB

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"
"$PY" -c 'import aiohttp' 2>/dev/null || die "$PY has no aiohttp: apt-get install -y python3-aiohttp"

bench_init
CLK_TCK="$(getconf CLK_TCK)"
COMMANDS="$BENCH_TMP/commands.txt"
RUNS=()        # run JSON files, in report order
NOTES=()       # lines for the report
: >"$COMMANDS"

# run_waited CMD...: runs CMD in the background and waits for it, so Ctrl-C/TERM reach the EXIT
# trap at once (bash delays traps until a foreground child ends) and the cleanup can stop it.
run_waited() {
    local pid rc=0 keep=() p
    "$@" &
    pid=$!
    BENCH_PIDS+=("$pid")
    wait "$pid" || rc=$?
    for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
    return "$rc"
}

vm_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# wait_sleep_ready NAME PID PORT LOG: polls GET /v1/sleep?ms=1 until it answers 200, for at most
# READY_TIMEOUT seconds. A 404 means the binary has no /v1/sleep yet: say so instead of timing out.
wait_sleep_ready() {
    local name=$1 pid=$2 port=$3 logf=$4 deadline code body
    deadline=$((SECONDS + ${READY_TIMEOUT:-15}))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited during startup; its log:"
            sed 's/^/    /' "$logf" >&2 || true
            exit 1
        fi
        code="$(curl -s -o "$BENCH_TMP/ready.body" -m 2 -w '%{http_code}' "http://127.0.0.1:$port/v1/sleep?ms=1" || true)"
        if [[ "$code" == 200 ]]; then
            body="$(<"$BENCH_TMP/ready.body")"
            # both servers must send the same bytes for the comparison to be fair
            [[ "$body" == '{"slept_ms":1}' ]] || log "warning: $name answers /v1/sleep?ms=1 with '$body', not {\"slept_ms\":1}"
            return 0
        fi
        if [[ "$code" == 404 ]]; then
            die "$name answers GET /v1/sleep?ms=1 with 404: this build has no /v1/sleep yet (rebuild, or run with BENCH_SELFTEST=1)"
        fi
        sleep 0.1
    done
    log "$name did not answer GET /v1/sleep?ms=1 with 200 on 127.0.0.1:$port within ${READY_TIMEOUT:-15}s; its log:"
    sed 's/^/    /' "$logf" >&2 || true
    exit 1
}

# start_server NAME DIR CMD...: CMD may contain the placeholder PORT. Sets SRV_PID, SRV_PORT,
# SRV_CMD (the command as run), SRV_LOG.
start_server() {
    local name=$1 dir=$2 port a cmd=()
    shift 2
    mkdir -p "$dir"
    port="$(free_port)"
    for a in "$@"; do cmd+=("${a//PORT/$port}"); done
    "${cmd[@]}" </dev/null >"$dir/stdout.log" 2>"$dir/stderr.log" &
    SRV_PID=$!
    BENCH_PIDS+=("$SRV_PID")
    SRV_PORT=$port
    SRV_CMD="${cmd[*]}"
    SRV_LOG="$dir/stderr.log"
    wait_sleep_ready "$name" "$SRV_PID" "$port" "$SRV_LOG"
    log "$name: pid $SRV_PID on 127.0.0.1:$port (cpus $(taskset -cp "$SRV_PID" | sed 's/.*: //'))"
}

start_aiohttp() {  # NAME DIR
    start_server "$1" "$2" taskset -c "$SERVER_CPU" "$PY" "$AIOHTTP" "127.0.0.1:PORT" \
        --backlog "$BACKLOG" --keepalive-timeout 600
}

# check_apiary_config BIN: sets APIARY_CONFIG to itself minus every key `--check-config` calls
# unknown (keys that are still being added to apiary), and notes each dropped key for the report.
check_apiary_config() {
    local bin=$1 cfgfile="$BENCH_TMP/check.json" out="$BENCH_TMP/check.out" key i
    for ((i = 0; i < 10; i++)); do
        printf '%s\n' "$APIARY_CONFIG" >"$cfgfile"
        "$bin" --config "$cfgfile" --check-config >"$out" 2>&1 && return 0
        key="$(sed -n "s/.*unknown key '\([^']*\)'.*/\1/p" "$out" | head -1)"
        [[ -n "$key" ]] || die "apiary --check-config rejects the config: $(cat "$out")"
        NOTES+=("apiary --check-config rejected \`$key\` (unknown key), so it was dropped from the config.")
        log "apiary does not know config key '$key' yet; dropping it"
        APIARY_CONFIG="$("$PY" -c '
import json, sys
cfg, path = json.loads(sys.argv[1]), sys.argv[2].split(".")
node, parents = cfg, []
for p in path[:-1]:
    parents.append((node, p))
    node = node[p]
del node[path[-1]]
# drop objects the removal left empty, e.g. "limits":{}
for parent, p in reversed(parents):
    if parent[p] == {}:
        del parent[p]
print(json.dumps(cfg, separators=(",", ":")))' "$APIARY_CONFIG" "$key")"
    done
    die "apiary --check-config keeps rejecting the config: $(cat "$out")"
}

# bench_server KEY NAME CPUS: warm-up, then the measured run, on the server in SRV_*.
bench_server() {
    local key=$1 name=$2 ncpu=$3 rss0 url wrk_cmd warm measured rc=0
    rss0="$(vm_rss_kib "$SRV_PID")"
    url="http://127.0.0.1:$SRV_PORT/v1/sleep?ms=$SLEEP_MS"
    wrk_cmd=(taskset -c "$WRK_CPU" wrk "-t$WRK_THREADS" "-c$CONNS" --timeout "$WRK_TIMEOUT" --latency)
    warm="$BENCH_TMP/$key.warmup"
    measured="$BENCH_TMP/$key.run"
    # The runner samples from wrk's CPU, not the server's.
    log "$name: warm-up ${WARMUP} with $CONNS connections"
    run_waited taskset -c "$WRK_CPU" "$PY" "$RUNNER" run --server-pid "$SRV_PID" --json "$warm.json" \
        --wrk-out "$warm.txt" --name "$name" --server-cpus "$ncpu" --rss-before-kib "$rss0" \
        -- "${wrk_cmd[@]}" "-d$WARMUP" "$url" || rc=$?
    kill -0 "$SRV_PID" 2>/dev/null || { tail -20 "$SRV_LOG" >&2; die "$name died during the warm-up"; }
    ((rc == 0)) || die "runner failed during $name's warm-up (exit $rc)"
    # let the server finish closing the warm-up's 10,000 connections before measuring
    sleep 2
    log "$name: measured run ${DURATION}"
    run_waited taskset -c "$WRK_CPU" "$PY" "$RUNNER" run --server-pid "$SRV_PID" --json "$measured.json" \
        --wrk-out "$measured.txt" --name "$name" --server-cpus "$ncpu" --rss-before-kib "$rss0" \
        -- "${wrk_cmd[@]}" "-d$DURATION" "$url" || rc=$?
    kill -0 "$SRV_PID" 2>/dev/null || { tail -20 "$SRV_LOG" >&2; die "$name died during the measured run"; }
    ((rc == 0)) || die "runner failed during $name's run (exit $rc)"
    RUNS+=("$measured.json")
    {
        echo "# $name: pid $SRV_PID, affinity $(taskset -cp "$SRV_PID" | sed 's/.*: //'), VmRSS before load ${rss0} KiB"
        echo "$SRV_CMD"
        echo "${wrk_cmd[*]} -d$WARMUP '$url'    # warm-up, not counted"
        echo "${wrk_cmd[*]} -d$DURATION '$url'"
    } >>"$COMMANDS"
    log "$name: $(grep -E 'requests in|Requests/sec|Socket errors' "$measured.txt" | tr -s ' ' | tr '\n' ' ')"
}

A_BIN=""
if [[ "$SELFTEST" != 1 ]]; then
    A_BIN="$(resolve_apiary_bin)"
    [[ -x "$A_BIN" ]] || die "apiary binary '$A_BIN' not found; build it (see bench/README.md), set APIARY_BIN, or run with BENCH_SELFTEST=1"
    check_apiary_config "$A_BIN"
    mkdir -p "$BENCH_TMP/apiary"
    printf '%s\n' "$APIARY_CONFIG" >"$BENCH_TMP/apiary/apiary.json"
fi

# 1. apiary --threads 1 on CPU 0 (or the stand-in)
if [[ "$SELFTEST" == 1 ]]; then
    A_NAME="aiohttp#2 (stand-in for apiary)"
    start_aiohttp "$A_NAME" "$BENCH_TMP/aiohttp-a"
else
    A_NAME="apiary --threads 1, CPU $SERVER_CPU"
    start_server "$A_NAME" "$BENCH_TMP/apiary" taskset -c "$SERVER_CPU" "$A_BIN" \
        --config "$BENCH_TMP/apiary/apiary.json" --listen 127.0.0.1:PORT --threads 1
fi
bench_server a "$A_NAME" 1
stop_pid "$SRV_PID"

# 2. aiohttp on CPU 0
start_aiohttp aiohttp "$BENCH_TMP/aiohttp"
AIOHTTP_BANNER="$(head -1 "$BENCH_TMP/aiohttp/stdout.log")"
bench_server b "aiohttp, CPU $SERVER_CPU" 1
stop_pid "$SRV_PID"

# 3. apiary --threads 2 with no pinning: the production shape on this 2-CPU box. It shares CPU
#    WRK_CPU with wrk, so it is not comparable with the pinned rows; shown for what two loops give.
if [[ "$SELFTEST" != 1 && "$THREADS2" == 1 ]]; then
    C_NAME="apiary --threads 2, unpinned (shares CPU $WRK_CPU with wrk)"
    start_server "$C_NAME" "$BENCH_TMP/apiary2" "$A_BIN" \
        --config "$BENCH_TMP/apiary/apiary.json" --listen 127.0.0.1:PORT --threads 2
    ncpu="$(nproc)"
    bench_server c "$C_NAME" "$ncpu"
    stop_pid "$SRV_PID"
fi

META="$BENCH_TMP/meta.json"
# WRK_CPU may be a list ("1" or "0,1"); nproc under the same mask counts it
printf '{"conns":%s,"sleep_ms":%s,"target_frac":%s,"target_kib_per_conn":%s,"wrk_cpus":%s}\n' \
    "$CONNS" "$SLEEP_MS" "$TARGET_FRAC" "$TARGET_KIB" "$(taskset -c "$WRK_CPU" nproc)" >"$META"

REPORT="$BENCH_TMP/report.md"
{
    echo "## sleep: $CONNS keep-alive connections on GET /v1/sleep?ms=$SLEEP_MS"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), wrk -t$WRK_THREADS on CPU $WRK_CPU, duration $DURATION after a $WARMUP warm-up (fresh connections each), somaxconn $(cat /proc/sys/net/core/somaxconn), CLK_TCK $CLK_TCK."
    [[ -n "$A_BIN" ]] && echo "apiary: $("$A_BIN" --version 2>&1 | head -1), config \`$APIARY_CONFIG\`."
    echo "aiohttp: ${AIOHTTP_BANNER#listening on }."
    [[ "$SELFTEST" == 1 ]] && echo && echo "BENCH_SELFTEST=1: the first row is a second aiohttp standing in for apiary."
    for n in "${NOTES[@]}"; do echo; echo "Note: $n"; done
    echo
    "$PY" "$RUNNER" report --meta "$META" "${RUNS[@]}"
    echo
    echo "- Offered load: $CONNS connections each asking again as soon as answered, every answer after $SLEEP_MS ms, so at most $CONNS / $SLEEP_MS ms = $(( CONNS * 1000 / SLEEP_MS )) req/s. **ideal** = min(that, CPU bound); **CPU bound** = the server's CPUs × 10⁶ ÷ µs CPU/req (what it could serve 100 % busy); the cell says which of the two is lower. Target: req/s ≥ $(awk "BEGIN{print $TARGET_FRAC*100}") % of ideal. A server whose CPU is saturated sits near 100 % of ideal by construction, since its ideal is then its own CPU bound: for it, read the \"of $(( CONNS * 1000 / SLEEP_MS ))\" column and µs CPU/req. (A little over 100 % is timing: wrk's req/s is over its own timed window, the CPU time over the whole run.)"
    echo "- **server CPU busy** = server (utime+stime) over the run, from /proc/PID/stat (all threads) ÷ wall time; **saturated** when ≥ 90 % of its CPUs. **µs CPU/req** = that CPU time ÷ requests wrk counted. **wrk CPU busy** = wrk's own CPU time (wait4) ÷ wall: near 100 % means wrk may be the limit."
    echo "- **RSS** = VmRSS from /proc/PID/status. Before load = fresh server before the warm-up; max and end of run from samples every 0.2 s while wrk ran (the last one with all connections open). **RSS/conn** = (max − before) ÷ $CONNS; target ≤ $TARGET_KIB KiB per waiting connection. User-space memory only: kernel socket buffers are not in VmRSS."
    echo "- **CPU table**: server CPU busy as above (summed over its threads, so up to 200 % with 2); "waiting for a CPU" = schedstat run delay of its threads ÷ wall (time it was runnable but another task, e.g. a neighbour's job, held the CPU); per-CPU busy from /proc/stat over the run, everyone included, with the softirq (loopback TCP work, not always charged to a process) and steal shares.
- **RSS after wrk closed its conns**: shows whether the server gives the connections' memory back.
- **fds max**: descriptors the server / wrk held, sampled each second: shows the $CONNS connections were really open on both sides. **listen overflows/drops**: TcpExt ListenOverflows/ListenDrops delta over the run (netns-wide): SYNs dropped because an accept queue was full."
    echo "- p50/p99: wrk --latency, per request, including the $SLEEP_MS ms sleep. Errors: wrk socket errors + non-2xx/3xx."
    echo
    echo "Commands (ulimit -n $(ulimit -n); each server started fresh, stopped after its runs):"
    echo
    echo '```'
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>raw wrk output</summary>"
    echo
    echo '```'
    for j in "${RUNS[@]}"; do
        echo "### $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$j")"
        cat "${j%.json}.txt"
    done
    echo '```'
    echo
    echo "</details>"
} >"$REPORT"

emit_report "$REPORT"
