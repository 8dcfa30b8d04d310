#!/usr/bin/env bash
# Runs the Python client's tests against a real gateway and RabbitMQ, with the
# package installed the way a user installs it: makes (or reuses) .venv,
# installs the test requirements and ./ (non-editable: a built wheel), then
# runs pytest on tests/, where `import loggate` is the installed package,
# never ./src. Exits with pytest's status. Works from any directory.
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

pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r requirements.txt
# As a user installs it (a wheel built from this directory, its dependencies
# resolved); pip rebuilds and reinstalls a local directory every time, so the
# tests always see this tree's code.
"${pip[@]}" ".[otel]"

export LOGGATE_BIN="${LOGGATE_BIN:-$PWD/../../target/debug/loggate}"
status=0
# (This directory on sys.path holds no `loggate`: the code is under src/, and
# tests/conftest.py fails the run if the import came from there.)
"$py" -m pytest -q -p no:cacheprovider "$@" || status=$?
exit "$status"
