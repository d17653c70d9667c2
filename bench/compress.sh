#!/usr/bin/env bash
# bench/compress.sh: server CPU per request of a gzip-coded json-comp-like answer, apiary against nginx
# gzip of the same body (issue 25), then the coders' own cost per level (bench/compress_micro.c). One
# run; the machine is shared, so read the figures as noisy. docs/compression.md and docs/benchmarks.md
# say how they were chosen and what they were.
#
# Environment: APIARY_BIN (default build-release/apiary, else build/apiary), ROUNDS (3), SECONDS (5),
# CONNS (32), LEVEL (1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${APIARY_BIN:-}"
if [[ -z "$bin" ]]; then
    bin=build-release/apiary
    [[ -x "$bin" ]] || bin=build/apiary
fi
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { echo "nginx not found: apt-get install -y nginx-light" >&2; exit 2; }
[[ -f bench/data/jsoncomp.json ]] || bench/make_jsoncomp.py > bench/data/jsoncomp.json
args=(--rounds "${ROUNDS:-3}" --seconds "${SECONDS_PER_ROUND:-5}" --connections "${CONNS:-32}" --level "${LEVEL:-1}")
echo "== gzip (Accept-Encoding: gzip)"
bench/compress_cpu.py "$bin" "${args[@]}"
echo "== identity (no Accept-Encoding): what the coding itself costs"
bench/compress_cpu.py "$bin" "${args[@]}" --identity
echo "== the coders alone (bench/compress_micro.c)"
micro="$(mktemp -d)/compress_micro"
gcc -O2 -D_GNU_SOURCE -Ilib/http -Ilib/base -Iinclude/apiary bench/compress_micro.c lib/http/http_compress.c \
    lib/base/xalloc.c lib/base/log.c -lz -lbrotlienc -lpthread -o "$micro"
taskset -c 1 "$micro" bench/data/jsoncomp.json
rm -rf "$(dirname "$micro")"
