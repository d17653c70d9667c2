#!/usr/bin/env bash
# bench/hello.sh: apiary vs nginx on the TechEmpower JSON body {"message":"Hello, World!"}, in one
# run, with both servers pinned to CPU 0 and wrk to CPU 1. Reports req/s, their ratio, p99 latency
# and server CPU time per request for three load shapes. See bench/README.md.
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s),
# ROUNDS (1; with more, every cell is the median over the rounds), OUT (also write the report
# there), BENCH_SELFTEST=1 (a second nginx stands in for apiary, to check the harness without the
# apiary binary), SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-1}"
WRK_CPU="${WRK_CPU:-1}"
SELFTEST="${BENCH_SELFTEST:-0}"
CLK_TCK="$(getconf CLK_TCK)"
URL_PATH=/v1/hello

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
[[ -x "$NGINX" ]] || die "nginx not found at $NGINX: apt-get install -y nginx-light"

bench_init

if [[ "$SELFTEST" == 1 ]]; then
    A_NAME="nginx#2"
    start_nginx nginx-a 20000
    A_PID=$NGINX_PID A_PORT=$NGINX_PORT A_CMD=$NGINX_CMD A_LOG=$NGINX_LOG
else
    A_NAME=apiary
    start_apiary apiary '{"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}}'
    A_PID=$APIARY_PID A_PORT=$APIARY_PORT A_CMD=$APIARY_CMD A_LOG=$APIARY_LOG
fi
B_NAME=nginx
start_nginx nginx-b 20000
B_PID=$NGINX_PID B_PORT=$NGINX_PORT B_CMD=$NGINX_CMD B_LOG=$NGINX_LOG

# shape name | wrk flags (URL and script args are appended per server)
SHAPES=(
    "c64|-c64"
    "c64 pipeline 16|-c64 -s $BENCH_DIR/pipeline.lua"
    "c1000|-c1000"
)

MANIFEST="$BENCH_TMP/manifest.tsv"
COMMANDS="$BENCH_TMP/commands.txt"
: >"$MANIFEST"
: >"$COMMANDS"

# server_alive SIDE PID LOG WHEN: stops the run, with the server's log, if it has died.
server_alive() {
    kill -0 "$2" 2>/dev/null && return 0
    log "$1 server (pid $2) died $4; last lines of its log:"
    tail -20 "$3" | sed 's/^/    /' >&2 || true
    exit 1
}

# run_wrk SIDE PID PORT SHAPE FLAGS LOG: warm-up, then the measured run bracketed by CPU readings
# of the server, so only the server's work during the measured run is counted.
run_wrk() {
    local side=$1 pid=$2 port=$3 shape=$4 flags=$5 slog=$6 url extra="" t0 t1 out
    url="http://127.0.0.1:$port$URL_PATH"
    # pipeline.lua takes its depth after "--"
    [[ "$flags" == *pipeline.lua* ]] && extra=" -- 16"
    out="$BENCH_TMP/wrk.$side.${shape// /_}.$ROUND.txt"
    # shellcheck disable=SC2086
    taskset -c "$WRK_CPU" wrk -t1 $flags -d"$WARMUP" "$url"$extra >/dev/null 2>&1 || true
    local cmd="taskset -c $WRK_CPU wrk -t1 $flags -d$DURATION --latency $url$extra"
    server_alive "$side" "$pid" "$slog" "during the '$shape' warm-up"
    t0="$(cpu_ticks "$pid")"
    # shellcheck disable=SC2086
    $cmd >"$out" 2>&1 || log "wrk exited non-zero for $side '$shape' (output kept in the report)"
    server_alive "$side" "$pid" "$slog" "during the '$shape' run"
    t1="$(cpu_ticks "$pid")"
    printf '%s\t%s\t%s\t%s\n' "$shape" "$side" "$out" "$((t1 - t0))" >>"$MANIFEST"
    ((ROUND > 1)) || printf '%s\n' "$cmd" >>"$COMMANDS"
    log "round $ROUND, $side '$shape': $(grep -E 'requests in|Requests/sec' "$out" | tr -s ' ' | tr '\n' ' ')"
}

i=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for entry in "${SHAPES[@]}"; do
        shape="${entry%%|*}"
        flags="${entry#*|}"
        # alternate which server goes first, so slow drift on the shared machine does not always
        # favour the same side
        if ((i % 2 == 0)); then
            run_wrk a "$A_PID" "$A_PORT" "$shape" "$flags" "$A_LOG"
            run_wrk b "$B_PID" "$B_PORT" "$shape" "$flags" "$B_LOG"
        else
            run_wrk b "$B_PID" "$B_PORT" "$shape" "$flags" "$B_LOG"
            run_wrk a "$A_PID" "$A_PORT" "$shape" "$flags" "$A_LOG"
        fi
        i=$((i + 1))
    done
done

REPORT="$BENCH_TMP/report.md"
{
    echo "## hello: $A_NAME vs $B_NAME, GET $URL_PATH"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | sed 's/.*: //'), duration $DURATION after a $WARMUP warm-up per run, $ROUNDS round(s)$( ((ROUNDS > 1)) && echo ', medians')"
    [[ "$SELFTEST" == 1 ]] && echo && echo "BENCH_SELFTEST=1: '$A_NAME' is a second nginx standing in for apiary."
    echo
    "$PY" "$BENCH_DIR/wrk_report.py" table --clk-tck "$CLK_TCK" --a-name "$A_NAME" --b-name "$B_NAME" "$MANIFEST"
    echo
    echo "ratio = $A_NAME req/s ÷ $B_NAME req/s. p99 of the pipelined shape is per batch of 16. Errors = wrk socket errors + non-2xx/3xx responses."
    echo "µs CPU/req = server (utime+stime) delta from /proc/PID/stat over the measured run ÷ requests served × 1e6 (CLK_TCK $CLK_TCK)."
    echo
    echo "Commands:"
    echo
    echo '```'
    echo "ulimit -n $(ulimit -n)"
    echo "$A_CMD    # pid $A_PID, affinity $(taskset -cp "$A_PID" | sed 's/.*: //')"
    echo "$B_CMD    # pid $B_PID, affinity $(taskset -cp "$B_PID" | sed 's/.*: //')"
    cat "$COMMANDS"
    ((ROUNDS > 1)) && echo "# ... and the same $((${#SHAPES[@]} * 2)) wrk runs again in each of the other $((ROUNDS - 1)) round(s)"
    echo '```'
    if [[ "$SELFTEST" != 1 ]]; then
        echo
        echo "apiary config: \`$(cat "$BENCH_TMP/apiary/apiary.json")\`"
    fi
    echo
    echo "<details><summary>raw wrk output</summary>"
    echo
    echo '```'
    while IFS=$'\t' read -r shape side file _; do
        round="${file%.txt}"    # wrk.SIDE.SHAPE.ROUND.txt
        echo "### $shape, $([[ $side == a ]] && echo "$A_NAME" || echo "$B_NAME"), round ${round##*.}"
        cat "$file"
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
