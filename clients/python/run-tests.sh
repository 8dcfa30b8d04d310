#!/usr/bin/env bash
# Runs the Python client's tests against a real gateway and RabbitMQ:
# makes (or reuses) .venv, installs requirements.txt, generates the stubs,
# then runs pytest. Exits with pytest's status. Works from any directory.
#
# Needs: python3 with venv, RabbitMQ at 127.0.0.1:5672 (guest/guest) with
# rabbitmqctl on PATH, and the gateway binary at $LOGGATE_BIN (default
# ../../target/debug/loggate). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

venv=.venv
if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    echo "run-tests.sh: could not create a virtualenv with 'python3 -m venv $venv'." >&2
    echo "  Install Python's venv module (on Debian/Ubuntu: apt-get install python3-venv) and retry." >&2
    exit 2
  fi
fi
py="$PWD/$venv/bin/python"

"$py" -m pip install --quiet --disable-pip-version-check -r requirements.txt
PYTHON="$py" ./generate.sh

status=0
"$py" -m pytest -q "$@" || status=$?
exit "$status"
