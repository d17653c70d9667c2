#!/usr/bin/env bash
# bench/sql_syscalls.sh: system calls per SQL query on MariaDB and PostgreSQL. apiary (--threads 1) runs
# on a private database; after a warm-up, `perf stat` (syscall tracepoints) and `strace -c -f -p PID` count every system call of the process
# while a fixed number of /v1/queries?queries=N requests is sent (keep-alive, CONNS at once), and the
# report divides the counts by the number of queries. The HTTP side (accept, recv, send, epoll of the
# client connections) is in the figure too: it is the same before and after a change of the SQL path,
# and it is ~1/N of a request's calls per query.
#
# Also counted, in the perf stat pass: the TCP data segments apiary sent to the database (`ss -ti`'s
# data_segs_out of its connections) and the database's own system calls (perf stat on its processes,
# when it was started here), per request.
#
# Usage: bench/sql_syscalls.sh [mariadb] [postgres]   (default: both)
# Environment: APIARY_BIN (default build/apiary), REQUESTS (2000), QUERIES (20: statements per request,
# the divisor of the per-query column), ROUTE (default /v1/queries?queries=$QUERIES; e.g. ROUTE=/v1/db
# QUERIES=1, or ROUTE='/v1/updates?queries=20' QUERIES=21), CONNS (16), WARMUP (200
# requests), LOAD (python: REQUESTS requests from a Python client, which is slower than apiary, so few
# requests share a loop turn; wrk: wrk -t1 -cCONNS for DURATION (5s) on WRK_CPU (1), the load of
# bench/sql.sh, and the counts divided by the requests wrk made in each pass),
# APIARY_CONNS (sql.connections_per_loop, 16), MYSQL_URL / PG_URL (use that database instead of
# starting a private one with ../shared/peers/db/db-peers.sh), SERVER_CPU (0), DB_CPU (1), TOP (12: the
# system calls listed per backend).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS="${REQUESTS:-2000}"
QUERIES="${QUERIES:-20}"
ROUTE="${ROUTE:-/v1/queries?queries=$QUERIES}"
LOAD="${LOAD:-python}"
DURATION="${DURATION:-5s}"
WRK_CPU="${WRK_CPU:-1}"
[[ $LOAD == python || $LOAD == wrk ]] || die "LOAD must be python or wrk"
[[ $LOAD == python ]] || command -v wrk >/dev/null || die "wrk not found"
CONNS="${CONNS:-16}"
WARMUP="${WARMUP:-200}"
APIARY_CONNS="${APIARY_CONNS:-16}"
SERVER_CPU="${SERVER_CPU:-0}"
DB_CPU="${DB_CPU:-1}"
TOP="${TOP:-12}"
APIARY_BIN="${APIARY_BIN:-$REPO_DIR/build/apiary}"
PEERS="${PEERS:-$REPO_DIR/../shared/peers/db/db-peers.sh}"
[[ -x "$PEERS" ]] || PEERS=/work/shared/peers/db/db-peers.sh

command -v strace >/dev/null || die "strace not found: apt-get install -y strace"
# perf stat counts the calls on the kernel's tracepoints without slowing the server (strace -c slows it
# ~3x, which changes how many events share a wake-up); skipped when perf or the tracepoints are missing.
CALLS=(recvfrom sendto read write readv writev epoll_wait epoll_ctl timerfd_settime poll futex setsockopt)
USE_PERF=0
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_recvfrom -- true >/dev/null 2>&1; then USE_PERF=1; fi
BACKENDS=("$@")
((${#BACKENDS[@]})) || BACKENDS=(mariadb postgres)

bench_init

# A measured pass: COUNT requests (python) or DURATION of wrk; sets DONE to the requests made.
measured() {
    if [[ $LOAD == wrk ]]; then
        DONE="$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "$1" | awk '/requests in/ { print $1 }')"
    else
        load "$1" "$2"
        DONE=$2
    fi
}

# Sends COUNT GET requests to URL over CONNS keep-alive connections; fails on any answer but 200
# (bench/loopback.py's get_many).
load() {
    "$PY" - "$1" "$2" "$CONNS" "$(dirname "${BASH_SOURCE[0]}")" <<'EOF'
import sys, urllib.parse
sys.path.insert(0, sys.argv[4])
import loopback
u = urllib.parse.urlsplit(sys.argv[1])
loopback.get_many(u.hostname, u.port, u.path + "?" + u.query, int(sys.argv[2]), int(sys.argv[3]))
EOF
}

declare -A URL DBPID
for b in "${BACKENDS[@]}"; do
    case $b in
        mariadb)
            if [[ -n "${MYSQL_URL:-}" ]]; then URL[$b]=$MYSQL_URL; else
                port="$(free_port)"
                pid="$(DB_CPU=$DB_CPU "$PEERS" mariadb-start "$port" "$BENCH_TMP/mariadb")"
                BENCH_PIDS+=("$pid")
                DBPID[$b]=$pid
                URL[$b]="mysql://apiary:secret@127.0.0.1:$port/apiary"
            fi ;;
        postgres)
            if [[ -n "${PG_URL:-}" ]]; then URL[$b]=$PG_URL; else
                port="$(free_port)"
                mkdir -p "$BENCH_TMP/pg" && chmod 777 "$BENCH_TMP" "$BENCH_TMP/pg"
                pid="$(DB_CPU=$DB_CPU "$PEERS" pg-start "$port" "$BENCH_TMP/pg")"
                BENCH_PIDS+=("$pid")
                DBPID[$b]=$pid
                URL[$b]="postgres://apiary:secret@127.0.0.1:$port/apiary"
            fi ;;
        *) die "unknown backend '$b' (mariadb or postgres)" ;;
    esac
done

