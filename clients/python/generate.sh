#!/usr/bin/env bash
# Generates the Python stubs for loggate.v1 from ../../proto into ./loggate/v1,
# so that `from loggate.v1 import loggate_pb2, loggate_pb2_grpc` works from here.
# Needs grpcio-tools (see requirements.txt); it ships google/protobuf/timestamp.proto.
# Uses $PYTHON if set, else python3 (the active venv's, if one is active).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

"${PYTHON:-python3}" -m grpc_tools.protoc -I../../proto --python_out=. --grpc_python_out=. \
  ../../proto/loggate/v1/loggate.proto

# The package markers are committed; recreate them if they went missing.
for init in loggate/__init__.py loggate/v1/__init__.py; do
  [[ -f "$init" ]] || : >"$init"
done
