#!/usr/bin/env python3
"""Cairn's Python SDK in a minute: remember, recall, and a verified recall (the node's proof checked here
against its signed root).

    pip install cairn-memory                  # from client/python
    python sdk-examples/python/quickstart.py --node http://127.0.0.1:7420 --token "$CAIRN_TOKEN"
"""

from __future__ import annotations

import argparse
import os
import sys

from cairn import CairnClient, NewMemory


def run(client: CairnClient, namespace: str = "demo/quickstart", out=print) -> dict:
    results = client.remember(namespace, [
        NewMemory("Alice prefers green tea to coffee.", {"speaker": "alice"}),
        NewMemory("Bob is allergic to peanuts.", {"speaker": "bob"}),
        NewMemory("The team meets every Tuesday at 10.", {"speaker": "carol"}),
    ])
    for r in results:
        out(f"remembered {r.id[:16]}…{' (already there)' if r.deduplicated else ''}")

    hits = client.recall(namespace, "what does Alice drink?", k=2)
    for h in hits:
        out(f"{h.score:.3f}  {h.text}")

    verified = client.recall(namespace, "who has an allergy?", k=1, verify=True)
    v = verified.verification
    out(f"{verified[0].score:.3f}  {verified[0].text}")
    out(f"verified against root seq {v.seq} ({v.root_hash[:16]}…) signed by node {v.node_id[:16]}…")
    return {"ids": [r.id for r in results], "top": hits[0].text, "verified_top": verified[0].text,
            "verification": v}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node", default=os.environ.get("CAIRN_NODE", "http://127.0.0.1:7420"))
    p.add_argument("--token", default=os.environ.get("CAIRN_TOKEN"))
    p.add_argument("--tls-pin", default=os.environ.get("CAIRN_TLS_PIN"))
    p.add_argument("--node-id", help="node id to trust (default: pinned on first use)")
    p.add_argument("--namespace", default="demo/quickstart")
    a = p.parse_args(argv)
    with CairnClient(a.node, token=a.token, tls_pin=a.tls_pin, node_id=a.node_id) as client:
        run(client, a.namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
