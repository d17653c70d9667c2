#!/usr/bin/env bash
# bench/ws.sh: WebSocket on one core, apiary against aiohttp and Node's ws (Debian node-ws), each
# serving the same echo on GET /v1/ws/echo, pinned to CPU $SERVER_CPU (0), the load on the other CPUs.
#   1. memory per idle WebSocket: IDLE_CONNS (10000) upgraded connections held open; the server's
#      VmRSS after minus before, divided by the connections (target: <= 4 KiB);
#   2. echo messages/s of 64-byte text at 64 and 1,024 connections (one message in flight per
#      connection), and the server's CPU time per message (utime + stime / messages).
# The load generator is bench/ws_load.c (built here with cc -O2), pinned to $CLIENT_CPUS.
#
#   3. with SYSCALLS=1, each echo run is also counted by `perf stat` on the kernel's system-call
#      tracepoints (they do not slow the server, as strace would), and a second table gives the server's
#      system calls per message by name: counts, unlike CPU time, do not move with the machine's load.
#
# Environment: APIARY_BIN (default build-release/apiary), IDLE_CONNS (10000), SECONDS_RUN (10),
# CONNS_LIST ("64 1024"), PEERS ("apiary aiohttp node"), CLIENT_CPUS (1), SYSCALLS (0), SKIP_IDLE (0:
# with 1, no idle-memory run), OUT (also write the report).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CONNS="${IDLE_CONNS:-10000}"
SECONDS_RUN="${SECONDS_RUN:-10}"
CONNS_LIST="${CONNS_LIST:-64 1024}"
PEERS="${PEERS:-apiary aiohttp node}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
SYSCALLS="${SYSCALLS:-0}"
SKIP_IDLE="${SKIP_IDLE:-0}"
CALLS=(recvfrom sendto read write readv writev epoll_wait epoll_pwait epoll_ctl timerfd_settime futex)
if [[ "$SYSCALLS" == 1 ]]; then
    if ! command -v perf >/dev/null || ! perf stat -e syscalls:sys_enter_recvfrom -- true >/dev/null 2>&1; then
        echo "ws.sh: SYSCALLS=1 needs perf and the syscall tracepoints (run as root)" >&2
        exit 1
    fi
fi
# No heartbeat during the runs (none of the peers pings either), room for every connection.
APIARY_CONFIG='{"log_level":"warn","max_connections":30000,"websocket":{"ping_interval_ms":0}}'
NODE="${NODE:-$(command -v node || command -v nodejs || true)}"

bench_init
LOAD="$BENCH_TMP/ws_load"
cc -O2 -Wall -o "$LOAD" "$BENCH_DIR/ws_load.c" || die "cannot build bench/ws_load.c"

# start_peer NAME: sets PEER_PID and PEER_PORT.
start_peer() {
    local name=$1 dir="$BENCH_TMP/$1" port
    mkdir -p "$dir"
    case "$name" in
    apiary)
        start_apiary apiary "$APIARY_CONFIG"
        PEER_PID=$APIARY_PID PEER_PORT=$APIARY_PORT
        return
        ;;
    aiohttp)
        port="$(free_port)"
        launch "$dir" "taskset -c $SERVER_CPU $PY $BENCH_DIR/aiohttp_ws.py $port"
        ;;
    node)
        [[ -n "$NODE" ]] || die "node not found: apt-get install -y nodejs node-ws"
        port="$(free_port)"
        NODE_PATH=/usr/share/nodejs launch "$dir" "taskset -c $SERVER_CPU $NODE $BENCH_DIR/node_ws.js $port"
        ;;
    esac
    PEER_PID=$LAUNCH_PID PEER_PORT=$port
    wait_ready "$name" "$PEER_PID" "$port" "$dir/stderr.log"
}

load() { taskset -c "$CLIENT_CPUS" "$LOAD" "$@"; }
# echo_run PID ARGS...: one echo run; with SYSCALLS=1 under perf stat (counts in $BENCH_TMP/perf.csv).
echo_run() {
    local pid=$1 events=""
    shift
    if [[ "$SYSCALLS" != 1 ]]; then
        load echo "$@" --pid "$pid"
        return
    fi
    for c in "${CALLS[@]}"; do events+="${events:+,}syscalls:sys_enter_$c"; done
    perf stat -x, -e "$events" -p "$pid" -o "$BENCH_TMP/perf.csv" -- \
        taskset -c "$CLIENT_CPUS" "$LOAD" echo "$@" --pid "$pid"
}
# calls_row MSGS: the system calls per message of the last counted run, "name n.nn" for the non-zero ones.
calls_row() {
    awk -F, -v m="$1" '/^[0-9]/ && $1 > 0 { sub("syscalls:sys_enter_", "", $3); t += $1;
        printf "%s %.3f, ", $3, $1 / m } END { printf "all %.3f", t / m }' "$BENCH_TMP/perf.csv"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

REPORT="$BENCH_TMP/report.md"
CALLS_REPORT="$BENCH_TMP/calls.md"
: >"$CALLS_REPORT"
{
    echo "## WebSocket ($(date -u +%Y-%m-%d), $(nproc) CPUs, servers on CPU $SERVER_CPU, load on CPU $CLIENT_CPUS)"
    echo
    echo "| server | idle RSS / connection ($IDLE_CONNS) | echo msg/s, 64 conns | CPU µs/msg | echo msg/s, 1024 conns | CPU µs/msg |"
    echo "|---|--:|--:|--:|--:|--:|"
} >"$REPORT"

for peer in $PEERS; do
    idle="per_conn_bytes=- "
    if [[ "$SKIP_IDLE" != 1 ]]; then
        start_peer "$peer"
        log "$peer: $IDLE_CONNS idle WebSocket connections"
        idle="$(load idle 127.0.0.1 "$PEER_PORT" /v1/ws/echo "$IDLE_CONNS" 3 --pid "$PEER_PID" | grep '^RESULT')" ||
            die "$peer: the idle run failed"
        log "$idle"
        stop_pid "$PEER_PID" # a fresh server for the echo runs: the idle ones are gone from its memory
    fi
    start_peer "$peer"
    row="| $peer | $(field per_conn_bytes " $idle") B"
    for c in $CONNS_LIST; do
        log "$peer: echo, $c connections, ${SECONDS_RUN} s"
        res="$(echo_run "$PEER_PID" 127.0.0.1 "$PEER_PORT" /v1/ws/echo "$c" "$SECONDS_RUN" 64 1 | grep '^RESULT')" ||
            die "$peer: the echo run at $c connections failed"
        log "$res"
        row+=" | $(field rate "$res") | $(field cpu_us_per_msg "$res")"
        if [[ "$SYSCALLS" == 1 ]]; then
            echo "| $peer | $c | $(field msgs "$res") | $(calls_row "$(field msgs "$res")") |" >>"$CALLS_REPORT"
        fi
    done
    echo "$row |" >>"$REPORT"
    stop_pid "$PEER_PID"
done
{
    echo
    echo "Idle: \`ws_load idle\` opens the connections, waits 2 s and reads VmRSS (after − before) ÷ connections."
    echo "Echo: one 64-byte text message in flight per connection; CPU is the server process's utime + stime"
    echo "over the run ÷ messages echoed. One run each: on a shared machine treat the figures as noisy."
    if [[ -s "$CALLS_REPORT" ]]; then
        echo
        echo "System calls per echoed message (perf stat on the syscall tracepoints, the server's process):"
        echo
        echo "| server | connections | messages | calls per message |"
        echo "|---|--:|--:|---|"
        cat "$CALLS_REPORT"
    fi
} >>"$REPORT"
emit_report "$REPORT"
