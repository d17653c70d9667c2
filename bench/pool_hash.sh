#!/usr/bin/env bash
# bench/pool_hash.sh: POST /v1/password/hash (Argon2id on the worker pool) throughput against the
# number of workers, and what the bounded queue does at 2x overload. Part 1: pool.threads 1, 2, 4
# (4 = oversubscribed on 2 CPUs), hashes/s and µs CPU per hash at a concurrency that keeps the queue
# non-empty but below its bound. Part 2: pool.threads 2, pool.queue_size 8, an open-loop client
# sending at twice the measured capacity: accepted rate, 503 share, latency of accepted and of
# rejected requests. See bench/README.md, "pool_hash.sh".
#
# Environment: APIARY_BIN (build-release/apiary), THREADS_LIST ("1 2 4"), HASH_CONNS (16),
# DURATION (15: seconds per measured wrk run), WARMUP (3), OPSLIMIT (2), MEMLIMIT_KIB (65536),
# CPUS ("0,1": server and load generators), OVERLOAD (1: run part 2), OVERLOAD_THREADS (2),
# OVERLOAD_QUEUE (8), OVERLOAD_FACTOR (2), OVERLOAD_SECONDS (10), OVERLOAD_RATE (unset: FACTOR x
# the measured hashes/s at OVERLOAD_THREADS workers), OUT, BENCH_SELFTEST=1 (pool_standin.py plays
# apiary: scrypt instead of Argon2id).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

THREADS_LIST="${THREADS_LIST:-1 2 4}"
HASH_CONNS="${HASH_CONNS:-16}"
QUEUE_SIZE=64
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
OPSLIMIT="${OPSLIMIT:-2}"
MEMLIMIT_KIB="${MEMLIMIT_KIB:-65536}"
CPUS="${CPUS:-0,1}"
OVERLOAD="${OVERLOAD:-1}"
OVERLOAD_THREADS="${OVERLOAD_THREADS:-2}"
OVERLOAD_QUEUE="${OVERLOAD_QUEUE:-8}"
OVERLOAD_FACTOR="${OVERLOAD_FACTOR:-2}"
OVERLOAD_SECONDS="${OVERLOAD_SECONDS:-10}"
SELFTEST="${BENCH_SELFTEST:-0}"
CLIENT="$BENCH_DIR/pool_client.py"
REPORTER="$BENCH_DIR/pool_report.py"
LUA="$BENCH_DIR/hash_post.lua"
BODY='{"password":"correct horse battery staple"}'

[[ "$DURATION" =~ ^[0-9]+$ && "$WARMUP" =~ ^[0-9]+$ ]] || die "DURATION and WARMUP are whole seconds"
command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"
for t in $THREADS_LIST; do
    # the queue must never fill in part 1, or 503s would be counted as (fast) hashes
    ((HASH_CONNS > t && HASH_CONNS < QUEUE_SIZE + t)) || die "HASH_CONNS=$HASH_CONNS must be above pool.threads ($t) and below queue + threads ($((QUEUE_SIZE + t)))"
done

bench_init
COMMANDS="$BENCH_TMP/commands.txt"
RUNS=()
: >"$COMMANDS"
declare -A RPS_BY_THREADS=()

config_for() {  # THREADS QUEUE
    printf '{"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000,"request_ms":120000},"pool":{"threads":%s,"queue_size":%s,"run_inline":false},"password":{"opslimit":%s,"memlimit_kib":%s}}' \
        "$1" "$2" "$OPSLIMIT" "$MEMLIMIT_KIB"
}

# check_hash NAME: one POST must answer 200 with a hash (apiary: "$argon2id$..."); a 404 means
# this build has no /v1/password/hash yet. Prints how long the one hash took.
check_hash() {
    local code body
    code="$(curl -s -o "$BENCH_TMP/hash.body" -m 30 -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
        --data "$BODY" "http://127.0.0.1:$SRV_PORT/v1/password/hash" || true)"
    body="$(cat "$BENCH_TMP/hash.body" 2>/dev/null || true)"
    [[ "${code%% *}" == 404 ]] && die "$1 answers POST /v1/password/hash with 404: this build does not have it yet"
    [[ "${code%% *}" == 200 && "$body" == '{"hash":"$'* ]] || die "$1: POST /v1/password/hash answered '$code' '$body'"
    # shellcheck disable=SC2016  # a literal "$argon2id$" prefix, not an expansion
    [[ "$SELFTEST" == 1 || "$body" == '{"hash":"$argon2id$'* ]] || log "warning: $1's hash is not \$argon2id\$: $body"
    log "$1: one hash alone took $(awk "BEGIN{printf \"%.1f\", ${code#* }*1000}") ms; $(cut -c1-60 <<<"$body")..."
    FIRST_HASH="$body"
}

