"""The vendored gRPC stubs (cairn/v1/) are exactly what generate.sh makes from the proto today: regenerated
into a temp dir with grpcio-tools (the `dev` extra, the version generate.sh pins) and compared byte for byte."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent
PROTO_ROOT = PKG.parent.parent / "proto" / "proto"
FILES = ["cairn_pb2.py", "cairn_pb2.pyi", "cairn_pb2_grpc.py"]


def pinned_tools_version() -> str:
    m = re.search(r'^tools_version="([^"]+)"', (PKG / "generate.sh").read_text(), re.M)
    assert m, "generate.sh names no tools_version"
    return m.group(1)


def test_vendored_stubs_match_the_proto(tmp_path):
    want = pinned_tools_version()
    try:
        have = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"grpcio-tools is not installed (pip install 'cairn-memory[dev]' brings {want})")
    if have != want:
        pytest.skip(f"grpcio-tools {have} is installed; the stubs are made with {want} (generate.sh)")
    proto = PROTO_ROOT / "cairn" / "v1" / "cairn.proto"
    assert proto.exists(), proto
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "cairn/v1/cairn.proto"],
        check=True, capture_output=True)
    stale = [f for f in FILES
             if (tmp_path / "cairn" / "v1" / f).read_bytes() != (PKG / "cairn" / "v1" / f).read_bytes()]
    assert not stale, f"vendored stubs are stale ({', '.join(stale)}): run client/python/generate.sh"


def test_stubs_import_inside_the_cairn_package():
    from cairn.v1 import cairn_pb2, cairn_pb2_grpc

    assert cairn_pb2.DESCRIPTOR.package == "cairn.v1"
    assert cairn_pb2_grpc.cairn_dot_v1_dot_cairn__pb2 is cairn_pb2
    assert cairn_pb2_grpc.CairnStub
    # every RPC of the service has a stub method
    names = {m.name for m in cairn_pb2.DESCRIPTOR.services_by_name["Cairn"].methods}
    assert {"Remember", "Recall", "Get", "List", "MintToken", "ListShares"} <= names
