#!/usr/bin/env bash
# tests/browser/run.sh — the dashboard's real-browser test, from a fresh machine.
#
# Installs Debian's chromium if it is missing (playwright-core never downloads
# a browser: it drives /usr/bin/chromium), installs playwright-core exactly as
# package-lock.json pins it (npm ci, into tests/browser/node_modules), builds
# the daemon if needed, and runs dashboard.test.mjs against it. Prints the
# test's lines and a closing "N passed, M failed"; exits non-zero on failure.
#
#   tests/browser/run.sh            against BUILD/aflorad (BUILD defaults to build)
#   tests/browser/run.sh --mock     against mock_server.mjs (no daemon running; the
#                                   binary is still built for its spec schema)
# Environment: BUILD (build dir), AFLORAD_BIN (binary; overrides BUILD).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-build}
export AFLORAD_BIN=${AFLORAD_BIN:-$root/$build/aflorad}

fail() { echo "browser: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser: installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq chromium >/dev/null; } \
    || fail "could not install chromium"
fi
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed (Node.js >= 20)"

( cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null ) || fail "npm ci failed in tests/browser"

# the mock needs the binary too: it serves the daemon's job-spec schema (aflorad spec-doc --json)
if [[ ! -x $AFLORAD_BIN ]]; then
  make -C "$root" --no-print-directory "$build/aflorad" >/dev/null || fail "could not build $build/aflorad"
fi

cd "$root" && exec node "$here/dashboard.test.mjs" "$@"
