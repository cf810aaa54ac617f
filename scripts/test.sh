#!/usr/bin/env bash
# Runs every test on this host: brings up the real services (scripts/kuryr-env.sh start), installs
# the locked dependencies, then typecheck, lint, build, unit tests and end-to-end tests against the
# real Docker daemon and Neutron. Needs root. Used verbatim by .ci/run.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "[test] run as root" >&2; exit 1; }
"$ROOT/scripts/kuryr-env.sh" start
# The e2e tests run their own kuryr daemon on the plugin socket: stop the demo's, if any.
"$ROOT/scripts/demo.sh" stop
cd "$ROOT"
npm ci --no-audit --no-fund
npm test
