#!/usr/bin/env bash
# bench/idle_rss.sh: server memory with many idle keep-alive connections. Starts apiary (one
# thread, pinned to CPU 0), holds CONNS (10000) idle keep-alive connections open with
# bench/idle_rss.py, and reports VmRSS before/after and per connection against the target
# (RSS with 10,000 idle connections <= 40 MiB); then does the same against nginx for reference.
#
# Environment: APIARY_BIN (default build-release/apiary), CONNS (10000), BATCH (500),
# TARGET_MIB (40), APIARY_CONFIG (JSON; default below), OUT (also write the summary there),
# BENCH_SELFTEST=1 (a second nginx stands in for apiary).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS="${CONNS:-10000}"
BATCH="${BATCH:-500}"
TARGET_MIB="${TARGET_MIB:-40}"
SELFTEST="${BENCH_SELFTEST:-0}"
# keep-alive far longer than the measurement so no connection is reaped mid-way, and a connection
# cap above CONNS so none is refused
DEFAULT_APIARY_CONFIG='{"log_level":"warn","max_connections":20000,"timeouts":{"keepalive_ms":600000,"header_ms":600000}}'
APIARY_CONFIG="${APIARY_CONFIG:-$DEFAULT_APIARY_CONFIG}"

[[ -x "$NGINX" ]] || die "nginx not found at $NGINX: apt-get install -y nginx-light"

bench_init

SUMMARY="$BENCH_TMP/summary.md"
RESULTS="$BENCH_TMP/results.txt"
: >"$RESULTS"
STATUS=0

# measure NAME PID PORT CMD: runs idle_rss.py and keeps its RESULT line.
measure() {
    local name=$1 pid=$2 port=$3 cmd=$4 out="$BENCH_TMP/idle.$1.txt" rc=0
    log "$name: opening $CONNS idle keep-alive connections"
    "$PY" "$BENCH_DIR/idle_rss.py" "127.0.0.1:$port" "$pid" -n "$CONNS" --batch "$BATCH" >"$out" 2>&1 || rc=$?
    sed 's/^/    /' "$out" >&2
    if ((rc != 0)); then
        log "warning: idle_rss.py reported failures for $name (exit $rc)"
        STATUS=1
    fi
    local result
    result="$(grep '^RESULT ' "$out" | tail -1 || true)"
    [[ -n "$result" ]] || die "idle_rss.py printed no RESULT line for $name"
    printf '%s|%s|%s|%s\n' "$name" "$cmd" "$port" "$result" >>"$RESULTS"
}

if [[ "$SELFTEST" == 1 ]]; then
    A_NAME="nginx#2"
    start_nginx nginx-a 20000
    measure "$A_NAME" "$NGINX_PID" "$NGINX_PORT" "$NGINX_CMD"
    stop_pid "$NGINX_PID"
else
    A_NAME=apiary
    start_apiary apiary "$APIARY_CONFIG"
    measure "$A_NAME" "$APIARY_PID" "$APIARY_PORT" "$APIARY_CMD"
    stop_pid "$APIARY_PID"
fi
# measured one after the other, so the two servers never compete for memory or ports
start_nginx nginx-ref 20000
measure nginx "$NGINX_PID" "$NGINX_PORT" "$NGINX_CMD"
stop_pid "$NGINX_PID"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

{
    echo "## idle keep-alive connections: VmRSS, $CONNS connections"
    echo
    [[ "$SELFTEST" == 1 ]] && echo "BENCH_SELFTEST=1: '$A_NAME' is a second nginx standing in for apiary." && echo
    echo "| server | idle connections | RSS before | RSS after | per connection |"
    echo "|---|--:|--:|--:|--:|"
    while IFS='|' read -r name _ _ result; do
        echo "| $name | $(field idle "$result") | $(mib "$(field rss_before_kib "$result")") MiB" \
            "| $(mib "$(field rss_after_kib "$result")") MiB | $(field per_conn_bytes "$result") B |"
    done <"$RESULTS"
    echo
    a_result="$(grep "^$A_NAME|" "$RESULTS" | cut -d'|' -f4-)"
    a_after="$(field rss_after_kib "$a_result")"
    a_idle="$(field idle "$a_result")"
    if ((a_idle < CONNS)); then
        echo "target: not judged: only $a_idle of $CONNS connections were idle at the end"
        STATUS=1
    elif ((a_after <= TARGET_MIB * 1024)); then
        echo "target: PASS: $A_NAME RSS $(mib "$a_after") MiB with $a_idle idle connections (<= $TARGET_MIB MiB)"
    else
        echo "target: FAIL: $A_NAME RSS $(mib "$a_after") MiB with $a_idle idle connections (> $TARGET_MIB MiB)"
        STATUS=1
    fi
    echo
    echo "RSS is the server's VmRSS from /proc/PID/status (user-space memory only; kernel socket buffers are not in it)."
    echo
    echo "Commands:"
    echo
    echo '```'
    echo "ulimit -n $(ulimit -n)"
    while IFS='|' read -r name cmd port result; do
        echo "$cmd    # $name"
        echo "$PY $BENCH_DIR/idle_rss.py 127.0.0.1:$port $(field pid "$result") -n $CONNS --batch $BATCH"
    done <"$RESULTS"
    echo '```'
    if [[ "$SELFTEST" != 1 ]]; then
        echo
        echo "apiary config: \`$APIARY_CONFIG\`"
    fi
} >"$SUMMARY"

emit_report "$SUMMARY"
exit "$STATUS"
