# bench/run.sh: the one run-and-report loop of the wrk comparisons (hello.sh, json.sh, kv.sh, sql.sh),
# sourced by them (it sources lib.sh). A suite script prepares what its servers need (a database, a reference
# binary), fills two tables and calls run_suite, which starts each server pinned to SERVER_CPU, runs
# every workload with wrk pinned to WRK_CPU (a warm-up, then the measured run bracketed by the
# server's utime+stime from /proc/PID/stat), and prints one markdown report (also to $OUT). Adding a
# workload or a peer is one row. See bench/README.md, "How the wrk comparisons run".
#
#   SERVERS=("LABEL|ROLE|READY_PATH|START" ...)
#       ROLE   subject (apiary, or what stands in for it) or peer (what it is compared with: each row's
#              ratios are to the strongest peer, the one with the most req/s on that workload)
#       READY_PATH   polled until it answers 200 after the start; empty: /v1/hello
#       START  "apiary CONFIG_JSON"  apiary --threads 1 with that config (lib.sh start_apiary)
#              "nginx"               the private nginx serving /v1/hello (lib.sh start_nginx)
#              "cmd COMMAND"         COMMAND with {port} where the port goes (split on spaces, no quoting)
#   WORKLOADS=("LABEL|PATH|CONNECTIONS|WRK_SCRIPT|SCRIPT_ARGS" ...)
#       WRK_SCRIPT  a Lua script in bench/ (pipeline.lua, json_body.lua), or empty; SCRIPT_ARGS go after
#                   wrk's "--" (pipeline.lua's depth, json_body.lua's method and file)
#
# Settings, read by run_suite: DURATION, WARMUP, ROUNDS (each cell is then the median), WRK_CPU,
# SERVER_CPU; WRK_EXTRA (more wrk options, e.g. --timeout 10s); SUITE_BYTES (1: a B/resp column, bytes
# wrk read per response); SERVERS_TOGETHER (1: all servers run for the whole suite and take turns on
# each workload, the first alternating, so slow drift does not favour one; 0: one server at a time,
# started fresh, every workload on it, then stopped); AUX_PID and AUX_NAME (a process the servers use,
# e.g. the database: its CPU per request is a column too); SUITE_TITLE, SUITE_ABOUT (versions for the
# header), SUITE_SETUP and SUITE_NOTES (lines for the report), SUITE_COMMANDS (commands listed before
# the servers', e.g. the database's).
#
# Hooks the suite may define: suite_server_up LABEL PORT (after a server is ready: store data, check it
# does the same work as the others), suite_check LABEL URL (before each workload: check the answer),
# redact (stdin to stdout filter over the printed commands and configs: hides passwords), aux_ticks
# (the CPU ticks of the AUX_PID database, when it is more than that one process).
# shellcheck shell=bash disable=SC2034

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVERS_TOGETHER="${SERVERS_TOGETHER:-0}"
WRK_CPU="${WRK_CPU:-1}"
SUITE_SETUP=()
SUITE_NOTES=()
SUITE_COMMANDS=()
AUX_PID=""
AUX_NAME=""

# start_aux NAME PROBE -- CMD...: starts a helper process (a database) in the background, recorded for
# cleanup, and runs the command string PROBE until it succeeds (for at most READY_TIMEOUT, 30 s).
# Sets AUX_PID, AUX_NAME and adds the command to SUITE_COMMANDS.
start_aux() {
    local name=$1 probe=$2 deadline
    shift 3
    "$@" </dev/null >/dev/null 2>&1 &
    AUX_PID=$!
    AUX_NAME=$name
    BENCH_PIDS+=("$AUX_PID")
    SUITE_COMMANDS+=("$(printf '%q ' "$@")")
    deadline=$((SECONDS + ${READY_TIMEOUT:-30}))
    until eval "$probe" >/dev/null 2>&1; do
        kill -0 "$AUX_PID" 2>/dev/null || die "$name exited at start"
        ((SECONDS < deadline)) || die "$name did not answer ($probe) within ${READY_TIMEOUT:-30}s"
        sleep 0.1
    done
    log "$name: pid $AUX_PID (cpus $(taskset -cp "$AUX_PID" | sed 's/.*: //'))"
}

redact() { cat; }

# The CPU ticks of the AUX_PID process (its utime+stime); a suite whose database is many processes
# (PostgreSQL: a postmaster and a backend per connection) redefines it to sum them.
aux_ticks() { cpu_ticks "$AUX_PID"; }

# suite_defaults DURATION WARMUP ROUNDS [CONNS]: the suite's defaults; a variable of the same name in
# the environment wins.
suite_defaults() {
    DURATION="${DURATION:-$1}" WARMUP="${WARMUP:-$2}" ROUNDS="${ROUNDS:-$3}" CONNS="${CONNS:-${4:-64}}"
}

