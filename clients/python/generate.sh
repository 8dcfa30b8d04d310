#!/usr/bin/env bash
# Regenerates the committed Python stubs for loggate.v1 from ../../proto:
# src/loggate/v1/loggate_pb2.py, loggate_pb2_grpc.py and loggate_pb2.pyi.
#
# Dev-only (users install the package with the stubs already in it). Needs the
# grpcio-tools pinned below (requirements.txt installs it): the stubs embed the
# generator's version, which sets the package's lower bounds (grpcio >= it,
# protobuf >= the protobuf it bundles; see pyproject.toml). Changing the pin is
# changing those bounds. tests/test_stubs.py regenerates into a temporary
# directory and fails if the committed stubs differ.
#
#   ./generate.sh            # rewrite src/loggate/v1/*_pb2*
#   ./generate.sh OUT_DIR    # write OUT_DIR/loggate/v1/*_pb2* instead
#
# Uses $PYTHON if set, else python3 (the active venv's, if one is active).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

GRPCIO_TOOLS_VERSION=1.66.2
python="${PYTHON:-python3}"
out="${1:-src}"

have="$("$python" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null || true)"
if [[ "$have" != "$GRPCIO_TOOLS_VERSION" ]]; then
  echo "generate.sh: needs grpcio-tools==$GRPCIO_TOOLS_VERSION in $python (found: ${have:-none});" >&2
  echo "  pip install -r requirements.txt" >&2
  exit 2
fi

mkdir -p "$out"
"$python" -m grpc_tools.protoc -I../../proto \
  --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  ../../proto/loggate/v1/loggate.proto