REPORT="$BENCH_TMP/report.md"
{
    echo "## System calls per query ($APIARY_BIN, tree at $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    if [[ $LOAD == wrk ]]; then what="wrk -t1 -c$CONNS -d$DURATION (CPU $WRK_CPU) of"; else what="$REQUESTS x (Python client)"; fi
    echo "apiary --threads 1 (CPU $SERVER_CPU), sql.connections_per_loop $APIARY_CONNS; $what" \
        "$ROUTE ($QUERIES statements each) over $CONNS keep-alive connections after $WARMUP warm-up requests;" \
        "counted twice: \`perf stat\` on the syscall tracepoints (at full speed), then \`strace -c -f -p PID\` (which slows apiary ~3x)."
    echo
} >"$REPORT"

for b in "${BACKENDS[@]}"; do
    config="{\"log_level\":\"warn\",\"sql\":{\"url\":\"${URL[$b]}\",\"connections_per_loop\":$APIARY_CONNS}}"
    start_apiary "apiary-$b" "$config"
    wait_url "apiary-$b" "$APIARY_PID" "http://127.0.0.1:$APIARY_PORT/readyz" "$APIARY_LOG"
    base="http://127.0.0.1:$APIARY_PORT$ROUTE"
    dbport="$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"${URL[$b]}")"
    segs() { ss -tinp "dport = :$dbport" 2>/dev/null | grep -A1 "pid=$APIARY_PID," | grep -o 'data_segs_out:[0-9]*' | awk -F: '{s+=$2} END {print s+0}'; }
    load "$base" "$WARMUP"
    DONE_PERF=0
    # 1. perf stat on the syscall tracepoints: counts in the kernel, at full speed
    pout="$BENCH_TMP/perf-$b.txt"
    dout="$BENCH_TMP/perfdb-$b.txt"
    segs0="$(segs)"
    if ((USE_PERF)); then
        perf stat -x, -p "$APIARY_PID" -o "$pout" -e raw_syscalls:sys_enter \
            $(printf -- '-e syscalls:sys_enter_%s ' "${CALLS[@]}") &
        ppid=$!
        dpids=""
        if [[ -n "${DBPID[$b]:-}" ]]; then
            dpids="$( { echo "${DBPID[$b]}"; pgrep -P "${DBPID[$b]}" || true; } | paste -sd,)"
            perf stat -x, -p "$dpids" -o "$dout" -e raw_syscalls:sys_enter &
            dpid=$!
        fi
        sleep 1
        measured "$base" "$REQUESTS"
        DONE_PERF=$DONE
        kill -INT "$ppid"
        wait "$ppid" || true
        if [[ -n "$dpids" ]]; then kill -INT "$dpid"; wait "$dpid" || true; fi
    fi
    segs1="$(segs)"
    # 2. strace -c: every call by name, but it slows the server ~3x, so more events share a wake-up
    sout="$BENCH_TMP/strace-$b.txt"
    strace -c -S calls -f -p "$APIARY_PID" -o "$sout" 2>"$BENCH_TMP/strace-$b.log" &
    spid=$!
    sleep 1 # strace attaches to every thread
    measured "$base" "$REQUESTS"
    DONE_STRACE=$DONE
    kill -INT "$spid"
    wait "$spid" || true
    stop_pid "$APIARY_PID"
    {
        echo "### $b"
        echo
        echo "Requests counted: $DONE_PERF (perf stat pass), $DONE_STRACE (strace pass)."
        echo
        awk -v q="$QUERIES" -v rp="$DONE_PERF" -v r="$DONE_STRACE" -v top="$TOP" -v perf="$USE_PERF" -F'[ ,]+' '
            FILENAME ~ /perf-/ && $0 ~ /sys_enter/ {
                name = $0; sub(/.*syscalls:sys_enter_?/, "", name); sub(/,.*/, "", name)
                if (name == "") name = "all"
                p[name] = $1 + 0
                next
            }
            FILENAME ~ /strace-/ && /^------/ { sep++; next }
            FILENAME ~ /strace-/ && sep == 1 && NF >= 5 { k2 = split($0, f, " "); c[f[k2]] = f[4]; order[++k] = f[k2] }
            FILENAME ~ /strace-/ && sep == 2 && / total$/ { k2 = split($0, f, " "); total = f[4] }
            END {
                n = r * q; np = rp * q
                printf "| system call | per query (perf stat) | per query (strace -c) | per request (strace -c) |\n|---|---|---|---|\n"
                for (i = 1; i <= k && i <= top; i++) {
                    pv = (order[i] in p) ? sprintf("%.3f", p[order[i]] / np) : "-"
                    printf "| %s | %s | %.3f | %.2f |\n", order[i], pv, c[order[i]] / n, c[order[i]] / r
                }
                pv = ("all" in p) ? sprintf("**%.3f**", p["all"] / np) : "-"
                printf "| **all** | %s | **%.3f** | **%.2f** |\n", pv, total / n, total / r
            }' $( ((USE_PERF)) && echo "$pout") "$sout"
        echo
        ((USE_PERF)) && awk -v r="$DONE_PERF" -v s0="$segs0" -v s1="$segs1" 'BEGIN { printf "TCP data segments apiary -> database per request (ss data_segs_out, perf pass): %.2f\n", (s1 - s0) / r }'
        if [[ -s "$dout" ]]; then
            awk -F, -v r="$DONE_PERF" '/raw_syscalls:sys_enter/ { printf "\nthe database'"'"'s system calls per request (perf stat on its processes): %.2f\n", $1 / r }' "$dout"
        fi
        echo
    } >>"$REPORT"
    log "$b: strace $(grep total "$sout")"
done
cat "$REPORT"
if [[ -n "${OUT:-}" ]]; then cp "$REPORT" "$OUT"; fi
