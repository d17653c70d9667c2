# bench/lib.sh: shared helpers for the bench scripts (sourced, not run). Starts apiary and a
# private nginx pinned to one CPU on free loopback ports, waits for them, and cleans up on exit.
# Every process started here is recorded in BENCH_PIDS, and only those are ever stopped.
# shellcheck shell=bash disable=SC2034  # the start_* functions set globals for the sourcing script

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
BENCH_CALLER_DIR="$PWD"
# Debian's python3 on purpose: the helpers are stdlib-only and must not depend on a pyenv shim.
PY="${PYTHON:-/usr/bin/python3}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
NGINX="${NGINX:-/usr/sbin/nginx}"
SERVER_CPU="${SERVER_CPU:-0}"
BENCH_PIDS=()
BENCH_TMP=""

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bench_init() {
    BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/apiary-bench.XXXXXX")"
    trap bench_cleanup EXIT
    # INT/TERM go through exit so the EXIT trap does the cleanup exactly once.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # wrk -c1000, nginx/apiary at 20000 connections and idle_rss.py all need far more than the
    # usual soft limit of 1024 descriptors; children inherit the raised limit.
    ulimit -n "$(ulimit -Hn)"
}

bench_cleanup() {
    local rc=$? pid i
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        # bounded: ~5 s per process, then SIGKILL
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ignored SIGTERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]] && rm -rf "$BENCH_TMP"
    return "$rc"
}

# Stops one process this script started (and forgets it).
stop_pid() {
    local pid=$1 i keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${BENCH_PIDS[@]}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
    BENCH_PIDS=("${keep[@]}")
}

