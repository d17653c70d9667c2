#!/usr/bin/env bash
# bench/arena.sh: HttpArena's HTTP/1.1 load shapes at this machine's scale, apiary's arena entry
# (examples/arena) against h2o, nginx, Go fasthttp and aiohttp, in one run. The arena runs each
# server on 64 threads against gcannon; here each server gets one core (SERVER_CPU) and wrk -t1 the
# other (WRK_CPU), with the arena's request mixes (bench/arena_mix.lua, bench/pipeline.lua):
#
#   baseline      512 connections, GET /baseline11?a=13&b=42, the POST with a Content-Length body and
#                 with a chunked body, rotated
#   pipelined     512 connections, 16 GET /pipeline back to back per write
#   limited-conn  the baseline mix, every 10th request asking Connection: close
#   json          512 connections (the arena: 4096), GET /json/{count}?m= over its seven (count, m) pairs
#
# Two suites (bench/run.sh): baseline, pipelined and limited-conn on the entry, h2o, nginx, fasthttp and
# aiohttp; json on the entry, fasthttp and aiohttp (h2o and nginx have no JSON of their own to build).
# Reported per server and workload: req/s, p99, server CPU µs per request (utime+stime of the
# process over the run ÷ requests), errors, and ratios to the strongest peer.
#
# Environment: ARENA_BIN (an arena binary; default: APIARY_BUILD installed into a scratch prefix and
# the entry built against it in Release), APIARY_BUILD (build-release), DURATION (5s), WARMUP (1s),
# ROUNDS (1), OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1). Needs wrk, nginx-light,
# h2o, golang-go + golang-github-valyala-fasthttp-dev, python3-aiohttp (scripts/packages/bench.txt).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 5s 1s 1 512
SERVERS_TOGETHER=1
command -v h2o >/dev/null || die "h2o not found: apt-get install -y h2o"
command -v go >/dev/null || die "go not found: apt-get install -y golang-go golang-github-valyala-fasthttp-dev"
"$PY" -c 'import aiohttp' 2>/dev/null || die "$PY has no aiohttp: apt-get install -y python3-aiohttp"

bench_init

log "making the dataset (examples/arena/make_data.py)"
"$PY" "$REPO_DIR/examples/arena/make_data.py" "$BENCH_TMP/data" --rows 10 >/dev/null
DATASET="$BENCH_TMP/data/dataset.json"