run_json() {  # DIR KEY LABEL [k=v numeric extras...]
    "$PY" - "$@" <<'PYEOF'
import json, sys
d, key, label = sys.argv[1:4]
run = {"key": key, "label": label, "snap0": f"{d}/snap0.json", "snap1": f"{d}/snap1.json"}
for kv in sys.argv[4:]:
    k, v = kv.split("=", 1)
    run[k] = v if k in ("wrk", "client") else float(v)
print(json.dumps(run))
PYEOF
}

# Part 1: hashes/s against pool.threads
for t in $THREADS_LIST; do
    name="threads$t"
    start_pool_server "$name" "$CPUS" "$(config_for "$t" "$QUEUE_SIZE")"
    echo "# pool.threads $t: $SRV_CMD    # pid $SRV_PID, affinity $(taskset -cp "$SRV_PID" | sed 's/.*: //'), config $(config_for "$t" "$QUEUE_SIZE")" >>"$COMMANDS"
    check_hash "$name"
    dir="$BENCH_TMP/run.$name"
    mkdir -p "$dir"
    url="http://127.0.0.1:$SRV_PORT/v1/password/hash"
    wrk_base=(taskset -c "$CPUS" wrk -t1 "-c$HASH_CONNS" --timeout 30s -s "$LUA")
    log "pool.threads $t: warm-up ${WARMUP} s, then ${DURATION} s with $HASH_CONNS connections"
    run_waited "${wrk_base[@]}" "-d${WARMUP}s" "$url" >/dev/null 2>&1 || true
    pool_server_alive "$name" "$SRV_PID" "$SRV_LOG" "during the warm-up"
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap0.json"
    run_waited "${wrk_base[@]}" --latency "-d${DURATION}s" "$url" >"$dir/wrk.txt" 2>&1 || log "wrk exited non-zero (pool.threads $t)"
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap1.json"
    pool_server_alive "$name" "$SRV_PID" "$SRV_LOG" "during the run"
    {
        echo "${wrk_base[*]} -d${WARMUP}s $url    # warm-up, not counted"
        echo "${wrk_base[*]} --latency -d${DURATION}s $url"
    } >>"$COMMANDS"
    run_json "$dir" "$name" "$t" "wrk=$dir/wrk.txt" "threads=$t" "conns=$HASH_CONNS" >"$dir/run.json"
    RUNS+=("$dir/run.json")
    RPS_BY_THREADS[$t]="$("$PY" "$BENCH_DIR/wrk_report.py" parse "$dir/wrk.txt" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["rps"] or 0)')"
    log "pool.threads $t: $(grep -E 'Requests/sec|Non-2xx|^ +99%' "$dir/wrk.txt" | tr -s ' ' | tr '\n' ' ')"
    stop_pid "$SRV_PID"
done

# Part 2: 2x overload against a small queue
OVERLOAD_RUN=""
if [[ "$OVERLOAD" == 1 ]]; then
    if [[ -n "${OVERLOAD_RATE:-}" ]]; then
        capacity="$(awk "BEGIN{print $OVERLOAD_RATE/$OVERLOAD_FACTOR}")"
    else
        capacity="${RPS_BY_THREADS[$OVERLOAD_THREADS]:-}"
        [[ -n "$capacity" ]] || die "no part-1 run with pool.threads $OVERLOAD_THREADS to take the capacity from (set OVERLOAD_RATE)"
        OVERLOAD_RATE="$(awk "BEGIN{printf \"%.2f\", $capacity*$OVERLOAD_FACTOR}")"
    fi
    name="overload"
    start_pool_server "$name" "$CPUS" "$(config_for "$OVERLOAD_THREADS" "$OVERLOAD_QUEUE")"
    echo "# overload: $SRV_CMD    # pid $SRV_PID, affinity $(taskset -cp "$SRV_PID" | sed 's/.*: //'), config $(config_for "$OVERLOAD_THREADS" "$OVERLOAD_QUEUE")" >>"$COMMANDS"
    check_hash "$name"
    dir="$BENCH_TMP/run.$name"
    mkdir -p "$dir"
    url="http://127.0.0.1:$SRV_PORT/v1/password/hash"
    client_cmd=(taskset -c "$CPUS" "$PY" "$CLIENT" open "$url" --rate "$OVERLOAD_RATE" --duration "$OVERLOAD_SECONDS"
        --method POST --body "$BODY" --timeout 60 --json "$dir/client.json")
    log "overload: $OVERLOAD_RATE req/s for $OVERLOAD_SECONDS s (${OVERLOAD_FACTOR}x $capacity hashes/s) at pool.threads $OVERLOAD_THREADS, queue $OVERLOAD_QUEUE"
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap0.json"
    run_waited "${client_cmd[@]}" >/dev/null 2>"$dir/client.err" || { cat "$dir/client.err" >&2; die "pool_client.py failed"; }
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap1.json"
    pool_server_alive "$name" "$SRV_PID" "$SRV_LOG" "during the overload run"
    # the body has spaces and quotes: show it quoted so the line can be pasted into a shell
    line="${client_cmd[*]}"
    echo "${line/--body $BODY/--body \'$BODY\'}" >>"$COMMANDS"
    run_json "$dir" overload "pool.threads $OVERLOAD_THREADS, pool.queue_size $OVERLOAD_QUEUE" "client=$dir/client.json" \
        "capacity=$capacity" "factor=$OVERLOAD_FACTOR" >"$dir/run.json"
    OVERLOAD_RUN="$dir/run.json"
    stop_pid "$SRV_PID"
