#!/usr/bin/env bash
# bench/hello.sh: apiary vs nginx on the TechEmpower JSON body {"message":"Hello, World!"}, in one
# run, with both servers pinned to CPU 0 and wrk to CPU 1. Reports req/s, their ratio, p99 latency
# and server CPU time per request for three load shapes. The runs and the report are bench/run.sh's;
# this file is the suite's tables. See bench/README.md.
#
# Environment: APIARY_BIN (default build-release/apiary), DURATION (10s), WARMUP (2s),
# ROUNDS (1; with more, every cell is the median over the rounds), OUT (also write the report
# there), BENCH_SELFTEST=1 (a second nginx stands in for apiary, to check the harness without the
# apiary binary), SERVER_CPU (0), WRK_CPU (1).
set -euo pipefail

# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

suite_defaults 10s 2s 1
SERVERS_TOGETHER=1
[[ -x "$NGINX" ]] || die "nginx not found at $NGINX: apt-get install -y nginx-light"

bench_init

# label | role | ready path | start
if [[ "${BENCH_SELFTEST:-0}" == 1 ]]; then
    SERVERS=("nginx#2|subject||nginx")
    SUITE_SETUP+=("BENCH_SELFTEST=1: 'nginx#2' is a second nginx standing in for apiary.")
else
    SERVERS=('apiary|subject||apiary {"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}}')
fi
SERVERS+=("nginx|peer||nginx")

# label | path | connections | wrk script | script args
WORKLOADS=(
    "c64|/v1/hello|64||"
    "c64 pipeline 16|/v1/hello|64|pipeline.lua|16"
    "c1000|/v1/hello|1000||"
)

SUITE_TITLE="hello: apiary vs nginx, GET /v1/hello"
SUITE_ABOUT="$("$NGINX" -v 2>&1 | sed 's/.*: //')"
SUITE_NOTES+=("p99 of the pipelined shape is per batch of 16 (one latency sample per pipelined write).")
run_suite
