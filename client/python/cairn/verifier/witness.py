"""Witness cosignatures (docs/PROOFS.md, "Witness cosignatures")."""

from __future__ import annotations

from .ed25519 import verify_strict
from .root import Root

COSIG_DOMAIN = b"CAIRN-COSIG-V1"


def cosig_message(root_hash: bytes) -> bytes:
    """The signed bytes of a cosignature: "CAIRN-COSIG-V1" || root_hash."""
    return COSIG_DOMAIN + root_hash


def count_witnesses(root: Root, cosigs: list[tuple[bytes, bytes]], pinned: list[bytes] | None) -> int:
    """The number of distinct witness ids in the verifier's own witness set
    `pinned` with a cosignature that verifies (strictly) over `root.hash`.
    The owner's own entries, ids outside the set, repeats and malformed or
    invalid entries do not count. No set (None or empty) counts nothing."""
    if not pinned:
        return 0
    try:
        allowed = {bytes(p) for p in pinned if isinstance(p, (bytes, bytearray)) and len(p) == 32}
    except Exception:
        return 0
    counted: set[bytes] = set()
    msg = cosig_message(root.hash)
    for item in cosigs or []:
        try:
            w, sig = item
            w, sig = bytes(w), bytes(sig)
        except Exception:
            continue
        if len(w) != 32 or len(sig) != 64:
            continue
        if w == root.node_id or w not in allowed or w in counted:
            continue
        if verify_strict(w, msg, sig):
            counted.add(w)
    return len(counted)
