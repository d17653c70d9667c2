#!/usr/bin/env bash
# bench/json.sh: apiary against the Go net/http + encoding/json reference (../shared/peers/go-api) on
# JSON work, in one run: GET /v1/hello, POST /v1/echo and PUT/GET /v1/kv/{key} (memory store) of the
# 787-byte document (bench/data/body.json) and of a 16 KiB one (bench/data/doc16k.json). apiary
# --threads 1 and Go GOMAXPROCS=1 are both pinned to CPU 0, wrk -t1 -c64 runs on CPU 1, the two
# servers take turns (which one goes first alternates) in every round, and the server's CPU time
# per request comes from /proc/PID/stat. The runs and the report are bench/run.sh's; this file is
# the suite's tables. See bench/README.md and docs/benchmarks.md.
#
# Environment: APIARY_BIN (default build-release/apiary), GO_API_DIR (../shared/peers/go-api beside
# the repository), GO_API_BIN (built into $BENCH_TMP when unset; needs Debian's golang-go),
# DURATION (5s), WARMUP (1s), ROUNDS (3; every cell is the median over the rounds), CONNS (64),
# OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 5s 1s 3 64
SERVERS_TOGETHER=1
# shared/ sits beside the repository (or beside the directory of worktrees)
if [[ -z "${GO_API_DIR:-}" ]]; then
    GO_API_DIR="$REPO_DIR/../shared/peers/go-api"
    [[ -d "$GO_API_DIR" ]] || GO_API_DIR="$REPO_DIR/../../shared/peers/go-api"
fi
DOC_S="$BENCH_DIR/data/body.json"
DOC_L="$BENCH_DIR/data/doc16k.json"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"

bench_init

if [[ -z "${GO_API_BIN:-}" ]]; then
    command -v go >/dev/null || die "go not found (to build the reference server): apt-get install -y golang-go"
    [[ -f "$GO_API_DIR/main.go" ]] || die "the Go reference server is not in $GO_API_DIR (set GO_API_DIR)"
    GO_API_BIN="$BENCH_TMP/go-api"
    log "building the Go reference server from $GO_API_DIR"
    (cd "$GO_API_DIR" && GOFLAGS=-mod=mod GOCACHE="$BENCH_TMP/go-cache" go build -o "$GO_API_BIN" .)
fi

# Both servers must do the same work: the documents are stored, and echo must give back a value
# equal to the one sent (Go sorts object members, so the bytes differ; the value must not).
suite_server_up() {
    local name=$1 port=$2 doc file code
    for doc in s l; do
        file=$([[ $doc == s ]] && echo "$DOC_S" || echo "$DOC_L")
        code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
            --data-binary "@$file" "http://127.0.0.1:$port/v1/kv/doc-$doc")"
        [[ "$code" == 200 || "$code" == 201 ]] || die "$name: PUT /v1/kv/doc-$doc answered $code"
        curl -s -H 'Content-Type: application/json' --data-binary "@$file" "http://127.0.0.1:$port/v1/echo" \
            >"$BENCH_TMP/echo.$name.$doc"
        curl -s "http://127.0.0.1:$port/v1/kv/doc-$doc" >"$BENCH_TMP/get.$name.$doc"
        "$PY" - "$file" "$BENCH_TMP/echo.$name.$doc" "$BENCH_TMP/get.$name.$doc" <<'PYEOF' || die "$name: echo or kv GET of $file differs from the document"
import json, sys
doc = json.load(open(sys.argv[1]))
assert json.load(open(sys.argv[2])) == doc, "echo"
assert json.load(open(sys.argv[3]))["value"] == doc, "kv GET"
PYEOF
    done
}

# label | role | ready path | start
SERVERS=(
    'apiary|subject||apiary {"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}}'
    "go|peer||cmd env GOMAXPROCS=1 $GO_API_BIN {port}"
)

# label | path | connections | wrk script | script args (json_body.lua: method and body file)
WORKLOADS=(
    "GET /v1/hello|/v1/hello|$CONNS||"
    "POST /v1/echo, 787 B|/v1/echo|$CONNS|json_body.lua|POST $DOC_S"
    "POST /v1/echo, 16 KiB|/v1/echo|$CONNS|json_body.lua|POST $DOC_L"
    "GET /v1/kv, 787 B|/v1/kv/doc-s|$CONNS||"
    "GET /v1/kv, 16 KiB|/v1/kv/doc-l|$CONNS||"
    "PUT /v1/kv, 787 B|/v1/kv/doc-s|$CONNS|json_body.lua|PUT $DOC_S"
    "PUT /v1/kv, 16 KiB|/v1/kv/doc-l|$CONNS|json_body.lua|PUT $DOC_L"
)

SUITE_TITLE="JSON: apiary vs Go net/http + encoding/json"
SUITE_ABOUT="$(go version 2>/dev/null | cut -d' ' -f3 || echo 'go ?'), -c$CONNS"
SUITE_NOTES+=("Go's PUT answers {\"key\":...}; apiary's answers the stored value too.")
run_suite
