"""Fixtures: real Cairn nodes (see nodes.py), started once per session where possible (each loads the ONNX
model, a few seconds), and a fresh namespace per test so tests sharing a node do not see each other's
memories.

    def test_x(node, ns):            # node: a plain node; ns: a namespace unique to this test
        with node.client() as c: ...

    def test_y(node_factory):         # more nodes, stopped at the end of the session
        n = node_factory(args=["--tls"])
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nodes import Node, cairn_bin  # noqa: E402


@pytest.fixture(scope="session")
def node_factory(tmp_path_factory):
    """`node_factory(args=(), data_dir=None, env=None, listen=...)` starts a node and returns it (stopped at
    the end of the session)."""
    started: list[Node] = []

    def start(args=(), data_dir: Path | None = None, env=None, **kw) -> Node:
        base = tmp_path_factory.mktemp("node")
        n = Node(data_dir or base / "data", args=args, env=env, state_dir=base / "state", **kw)
        n.start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


@pytest.fixture(scope="session")
def node(node_factory) -> Node:
    """A plain (http) node shared by the session."""
    return node_factory()


@pytest.fixture(scope="session")
def tls_node(node_factory) -> Node:
    """A node serving TLS with its self-signed certificate (`--tls`), shared by the session."""
    return node_factory(args=["--tls"])


@pytest.fixture
def ns(request) -> str:
    """A namespace unique to this test: `t/<test name>-<random>`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-")
    return f"t/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(node):
    """A CairnClient with the admin token of `node` (in-memory pins)."""
    with node.client() as c:
        yield c


def pytest_report_header(config):
    return f"cairn binary: {cairn_bin()}"
