#!/usr/bin/env bash
# bench/arena.sh: HttpArena's HTTP/1.1 load shapes at this machine's scale, apiary's arena entry
# (examples/arena) against h2o, nginx, Go fasthttp and aiohttp, in one run. The arena runs each server
# on 64 threads against gcannon or wrk; here each server gets one core (SERVER_CPU) and wrk -t1 the
# other (WRK_CPU), with the arena's request files as wrk scripts (bench/arena_mix.lua,
# bench/pipeline.lua, bench/static_mix.lua) and the arena's smallest connection count per profile:
#
#   suite         requests (the arena's)                                         conns   servers
#   baseline      GET /baseline11?a=13&b=42, the POST with a Content-Length body  512    entry, h2o, nginx,
#                 and with a chunked body, rotated                                       fasthttp, aiohttp
#   pipelined     16 GET /pipeline back to back per write                          512    the same five
#   limited-conn  the baseline mix, every 10th request Connection: close           512    the same five
#   json          GET /json/{count}?m= over its seven (count, m) pairs, every      512    entry, fasthttp,
#                 25th request Connection: close (the arena's -r 25)                      aiohttp
#   json-comp     GET /json/25?m=4, /40?m=8, /50?m=6, Accept-Encoding: gzip, br;   512    entry, nginx, h2o,
#                 then the same with Accept-Encoding: gzip (like for like); -r 25         fasthttp, aiohttp
#   upload        POST /upload of 500 KB, 2 MB, 10 MB, 20 MB, five of a size,       32    entry, fasthttp,
#                 every 5th request Connection: close; then RSS per concurrent              aiohttp
#                 20 MiB upload (bench/arena_upload_rss.py)
#   static        the 20 files round-robin, Accept-Encoding: br;q=1, gzip;q=0.8   1024    entry, nginx br,
#                 (STATIC_EXTRA=1: also with gzip, and reset.css alone); then              nginx gz, h2o
#                 system calls per request (strace -c, SYSCALLS=1)
#
# Peers: nginx-light answers /baseline11 with a fixed "55" (it cannot add); h2o sums in mruby. For
# json-comp nginx and h2o serve the entry's own answer as a file (DATA/json/N, ?m= ignored) and code it
# per request (nginx gzip level 1, h2o br quality 1 / gzip level 1: apiary's defaults). For static,
# nginx runs gzip_static (+ brotli_static in "nginx br", Debian's module) and h2o file.send-compressed.
#
# Each suite is one table through bench/run.sh (all its servers running throughout, taking turns):
# req/s, p50, p99, server CPU µs per request (utime+stime over the run ÷ requests), ratios to the
# strongest peer, errors, and B/resp (bytes wrk read per response) where the coding matters.
#
# Environment: SUITES (comma-separated, default all: baseline,pipelined,limited-conn,json,json-comp,
# upload,static), ARENA_BIN (an arena binary; default: APIARY_BUILD installed into a scratch prefix and
# the entry built against it in Release), APIARY_BUILD (build-release), DURATION (5s), WARMUP (1s),
# ROUNDS (1), CONNS (512), UPLOAD_CONNS (32), STATIC_CONNS (1024), UPLOAD_RSS_N (64 concurrent uploads
# for the RSS figure; 0 skips it), STATIC_EXTRA (0), SYSCALLS (1), REQS (2000 requests for the strace
# counts), SEGMENTS (1: TCP segments per static answer, bench/static_segments.py), NGINX_OFC (0: 1 adds nginx br with open_file_cache), ARENA_BASE (another arena binary, e.g.
# built from main, as a peer in the static suite and in baseline/pipelined/limited-conn, for an A/B), OUT (also write the report there),
# SERVER_CPU (0), WRK_CPU (1). Needs wrk, nginx-light, libnginx-mod-http-brotli-static, h2o, golang-go +
# golang-github-valyala-fasthttp-dev, python3-aiohttp, python3-brotli, strace (scripts/packages/bench.txt).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

