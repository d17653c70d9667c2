#!/usr/bin/env bash
# container-check.sh: builds and runs the Dockerfile's image as an operator would, so a broken image
# fails the suite (scripts/test.sh runs this). Step 1 is the shared container check
# (../shared/container/check.sh: the build, GET /healthz from outside, a non-root user, the
# HEALTHCHECK, a SIGTERM stop with exit 0). Step 2 is apiary's own: the same image on a fresh named
# volume serves GET /v1/db and POST/GET /v1/items on its embedded SQLite database, stops on SIGTERM,
# and a second container on that volume still finds the item (the database lives in the VOLUME).
#
# Usage: scripts/container-check.sh   (as root; APIARY_CONTAINER_CHECK=0 skips it)
# The last line is one of
#   container-check: OK <check.sh's figures> sql=... total_s=N
#   container-check: SKIPPED (<why>): the image was NOT built or run      (exit 0)
#   container-check: FAIL <why>                                            (exit 1)
# It skips only when the check cannot run here: not root, no ../shared/container/check.sh, or podman
# cannot be installed or start a container. An image that does not build or serve fails.
# It leaves nothing behind that grows from run to run: its containers and volume are removed, the
# anonymous volume check.sh's container leaves (the image declares a VOLUME) too, and untagged images
# (superseded builds) older than a day are pruned from the check's storage.
set -uo pipefail
cd "$(dirname "$0")/.."

CHECK=${APIARY_CONTAINER_CHECK_SH:-../shared/container/check.sh}
CACHE=${CONTAINER_CHECK_CACHE:-/var/tmp/container-check}
TAG=container-check
started=$SECONDS

say() { echo "[$TAG $(date +%H:%M:%S)] $*"; }
skip() { echo "$TAG: SKIPPED ($*): the image was NOT built or run"; exit 0; }
fail() { echo "$TAG: FAIL $*"; exit 1; }

[[ "${APIARY_CONTAINER_CHECK:-1}" == 0 ]] && skip "APIARY_CONTAINER_CHECK=0"
[[ -x "$CHECK" ]] || skip "no $CHECK (the shared container check is copied beside the clone as ../shared/)"
[[ $(id -u) -eq 0 ]] || skip "not root: the check needs rootful podman"
PODMAN=$(dirname "$CHECK")/podman.sh
# podman on check.sh's private storage. 9>&- keeps the lock's descriptor out of conmon, which outlives
# the podman command; a leaked one would hold the lock after this script is gone.
pm() { "$PODMAN" "$@" 9>&-; }

run_id=$$
containers=()
volume=
new_volumes=
cleanup() {
  local c
  for c in "${containers[@]}"; do pm rm -f -v -t 0 "$c" >/dev/null 2>&1; done
  [[ -n "$volume" ]] && pm volume rm -f "$volume" >/dev/null 2>&1
  # check.sh removes its container without -v, which leaves the anonymous volume of the image's VOLUME.
  for v in $new_volumes; do pm volume rm "$v" >/dev/null 2>&1; done
  # Every rebuild leaves the previous build's layers untagged; prune the ones older than a day, so the
  # storage stays bounded while today's build cache (the apt layer above all) keeps being reused.
  pm image prune -f --filter until=24h >/dev/null 2>&1
}
dangling_volumes() { pm volume ls -q --filter dangling=true 2>/dev/null | sort; }

# --- step 1: the shared check ------------------------------------------------------------------
before_volumes=
[[ -f "$CACHE/containers.conf" ]] && before_volumes=$(dangling_volumes)
log=$(mktemp)
trap 'rm -f "$log" "$log.run"' EXIT
trap 'exit 130' INT TERM
say "step 1: $CHECK ."
"$CHECK" . 2>&1 | tee "$log"
verdict=$(tail -n 1 "$log")
# From here on under check.sh's lock: no other check builds or prunes while this one runs its own
# containers and cleans up after both steps (a failed step 1 leaves an anonymous volume too).
new_volumes=$(comm -13 <(echo "$before_volumes") <(dangling_volumes))
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || fail "could not lock $CACHE/.lock (another check.sh running?)"
trap 'rc=$?; cleanup; rm -f "$log" "$log.run"; exit $rc' EXIT
case "$verdict" in
  "container: OK "*) ;;
  "container: FAIL "*)
    reason=${verdict#container: FAIL }
    case "$reason" in
      "must run as root"* | "apt-get install"* | "could not lock"* | "no Debian mirror"* | "debootstrap failed"* | \
      "apt-get upgrade inside"* | "tar of "* | "podman import"* | "podman tag"*)
        skip "podman cannot run here: $reason" ;;
      "podman run failed"*)
        # The image's fault, or podman's? A base image that cannot run `true` either says podman's.
        if ! pm run --rm --network none docker.io/library/debian:bookworm-slim true >/dev/null 2>&1; then
          skip "podman cannot start containers here: $reason"
        fi
        fail "$reason" ;;
      *) fail "$reason" ;;
    esac ;;
  *) fail "check.sh ended without a verdict: $verdict" ;;
