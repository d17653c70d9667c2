#!/usr/bin/env bash
# bench/json.sh: apiary against the Go net/http + encoding/json reference (../shared/peers/go-api) on
# JSON work, in one run: GET /v1/hello, POST /v1/echo and PUT/GET /v1/kv/{key} (memory store) of the
# 787-byte document (bench/data/body.json) and of a 16 KiB one (bench/data/doc16k.json). apiary
# --threads 1 and Go GOMAXPROCS=1 are both pinned to CPU 0, wrk -t1 -c64 runs on CPU 1, the two
# servers take turns (which one goes first alternates) in every round, and the server's CPU time
# per request comes from /proc/PID/stat. See bench/README.md and docs/benchmarks.md.
#
# Environment: APIARY_BIN (default build-release/apiary), GO_API_DIR (../shared/peers/go-api beside
# the repository), GO_API_BIN (built into $BENCH_TMP when unset; needs Debian's golang-go),
# DURATION (5s), WARMUP (1s), ROUNDS (3; every cell is the median over the rounds), CONNS (64),
# OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
WRK_CPU="${WRK_CPU:-1}"
CLK_TCK="$(getconf CLK_TCK)"
# shared/ sits beside the repository (or beside the directory of worktrees)
if [[ -z "${GO_API_DIR:-}" ]]; then
    GO_API_DIR="$REPO_DIR/../shared/peers/go-api"
    [[ -d "$GO_API_DIR" ]] || GO_API_DIR="$REPO_DIR/../../shared/peers/go-api"
fi
DOC_S="$BENCH_DIR/data/body.json"
DOC_L="$BENCH_DIR/data/doc16k.json"
SCRIPT="$BENCH_DIR/json_body.lua"

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"

bench_init

if [[ -z "${GO_API_BIN:-}" ]]; then
    command -v go >/dev/null || die "go not found (to build the reference server): apt-get install -y golang-go"
    [[ -f "$GO_API_DIR/main.go" ]] || die "the Go reference server is not in $GO_API_DIR (set GO_API_DIR)"
    GO_API_BIN="$BENCH_TMP/go-api"
    log "building the Go reference server from $GO_API_DIR"
    (cd "$GO_API_DIR" && GOFLAGS=-mod=mod GOCACHE="$BENCH_TMP/go-cache" go build -o "$GO_API_BIN" .)
fi

start_apiary apiary '{"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}}'
A_PID=$APIARY_PID A_PORT=$APIARY_PORT A_CMD=$APIARY_CMD A_LOG=$APIARY_LOG

B_PORT="$(free_port)"
B_CMD="env GOMAXPROCS=1 taskset -c $SERVER_CPU $GO_API_BIN $B_PORT"
mkdir -p "$BENCH_TMP/go"
# shellcheck disable=SC2086
$B_CMD </dev/null >"$BENCH_TMP/go/stdout.log" 2>"$BENCH_TMP/go/stderr.log" &
B_PID=$!
BENCH_PIDS+=("$B_PID")
B_LOG="$BENCH_TMP/go/stderr.log"
wait_ready go "$B_PID" "$B_PORT" "$B_LOG"
log "go: pid $B_PID on 127.0.0.1:$B_PORT (cpus $(taskset -cp "$B_PID" | sed 's/.*: //'))"

# Both servers must do the same work: the documents are stored, and echo must give back a value
# equal to the one sent (Go sorts object members, so the bytes differ; the value must not).
for side in a b; do
    port=$([[ $side == a ]] && echo "$A_PORT" || echo "$B_PORT")
    for doc in s l; do
        file=$([[ $doc == s ]] && echo "$DOC_S" || echo "$DOC_L")
        code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
            --data-binary "@$file" "http://127.0.0.1:$port/v1/kv/doc-$doc")"
        [[ "$code" == 200 || "$code" == 201 ]] || die "$side: PUT /v1/kv/doc-$doc answered $code"
        curl -s -H 'Content-Type: application/json' --data-binary "@$file" "http://127.0.0.1:$port/v1/echo" \
            >"$BENCH_TMP/echo.$side.$doc"
        curl -s "http://127.0.0.1:$port/v1/kv/doc-$doc" >"$BENCH_TMP/get.$side.$doc"
        "$PY" - "$file" "$BENCH_TMP/echo.$side.$doc" "$BENCH_TMP/get.$side.$doc" <<'EOF' || die "$side: echo or kv GET of $file differs from the document"
import json, sys
doc = json.load(open(sys.argv[1]))
assert json.load(open(sys.argv[2])) == doc, "echo"
assert json.load(open(sys.argv[3]))["value"] == doc, "kv GET"
EOF
    done
done

