#!/usr/bin/env bash
# Installs the Debian packages aflorad needs to build, run and test, if any are
# missing. Fast no-op when everything is present, so every entry point can call it.
set -euo pipefail

# libomp-dev: Debian's clang links -fopenmp against LLVM's libomp (and takes
# omp.h from it); the unversioned package follows Debian's default clang.
packages=(
  build-essential clang pkg-config
  libopenblas-dev libomp-dev
  libcjson-dev libmicrohttpd-dev libsqlite3-dev
  libcmocka-dev
  python3
)
# Extra packages for the full test suite (integration and browser tests).
# chromium: the dashboard's browser test drives Debian's build (never a
# downloaded one); wrk: the HTTP benchmark; clang-format: make format-check; nodejs and npm run that test
# (playwright-core), from Debian only when no node is on PATH — a newer Node
# installed some other way is kept (playwright-core asks for Node >= 20;
# Debian 12 ships 18).
if [[ "${1:-}" == "--test" ]]; then
  packages+=(valgrind chromium wrk clang-format)
  command -v node >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
