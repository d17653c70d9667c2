#!/usr/bin/env bash
# bench/soak.sh SECONDS: builds the Release binary and drives it for SECONDS with bench/soak.py's mix
# (every endpoint, valid and invalid requests, pipelining, abrupt disconnects, a slow reader, SIGHUP
# reloads), sampling RSS and descriptors; prints one summary line and exits non-zero when RSS grew
# more than 5 % after warm-up, descriptors did not come back, or an unexpected 5xx or answer was seen.
# Loopback only; the server is started and stopped by PID. Example: bench/soak.sh 1800
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:?usage: bench/soak.sh SECONDS}"
scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAPIARY_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target apiary >/dev/null
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY="$(command -v python3)"
exec "$PY" bench/soak.py build-release/apiary "$seconds"