# shape | path | method and file for json_body.lua ("" for a plain GET)
SHAPES=(
    "GET /v1/hello|/v1/hello|"
    "POST /v1/echo, 787 B|/v1/echo|POST $DOC_S"
    "POST /v1/echo, 16 KiB|/v1/echo|POST $DOC_L"
    "GET /v1/kv, 787 B|/v1/kv/doc-s|"
    "GET /v1/kv, 16 KiB|/v1/kv/doc-l|"
    "PUT /v1/kv, 787 B|/v1/kv/doc-s|PUT $DOC_S"
    "PUT /v1/kv, 16 KiB|/v1/kv/doc-l|PUT $DOC_L"
)

MANIFEST="$BENCH_TMP/manifest.tsv"
COMMANDS="$BENCH_TMP/commands.txt"
: >"$MANIFEST"
: >"$COMMANDS"

server_alive() {
    kill -0 "$2" 2>/dev/null && return 0
    log "$1 server (pid $2) died $4; last lines of its log:"
    tail -20 "$3" | sed 's/^/    /' >&2 || true
    exit 1
}

# run_wrk SIDE PID PORT SHAPE PATH BODY LOG: warm-up, then the measured run bracketed by CPU
# readings of the server.
run_wrk() {
    local side=$1 pid=$2 port=$3 shape=$4 path=$5 body=$6 slog=$7 url script="" t0 t1 out cmd
    url="http://127.0.0.1:$port$path"
    [[ -n "$body" ]] && script="-s $SCRIPT"
    out="$BENCH_TMP/wrk.$side.${shape//[^A-Za-z0-9]/_}.$ROUND.txt"
    cmd="taskset -c $WRK_CPU wrk -t1 -c$CONNS -d$DURATION --latency $script $url${body:+ -- $body}"
    # shellcheck disable=SC2086
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" $script "$url" ${body:+-- $body} >/dev/null 2>&1 || true
    server_alive "$side" "$pid" "$slog" "during the '$shape' warm-up"
    t0="$(cpu_ticks "$pid")"
    # shellcheck disable=SC2086
    $cmd >"$out" 2>&1 || log "wrk exited non-zero for $side '$shape' (output kept in the report)"
    server_alive "$side" "$pid" "$slog" "during the '$shape' run"
    t1="$(cpu_ticks "$pid")"
    printf '%s\t%s\t%s\t%s\n' "$shape" "$side" "$out" "$((t1 - t0))" >>"$MANIFEST"
    ((ROUND > 1)) || printf '%s\n' "$cmd" >>"$COMMANDS"
    log "round $ROUND, $side '$shape': $(grep -E 'Requests/sec' "$out" | tr -s ' ')"
}

i=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for entry in "${SHAPES[@]}"; do
        IFS='|' read -r shape path body <<<"$entry"
        if ((i % 2 == 0)); then
            run_wrk a "$A_PID" "$A_PORT" "$shape" "$path" "$body" "$A_LOG"
            run_wrk b "$B_PID" "$B_PORT" "$shape" "$path" "$body" "$B_LOG"
        else
            run_wrk b "$B_PID" "$B_PORT" "$shape" "$path" "$body" "$B_LOG"
            run_wrk a "$A_PID" "$A_PORT" "$shape" "$path" "$body" "$A_LOG"
        fi
        i=$((i + 1))
    done
done

REPORT="$BENCH_TMP/report.md"
{
    echo "## JSON: apiary vs Go net/http + encoding/json"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(go version 2>/dev/null | cut -d' ' -f3 || echo 'go ?'), -c$CONNS, duration $DURATION after a $WARMUP warm-up per run, $ROUNDS round(s)$( ((ROUNDS > 1)) && echo ', medians')"
    echo
    "$PY" "$BENCH_DIR/wrk_report.py" table --clk-tck "$CLK_TCK" --a-name apiary --b-name go --cpu-ratio "$MANIFEST"
    echo
    echo "µs CPU/req = server (utime+stime) delta from /proc/PID/stat over the measured run ÷ requests served × 1e6 (CLK_TCK $CLK_TCK); CPU/req apiary ÷ go is the ratio of the medians."
    echo "Errors = wrk socket errors + non-2xx/3xx responses. Go's PUT answers {\"key\":...}; apiary's answers the stored value too."
    echo
    echo "Commands:"
    echo
    echo '```'
    echo "$A_CMD    # pid $A_PID, affinity $(taskset -cp "$A_PID" | sed 's/.*: //')"
    echo "$B_CMD    # pid $B_PID, affinity $(taskset -cp "$B_PID" | sed 's/.*: //')"
    cat "$COMMANDS"
    ((ROUNDS > 1)) && echo "# ... and the same $((${#SHAPES[@]} * 2)) wrk runs again in each of the other $((ROUNDS - 1)) round(s)"
    echo '```'
    echo
    echo "apiary config: \`$(cat "$BENCH_TMP/apiary/apiary.json")\`"
} >"$REPORT"

cat "$REPORT"
if [[ -n "${OUT:-}" && "$OUT" != /dev/stdout ]]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