ALL_SUITES="baseline,pipelined,limited-conn,json,json-comp,upload,static"
SUITES="${SUITES:-$ALL_SUITES}"
suite_defaults 5s 1s 1 512
UPLOAD_CONNS="${UPLOAD_CONNS:-32}" STATIC_CONNS="${STATIC_CONNS:-1024}" UPLOAD_RSS_N="${UPLOAD_RSS_N:-64}"
SERVERS_TOGETHER=1
for s in ${SUITES//,/ }; do
    [[ ",$ALL_SUITES," == *",$s,"* ]] || die "SUITES: unknown suite '$s' (known: $ALL_SUITES)"
done
want() { [[ ",$SUITES," == *",$1,"* ]]; }
want_any() { local s; for s in "$@"; do want "$s" && return 0; done; return 1; }

BROTLI_MOD=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so
if want_any baseline pipelined limited-conn json-comp static; then
    command -v h2o >/dev/null || die "h2o not found: apt-get install -y h2o"
fi
if want_any baseline pipelined limited-conn json json-comp upload; then
    command -v go >/dev/null || die "go not found: apt-get install -y golang-go golang-github-valyala-fasthttp-dev"
    "$PY" -c 'import aiohttp' 2>/dev/null || die "$PY has no aiohttp: apt-get install -y python3-aiohttp"
fi
"$PY" -c 'import brotli' 2>/dev/null || die "$PY has no brotli module: apt-get install -y python3-brotli"
if want static; then
    [[ -f $BROTLI_MOD ]] || log "no $BROTLI_MOD (apt-get install -y libnginx-mod-http-brotli-static): only nginx gz runs"
    [[ ${SYSCALLS:-1} != 1 ]] || command -v strace >/dev/null || die "strace not found: apt-get install -y strace"
fi

bench_init

log "making the data (examples/arena/make_data.py)"
DATA="$BENCH_TMP/data"
"$PY" "$REPO_DIR/examples/arena/make_data.py" "$DATA" --rows 10 >/dev/null
DATASET="$DATA/dataset.json"
mkdir -p "$DATA/json"

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

if want_any baseline pipelined limited-conn json json-comp upload; then
    log "building the Go fasthttp peer (GOPATH mode on Debian's packages)"
    # Go's build cache outside the run's temp dir: only the first run compiles fasthttp (a minute or two
    # on a busy machine), later ones link
    (cd "$BENCH_DIR" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${ARENA_GOCACHE:-$HOME/.cache/apiary-bench-go}" GOFLAGS='' \
        go build -p 1 -trimpath -o "$BENCH_TMP/arena_fasthttp" ./arena_fasthttp/)
fi

# ---- the checks every server passes before it is measured ------------------------------------------

# Every server must give the same answers (the nginx row's fixed "55" excepted, which the report says).
declare -A SEEN=()
suite_check() {
    local label=$1 url=$2 base got
    base=${url%%/baseline11*}
    base=${base%%/pipeline*}
    base=${base%%/json/*}
    base=${base%%/upload*}
    base=${base%%/static/*}
    case $SUITE in
    http)
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
        esac
        ;;
    json)
        got="$(curl -s "$base/json/5?m=7" | "$PY" -c '
import json, sys
d = json.load(sys.stdin); items = d["items"]
print(d["count"] == 5 and len(items) == 5 and all(i["total"] == i["price"] * i["quantity"] * 7 for i in items))')"
        [[ $got == True ]] || die "$label: /json/5?m=7 is not the profile's answer"
        ;;
    json-comp)
        [[ -z ${SEEN[$SUITE $label]:-} ]] || return 0
        SEEN[$SUITE $label]=1
        got="$("$PY" "$BENCH_DIR/arena_jsoncomp.py" "$base" "$DATA/json")" || die "$label: $got"
        SUITE_NOTES+=("$label, Accept-Encoding: gzip, br: $got.")
        got="$("$PY" "$BENCH_DIR/arena_jsoncomp.py" "$base" "$DATA/json" --accept gzip)" || die "$label: $got"
        SUITE_NOTES+=("$label, Accept-Encoding: gzip: $got.")
        ;;
    upload)
        got="$(head -c 2097152 /dev/zero | curl -s -X POST -H 'Content-Type: application/octet-stream' \
            --data-binary @- "$base/upload")"
        [[ $got == 2097152 ]] || die "$label: POST /upload of 2 MiB answered '$got'"
        ;;
    static)
        [[ -z ${SEEN[$SUITE $label]:-} ]] || return 0
        SEEN[$SUITE $label]=1
        got="$("$PY" "$BENCH_DIR/static_syscalls.py" check "$base" "$DATA/static")" || die "$label: $got"
        SUITE_NOTES+=("$label, Accept-Encoding: br;q=1, gzip;q=0.8: $got.")
        ;;
    esac
}

# After a server has started:
# - json-comp: the entry (it starts first) answers the three requests without a coding; those answers
#   become the files nginx and h2o serve and code, and the reference every server's answer must equal;
# - upload: RSS per concurrent 20 MiB upload, measured now, on the fresh process (after the load run
#   its heap would already be at the high-water mark of 32 wrk uploads, and the delta would say nothing).
UPLOAD_RSS_ROWS=()
suite_server_up() {
    local label=$1 port=$2 count m count_m line pid s
    if [[ $SUITE == json-comp && $label == "apiary arena" ]]; then
        for count_m in 25:4 40:8 50:6; do
            count=${count_m%:*} m=${count_m#*:}
            curl -sf -o "$DATA/json/$count" "http://127.0.0.1:$port/json/$count?m=$m" \
                || die "the entry's /json/$count?m=$m failed"
        done
    fi
    if [[ $SUITE == upload ]] && ((UPLOAD_RSS_N > 0)); then
        for ((s = 0; s < ${#S_LABEL[@]}; s++)); do [[ ${S_PORT[s]:-} != "$port" ]] || pid=${S_PID[s]}; done
        line="$("$PY" "$BENCH_DIR/arena_upload_rss.py" --port "$port" --pid "$pid" --uploads "$UPLOAD_RSS_N" \
            | grep '^RESULT')" || die "$label: arena_upload_rss.py failed"
        # RESULT uploads=N size=N rss_before_kib=N rss_mid_body_kib=N vmhwm_kib=N per_upload_kib=X wrong_answers=N
        # shellcheck disable=SC2034  # uploads and size are set by the eval, not read
        local uploads size rss_before_kib rss_mid_body_kib vmhwm_kib per_upload_kib wrong_answers
        eval "$(sed 's/^RESULT //; s/ /;/g' <<<"$line")"
        log "$label: $line"
        UPLOAD_RSS_ROWS+=("$(printf '| %s | %s KiB | %s KiB | **%s KiB** | %s KiB | %s |' "$label" "$rss_before_kib" \
            "$rss_mid_body_kib" "$per_upload_kib" "$vmhwm_kib" "$wrong_answers")")
    fi
}

ENTRY="cmd env ARENA_DATA_DIR=$DATA $ARENA_BIN --listen 127.0.0.1:{port} --threads 1"
FASTHTTP="cmd env GOMAXPROCS=1 $BENCH_TMP/arena_fasthttp {port} $DATASET"
AIOHTTP="cmd $PY $BENCH_DIR/aiohttp_arena.py 127.0.0.1:{port} --dataset $DATASET"
H2O="cmd $BENCH_DIR/arena_peers.sh h2o {port} $BENCH_TMP/h2o"
NGINX_PEER="cmd $BENCH_DIR/arena_peers.sh nginx {port} $BENCH_TMP/nginx"
GO_ABOUT="$(go version 2>/dev/null | cut -d' ' -f3) + fasthttp 1.31"
AIOHTTP_ABOUT="aiohttp $("$PY" -c 'import aiohttp; print(aiohttp.__version__)' 2>/dev/null || echo '?')"
NGINX_ABOUT="$("$NGINX" -v 2>&1 | sed 's/.*: //')"
H2O_ABOUT="$(h2o -v 2>/dev/null | head -1 || echo 'h2o ?')"

OUT_ALL="${OUT:-}"
OUT=""
REPORTS=()

# run_one NAME: runs the tables set up for suite NAME, keeps its report, stops its servers.
run_one() {
    SUITE=$1
    run_suite >"$BENCH_TMP/report.$1.md"
    REPORTS+=("$BENCH_TMP/report.$1.md")
}

stop_suite_servers() {
    local pid
    for pid in "${S_PID[@]}"; do stop_pid "$pid"; done
}

# ---- 1. baseline, pipelined, limited-conn -----------------------------------------------------------
WORKLOADS=()
want baseline && WORKLOADS+=("baseline|/baseline11?a=13&b=42|$CONNS|arena_mix.lua|baseline")
want pipelined && WORKLOADS+=("pipelined|/pipeline|$CONNS|pipeline.lua|16")
want limited-conn && WORKLOADS+=("limited-conn|/baseline11?a=13&b=42|$CONNS|arena_mix.lua|baseline 10")
if ((${#WORKLOADS[@]})); then
    SUITE_TITLE="arena: baseline, pipelined, limited-conn (HttpArena's shapes on one core)"
    SUITE_ABOUT="$H2O_ABOUT, $NGINX_ABOUT, $GO_ABOUT"
    SUITE_NOTES=("p99 of the pipelined shape is per batch of 16 (one latency sample per pipelined write)."
        "nginx (nginx-light) answers /baseline11 with a fixed \"55\": it cannot add numbers without a module, so its baseline rows are a floor of its HTTP cost, not the same work. h2o sums with an mruby handler (Debian's h2o 2.2.5 has mruby) and serves /pipeline with its file handler."
        "limited-conn: every 10th request (per wrk thread) asks Connection: close; the arena closes each connection after 10.")
    SERVERS=("apiary arena|subject|/baseline11?a=1&b=2|$ENTRY"
        "h2o|peer|/baseline11?a=1&b=2|$H2O"
        "nginx|peer|/pipeline|$NGINX_PEER"
        "fasthttp|peer|/pipeline|$FASTHTTP"
        "aiohttp|peer|/pipeline|$AIOHTTP")
    if [[ -n ${ARENA_BASE:-} ]]; then
        SERVERS+=("arena base|peer|/baseline11?a=1&b=2|cmd env ARENA_DATA_DIR=$DATA $ARENA_BASE --listen 127.0.0.1:{port} --threads 1")
    fi
    run_one http
    stop_suite_servers
fi

# ---- 2. json -----------------------------------------------------------------------------------------
if want json; then
    SUITE_TITLE="arena: json (HttpArena's shape on one core)"
    SUITE_ABOUT="$GO_ABOUT, $AIOHTTP_ABOUT"
    SUITE_NOTES=("Every 25th request (per wrk thread) asks Connection: close: the arena's gcannon -r 25 closes each connection after 25.")
    SERVERS=("apiary arena|subject|/json/1?m=1|$ENTRY" "fasthttp|peer|/json/1?m=1|$FASTHTTP"
        "aiohttp|peer|/json/1?m=1|$AIOHTTP")
    WORKLOADS=("json|/json/1?m=3|$CONNS|arena_mix.lua|json 25")
    run_one json
    stop_suite_servers
fi

# ---- 3. json-comp ------------------------------------------------------------------------------------
if want json-comp; then
    SUITE_TITLE="arena: json-comp (HttpArena's shape on one core)"
    SUITE_ABOUT="$NGINX_ABOUT, $H2O_ABOUT, $GO_ABOUT, $AIOHTTP_ABOUT"
    SUITE_NOTES=("The entry codes with its defaults (compression.*: br quality 1, gzip level 1; on \"gzip, br\", an equal q, it takes gzip: compression.prefer, default [\"gzip\", \"br\"]). nginx and h2o serve the entry's own identity answers for the three requests as files (?m= ignored) and code them per request: nginx gzip level 1 (nginx-light has no Brotli filter), h2o's compress filter br quality 1 / gzip level 1; fasthttp CompressHandlerBrotliLevel(1, 1); aiohttp enable_compression() (gzip, zlib's default level 6). The arena scores json-comp by req/s × (smallest B/resp ÷ own B/resp)²."
        "B/resp = bytes wrk read ÷ responses (head + coded body; h2o's answers are chunked)."
        "Every 25th request (per wrk thread) asks Connection: close: the arena's gcannon -r 25 closes each connection after 25.")
    SUITE_BYTES=1
    SERVERS=("apiary arena|subject|/json/1?m=1|$ENTRY"
        "nginx|peer|/pipeline|cmd $BENCH_DIR/arena_peers.sh nginx {port} $BENCH_TMP/nginx-jc $DATA"
        "h2o|peer|/pipeline|cmd $BENCH_DIR/arena_peers.sh h2o {port} $BENCH_TMP/h2o-jc $DATA"
        "fasthttp|peer|/json/1?m=1|$FASTHTTP"
        "aiohttp|peer|/json/1?m=1|$AIOHTTP")
    WORKLOADS=("json-comp, gzip, br|/json/25?m=4|$CONNS|arena_mix.lua|json-comp 25"
        "json-comp, gzip|/json/25?m=4|$CONNS|arena_mix.lua|json-gzip 25")
    run_one json-comp
    SUITE_BYTES=0
    stop_suite_servers
fi

# ---- 4. upload -----------------------------------------------------------------------------------------
if want upload; then
    SUITE_TITLE="arena: upload (HttpArena's shape on one core)"
    SUITE_ABOUT="$GO_ABOUT, $AIOHTTP_ABOUT"
    SUITE_NOTES=("Bodies of 512,000, 2,097,152, 10,485,760 and 20,971,520 bytes, five of one size then the next, every 5th request Connection: close (the arena: five per connection, -r 5). All three read the body as it streams in: the entry ROUTE_BODY_STREAM + http_body_read, fasthttp StreamRequestBody (bodies over its 4 MiB limit as a stream, smaller ones whole), aiohttp request.content.iter_any()."
        "wrk copies each request (up to 20 MiB) into the connection's buffer before writing it: at these sizes wrk's core can be the limit, so read the server's CPU per request. wrk --timeout 30s (its default 2 s would count an upload queued behind the others as an error).")
    SERVERS=("apiary arena|subject|/pipeline|$ENTRY" "fasthttp|peer|/pipeline|$FASTHTTP"
        "aiohttp|peer|/pipeline|$AIOHTTP")
    WORKLOADS=("upload|/upload|$UPLOAD_CONNS|arena_mix.lua|upload 5")
    # wrk's default 2 s timeout would count a 20 MiB upload queued behind 31 others as an error
    WRK_EXTRA="--timeout 30s"
    run_one upload
    WRK_EXTRA=""
    if ((UPLOAD_RSS_N > 0)); then
        {
            echo
            echo "### RSS per concurrent 20 MiB upload (bench/arena_upload_rss.py)"
            echo
            echo "Measured on each server just after it started, before any load: three whole 20 MiB uploads to warm it up, VmRSS, then $UPLOAD_RSS_N connections each send the head of a 20 MiB POST /upload and its first 4 MiB, so all are mid-body at once; VmRSS again, per upload; then every body is finished and every answer checked (VmHWM after)."
            echo
            echo "| server | RSS before | RSS mid-body | per upload | VmHWM after | wrong answers |"
            echo "|---|--:|--:|--:|--:|--:|"
            printf '%s\n' "${UPLOAD_RSS_ROWS[@]}"
        } >>"$BENCH_TMP/report.upload.md"
    fi
    stop_suite_servers
fi

# ---- 5. static -----------------------------------------------------------------------------------------
if want static; then
    SUITE_TITLE="arena: static (HttpArena's shape on one core)"
    SUITE_ABOUT="$NGINX_ABOUT$([[ -f $BROTLI_MOD ]] && echo " + brotli_static ($(dpkg-query -W -f '${Version}' libnginx-mod-http-brotli-static 2>/dev/null || echo '?'))"), $H2O_ABOUT"
    SUITE_SETUP=("Files: make_data.py's 20 (~840 KB; .br quality 11 and .gz level 9 beside the 15 text files); wrk asks for them round-robin (bench/static_mix.lua).")
    SUITE_NOTES=("nginx: sendfile on, tcp_nopush, tcp_nodelay (the arena nginx entry's file settings), gzip_static on, brotli_static on in nginx br; no open_file_cache unless its label says ofc. h2o: file.dir with file.send-compressed ON (h2o 2.2.5 sends the siblings for \"br\" or \"gzip, br\" but not for the arena's \"br;q=1, gzip;q=0.8\": it matches the coding token with its q-value, the mistake the arena's static page describes, so it sends the originals here). The entry: http_respond_file (files ≤ 32 KiB read into the answer, larger ones by sendfile) with the library's open-file cache (arena.static_cache, 64 per loop, each descriptor checked with one fstatat before use; ARENA_BASE gives an entry to compare).")
    SUITE_BYTES=1
    SERVERS=("apiary arena|subject|/static/reset.css|$ENTRY")
    [[ ! -f $BROTLI_MOD ]] || SERVERS+=("nginx br|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh br {port} $BENCH_TMP/nginx-br $DATA")
    SERVERS+=("nginx gz|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh gz {port} $BENCH_TMP/nginx-gz $DATA"
        "h2o|peer|/static/reset.css|cmd $BENCH_DIR/arena_peers.sh h2o {port} $BENCH_TMP/h2o-st $DATA")
    if [[ ${NGINX_OFC:-0} == 1 && -f $BROTLI_MOD ]]; then
        SERVERS+=("nginx br ofc|peer|/static/reset.css|cmd $BENCH_DIR/static_nginx.sh br {port} $BENCH_TMP/nginx-ofc $DATA ofc")
    fi
    if [[ -n ${ARENA_BASE:-} ]]; then
        SERVERS+=("arena base|peer|/static/reset.css|cmd env ARENA_DATA_DIR=$DATA $ARENA_BASE --listen 127.0.0.1:{port} --threads 1")
    fi
    WORKLOADS=("20 files, br;q=1, gzip;q=0.8|/static/|$STATIC_CONNS|static_mix.lua|br")
    codings=(br)
    if [[ ${STATIC_EXTRA:-0} == 1 ]]; then
        WORKLOADS+=("20 files, gzip|/static/|$STATIC_CONNS|static_mix.lua|gzip"
            "reset.css, br;q=1, gzip;q=0.8|/static/|$STATIC_CONNS|static_mix.lua|br reset.css")
        codings=(br gzip)
    fi
    # listen queue overflows over the suite (machine-wide: clients dropped at SYN retry a second later)
    overflows() { nstat -az TcpExtListenOverflows 2>/dev/null | awk '/ListenOverflows/ {print $2}'; }
    overflows_before=$(overflows)
    run_one static
    overflows_after=$(overflows)
    SUITE_BYTES=0
    if [[ -n $overflows_before && -n $overflows_after ]]; then
        printf '\nListen queue overflows during the suite (nstat TcpExtListenOverflows, machine-wide): %s.\n' \
            "$((overflows_after - overflows_before))" >>"$BENCH_TMP/report.static.md"
    fi
    if [[ ${SEGMENTS:-1} == 1 ]]; then
        {
            echo
            echo "### TCP segments per answer (bench/static_segments.py: the client sockets' tcp_info, 64 connections, 20 rounds of the 20 files, arena header)"
            echo
            urls=()
            for ((s = 0; s < ${#S_LABEL[@]}; s++)); do urls+=("http://127.0.0.1:${S_PORT[s]}"); done
            "$PY" "$BENCH_DIR/static_segments.py" "${urls[@]}" | while IFS= read -r line; do
                for ((s = 0; s < ${#S_LABEL[@]}; s++)); do line=${line//"http://127.0.0.1:${S_PORT[s]} "/"${S_LABEL[s]} "}; done
                echo "$line"
            done
        } >>"$BENCH_TMP/report.static.md"
    fi
    if [[ ${SYSCALLS:-1} == 1 ]]; then
        {
            echo
            echo "### System calls per request (strace -c -f, ${REQS:-2000} requests over the 20 files on one keep-alive connection)"
            echo
            for ((s = 0; s < ${#S_LABEL[@]}; s++)); do
                for coding in "${codings[@]}"; do
                    "$PY" "$BENCH_DIR/static_syscalls.py" count "http://127.0.0.1:${S_PORT[s]}" "${S_PID[s]}" \
                        --label "${S_LABEL[s]}" --coding "$coding" --requests "${REQS:-2000}" --tmp "$BENCH_TMP"
                done
            done
        } >>"$BENCH_TMP/report.static.md"
    fi
    stop_suite_servers
fi

cat "${REPORTS[@]}" >"$BENCH_TMP/report.md"
OUT="$OUT_ALL"
emit_report "$BENCH_TMP/report.md" >/dev/null
cat "$BENCH_TMP/report.md"
