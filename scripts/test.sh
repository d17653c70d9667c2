#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test twice: a warnings-as-errors build, and
# an AddressSanitizer + UndefinedBehaviorSanitizer build. Unit tests (criterion) and integration
# tests (the real binary over raw sockets) both run under ctest. Then every fuzz target runs briefly,
# and the container image is built and run (skipped, saying so, where podman cannot run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

run_suite() { # name, extra cmake args...
  local dir="build-test-$1"; shift
  echo "=== $dir: build" >&2
  cmake -S . -B "$dir" -DAPIARY_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "=== $dir: ctest" >&2
  # Integration tests start servers and time protocol behaviour, so they run one at a time.
  ctest --test-dir "$dir" --output-on-failure -j1
}

run_suite plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  run_suite sanitize -DCMAKE_BUILD_TYPE=Debug -DAPIARY_SANITIZE=ON
# A short run of every libFuzzer target from its seed corpus: a crash, leak or hang found here, or a
# seed that no longer passes, fails the suite (docs/fuzzing.md has the long runs).
echo "=== fuzz smoke" >&2
scripts/fuzz.sh "${APIARY_FUZZ_SECONDS:-15}"
# The container image, built and run as an operator would (scripts/container-check.sh: build, /healthz
# from outside, non-root, HEALTHCHECK, SIGTERM stop, the SQL endpoints on its volume). Where it cannot
# run (not root, no ../shared/container/, podman cannot start) it prints "container-check: SKIPPED (...)"
# and the suite goes on; an image that does not build or serve fails the suite.
echo "=== container" >&2
scripts/container-check.sh
echo "all test suites passed" >&2
