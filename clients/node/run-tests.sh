#!/usr/bin/env bash
# Runs the Node client's tests the way a user gets the package: `npm pack`s
# it into a scratch directory, makes a throwaway project there that installs
# the tarball with pino, winston and the test tools, and runs `node --test`
# from that project, so `require('loggate')`, 'loggate/pino' and
# 'loggate/winston' resolve through the installed package. Exits with the
# test runner's status. Works from any directory.
#
# Needs: Node.js 20+ with npm (and the npm registry), RabbitMQ at
# 127.0.0.1:5672 (guest/guest) with rabbitmqctl on PATH, and the gateway
# binary at $LOGGATE_BIN (default ../../target/debug/loggate). Each test
# makes its own vhost and deletes it. Extra arguments go to `node --test`
# (e.g. --test-name-pattern=pino).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export LOGGATE_BIN="${LOGGATE_BIN:-$repo/target/debug/loggate}"
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "run-tests.sh: Node.js 20 or newer with npm is needed (on Debian/Ubuntu: apt-get install nodejs npm)." >&2
  exit 2
}
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "run-tests.sh: Node.js 20 or newer is needed; this is $(node --version)." >&2
  exit 2
fi
[ -x "$LOGGATE_BIN" ] || {
  echo "run-tests.sh: no gateway binary at $LOGGATE_BIN (cargo build -p loggate, or set LOGGATE_BIN)." >&2
  exit 2
}

scratch="$(mktemp -d "${TMPDIR:-/tmp}/loggate-node-tests-XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# The package, as `npm publish` would ship it.
tarball="$(cd "$here" && npm pack --silent --pack-destination "$scratch" | tail -n 1)"

# A user's project: the tarball, the loggers, and what the tests use. The
# versions are the package's devDependencies; no lockfile is written.
dev() { node -p "require('$here/package.json').devDependencies['$1']"; }
dep() { node -p "require('$here/package.json').dependencies['$1']"; }
project="$scratch/project"
mkdir -p "$project"
cp -R "$here/test" "$project/test"
printf '{ "name": "loggate-node-tests", "version": "0.0.0", "private": true }\n' >"$project/package.json"
printf 'package-lock=false\nfund=false\naudit=false\nupdate-notifier=false\n' >"$project/.npmrc"
(
  cd "$project"
  npm install --silent --no-package-lock \
    "$scratch/$tarball" \
    "pino@$(dev pino)" "winston@$(dev winston)" \
    "@grpc/grpc-js@$(dep @grpc/grpc-js)" "@grpc/proto-loader@$(dep @grpc/proto-loader)" \
    "prettier@$(dev prettier)" \
    "typescript@$(dev typescript)" "@types/node@$(dev @types/node)"
)

cd "$project"
status=0
LOGGATE_REPO="$repo" LOGGATE_PACKAGE_SRC="$here" \
  node --test --test-concurrency=1 "$@" test/*.test.js || status=$?
exit "$status"
