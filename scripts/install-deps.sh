#!/usr/bin/env bash
# Installs the Debian packages aflorad needs to build, run and test, if any are
# missing. Fast no-op when everything is present, so every entry point can call it.
set -euo pipefail

packages=(
  build-essential clang pkg-config
  libopenblas-dev libomp-14-dev
  libcjson-dev libmicrohttpd-dev libsqlite3-dev
  libcmocka-dev
  python3
)
# Extra packages for the full test suite (integration and browser tests).
# chromium: the dashboard's browser test drives Debian's build (never a
# downloaded one); wrk: the HTTP benchmark.
if [[ "${1:-}" == "--test" ]]; then
  packages+=(valgrind chromium wrk)
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
