#!/usr/bin/env bash
# flake-check.sh N [--load]: runs the whole suite N times in a row to find tests that fail only
# sometimes. The plain build and the ctest command of scripts/test.sh (build-test-plain/, one test at a
# time); --load adds CPU load, one busy process per core that this script starts, and stops on exit or
# interrupt, so timing assertions meet a loaded machine. At the end: every test that failed, with how
# many runs it failed in (ctest entries, and the criterion or unittest test inside when the log names
# it), then `flake-check: N runs, K failed`. Exit 0 only when no run failed. Logs: build-test-plain/flake-check/.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/flake-check.sh N [--load]   (N >= 1 runs of the whole plain suite)" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && "$1" =~ ^[1-9][0-9]*$ ]] || usage
runs=$1
load=0
if [[ $# -eq 2 ]]; then
  [[ "$2" == --load ]] || usage
  load=1
fi

dir=build-test-plain
logs=$dir/flake-check
echo "=== $dir: build" >&2
cmake -S . -B "$dir" -DAPIARY_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
cmake --build "$dir" -j"$(nproc)" >/dev/null || { echo "flake-check: the build failed" >&2; exit 2; }
rm -rf "$logs"
mkdir -p "$logs"

burners=()
stop_load() {
  local pid
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${burners[@]}"; do wait "$pid" 2>/dev/null; done
  burners=()
}
trap stop_load EXIT
trap 'exit 130' INT TERM
if [[ $load -eq 1 ]]; then
  # One busy loop per core. Each also checks now and then that this script still runs, so even a
  # SIGKILL of the script (no trap) leaves no burner spinning for longer than a moment.
  for _ in $(seq "$(nproc)"); do
    bash -c 'while kill -0 "$1" 2>/dev/null; do for ((i = 0; i < 200000; i++)); do :; done; done' burner $$ &
    burners+=($!)
  done
  echo "=== load: ${#burners[@]} busy processes (${burners[*]})" >&2
fi

declare -A failures=()
failed_runs=0
for ((run = 1; run <= runs; run++)); do
  log=$logs/run-$run.log
  started=$SECONDS
  ctest --test-dir "$dir" --output-on-failure -j1 >"$log" 2>&1
  rc=$?
  names=()
  if [[ $rc -ne 0 ]]; then
    failed_runs=$((failed_runs + 1))
    # ctest's summary: "    24 - integration.test_97_sql (Failed)"; then the tests inside: criterion's
    # "[FAIL] suite::name", unittest's "FAIL: test_x (module.Class.test_x)" (and ERROR:).
    mapfile -t names < <({
      sed -n '/The following tests FAILED:/,$p' "$log" | sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) .*/\1/p'
      sed -n 's/^\[FAIL\] \([^ :]*::[^ :]*\).*/\1/p; s/^\(FAIL\|ERROR\): \([^ ]*\) (\([^)]*\)).*/\3/p' "$log"
    } | awk '!seen[$0]++')
    [[ ${#names[@]} -gt 0 ]] || names=("(ctest exit $rc, no test named: see $log)")
    for name in "${names[@]}"; do failures[$name]=$((${failures[$name]:-0} + 1)); done
  fi
  echo "flake-check: run $run/$runs: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED: $(echo "${names[@]}" | tr -s ' ')") ($((SECONDS - started)) s)" >&2
done
stop_load

if [[ $failed_runs -gt 0 ]]; then
  echo "flake-check: failing tests (runs failed in), logs in $logs:"
  for name in "${!failures[@]}"; do printf '  %3d  %s\n' "${failures[$name]}" "$name"; done | sort -k2,2
fi
echo "flake-check: $runs runs, $failed_runs failed$([[ $load -eq 1 ]] && echo " (under load)")"
[[ $failed_runs -eq 0 ]]
