#!/usr/bin/env bash
# Installs the Debian packages apiary needs to build, run and test, skipping what is already there.
# Usage: scripts/deps.sh [--bench]   (--bench adds wrk and nginx for bench/, and golang-go to build
# the Go reference server of bench/json.sh)
set -euo pipefail

# redis-server is a test dependency (the Redis backend's tests start their own on loopback).
packages=(build-essential cmake pkg-config libevent-dev libjansson-dev libsodium-dev libhiredis-dev
          libcriterion-dev node-llhttp python3 curl redis-server nginx-light)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(wrk nginx-light golang-go)
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