fi

if [[ "$SELFTEST" == 1 ]]; then
    SERVER_NAME="pool_standin.py (BENCH_SELFTEST stand-in: scrypt with memlimit_kib of memory, not Argon2id)"
else
    SERVER_NAME="apiary ($("$(resolve_apiary_bin)" --version 2>&1 | head -1 || true))"
fi

REPORT="$BENCH_TMP/report.md"
{
    echo "## pool hash: POST /v1/password/hash against pool.threads, and 2× overload"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $SERVER_NAME."
    echo "Argon2id opslimit $OPSLIMIT, memlimit $MEMLIMIT_KIB KiB ($((MEMLIMIT_KIB / 1024)) MiB per hash in flight); \`--threads 1\` (one event loop); server, wrk and the client all on CPUs $CPUS. A hash answer looks like \`$(cut -c1-60 <<<"$FIRST_HASH")…\`."
    [[ "$SELFTEST" == 1 ]] && echo && echo "**BENCH_SELFTEST=1: the server is bench/pool_standin.py, not apiary. These numbers only check the harness.**"
    echo
    if ((${#RUNS[@]})); then
        "$PY" "$REPORTER" hash ${OVERLOAD_RUN:+--overload "$OVERLOAD_RUN"} "${RUNS[@]}"
    fi
    echo
    echo "- Part 1: wrk -c$HASH_CONNS closed loop, pool.queue_size $QUEUE_SIZE: $HASH_CONNS requests in flight keep every worker busy with more waiting (queue non-empty) and never reach the bound (no 503s: the non-2xx column checks it). hashes/s = wrk req/s over ${DURATION} s after a ${WARMUP} s warm-up; latency includes queueing ($HASH_CONNS in flight ÷ hashes/s). **µs CPU / hash** = server utime+stime (/proc/PID/stat, all threads) over the run ÷ hashes. **CPU bound** = min(pool.threads, the server's CPUs) × 10⁶ ÷ µs CPU per hash: the hashes/s the workers would reach with those CPUs to themselves; on this shared machine hashes/s falls short of it by what other processes took (compare server CPU busy with CPUs busy, all tasks). **workers waited for CPU** = schedstat run delay of the workers ÷ wall: with more workers than CPUs, or neighbours, time they were runnable but not running."
    echo "- Why everything on CPUs $CPUS, unpinned within them: the question is how hashing scales with workers on this 2-CPU machine, so the server gets both CPUs; pinning it to one would cap every row at one CPU. The load generators share those CPUs, but a hash costs tens of ms of CPU while sending one request and reading its answer costs some µs, so they take well under 1 % of the CPU time; the loop thread is just as light and is the one a worker gets preempted for."
    echo "- Part 2: pool_client.py open loop sends at a fixed rate on a schedule (t0 + i/rate) for ${OVERLOAD_SECONDS} s whatever the answers do, each request on an idle keep-alive connection or a new one, so the offered load really stays at ${OVERLOAD_FACTOR}× capacity. Latency is from writing the request to the end of the answer (how late the writes were against the schedule is given under the table). With pool.queue_size $OVERLOAD_QUEUE the server can hold only $OVERLOAD_THREADS running + $OVERLOAD_QUEUE queued hashes: the rest must get an immediate 503 + Retry-After, so the accepted rate stays at capacity (≈ 50 % 503s at 2×) and accepted requests wait at most about ($OVERLOAD_THREADS + $OVERLOAD_QUEUE) ÷ capacity. accepted ÷ capacity compares the accepted rate with part 1's hashes/s at the same thread count."
    echo
    echo "Commands (ulimit -n $(ulimit -n); a fresh server for each row):"
    echo
    echo '```'
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>raw wrk output and client result</summary>"
    echo
    echo '```'
    for r in "${RUNS[@]}"; do
        echo "### pool.threads $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["label"])' "$r")"
        cat "$(dirname "$r")/wrk.txt"
    done
    if [[ -n "$OVERLOAD_RUN" ]]; then
        echo "### overload: pool_client.py JSON (latencies in seconds)"
        "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$(dirname "$OVERLOAD_RUN")/client.json"
    fi
    echo '```'
    echo
    echo "</details>"
} >"$REPORT"

emit_report "$REPORT"