esac
check_ok=${verdict#container: OK }
net=$(sed -n 's/.* net=\([a-z]*\).*/\1/p' <<<"$verdict")

# check.sh names the image after the context directory, like this:
name=$(basename "$PWD" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9._\n-' '-')
image=localhost/container-check/$name:latest

# --- step 2: the SQL endpoints on the image's SQLite database -------------------------------------
pm image exists "$image" || fail "check.sh passed but its image $image is not there"
volume=apiary-check-$run_id
pm volume create "$volume" >/dev/null || fail "podman volume create $volume failed"

port=
start() { # $1 = container name; sets port
  local args=(run -d --name "$1" --health-interval disable --stop-timeout 10 -v "$volume:/var/lib/apiary")
  containers+=("$1")
  if [[ "$net" == host ]]; then
    # Like check.sh: host networking where the bridge cannot be set up; then the port must be free here.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pm "${args[@]}" --network host -e "APIARY_LISTEN=127.0.0.1:$port" "$image" >/dev/null 2>"$log.run" \
      || fail "podman run $1 failed: $(grep -v systemd "$log.run" | tail -n 1)"
  else
    # (podman's stderr only on failure: without systemd it complains about health timers every time)
    pm "${args[@]}" -p 127.0.0.1::8080 "$image" >/dev/null 2>"$log.run" \
      || fail "podman run $1 failed: $(grep -v systemd "$log.run" | tail -n 1)"
    port=$(pm port "$1" 8080/tcp | sed -n 's/.*:\([0-9]*\)$/\1/p' | head -n 1)
    [[ -n "$port" ]] || fail "no host port for $1"
  fi
  local deadline=$((SECONDS + 30))
  until [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]]; do
    if [[ $(pm inspect -f '{{.State.Status}}' "$1" 2>/dev/null) != running || $SECONDS -ge $deadline ]]; then
      pm logs "$1" 2>&1 | tail -n 20
      fail "$1 did not serve /healthz on the volume $volume (state $(pm inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$1" 2>/dev/null))"
    fi
    sleep 0.2
  done
}
stop() { # $1 = container name: SIGTERM must end it with exit 0 (the database closed cleanly)
  pm stop -t 10 "$1" >/dev/null 2>&1
  local code
  code=$(pm inspect -f '{{.State.ExitCode}}' "$1" 2>/dev/null)
  [[ "$code" == 0 ]] || { pm logs "$1" 2>&1 | tail -n 20; fail "$1 exited $code on SIGTERM"; }
  pm rm -f -v "$1" >/dev/null 2>&1
}
http() { # METHOD PATH [BODY]: prints "STATUS BODY"
  local args=(-s -m 10 -X "$1" -w ' %{http_code}' "http://127.0.0.1:$port$2")
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data "$3")
  local out
  out=$(curl "${args[@]}") || fail "$1 $2: no answer"
  echo "${out##* } ${out% *}"
}
expect() { # STATUS PYTHON-EXPRESSION-ON-j "STATUS BODY" WHAT: the answer's status and JSON
  local status=${3%% *} body=${3#* }
  [[ "$status" == "$1" ]] || fail "$4: status $status, wanted $1: $body"
  python3 -c 'import json, sys; j = json.loads(sys.argv[2]); sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" "$body" \
    || fail "$4: unexpected answer $body"
}

say "step 2: the SQL endpoints of $image on the volume $volume"
start "apiary-check-$run_id-1"
answer=$(http GET /v1/db)
expect 200 '1 <= j["id"] <= 10000 and 1 <= j["randomNumber"] <= 10000' "$answer" "GET /v1/db"
say "GET /v1/db -> $answer"
answer=$(http POST /v1/items '{"name":"container check","price":1.5}')
expect 201 'j["name"] == "container check" and j["price"] == 1.5' "$answer" "POST /v1/items"
say "POST /v1/items -> $answer"
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "${answer#* }")
expect 200 "j['id'] == $id" "$(http GET "/v1/items/$id")" "GET /v1/items/$id"
pm exec "apiary-check-$run_id-1" test -f /var/lib/apiary/apiary.db \
  || fail "no /var/lib/apiary/apiary.db in the container: the database is not in the volume"
stop "apiary-check-$run_id-1"
start "apiary-check-$run_id-2"
answer=$(http GET "/v1/items/$id")
expect 200 "j['id'] == $id and j['name'] == 'container check'" "$answer" "GET /v1/items/$id after a restart"
say "a new container on the same volume: GET /v1/items/$id -> $answer"
stop "apiary-check-$run_id-2"

echo "$TAG: OK $check_ok sql=ok(db,items,volume) total_s=$((SECONDS - started))"
