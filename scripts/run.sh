#!/usr/bin/env bash
# Installs what is missing, builds apiary (Release) and runs it in the foreground on
# config/apiary.json (127.0.0.1:8080). Extra arguments go to the binary, e.g. --threads 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAPIARY_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target apiary
exec build-release/apiary --config config/apiary.json "$@"
