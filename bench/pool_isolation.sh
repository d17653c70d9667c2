#!/usr/bin/env bash
# bench/pool_isolation.sh: does a saturated worker pool leave the event loop responsive? apiary with
# ONE event loop (--threads 1) and ONE pool worker, the whole process pinned to CPU 0; a closed-loop
# client keeps the pool's queue full of GET /v1/primes jobs (~30 ms each) while wrk measures
# GET /healthz latency beside it. Run twice: with the pool, and with pool.run_inline (the same work
# on the loop: what not to do). Target: /healthz p99 <= 2 ms with the pool saturated.
# See bench/README.md, "pool_isolation.sh".
#
# Environment: APIARY_BIN (build-release/apiary), DURATION (10: seconds /healthz is measured),
# WARMUP (3: seconds the primes load runs first, to fill the queue), HEALTH_CONNS (4), PRIMES_N
# (unset: calibrated so one job takes JOB_MS), JOB_MS (30), QUEUE_SIZE (64), EXTRA_CONNS (4: primes
# connections beyond queue + workers), BACKOFF_MS (50), TARGET_MS (2), IDLE (1: also measure
# /healthz with no load), ROUNDS (1: repeat every run; all rows shown, ratios of medians),
# WORKER_SCHED ("idle": one more pool run with the worker thread under SCHED_IDLE; a space-separated
# list of idle, batch, nice:N; "" for none), PROBES ("wrk open": the /healthz probes, each its own
# run), PROBE_RATE (500: req/s of the open-loop probe), OUT, BENCH_SELFTEST=1 (pool_standin.py plays apiary),
# SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
HEALTH_CONNS="${HEALTH_CONNS:-4}"
JOB_MS="${JOB_MS:-30}"
QUEUE_SIZE="${QUEUE_SIZE:-64}"
POOL_THREADS=1
EXTRA_CONNS="${EXTRA_CONNS:-4}"
BACKOFF_MS="${BACKOFF_MS:-50}"
TARGET_MS="${TARGET_MS:-2}"
IDLE="${IDLE:-1}"
ROUNDS="${ROUNDS:-1}"
# "idle", "batch", "nice:N", space-separated; empty: no (a') runs
WORKER_SCHED="${WORKER_SCHED-idle}"
PROBES="${PROBES:-wrk open}"
PROBE_RATE="${PROBE_RATE:-500}"
SCHED_CMDS=()
MAX_N=50000000
WRK_CPU="${WRK_CPU:-1}"
SELFTEST="${BENCH_SELFTEST:-0}"
CLIENT="$BENCH_DIR/pool_client.py"
REPORTER="$BENCH_DIR/pool_report.py"
# Enough connections that the queue is always full: one job running, QUEUE_SIZE waiting, and
# EXTRA_CONNS more that find it full (503) and try again after BACKOFF_MS.
PRIMES_CONNS="${PRIMES_CONNS:-$((QUEUE_SIZE + POOL_THREADS + EXTRA_CONNS))}"

[[ "$DURATION" =~ ^[0-9]+$ && "$WARMUP" =~ ^[0-9]+$ ]] || die "DURATION and WARMUP are whole seconds"
command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"

bench_init
COMMANDS="$BENCH_TMP/commands.txt"
RUNS=()
: >"$COMMANDS"

# request_ms is raised because inline mode makes a request wait seconds behind other requests' work;
# the test is about latency, not about apiary's deadline cutting it short.
# POOL_NICE sets pool.nice (the workers' nice value); unset, apiary's default applies.
config_for() {  # RUN_INLINE
    local nice=""
    [[ -n "${POOL_NICE:-}" ]] && nice=",\"nice\":$POOL_NICE"
    printf '{"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000,"request_ms":120000},"pool":{"threads":%s,"queue_size":%s,"run_inline":%s%s},"primes":{"max_n":%s}}' \
        "$POOL_THREADS" "$QUEUE_SIZE" "$1" "$nice" "$MAX_N"
}