# Prints a loopback TCP port that was free a moment ago (the kernel picks it, so no guessing).
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Resolves the apiary binary: an explicit APIARY_BIN is taken relative to the caller's directory,
# the default relative to the repository.
resolve_apiary_bin() {
    local bin="${APIARY_BIN:-}"
    if [[ -z "$bin" ]]; then
        bin="$REPO_DIR/build-release/apiary"
    elif [[ "$bin" != /* ]]; then
        bin="$BENCH_CALLER_DIR/$bin"
    fi
    printf '%s\n' "$bin"
}

# wait_ready NAME PID PORT LOGFILE: polls GET /v1/hello until it answers 200, for at most
# READY_TIMEOUT seconds; fails early if the process died.
wait_ready() {
    local name=$1 pid=$2 port=$3 logf=$4 deadline code
    deadline=$((SECONDS + ${READY_TIMEOUT:-15}))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited during startup; its log:"
            sed 's/^/    /' "$logf" >&2 || true
            exit 1
        fi
        code="$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/v1/hello" || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    log "$name did not answer GET /v1/hello with 200 on 127.0.0.1:$port within ${READY_TIMEOUT:-15}s; its log:"
    sed 's/^/    /' "$logf" >&2 || true
    exit 1
}

# Warns (does not fail) when the body differs from the TechEmpower one: the comparison is only
# fair if both servers send the same bytes.
check_body() {
    local name=$1 port=$2 body
    body="$(curl -s -m 2 "http://127.0.0.1:$port/v1/hello" || true)"
    if [[ "$body" != '{"message":"Hello, World!"}' ]]; then
        log "warning: $name body is '$body', not the TechEmpower body"
    fi
}

# launch DIR CMD: runs the command string CMD (split on spaces, no quoting) in the background, its
# output in DIR/stdout.log and DIR/stderr.log, recorded for the cleanup. Sets LAUNCH_PID.
launch() {
    # shellcheck disable=SC2086
    $2 </dev/null >"$1/stdout.log" 2>"$1/stderr.log" &
    LAUNCH_PID=$!
    BENCH_PIDS+=("$LAUNCH_PID")
}

# hello_ready NAME PID PORT LOGFILE: waits for GET /v1/hello (wait_ready), checks its body, and says
# where the server runs.
hello_ready() {
    wait_ready "$1" "$2" "$3" "$4"
    check_body "$1" "$3"
    log "$1: pid $2 on 127.0.0.1:$3 (cpus $(taskset -cp "$2" | sed 's/.*: //'))"
}

# start_nginx NAME MAX_CONNS: writes a private config under $BENCH_TMP/NAME and starts nginx in the
# foreground as a single process (master_process off, so the PID we get is the one serving).
# Sets NGINX_PID, NGINX_PORT, NGINX_CMD, NGINX_LOG.
start_nginx() {
    local name=$1 maxconn=${2:-20000} dir port
    dir="$BENCH_TMP/$name"
    mkdir -p "$dir/tmp"
    port="$(free_port)"
    cat >"$dir/nginx.conf" <<EOF
# private nginx for the apiary benchmarks; generated by bench/lib.sh
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $maxconn;
error_log $dir/error.log;
pid $dir/nginx.pid;
events {
    worker_connections $maxconn;
}
http {
    access_log off;
    # temp paths inside the private prefix: Debian's compiled-in /var/lib/nginx may not exist
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server {
        listen 127.0.0.1:$port;
        location = /v1/hello {
            default_type application/json;
            return 200 '{"message":"Hello, World!"}';
        }
    }
}
EOF
    NGINX_CMD="taskset -c $SERVER_CPU $NGINX -p $dir -c $dir/nginx.conf -e $dir/error.log"
    launch "$dir" "$NGINX_CMD"
    NGINX_PID=$LAUNCH_PID
    NGINX_PORT=$port
    NGINX_LOG="$dir/error.log"
    hello_ready "$name" "$NGINX_PID" "$port" "$dir/stderr.log"
}

# start_apiary NAME CONFIG_JSON: sets APIARY_PID, APIARY_PORT, APIARY_CMD, APIARY_LOG.
start_apiary() {
    local name=$1 config_json=$2 dir port bin
    bin="$(resolve_apiary_bin)"
    [[ -x "$bin" ]] || die "apiary binary '$bin' not found; build it (see bench/README.md), set APIARY_BIN, or run with BENCH_SELFTEST=1 to put a second nginx in its place"
    dir="$BENCH_TMP/$name"
    mkdir -p "$dir"
    port="$(free_port)"
    printf '%s\n' "$config_json" >"$dir/apiary.json"
    APIARY_CMD="taskset -c $SERVER_CPU $bin --config $dir/apiary.json --listen 127.0.0.1:$port --threads 1"
    launch "$dir" "$APIARY_CMD"
    APIARY_PID=$LAUNCH_PID
    APIARY_PORT=$port
    APIARY_LOG="$dir/stderr.log"
    # Readiness is the HTTP poll, not apiary's "listening on http://127.0.0.1:PORT" line: that line
    # is logged at info level, so the benchmark's log_level "warn" suppresses it.
    hello_ready "$name" "$APIARY_PID" "$port" "$dir/stderr.log"
}

# emit_report FILE: prints the finished markdown report, and copies it to $OUT when that is set.
emit_report() {
    cat "$1"
    if [[ -n "${OUT:-}" && "$OUT" != /dev/stdout ]]; then
        cp "$1" "$OUT"
        log "report written to $OUT"
    fi
}

# Prints utime+stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat). They cover all
# threads of the process. The comm field may hold spaces, so split after its closing paren.
cpu_ticks() {
    local stat rest f
    stat="$(</proc/"$1"/stat)"
    rest="${stat##*) }"
    read -r -a f <<<"$rest"
    # rest starts at field 3, so field 14 is index 11 and field 15 index 12
    echo $((f[11] + f[12]))
}

# ---- helpers for pool_isolation.sh and pool_hash.sh ------------------------------------------------

# run_waited CMD...: runs CMD in the background and waits for it, so Ctrl-C/TERM reach the EXIT trap
# at once (bash delays traps until a foreground child ends) and the cleanup can stop it. Returns
# CMD's exit status. (sleep.sh has its own copy with the same behaviour.)
run_waited() {
    local pid rc=0 keep=() p
    "$@" &
    pid=$!
    BENCH_PIDS+=("$pid")
    wait "$pid" || rc=$?
    for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
    return "$rc"
}

# wait_url NAME PID URL LOGFILE [EXPECTED_BODY]: polls URL until it answers 200, for at most
# READY_TIMEOUT seconds; fails early if the process died, and at once on a 404 (this build has no
# such endpoint yet: say so instead of timing out). Warns when the body is not EXPECTED_BODY.
wait_url() {
    local name=$1 pid=$2 url=$3 logf=$4 want=${5:-} deadline code body
    deadline=$((SECONDS + ${READY_TIMEOUT:-15}))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) exited during startup; its log:"
            sed 's/^/    /' "$logf" >&2 || true
            exit 1
        fi
        code="$(curl -s -o "$BENCH_TMP/ready.body" -m 5 -w '%{http_code}' "$url" || true)"
        if [[ "$code" == 200 ]]; then
            body="$(<"$BENCH_TMP/ready.body")"
            [[ -z "$want" || "$body" == "$want" ]] || log "warning: $name answers $url with '$body', not '$want'"
            return 0
        fi
        [[ "$code" == 404 ]] && die "$name answers $url with 404: this build does not have that endpoint yet (rebuild, or run with BENCH_SELFTEST=1)"
        sleep 0.1
    done
    log "$name did not answer $url with 200 within ${READY_TIMEOUT:-15}s; its log:"
    sed 's/^/    /' "$logf" >&2 || true
    exit 1
}

# start_pool_server NAME CPUS CONFIG_JSON: starts `apiary --threads 1` with CONFIG_JSON, or with
# BENCH_SELFTEST=1 bench/pool_standin.py (same command line), under `taskset -c CPUS` on a free port,
# and waits until GET /v1/primes?n=10 answers 200. apiary is checked with --check-config first, so a
# config key it does not know fails loudly here instead of silently. Sets SRV_PID, SRV_PORT, SRV_CMD,
# SRV_LOG, SRV_DIR.
start_pool_server() {
    local name=$1 cpus=$2 config_json=$3 bin port
    SRV_DIR="$BENCH_TMP/$name"
    mkdir -p "$SRV_DIR"
    printf '%s\n' "$config_json" >"$SRV_DIR/config.json"
    port="$(free_port)"
    if [[ "${BENCH_SELFTEST:-0}" == 1 ]]; then
        SRV_CMD="taskset -c $cpus $PY $BENCH_DIR/pool_standin.py --config $SRV_DIR/config.json --listen 127.0.0.1:$port --threads 1"
    else
        bin="$(resolve_apiary_bin)"
        [[ -x "$bin" ]] || die "apiary binary '$bin' not found; build it (see bench/README.md), set APIARY_BIN, or run with BENCH_SELFTEST=1"
        "$bin" --config "$SRV_DIR/config.json" --check-config >"$SRV_DIR/check.out" 2>&1 \
            || die "apiary --check-config rejects $config_json: $(cat "$SRV_DIR/check.out")"
        SRV_CMD="taskset -c $cpus $bin --config $SRV_DIR/config.json --listen 127.0.0.1:$port --threads 1"
    fi
    # shellcheck disable=SC2086
    $SRV_CMD </dev/null >"$SRV_DIR/stdout.log" 2>"$SRV_DIR/stderr.log" &
    SRV_PID=$!
    BENCH_PIDS+=("$SRV_PID")
    SRV_PORT=$port
    SRV_LOG="$SRV_DIR/stderr.log"
    wait_url "$name" "$SRV_PID" "http://127.0.0.1:$port/v1/primes?n=10" "$SRV_LOG" '{"n":10,"count":4}'
    log "$name: pid $SRV_PID on 127.0.0.1:$port (cpus $(taskset -cp "$SRV_PID" | sed 's/.*: //'))"
}

# server_alive NAME PID LOG WHEN: stops the run, with the server's log, if the server has died.
server_alive() {
    kill -0 "$2" 2>/dev/null && return 0
    log "$1 (pid $2) died $4; last lines of its log:"
    tail -20 "$3" | sed 's/^/    /' >&2 || true
    exit 1
}
pool_server_alive() { server_alive "$@"; }
