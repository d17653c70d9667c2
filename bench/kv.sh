#!/usr/bin/env bash
# bench/kv.sh: GET /v1/kv/{key} with wrk against apiary on the memory backend, apiary on the Redis
# backend and aiohttp + redis.asyncio on the same Redis, in one run. The server under test runs alone
# on CPU 0; wrk and the private redis-server share CPU 1 (see bench/README.md, "kv.sh", for why).
# Reports req/s, p50/p99, the server's CPU time per request and Redis's CPU time per request. The
# runs and the report are bench/run.sh's; this file is the suite's tables.
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s), CONNS (64),
# ROUNDS (1), OUT (also write the report there), SERVER_CPU (0), WRK_CPU (1), REDIS_CPU (1),
# REDIS_SERVER (/usr/bin/redis-server).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 10s 2s 1 64
REDIS_CPU="${REDIS_CPU:-1}"
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/redis-server}"
KEY=bench
# A small document of every JSON kind; stored as this exact compact text by all three servers.
VALUE='{"id":12345,"name":"apiary bench","tags":["a","b","c"],"active":true,"score":9.5,"parent":null}'
EXPECTED="{\"key\":\"$KEY\",\"value\":$VALUE,\"ttl\":null}"
APIARY_BASE='"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}'

[[ -x "$REDIS_SERVER" ]] || die "redis-server not found at $REDIS_SERVER: apt-get install -y redis-server"
command -v redis-cli >/dev/null || die "redis-cli not found: apt-get install -y redis-tools"
"$PY" -c 'import aiohttp, redis.asyncio' 2>/dev/null \
    || die "aiohttp_kv.py needs Debian's python3-aiohttp and python3-redis:" \
        "apt-get install -y python3-aiohttp python3-redis"

bench_init

# One private Redis for the whole run (nothing persisted); both Redis-backed servers read the key.
REDIS_PORT="$(free_port)"
mkdir -p "$BENCH_TMP/redis"
start_aux redis-server "[[ \"\$(redis-cli -p $REDIS_PORT ping)\" == PONG ]]" -- \
    taskset -c "$REDIS_CPU" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$BENCH_TMP/redis" --logfile "$BENCH_TMP/redis/redis.log"
redis-cli -p "$REDIS_PORT" set "apiary:kv:$KEY" "$VALUE" >/dev/null
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# apiary's memory store starts empty: store the key once.
suite_server_up() {
    local code
    [[ $1 == apiary-memory ]] || return 0
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' --data "$VALUE" \
        "http://127.0.0.1:$2/v1/kv/$KEY")"
    [[ "$code" == 201 ]] || die "apiary-memory: PUT /v1/kv/$KEY answered $code (no /v1/kv in this build?)"
}

# Every server must answer the same bytes.
suite_check() {
    local body
    body="$(curl -s -m 5 "$2" || true)"
    [[ "$body" == "$EXPECTED" ]] || log "warning: $1 answers '$body', not '$EXPECTED'"
}

# label | role | ready path | start
SERVERS=(
    "apiary-memory|subject||apiary {$APIARY_BASE}"
    "apiary-redis|subject||apiary {$APIARY_BASE,\"kv\":{\"backend\":\"redis\"},\"redis\":{\"url\":\"$REDIS_URL\"}}"
    "aiohttp|peer|/v1/kv/$KEY|cmd $PY $BENCH_DIR/aiohttp_kv.py 127.0.0.1:{port} --redis $REDIS_URL"
)

# label | path | connections | wrk script | script args
WORKLOADS=("GET /v1/kv/$KEY|/v1/kv/$KEY|$CONNS||")

SUITE_TITLE="kv.sh: GET /v1/kv/{key}, apiary (memory, Redis) vs aiohttp + redis.asyncio"
SUITE_ABOUT="$("$REDIS_SERVER" --version | cut -d' ' -f1-3)"
SUITE_SETUP+=("redis-server on CPU $REDIS_CPU (shared with wrk); apiary --threads 1, aiohttp one event loop.")
SUITE_NOTES+=("redis-server µs CPU/req: Redis's own CPU per request (it shares CPU $WRK_CPU with wrk; the apiary-memory row shows its idle cost).")
SUITE_NOTES+=("Every server answers the same body: \`$EXPECTED\` (checked before each run).")
run_suite