# job_cost N: one job of /v1/primes?n=N on the idle server, as CPU time (sum of the process's
# threads' schedstat on-CPU ns over 5 sequential requests, after one unmeasured one) and as the
# median wall time of those 5 requests. Calibrating on CPU time keeps the choice of N steady when
# neighbours steal the CPU (the wall time then grows, the CPU time does not). Sets JOB_CPU_MS and
# JOB_WALL_MS.
proc_cpu_ns() { awk '{ s += $1 } END { printf "%d\n", s }' /proc/"$1"/task/*/schedstat; }
job_cost() {
    local n=$1 url c0 c1 i
    url="http://127.0.0.1:$SRV_PORT/v1/primes?n=$n"
    curl -s -o /dev/null -m 30 "$url"
    c0="$(proc_cpu_ns "$SRV_PID")"
    JOB_WALL_MS="$(for ((i = 0; i < 5; i++)); do
        curl -s -o /dev/null -m 30 -w '%{time_total}\n' "$url"
    done | sort -n | sed -n 3p | awk '{ printf "%.1f", $1 * 1000 }')"
    c1="$(proc_cpu_ns "$SRV_PID")"
    JOB_CPU_MS="$(awk "BEGIN{printf \"%.1f\", ($c1 - $c0) / 5 / 1e6}")"
}

# calibrate: picks PRIMES_N so one job costs about JOB_MS of CPU (20-50 ms is the brief), scaling N
# by the measured cost (the sieve is roughly linear in N, less so where it outgrows a cache level)
# until within ±20 %; otherwise keeps the closest N measured.
CALIBRATION=()
calibrate() {
    local n=${PRIMES_N0:-2000000} i err best_n="" best_err=""
    for ((i = 0; i < 8; i++)); do
        job_cost "$n"
        CALIBRATION+=("n=$n: $JOB_CPU_MS ms CPU, $JOB_WALL_MS ms wall")
        log "calibration: n=$n costs $JOB_CPU_MS ms CPU ($JOB_WALL_MS ms wall)"
        err="$(awk "BEGIN{e = $JOB_CPU_MS / $JOB_MS; if (e < 1) e = 1 / e; print e}")"
        if [[ -z "$best_err" ]] || awk "BEGIN{exit !($err < $best_err)}"; then
            best_n=$n best_err=$err BEST_CPU=$JOB_CPU_MS BEST_WALL=$JOB_WALL_MS
        fi
        awk "BEGIN{exit !($err <= 1.2)}" && break
        n="$(awk "BEGIN{c = $JOB_CPU_MS; if (c < 0.1) c = 0.1; n = int($n * $JOB_MS / c); if (n > $MAX_N) n = $MAX_N; if (n < 1000) n = 1000; print n}")"
    done
    PRIMES_N=$best_n JOB_CPU_MS=$BEST_CPU JOB_WALL_MS=$BEST_WALL
}

# measure_one KEY LABEL PROBE: one run against the server in SRV_*. With a KEY other than "idle",
# the primes load starts WARMUP seconds before /healthz is measured and its window is the same
# DURATION. PROBE "wrk": wrk -cHEALTH_CONNS, closed loop; "open": pool_client.py at PROBE_RATE req/s.
measure_one() {
    local key=$1 label=$2 probe=$3 url_h url_p probe_cmd client_cmd cpid="" rc=0 cmds=/dev/null
    local dir="$BENCH_TMP/run.$1.$3.$ROUND"
    # the commands are the same in every round but for the port: list round 1's
    ((ROUND == 1)) && cmds="$COMMANDS"
    mkdir -p "$dir"
    url_h="http://127.0.0.1:$SRV_PORT/healthz"
    url_p="http://127.0.0.1:$SRV_PORT/v1/primes?n=$PRIMES_N"
    if [[ "$probe" == wrk ]]; then
        # --timeout 30s: in inline mode /healthz waits seconds; wrk's default 2 s would drop those
        # samples as timeouts and flatter the latency.
        probe_cmd=(taskset -c "$WRK_CPU" wrk -t1 "-c$HEALTH_CONNS" "-d${DURATION}s" --timeout 30s --latency "$url_h")
    else
        probe_cmd=(taskset -c "$WRK_CPU" "$PY" "$CLIENT" open "$url_h" --rate "$PROBE_RATE" --duration "$DURATION"
            --timeout 60 --json "$dir/probe.json")
    fi
    echo "# $label, /healthz probe: $probe" >>"$cmds"
    if [[ "$key" != idle ]]; then
        client_cmd=(taskset -c "$WRK_CPU" "$PY" "$CLIENT" closed "$url_p" --conns "$PRIMES_CONNS"
            --warmup "$WARMUP" --duration "$DURATION" --backoff-ms "$BACKOFF_MS" --timeout 60
            --json "$dir/client.json")
        "${client_cmd[@]}" >/dev/null 2>"$dir/client.err" &
        cpid=$!
        BENCH_PIDS+=("$cpid")
        echo "${client_cmd[*]} &    # primes load; its window starts after the ${WARMUP} s warm-up" >>"$cmds"
        log "$label: primes load from $PRIMES_CONNS connections, ${WARMUP} s warm-up"
        sleep "$WARMUP"
    fi
    log "$label: /healthz for ${DURATION} s, probe $probe"
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap0.json"
    run_waited "${probe_cmd[@]}" >"$dir/probe.out" 2>&1 || log "the probe exited non-zero ($label; output kept in the report)"
    "$PY" "$REPORTER" snap "$SRV_PID" >"$dir/snap1.json"
    echo "${probe_cmd[*]}" >>"$cmds"
    pool_server_alive "$label" "$SRV_PID" "$SRV_LOG" "during the run"
    if [[ -n "$cpid" ]]; then
        # the client ends on its own when its window closes (a second or so after the probe)
        wait "$cpid" || rc=$?
        local keep=() p
        for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$cpid" ]] || keep+=("$p"); done
        BENCH_PIDS=("${keep[@]}")
        ((rc == 0)) || { cat "$dir/client.err" >&2; die "pool_client.py failed ($label)"; }
    fi
    "$PY" - "$dir" "$key" "$label" "$BACKOFF_MS" "$cpid" "$probe" "$HEALTH_CONNS" "$PROBE_RATE" >"$dir/run.json" <<'PYEOF'
import json, os, sys
d, key, label, backoff, cpid, probe, conns, rate = sys.argv[1:9]
run = {"key": key, "label": label, "snap0": f"{d}/snap0.json", "snap1": f"{d}/snap1.json",
       "backoff_ms": float(backoff), "probe": probe}
if probe == "wrk":
    run["wrk"] = f"{d}/probe.out"
    run["probe_desc"] = f"wrk -c{conns}, closed loop"
else:
    run["probe_json"] = f"{d}/probe.json"
    run["probe_desc"] = f"{float(rate):g} req/s, open loop"
if cpid:
    run["client"] = f"{d}/client.json"
print(json.dumps(run))
PYEOF
    RUNS+=("$dir/run.json")
    if [[ "$probe" == wrk ]]; then
        log "$label: $(grep -E 'Requests/sec|^ +99%' "$dir/probe.out" | tr -s ' ' | tr '\n' ' ')"
    else
        log "$label: $("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); l=c["latency_s"].get("200",{}); print("200s", c["counts"].get("200",0), "p99", l.get("p99"), "errors", c["errors_total"])' "$dir/probe.json")"
    fi
}

measure() {  # KEY LABEL: one run per probe in PROBES
    local p
    for p in $PROBES; do measure_one "$1" "$2" "$p"; done
}

if [[ "$SELFTEST" == 1 ]]; then
    SERVER_NAME="pool_standin.py (BENCH_SELFTEST stand-in)"
else
    SERVER_NAME="apiary"
    APIARY_VERSION="$("$(resolve_apiary_bin)" --version 2>&1 | head -1 || true)"
fi

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    sfx=""
    ((ROUNDS > 1)) && sfx=", round $ROUND"
    # (a) the pool: one loop + one worker, both on CPU SERVER_CPU
    start_pool_server "pool$ROUND" "$SERVER_CPU" "$(config_for false)"
    if ((ROUND == 1)); then
        POOL_CMD="$SRV_CMD"
        POOL_AFFINITY="$(taskset -cp "$SRV_PID" | sed 's/.*: //')"
        if [[ -n "${PRIMES_N:-}" ]]; then
            job_cost "$PRIMES_N"
            CALIBRATION=("PRIMES_N=$PRIMES_N given: $JOB_CPU_MS ms CPU, $JOB_WALL_MS ms wall")
        else
            calibrate
        fi
        log "primes n=$PRIMES_N, one job ~$JOB_CPU_MS ms CPU ($JOB_WALL_MS ms wall)"
    fi
    [[ "$IDLE" == 1 ]] && measure idle "no load (reference)$sfx"
    measure pool "(a) pool, saturated$sfx"
    stop_pid "$SRV_PID"

    # (a') experiments: the same as (a) with the worker thread's scheduling changed from outside
    #      (apiary sets none itself): which setting lets the loop preempt the worker at once?
    for ws in $WORKER_SCHED; do
        case "$ws" in
            idle) sched_cmd=(chrt --idle -p 0) ws_label="SCHED_IDLE" ;;
            batch) sched_cmd=(chrt --batch -p 0) ws_label="SCHED_BATCH" ;;
            nice:*) sched_cmd=(renice -n "${ws#nice:}" -p) ws_label="nice ${ws#nice:}" ;;
            *) die "WORKER_SCHED: '$ws' is not idle, batch or nice:N" ;;
        esac
        start_pool_server "sched-${ws/:/}$ROUND" "$SERVER_CPU" "$(config_for false)"
        tids=()
        for t in /proc/"$SRV_PID"/task/*; do
            [[ "$(<"$t/comm")" == apiary-worker* ]] && tids+=("${t##*/}")
        done
        ((${#tids[@]})) || die "no apiary-worker thread found in pid $SRV_PID"
        for t in "${tids[@]}"; do "${sched_cmd[@]}" "$t" >/dev/null; done
        ((ROUND == 1)) && SCHED_CMDS+=("$SRV_CMD; ${sched_cmd[*]} TID    # (a') $ws_label: TID = each apiary-worker thread, config as (a)")
        measure "sched-$ws" "(a') pool, worker $ws_label$sfx"
        stop_pid "$SRV_PID"
    done

    # (b) run_inline: the same primes load, the work on the loop
    start_pool_server "inline$ROUND" "$SERVER_CPU" "$(config_for true)"
    if ((ROUND == 1)); then
        INLINE_CMD="$SRV_CMD"
        INLINE_AFFINITY="$(taskset -cp "$SRV_PID" | sed 's/.*: //')"
    fi
    measure inline "(b) run_inline, same load$sfx"
    stop_pid "$SRV_PID"
done
POOL_CONFIG="$(config_for false)"
INLINE_CONFIG="$(config_for true)"

REPORT="$BENCH_TMP/report.md"
{
    echo "## pool isolation: GET /healthz while the worker pool is saturated with /v1/primes"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $SERVER_NAME${APIARY_VERSION:+ ($APIARY_VERSION)}."
    echo "Server: \`--threads 1\` (one event loop) with pool.threads $POOL_THREADS, pool.queue_size $QUEUE_SIZE, the whole process on CPU $SERVER_CPU (affinity $POOL_AFFINITY / $INLINE_AFFINITY); wrk and the primes client on CPU $WRK_CPU."
    echo "Primes job: n=$PRIMES_N, one job ≈ $JOB_CPU_MS ms of CPU ($JOB_WALL_MS ms wall, median of 5) on the idle server (calibration: $(IFS=';'; c="${CALIBRATION[*]}"; echo "${c//;/; }"))."
    [[ "$SELFTEST" == 1 ]] && echo && echo "**BENCH_SELFTEST=1: the server is bench/pool_standin.py, not apiary. These numbers only check the harness.**"
    echo
    "$PY" "$REPORTER" isolation --target-ms "$TARGET_MS" --server-cpu "$SERVER_CPU" "${RUNS[@]}"
    echo
    echo "- Load: $PRIMES_CONNS keep-alive connections (= 1 running + $QUEUE_SIZE queued + $EXTRA_CONNS extra) ask for /v1/primes?n=$PRIMES_N in a closed loop, so the queue stays full and the extra ones get 503s; a connection waits $BACKOFF_MS ms after a 503 (without a pause, the extra connections would spin on 503s as fast as the loop answers them and this would measure a 503 storm). Its counts are over the same $DURATION s window as the probe's, after a $WARMUP s warm-up. In inline mode there is no queue, so no 503: every request waits its turn on the loop."
    echo "- /healthz, two probes, each in its own run with its own primes load: **wrk -t1 -c$HEALTH_CONNS**, closed loop (the brief's probe): each connection asks again as soon as answered, so it keeps the loop itself busy (on the idle server it is CPU-bound at tens of thousands of req/s); answered/s shows how much loop time /healthz got, p50/p99/max (wrk --latency; max from wrk's thread stats) how long one waited. With the pool, the loop and the worker are then two CPU-hungry threads on one CPU, and the scheduler shares it between them in slices of a few ms, which is what its p99 shows. **$PROBE_RATE req/s, open loop** (pool_client.py open): requests at a fixed rate whatever the answers do, so the loop is mostly idle and each request tests whether a loop that wakes up gets the CPU back from the worker at once; it has a floor of a few hundred µs of Python client overhead (see the no-load row). Target for both: p99 ≤ $TARGET_MS ms in pool mode."
    echo "- CPU: utime+stime per thread (/proc/PID/task/TID/stat, by thread name: apiary-loop-N, apiary-worker) over the /healthz window ÷ wall time; \"waited for CPU\" = schedstat run delay ÷ wall: time the thread was runnable while the other one held CPU $SERVER_CPU (or a neighbour's job did). µs loop CPU / response counts every answer in the window (/healthz + primes 200s and 503s); ms worker CPU / primes job = worker CPU ÷ primes answered 200. For the open-loop probe the CPU window also covers the wait for its last answers after the primes load stopped (seconds in inline mode), which dilutes those rows' busy shares."
    [[ -n "$WORKER_SCHED" ]] && echo "- (a'): experiments, not apiary as shipped: the same as (a), but right after start the bench changes the scheduling of apiary's worker thread from outside (\`chrt --idle -p 0 TID\` for SCHED_IDLE, \`chrt --batch -p 0 TID\`, or \`renice -n N -p TID\`; apiary sets none itself), to show what the pool would gain by doing it. A SCHED_IDLE thread is preempted as soon as a normal thread (the loop) wakes up on its CPU, and only gets what the loop leaves; nice only reweights the share and keeps the worker's minimum slice."
    echo "- Why one CPU for the whole server: with 2 CPUs, one goes to the load generators, so the pool cannot get a core of its own. The worker thread competes with the loop thread for CPU $SERVER_CPU, and it is the kernel scheduler preempting the (always runnable) worker when the loop wakes up with a request that keeps /healthz fast. With a spare core the worker would simply run there; this is the harder case. In inline mode the loop runs each ~$JOB_CPU_MS ms job itself, and a /healthz request waits behind every primes request that was ready before it."
    echo
    echo "Commands (ulimit -n $(ulimit -n); the server is started fresh for each mode$( ((ROUNDS > 1)) && echo " and round; rounds 2..$ROUNDS repeat these on other ports")):"
    echo
    echo '```'
    echo "$POOL_CMD    # (a), config: $POOL_CONFIG"
    for c in "${SCHED_CMDS[@]}"; do echo "$c"; done
    echo "$INLINE_CMD    # (b), config: $INLINE_CONFIG"
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>raw wrk output and client results</summary>"
    echo
    echo '```'
    for r in "${RUNS[@]}"; do
        d="$(dirname "$r")"
        echo "### $("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["label"] + ": /healthz probe, " + r["probe_desc"])' "$r")"
        if [[ -f "$d/probe.json" ]]; then
            "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps(c, indent=None))' "$d/probe.json"
        else
            cat "$d/probe.out"
        fi
        if [[ -f "$d/client.json" ]]; then
            echo "### primes client (pool_client.py JSON, latencies in seconds)"
            "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps(c, indent=None))' "$d/client.json"
        fi
    done
    echo '```'
    echo
    echo "</details>"
} >"$REPORT"

emit_report "$REPORT"
