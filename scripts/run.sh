#!/usr/bin/env bash
# Installs what is missing, builds apiary (Release) and runs it in the foreground on
# config/apiary.json (127.0.0.1:8080) with the docs page on (http://127.0.0.1:8080/docs). Extra
# arguments go to the binary, e.g. --threads 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DAPIARY_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" --target apiary
# The shipped config with the docs page on (GET /docs: Swagger UI from swagger-ui-dist, which
# scripts/deps.sh installs); the shipped file keeps it off.
python3 - <<'PY'
import json
with open("config/apiary.json") as f:
    cfg = json.load(f)
cfg["docs"] = {"dir": "/usr/local/lib/apiary-npm/node_modules/swagger-ui-dist"}
with open("build-release/run.json", "w") as f:
    json.dump(cfg, f, indent=2)
PY
exec build-release/apiary --config build-release/run.json "$@"