# suite_start S: starts server S of the SERVERS table and waits until it is ready.
suite_start() {
    local s=$1 label=${S_LABEL[$1]} start=${S_START[$1]} ready=${S_READY[$1]:-/v1/hello} kind spec dir port
    kind=${start%% *}
    spec=${start#"$kind"}
    spec=${spec# }
    dir="srv-$s-${label//[^A-Za-z0-9._-]/_}"
    case $kind in
        apiary)
            start_apiary "$dir" "$spec"
            S_PID[s]=$APIARY_PID S_PORT[s]=$APIARY_PORT S_CMD[s]=$APIARY_CMD S_LOG[s]=$APIARY_LOG
            S_CONFIG[s]=$spec
            ;;
        nginx)
            start_nginx "$dir" 20000
            S_PID[s]=$NGINX_PID S_PORT[s]=$NGINX_PORT S_CMD[s]=$NGINX_CMD S_LOG[s]=$NGINX_LOG
            ;;
        cmd)
            port="$(free_port)"
            mkdir -p "$BENCH_TMP/$dir"
            S_CMD[s]="taskset -c $SERVER_CPU ${spec//\{port\}/$port}"
            launch "$BENCH_TMP/$dir" "${S_CMD[s]}"
            S_PID[s]=$LAUNCH_PID S_PORT[s]=$port
            S_LOG[s]="$BENCH_TMP/$dir/stderr.log" S_OUT[s]="$BENCH_TMP/$dir/stdout.log"
            ;;
        *) die "SERVERS row '$label': START must begin with apiary, nginx or cmd, not '$kind'" ;;
    esac
    # apiary and nginx are ready on /v1/hello already; another path (apiary's /readyz with a database)
    # or any cmd server is polled here
    [[ $kind == cmd || $ready != /v1/hello ]] \
        && wait_url "$label" "${S_PID[s]}" "http://127.0.0.1:${S_PORT[s]}$ready" "${S_LOG[s]}"
    S_AFFINITY[s]="$(taskset -cp "${S_PID[s]}" | sed 's/.*: //')"
    # (start_apiary and start_nginx have said so already)
    [[ $kind != cmd ]] || log "$label: pid ${S_PID[s]} on 127.0.0.1:${S_PORT[s]} (cpus ${S_AFFINITY[s]})"
    if declare -F suite_server_up >/dev/null; then suite_server_up "$label" "${S_PORT[s]}"; fi
    ((ROUND > 1)) || {
        printf '%s    # %s: pid %s, affinity %s\n' "${S_CMD[s]}" "$label" "${S_PID[s]}" "${S_AFFINITY[s]}"
        [[ -z ${S_CONFIG[s]:-} ]] || printf '#   config: %s\n' "${S_CONFIG[s]}"
    } | redact >>"$SUITE_CMDS"
}

# suite_measure S W: workload W on server S: the check hook, a warm-up, then the measured run.
suite_measure() {
    local s=$1 w=$2 label=${S_LABEL[$1]} pid=${S_PID[$1]} wl=${W_LABEL[$2]} url flags tail out t0 t1 a0=0 a1=0
    url="http://127.0.0.1:${S_PORT[s]}${W_PATH[w]}"
    if declare -F suite_check >/dev/null; then suite_check "$label" "$url"; fi
    flags=(-t1 "-c${W_CONNS[w]}")
    # shellcheck disable=SC2206  # extra wrk options are words (e.g. --timeout 10s)
    [[ -z ${WRK_EXTRA:-} ]] || flags+=($WRK_EXTRA)
    [[ -z ${W_SCRIPT[w]} ]] || flags+=(-s "$BENCH_DIR/${W_SCRIPT[w]}")
    tail=("$url")
    # shellcheck disable=SC2206  # the script's arguments are words
    [[ -z ${W_ARGS[w]} ]] || tail+=(-- ${W_ARGS[w]})
    taskset -c "$WRK_CPU" wrk "${flags[@]}" -d"$WARMUP" "${tail[@]}" >/dev/null 2>&1 || true
    server_alive "$label" "$pid" "${S_LOG[s]}" "during the '$wl' warm-up"
    out="$BENCH_TMP/wrk.$s.$w.$ROUND.txt"
    local cmd=(taskset -c "$WRK_CPU" wrk "${flags[@]}" -d"$DURATION" --latency "${tail[@]}")
    t0="$(cpu_ticks "$pid")"
    [[ -z $AUX_PID ]] || a0="$(aux_ticks)"
    "${cmd[@]}" >"$out" 2>&1 || log "wrk exited non-zero for $label '$wl' (output kept in the report)"
    t1="$(cpu_ticks "$pid")"
    [[ -z $AUX_PID ]] || a1="$(aux_ticks)"
    server_alive "$label" "$pid" "${S_LOG[s]}" "during the '$wl' run"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$label" "${S_ROLE[s]}" "$ROUND" "$out" \
        "$((t1 - t0))" "$((a1 - a0))" >>"$SUITE_MANIFEST"
    ((ROUND > 1)) || printf '%s\n' "${cmd[*]}" | redact >>"$SUITE_CMDS"
    log "round $ROUND, $label '$wl': $(grep -E 'requests in|Requests/sec|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
}

