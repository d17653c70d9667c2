#!/usr/bin/env bash
# bench/sse.sh: server memory per idle Server-Sent Events stream (issue 24). For each server, in
# turn (one at a time, so they never compete for memory): start it (one thread/process, CPU 0),
# open STREAMS (10000) `GET /v1/events?count=2&interval_ms=3600000` streams with bench/idle_rss.py
# --until 'id: 1' (each has its head, the retry line and its first event, then waits an hour for the
# next: an idle stream), read VmRSS, report RSS growth per stream, stop it. Servers: apiary with the
# coroutine handler, apiary with the same stream driven by continuations (?callback=true), aiohttp
# (bench/aiohttp_sse.py, StreamResponse + asyncio.sleep) and Node's plain http module
# (bench/node_sse.js, setTimeout). Target (issue 24): apiary <= 4 KiB per idle stream.
#
# apiary's coroutine form awaits with async_await_idle, which gives a stack back once the wait has
# lasted a second (at most 1,024 stacks per loop and second): RSS is read SETTLE (15) seconds after the
# last stream opened, so every stream is idle in that sense (they wait an hour).
#
# Environment: APIARY_BIN (default build-release/apiary), STREAMS (10000), BATCH (500), SETTLE (15), OUT (also
# write the summary there), APIARY_CONFIG (JSON; default below), SERVERS (default
# "apiary apiary-callback aiohttp node").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAMS="${STREAMS:-10000}"
BATCH="${BATCH:-500}"
SETTLE="${SETTLE:-15}"
SERVERS="${SERVERS:-apiary apiary-callback aiohttp node}"
TARGET_BYTES=4096
# the heartbeat at its default (15 s: idle streams send one now and then, as in production); async
# places and connections above STREAMS
DEFAULT_APIARY_CONFIG='{"log_level":"warn","max_connections":20000,"limits":{"max_async_per_loop":20000},"timeouts":{"keepalive_ms":600000,"header_ms":600000}}'
APIARY_CONFIG="${APIARY_CONFIG:-$DEFAULT_APIARY_CONFIG}"
PATH_Q='/v1/events?count=2&interval_ms=3600000'

bench_init
SUMMARY="$BENCH_TMP/summary.md"
RESULTS="$BENCH_TMP/results.txt"
: >"$RESULTS"
STATUS=0

# measure NAME PID PORT PATH CMD
measure() {
    local name=$1 pid=$2 port=$3 path=$4 cmd=$5 out="$BENCH_TMP/sse.$1.txt" rc=0
    log "$name: opening $STREAMS idle event streams ($path)"
    "$PY" "$BENCH_DIR/idle_rss.py" "127.0.0.1:$port" "$pid" -n "$STREAMS" --batch "$BATCH" \
        --batch-timeout 30 --settle "$SETTLE" --path "$path" --until 'id: 1' >"$out" 2>&1 || rc=$?
    sed 's/^/    /' "$out" >&2
    ((rc == 0)) || { log "warning: idle_rss.py reported failures for $name (exit $rc)"; STATUS=1; }
    local result
    result="$(grep '^RESULT ' "$out" | tail -1 || true)"
    [[ -n "$result" ]] || die "idle_rss.py printed no RESULT line for $name"
    printf '%s|%s|%s|%s\n' "$name" "$cmd" "$path" "$result" >>"$RESULTS"
}

# start_peer NAME CMD...: a reference server on a free port (PORT in CMD replaced), ready on /v1/hello
start_peer() {
    local name=$1 dir port
    shift
    dir="$BENCH_TMP/$name"
    mkdir -p "$dir"
    port="$(free_port)"
    PEER_CMD="taskset -c $SERVER_CPU ${*//PORT/$port}"
    launch "$dir" "$PEER_CMD"
    PEER_PID=$LAUNCH_PID
    PEER_PORT=$port
    hello_ready "$name" "$PEER_PID" "$port" "$dir/stderr.log"
}

for server in $SERVERS; do
    case "$server" in
        apiary | apiary-callback)
            start_apiary "$server" "$APIARY_CONFIG"
            path="$PATH_Q"
            [[ "$server" == apiary-callback ]] && path="$PATH_Q&callback=true"
            measure "$server" "$APIARY_PID" "$APIARY_PORT" "$path" "$APIARY_CMD"
            stop_pid "$APIARY_PID"
            ;;
        aiohttp)
            "$PY" -c 'import aiohttp' 2>/dev/null || { log "aiohttp missing (apt-get install -y python3-aiohttp): skipped"; continue; }
            start_peer aiohttp "$PY $BENCH_DIR/aiohttp_sse.py 127.0.0.1:PORT"
            measure aiohttp "$PEER_PID" "$PEER_PORT" "$PATH_Q" "$PEER_CMD"
            stop_pid "$PEER_PID"
            ;;
        node)
            command -v node >/dev/null || { log "node missing: skipped"; continue; }
            start_peer node "$(command -v node) $BENCH_DIR/node_sse.js 127.0.0.1:PORT"
            measure node "$PEER_PID" "$PEER_PORT" "$PATH_Q" "$PEER_CMD"
            stop_pid "$PEER_PID"
            ;;
        *) die "unknown server '$server'" ;;
    esac
done

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
kib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1024 }'; }

{
    echo "## idle Server-Sent Events streams: VmRSS, $STREAMS streams"
    echo
    echo "| server | idle streams | RSS before | RSS after | per stream |"
    echo "|---|--:|--:|--:|--:|"
    while IFS='|' read -r name _ _ result; do
        echo "| $name | $(field idle "$result") | $(mib "$(field rss_before_kib "$result")") MiB" \
            "| $(mib "$(field rss_after_kib "$result")") MiB | $(kib "$(field per_conn_bytes "$result")") KiB |"
    done <"$RESULTS"
    echo
    for name in apiary apiary-callback; do
        r="$(grep "^$name|" "$RESULTS" | cut -d'|' -f4- || true)"
        [[ -n "$r" ]] || continue
        per="$(field per_conn_bytes "$r")"
        if [[ "$per" =~ ^[0-9]+$ ]] && ((per <= TARGET_BYTES)); then
            echo "target ($name): PASS: $(kib "$per") KiB per idle stream (<= 4 KiB)"
        else
            echo "target ($name): MISSED: $(kib "$per") KiB per idle stream (> 4 KiB)"
        fi
    done
    echo
    echo "RSS is VmRSS from /proc/PID/status (user space only; kernel socket buffers are not in it)."
    echo "apiary config: \`$APIARY_CONFIG\`"
    echo
    echo '```'
    while IFS='|' read -r name cmd path result; do
        echo "$cmd    # $name"
        echo "$PY $BENCH_DIR/idle_rss.py 127.0.0.1:PORT $(field pid "$result") -n $STREAMS --batch $BATCH --settle $SETTLE --path '$path' --until 'id: 1'"
    done <"$RESULTS"
    echo '```'
} >"$SUMMARY"

emit_report "$SUMMARY"
exit "$STATUS"
