"""`cairn mcp` driven by the official Python MCP SDK (`mcp`), over stdio and over streamable HTTP, against a real
node: list the tools, remember, recall with verify (the verification comes back with the hits), the namespace pin,
and a call the token has no right for."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

mcp = pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from nodes import cairn_bin  # noqa: E402

TOOLS = {"remember", "recall", "get", "list", "forget", "namespaces"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def stdio_params(node, token, *extra):
    env = node.env()
    env["CAIRN_TOKEN"] = token
    return StdioServerParameters(command=str(cairn_bin()), args=["--node", node.url, "mcp", *extra], env=env)


async def session_calls(session: ClientSession, ns_arg: dict):
    """The same conversation on either transport: tools, remember, recall with verify, get by key verified."""
    await session.initialize()
    tools = await session.list_tools()
    names = {t.name for t in tools.tools}
    assert TOOLS <= names, names
    recall = next(t for t in tools.tools if t.name == "recall")
    assert "verify" in recall.input_schema["properties"]
    assert "query" in recall.input_schema["properties"]

    r = await session.call_tool("remember", {**ns_arg, "text": "Alice prefers green tea in the morning.",
                                             "key": "drink", "metadata": {"speaker": "alice"}})
    assert not r.is_error, r.content
    first = r.structured_content["id"]
    assert len(first) == 64
    r = await session.call_tool("remember", {**ns_arg, "text": "Alice switched to black coffee.", "key": "drink"})
    assert not r.is_error, r.content
    assert r.structured_content["replaced"] == first
    await session.call_tool("remember", {**ns_arg, "text": "Bob is learning the cello."})

    r = await session.call_tool("recall", {**ns_arg, "query": "what does Alice drink?", "k": 2, "verify": True})
    assert not r.is_error, r.content
    out = r.structured_content
    assert out["hits"][0]["text"] == "Alice switched to black coffee."
    assert all(h["id"] != first for h in out["hits"])
    v = out["verification"]
    assert v["verified"] is True and v["seq"] >= 2 and len(v["root_hash"]) == 64 and len(v["node_id"]) == 64

    r = await session.call_tool("get", {**ns_arg, "keys": ["drink"], "verify": True})
    assert not r.is_error, r.content
    assert [m["text"] for m in r.structured_content["memories"]] == ["Alice switched to black coffee."]
    assert r.structured_content["verification"]["verified"] is True

    r = await session.call_tool("list", {**ns_arg, "verify": True})
    assert not r.is_error, r.content
    assert len(r.structured_content["memories"]) == 2
    return v


def test_mcp_over_stdio(node, ns):
    async def go():
        async with stdio_client(stdio_params(node, node.token, "--ns", ns)) as (read, write):
            async with ClientSession(read, write) as s:
                v = await session_calls(s, {})
                assert v["node_id"] == node.node_id
                # The pin: a namespace outside it is a tool error the model can read.
                r = await s.call_tool("recall", {"namespace": "elsewhere", "query": "tea"})
                assert r.is_error and "pinned" in r.content[0].text
                # Under the pin is fine.
                r = await s.call_tool("remember", {"namespace": f"{ns}/sub", "text": "A note below the pin."})
                assert not r.is_error, r.content
                r = await s.call_tool("namespaces", {})
                assert {n["namespace"] for n in r.structured_content["namespaces"]} == {ns, f"{ns}/sub"}

    run(go())


def test_mcp_stdio_token_without_the_right_is_denied(node, ns):
    with node.client() as c:
        c.remember(ns, "Something to read.")
        read_only = c.mint_token([ns], ["read"]).token

    async def go():
        async with stdio_client(stdio_params(node, read_only, "--ns", ns)) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                r = await s.call_tool("remember", {"text": "I may not write this."})
                assert r.is_error
                assert "permission" in r.content[0].text.lower(), r.content[0].text
                r = await s.call_tool("recall", {"query": "read"})
                assert not r.is_error and r.structured_content["hits"], r.content

    run(go())


class HttpMcp:
    """`cairn mcp --http 127.0.0.1:0` as a child process; `url` is its endpoint."""

    def __init__(self, node, *extra):
        env = node.env()
        self.proc = subprocess.Popen([str(cairn_bin()), "--node", node.url, "mcp", "--http", "127.0.0.1:0", *extra],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, text=True)
        self.url = None
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith("cairn mcp listening on "):
                    self.url = line.split()[-1]
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        found.wait(60)
        if not self.url:
            self.stop()
            raise RuntimeError("cairn mcp --http did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def http_mcp(node):
    h = HttpMcp(node)
    yield h
    h.stop()


def test_mcp_over_streamable_http(node, ns, http_mcp):
    async def go(token):
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with client:
            async with streamable_http_client(http_mcp.url, http_client=client) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as s:
                    return await session_calls(s, {"namespace": ns})

    v = run(go(node.token))
    assert v["node_id"] == node.node_id


def test_mcp_http_needs_a_token_the_node_accepts_and_checks_hosts(node, ns, http_mcp):
    import httpx2

    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with httpx2.Client(timeout=30) as h:
        r = h.post(http_mcp.url, json=body, headers=headers)
        assert r.status_code == 401
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
        r = h.post(http_mcp.url, json=body, headers={**headers, "authorization": "Bearer not-a-token"})
        assert r.status_code == 401
        ok = {**headers, "authorization": f"Bearer {node.token}"}
        # DNS rebinding: a Host that is not allowed is refused even with a good token.
        r = h.post(http_mcp.url, json=body, headers={**ok, "host": "attacker.example"})
        assert r.status_code == 403
        # Browsers (an Origin header) are refused.
        r = h.post(http_mcp.url, json=body, headers={**ok, "origin": "http://attacker.example"})
        assert r.status_code == 403

    # A token that only reads: writes through HTTP are denied by the node, reads work.
    with node.client() as c:
        c.remember(ns, "Readable by the read-only caller.")
        read_only = c.mint_token([ns], ["read"]).token

    async def go():
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {read_only}"})
        async with client:
            async with streamable_http_client(http_mcp.url, http_client=client) as streams:
                async with ClientSession(streams[0], streams[1]) as s:
                    await s.initialize()
                    r = await s.call_tool("remember", {"namespace": ns, "text": "nope"})
                    assert r.is_error and "permission" in r.content[0].text.lower(), r.content
                    r = await s.call_tool("recall", {"namespace": ns, "query": "readable"})
                    assert not r.is_error and r.structured_content["hits"]

    run(go())
    time.sleep(0)