# run_suite: everything after the tables: the runs, then the report.
run_suite() {
    local row s w i=0 n
    S_LABEL=() S_ROLE=() S_READY=() S_START=() S_PID=() S_PORT=() S_CMD=() S_LOG=() S_OUT=() S_CONFIG=()
    S_AFFINITY=() W_LABEL=() W_PATH=() W_CONNS=() W_SCRIPT=() W_ARGS=()
    for row in "${SERVERS[@]}"; do
        IFS='|' read -r S_LABEL[${#S_LABEL[@]}] S_ROLE[${#S_ROLE[@]}] S_READY[${#S_READY[@]}] \
            S_START[${#S_START[@]}] <<<"$row"
    done
    for row in "${WORKLOADS[@]}"; do
        IFS='|' read -r W_LABEL[${#W_LABEL[@]}] W_PATH[${#W_PATH[@]}] W_CONNS[${#W_CONNS[@]}] \
            W_SCRIPT[${#W_SCRIPT[@]}] W_ARGS[${#W_ARGS[@]}] <<<"$row"
    done
    n=${#S_LABEL[@]}
    command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
    SUITE_MANIFEST="$BENCH_TMP/manifest.tsv"
    SUITE_CMDS="$BENCH_TMP/commands.txt"
    : >"$SUITE_MANIFEST"
    : >"$SUITE_CMDS"

    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        if [[ $SERVERS_TOGETHER == 1 ]]; then
            if ((ROUND == 1)); then for ((s = 0; s < n; s++)); do suite_start "$s"; done; fi
            for ((w = 0; w < ${#W_LABEL[@]}; w++)); do
                # each workload starts with the next server in turn
                for ((s = 0; s < n; s++)); do suite_measure $(((s + i) % n)) "$w"; done
                i=$((i + 1))
            done
        else
            for ((s = 0; s < n; s++)); do
                suite_start "$s"
                for ((w = 0; w < ${#W_LABEL[@]}; w++)); do suite_measure "$s" "$w"; done
                stop_pid "${S_PID[s]}"
            done
        fi
    done
    suite_report
}

suite_report() {
    local report="$BENCH_TMP/report.md" s clk line bytes=()
    clk="$(getconf CLK_TCK)"
    [[ ${SUITE_BYTES:-0} != 1 ]] || bytes=(--bytes)
    {
        echo "## $SUITE_TITLE"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)${SUITE_ABOUT:+, $SUITE_ABOUT}, duration $DURATION after a $WARMUP warm-up per run, $ROUNDS round(s)$( ((ROUNDS > 1)) && echo ', medians')."
        if [[ $SERVERS_TOGETHER == 1 ]]; then
            echo "Servers on CPU $SERVER_CPU, all running throughout, taking turns on each workload (the first alternates); wrk -t1 on CPU $WRK_CPU."
        else
            echo "Servers on CPU $SERVER_CPU one at a time (each started fresh, stopped after its runs); wrk -t1 on CPU $WRK_CPU."
        fi
        for line in "${SUITE_SETUP[@]}"; do echo "$line"; done
        # a server that says what it runs on its first line (the aiohttp ones): versions, loop
        for ((s = 0; s < ${#S_LABEL[@]}; s++)); do
            if [[ -s ${S_OUT[s]:-} ]]; then
                echo "${S_LABEL[s]}: $(head -1 "${S_OUT[s]}" | sed 's/^listening on [^ ]* //')."
            fi
        done
        echo
        "$PY" "$BENCH_DIR/wrk_report.py" suite --clk-tck "$clk" ${AUX_NAME:+--aux-name "$AUX_NAME"} \
            "${bytes[@]}" "$SUITE_MANIFEST"
        echo
        echo "- × peer = req/s ÷ the strongest peer's (the peer with the most req/s on that workload); CPU ÷ peer = µs CPU/req ÷ that peer's."
        echo "- µs CPU/req = the server process's utime+stime (/proc/PID/stat, all threads) over the measured run ÷ requests wrk counted × 10⁶ (CLK_TCK $clk)${AUX_NAME:+; $AUX_NAME µs CPU/req the same for $AUX_NAME}. Errors = wrk socket errors + non-2xx/3xx responses."
        for line in "${SUITE_NOTES[@]}"; do echo "- $line"; done
        echo
        echo "Commands:"
        echo
        echo '```'
        echo "ulimit -n $(ulimit -n)"
        for line in "${SUITE_COMMANDS[@]}"; do echo "$line"; done | redact
        cat "$SUITE_CMDS"
        if ((ROUNDS > 1)); then echo "# ... and the same runs again in each of the other $((ROUNDS - 1)) round(s)"; fi
        echo '```'
        echo
        echo "<details><summary>raw wrk output</summary>"
        echo
        echo '```'
        while IFS=$'\t' read -r wl label _ round file _; do
            echo "### $wl, $label, round $round"
            cat "$file"
        done <"$SUITE_MANIFEST"
        echo '```'
        echo
        echo "</details>"
    } >"$report"
    emit_report "$report"
}
