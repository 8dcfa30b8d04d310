#!/usr/bin/env bash
# The two-gateway failover test (test_failover.py): a 3-node RabbitMQ cluster
# (scripts/rabbitmq-cluster), two gateways, a Python service and a Node
# service logging through both, a `loggate tail`; kill -9 one gateway and one
# broker node; nothing handed over is lost, the tail goes on without gap or
# duplicate.
#
# Installs what it needs as a user would: the Python package
# (clients/python, non-editable, into clients/python/.venv, made if missing)
# and the Node package (npm pack of clients/node, installed with winston into
# tests/failover/.node). Needs python3 with venv, node 20 with npm, RabbitMQ's
# packages (the cluster runs its own nodes) and the gateway binary at
# $LOGGATE_BIN (default target/debug/loggate). Runs as root or with sudo (the
# cluster script needs it). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

venv="$root/clients/python/.venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
py="$venv/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" pytest grpcio-health-checking "$root/clients/python"

project="$here/.node"
rm -rf "$project"
mkdir -p "$project"
tarball="$(cd "$project" && npm pack --silent "$root/clients/node" | tail -n 1)"
(
  cd "$project"
  printf '{ "name": "failover-services", "private": true }\n' >package.json
  npm install --silent --no-audit --no-fund --no-package-lock "./$tarball" winston
)

export LOGGATE_BIN="${LOGGATE_BIN:-$root/target/debug/loggate}"
export LOGGATE_NODE_PROJECT="$project"
export PYTHON="$py"
cd "$here"
exec "$py" -m pytest -q -p no:cacheprovider -s "$@" test_failover.py
