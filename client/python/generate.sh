#!/usr/bin/env bash
# Regenerates the vendored gRPC stubs in cairn/v1/ from proto/proto/cairn/v1/cairn.proto with grpcio-tools'
# bundled compiler (python -m grpc_tools.protoc; no system protoc). The stubs are committed; run this after
# changing the proto. tests/test_stubs.py fails when they are stale.
#
# Environment: CAIRN_CACHE (default ~/.cache/cairn): the venv holding grpcio-tools lives in
#              $CAIRN_CACHE/venv-grpc-tools (made on first use). PYTHON (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$(cd "$here/../../proto/proto" && pwd)"
cache="${CAIRN_CACHE:-$HOME/.cache/cairn}"
venv="$cache/venv-grpc-tools"
tools_version="1.81.1"

if ! "$venv/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("grpcio-tools") != sys.argv[1])' "$tools_version" 2>/dev/null; then
    mkdir -p "$cache"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$tools_version"
fi

out="$here"
"$venv/bin/python" -m grpc_tools.protoc \
    -I "$proto_root" \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    cairn/v1/cairn.proto
# The package marker (not generated; kept as is).
[ -f "$out/cairn/v1/__init__.py" ] || printf '"""Generated gRPC stubs for cairn.v1 (see generate.sh)."""\n' > "$out/cairn/v1/__init__.py"
echo "generated: $(cd "$out" && ls cairn/v1/cairn_pb2*.py*)"
