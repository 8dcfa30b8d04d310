#!/usr/bin/env bash
# Runs the web page's browser tests: headless Chromium (Debian's package,
# installed with apt when missing; the npm registry's browser downloads are
# not used) driven by Playwright, against real gateways (target/debug/loggate
# unless $LOGGATE_BIN names one) and the RabbitMQ at 127.0.0.1:5672, each
# test in a vhost of its own that it deletes. Needs root (or sudo) for apt
# and rabbitmqctl. Extra arguments go to `playwright test`. Screenshots land
# under test-results/<test>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "run-tests.sh: installing chromium with apt" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "run-tests.sh: npm (Node.js 18 or newer) is needed: apt-get install nodejs npm" >&2
  exit 2
fi
bin="${LOGGATE_BIN:-target/debug/loggate}"
# Relative to the repository's top, like gateway.mjs reads it.
[[ $bin == /* ]] || bin="../../$bin"
if [ ! -x "$bin" ]; then
  echo "run-tests.sh: no gateway at $bin: run 'cargo build -p loggate' first (or set LOGGATE_BIN)" >&2
  exit 2
fi
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

# No lock file is kept (.npmrc): the ranges in package.json are pinned.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent
exec npx playwright test "$@"