if [[ -z "${ARENA_BIN:-}" ]]; then
    build="${APIARY_BUILD:-$REPO_DIR/build-release}"
    [[ "$build" == /* ]] || build="$BENCH_CALLER_DIR/$build"
    [[ -f "$build/CMakeCache.txt" ]] || die "no apiary build in $build (cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release && cmake --build build-release), or set ARENA_BIN"
    log "installing $build and building the arena entry (Release) against it"
    cmake --install "$build" --prefix "$BENCH_TMP/prefix" >/dev/null
    cmake -S "$REPO_DIR/examples/arena" -B "$BENCH_TMP/build-arena" -DCMAKE_PREFIX_PATH="$BENCH_TMP/prefix" \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BENCH_TMP/build-arena" -j2 >/dev/null
    ARENA_BIN="$BENCH_TMP/build-arena/arena"
fi
[[ -x "$ARENA_BIN" ]] || die "ARENA_BIN '$ARENA_BIN' is not an executable"

log "building the Go fasthttp peer (GOPATH mode on Debian's packages)"
(cd "$BENCH_DIR" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$BENCH_TMP/gocache" GOFLAGS='' \
    go build -p 1 -trimpath -o "$BENCH_TMP/arena_fasthttp" ./arena_fasthttp/)

# Every server must give the same answers (the nginx row's fixed "55" excepted, which the report says).
suite_check() {
    local label=$1 url=$2 base got
    base=${url%%/baseline11*}
    base=${base%%/pipeline*}
    base=${base%%/json/*}
    case $url in
    */baseline11*)
        [[ $label == nginx* ]] && return 0
        got="$(curl -s -X POST -H 'Transfer-Encoding: chunked' -d 20 "$base/baseline11?a=13&b=42")"
        [[ $got == 75 ]] || die "$label: POST /baseline11 chunked 20 answered '$got', not 75"
        ;;
    */pipeline*)
        got="$(curl -s "$base/pipeline")"
        [[ $got == ok ]] || die "$label: /pipeline answered '$got'"
        ;;
    */json/*)
        got="$(curl -s "$base/json/5?m=7" | "$PY" -c '
import json, sys
d = json.load(sys.stdin); items = d["items"]
print(d["count"] == 5 and len(items) == 5 and all(i["total"] == i["price"] * i["quantity"] * 7 for i in items))')"
        [[ $got == True ]] || die "$label: /json/5?m=7 is not the profile's answer"
        ;;
    esac
}

ENTRY="cmd env ARENA_DATA_DIR=$BENCH_TMP/data $ARENA_BIN --listen 127.0.0.1:{port} --threads 1"
FASTHTTP="cmd env GOMAXPROCS=1 $BENCH_TMP/arena_fasthttp {port} $DATASET"
AIOHTTP="cmd $PY $BENCH_DIR/aiohttp_arena.py 127.0.0.1:{port} --dataset $DATASET"

SUITE_ABOUT="$(h2o -v 2>&1 | head -1), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(go version | cut -d' ' -f3) + fasthttp 1.31"
SUITE_NOTES+=("p99 of the pipelined shape is per batch of 16 (one latency sample per pipelined write).")
SUITE_NOTES+=("nginx (nginx-light) answers /baseline11 with a fixed \"55\": it cannot add numbers without a module, so its baseline rows are a floor of its HTTP cost, not the same work. h2o sums with an mruby handler (Debian's h2o 2.2.5 has mruby) and serves /pipeline with its file handler.")
SUITE_NOTES+=("limited-conn: every 10th request (per wrk thread) asks Connection: close; the arena closes each connection after 10.")

# 1. the HTTP profiles
SUITE_TITLE="arena: baseline, pipelined, limited-conn (HttpArena's shapes on one core)"
SERVERS=("apiary arena|subject|/baseline11?a=1&b=2|$ENTRY"
    "h2o|peer|/baseline11?a=1&b=2|cmd $BENCH_DIR/arena_peers.sh h2o {port} $BENCH_TMP/h2o"
    "nginx|peer|/pipeline|cmd $BENCH_DIR/arena_peers.sh nginx {port} $BENCH_TMP/nginx"
    "fasthttp|peer|/pipeline|$FASTHTTP"
    "aiohttp|peer|/pipeline|$AIOHTTP")
WORKLOADS=("baseline|/baseline11?a=13&b=42|$CONNS|arena_mix.lua|baseline"
    "pipelined|/pipeline|$CONNS|pipeline.lua|16"
    "limited-conn|/baseline11?a=13&b=42|$CONNS|arena_mix.lua|baseline 10")
OUT_ALL="${OUT:-}"
OUT=""
run_suite >"$BENCH_TMP/report1.md"
for pid in "${S_PID[@]}"; do stop_pid "$pid"; done

# 2. json
SUITE_TITLE="arena: json (HttpArena's shape on one core)"
SUITE_NOTES=()
SUITE_ABOUT="$(go version | cut -d' ' -f3) + fasthttp 1.31, aiohttp $("$PY" -c 'import aiohttp; print(aiohttp.__version__)')"
SERVERS=("apiary arena|subject|/json/1?m=1|$ENTRY" "fasthttp|peer|/json/1?m=1|$FASTHTTP" "aiohttp|peer|/json/1?m=1|$AIOHTTP")
WORKLOADS=("json|/json/1?m=3|$CONNS|arena_mix.lua|json")
run_suite >"$BENCH_TMP/report2.md"

cat "$BENCH_TMP/report1.md" "$BENCH_TMP/report2.md" >"$BENCH_TMP/report.md"
OUT="$OUT_ALL"
emit_report "$BENCH_TMP/report.md" >/dev/null
cat "$BENCH_TMP/report.md"
