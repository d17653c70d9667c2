#!/usr/bin/env bash
# bench/static.sh: HttpArena's `static` profile at this machine's scale: apiary's `static` mount against
# nginx (gzip_static, and brotli_static where Debian's module is installed), each on one core.
#
# Files: examples/arena/make_data.py's static/ (the arena's 20 files at its sizes, ~840 KB; .br at
# quality 11 and .gz at level 9 beside the 15 text files). wrk -t1 (bench/static_mix.lua) asks for them
# round-robin with the arena's header, Accept-Encoding: br;q=1, gzip;q=0.8, then with gzip alone (both
# servers send the .gz), then one small file (reset.css, 8 KiB; its .br is 1.2 KB) with the arena's
# header.
#
# Servers (bench/run.sh, all running throughout, taking turns on each workload):
#   apiary        build-release/apiary --threads 1, config {"static":[{"prefix":"/static","dir":DATA}]}
#   nginx br      gzip_static on + brotli_static on (libnginx-mod-http-brotli-static), sendfile on
#   nginx gz      gzip_static on only (nginx as packaged: no Brotli), sendfile on
#   nginx br ofc  the first with open_file_cache (1 s validity); only with NGINX_OFC=1
#   apiary base   APIARY_BASE, another apiary binary (before a change), only when set; it counts as a
#                 peer, so "× peer" may then be against it
# Reported per server and workload: req/s, p99, server CPU µs per request, errors, ratios to the
# strongest nginx.
#
# Then (SYSCALLS=1, the default) the system calls per request, which the machine's load does not move:
# bench/static_syscalls.py drives REQS requests over the rotation on one keep-alive connection while
# `strace -c -f -p PID` counts the server's calls.
#
# Environment: APIARY_BIN (build-release/apiary), DURATION (5s), WARMUP (1s), ROUNDS (1), CONNS (256),
# NGINX_OFC (0), APIARY_BASE (unset), SYSCALLS (1), REQS (2000), OUT, SERVER_CPU (0), WRK_CPU (1). Needs wrk, nginx,
# libnginx-mod-http-brotli-static, python3-brotli, strace (scripts/packages/bench.txt).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 5s 1s 1 256
SERVERS_TOGETHER=1
bench_init

"$PY" -c 'import brotli' 2>/dev/null || die "$PY has no brotli module: apt-get install -y python3-brotli"
log "making the files (examples/arena/make_data.py)"
"$PY" "$REPO_DIR/examples/arena/make_data.py" "$BENCH_TMP/data" --rows 1 >/dev/null
DATA="$BENCH_TMP/data"
[[ -f $DATA/static/reset.css.br ]] || die "make_data.py wrote no .br files"

APIARY_CONF="{\"log_level\":\"warn\",\"timeouts\":{\"keepalive_ms\":600000,\"header_ms\":600000},\"static\":[{\"prefix\":\"/static\",\"dir\":\"$DATA/static\"}]}"
SERVERS=("apiary|subject|/static/reset.css|apiary $APIARY_CONF")
BROTLI_MOD=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so
if [[ -f $BROTLI_MOD ]]; then
    SERVERS+=("nginx br|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh br {port} $BENCH_TMP/nginx-br $DATA")
else
    log "no $BROTLI_MOD (apt-get install -y libnginx-mod-http-brotli-static): nginx sends .gz only"
fi
SERVERS+=("nginx gz|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh gz {port} $BENCH_TMP/nginx-gz $DATA")
if [[ -n ${APIARY_BASE:-} ]]; then
    # another apiary binary (a build of main, say) in the same run, for a before/after of a change
    printf '%s\n' "$APIARY_CONF" >"$BENCH_TMP/apiary-base.json"
    SERVERS+=("apiary base|peer|/static/reset.css|cmd $APIARY_BASE --config $BENCH_TMP/apiary-base.json --listen 127.0.0.1:{port} --threads 1")
fi
if [[ ${NGINX_OFC:-0} == 1 && -f $BROTLI_MOD ]]; then
    SERVERS+=("nginx br ofc|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh br {port} $BENCH_TMP/nginx-ofc $DATA ofc")
fi
WORKLOADS=("20 files, br;q=1, gzip;q=0.8|/static/|$CONNS|static_mix.lua|br"
    "20 files, gzip|/static/|$CONNS|static_mix.lua|gzip"
    "reset.css, br;q=1, gzip;q=0.8|/static/|$CONNS|static_mix.lua|br reset.css")

# Before each workload: what the server sends for a text file with the arena's header (which coding,
# and that it decodes to the original), so a row never compares different work unknowingly.
declare -A SEEN=()
suite_check() {
    local label=$1 url=$2 base=${2%%/static/*} got
    [[ -z ${SEEN[$label]:-} ]] || return 0
    got="$("$PY" "$BENCH_DIR/static_syscalls.py" check "$base" "$DATA/static")" \
        || die "$label: $got"
    SEEN[$label]=1
    SUITE_NOTES+=("$label, Accept-Encoding: br;q=1, gzip;q=0.8: $got")
}

SUITE_TITLE="static: HttpArena's static profile on one core (apiary vs nginx gzip_static/brotli_static)"
SUITE_ABOUT="$("$NGINX" -v 2>&1 | sed 's/.*: //')$([[ -f $BROTLI_MOD ]] && echo " + brotli_static ($(dpkg-query -W -f '${Version}' libnginx-mod-http-brotli-static 2>/dev/null || echo '?'))")"
SUITE_SETUP=("Files: make_data.py's 20 (~840 KB; .br quality 11 and .gz level 9 beside the 15 text files); wrk asks for them round-robin (bench/static_mix.lua).")
SUITE_NOTES+=("nginx: sendfile on, tcp_nopush, tcp_nodelay (the arena nginx entry's file settings), no open_file_cache unless its label says ofc; apiary: files ≤ 32 KiB read into the answer, larger ones by sendfile.")
OUT_ALL="${OUT:-}"
OUT=""
run_suite >"$BENCH_TMP/report1.md"

if [[ ${SYSCALLS:-1} == 1 ]]; then
    command -v strace >/dev/null || die "strace not found: apt-get install -y strace"
    {
        echo
        echo "### System calls per request (strace -c -f, ${REQS:-2000} requests over the 20 files on one keep-alive connection)"
        echo
        for ((s = 0; s < ${#S_LABEL[@]}; s++)); do
            for coding in br gzip; do
                "$PY" "$BENCH_DIR/static_syscalls.py" count "http://127.0.0.1:${S_PORT[s]}" "${S_PID[s]}" \
                    --label "${S_LABEL[s]}" --coding "$coding" --requests "${REQS:-2000}" --tmp "$BENCH_TMP"
            done
        done
    } >"$BENCH_TMP/report2.md"
else
    : >"$BENCH_TMP/report2.md"
fi
for pid in "${S_PID[@]}"; do stop_pid "$pid"; done
cat "$BENCH_TMP/report1.md" "$BENCH_TMP/report2.md" >"$BENCH_TMP/report.md"
OUT="$OUT_ALL"
emit_report "$BENCH_TMP/report.md" >/dev/null
cat "$BENCH_TMP/report.md"
