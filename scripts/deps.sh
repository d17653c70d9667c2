#!/usr/bin/env bash
# Installs the Debian packages apiary needs to build, run and test, skipping what is already there.
# Usage: scripts/deps.sh [--bench|--fuzz]   (--bench adds wrk, nginx and golang-go (the Go reference server
# of bench/json.sh) for bench/, --fuzz clang for tests/fuzz)
set -euo pipefail

# redis-server and mariadb-server are test dependencies (the Redis and MariaDB tests start their own
# servers on loopback; the distribution's own service is never used); the openssl CLI makes the test CA
# of the MariaDB TLS tests.
packages=(build-essential cmake pkg-config libevent-dev libjansson-dev libsodium-dev libhiredis-dev
          libmariadb-dev libsqlite3-dev libcriterion-dev node-llhttp python3 curl redis-server nginx-light
          mariadb-server mariadb-client openssl libssl-dev)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(wrk nginx-light golang-go)
fi
if [[ "${1:-}" == "--fuzz" ]]; then
  packages+=(clang libclang-rt-14-dev)  # libFuzzer (scripts/fuzz.sh)
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
