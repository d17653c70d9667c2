#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz (clang, -fsanitize=fuzzer,address,undefined) and runs each
# for SECONDS (default 60) from its seed corpus. Exits non-zero on any crash, leak, timeout or
# sanitizer report, and leaves the reproducer in build-fuzz/artifacts/TARGET/ (rerun it with
# `build-fuzz/tests/fuzz/TARGET FILE`). New inputs found go to build-fuzz/corpus/TARGET, never into
# the tree's seed corpus.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   e.g. scripts/fuzz.sh 20   (as CI does)
#        FUZZ_RUNS=10000000 scripts/fuzz.sh 0 fuzz_json   (a fixed number of executions instead)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
scripts/deps.sh --fuzz
build="${FUZZ_BUILD:-build-fuzz}"  # FUZZ_BUILD: another build directory, e.g. for a long run beside CI
CC=clang cmake -S . -B "$build" -DAPIARY_FUZZ=ON -DAPIARY_BUILD_TESTS=OFF -DAPIARY_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi

status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t" artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  dict=()
  case "$t" in
    fuzz_request | fuzz_fasthead) dict=(-dict=tests/fuzz/http.dict) ;;
    fuzz_json) dict=(-dict=tests/fuzz/json.dict) ;;
  esac
  limit=(-max_total_time="$seconds")
  [[ -n "${FUZZ_RUNS:-}" ]] && limit=(-runs="$FUZZ_RUNS")
  log="$build/$t.log"
  echo "=== $t: ${FUZZ_RUNS:-${seconds} s}" >&2
  # -timeout: one input slower than 10 s is a hang; -rss_limit_mb bounds a runaway allocation.
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build/tests/fuzz/$t" "$corpus" "tests/fuzz/corpus/$t" "${dict[@]}" "${limit[@]}" \
       -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$log" | tail -2 >&2 || true
  else
    status=1
    echo "fuzz: $t FAILED; reproducer in $artifacts/, log $log:" >&2
    grep -E "ERROR|SUMMARY|fuzz_|Test unit written" "$log" | head -20 >&2 || true
  fi
done
[[ $status -eq 0 ]] && echo "fuzz: all targets ran clean" >&2
exit $status
