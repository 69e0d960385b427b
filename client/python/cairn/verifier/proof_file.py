"""Saved proof files (docs/PROOFS.md, "Saved proof files"): CAIRNPF2 with a
cosignature block and CAIRNPF1 without. Kinds: 1 get, 2 list, 3 recall (CPR2),
4 lexical or hybrid recall (CPX1), 5 filtered recall (CPF1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import blake3

from .errors import VerifyError
from .filtered import RecallFilter, encode_filter, read_filter, verify_filtered
from .hybrid import verify_hybrid
from .proofs import MAX_PROOF, Verified, verify_get, verify_list, verify_recall
from .wire import Reader, u16be, u32be, u64be

MAGIC_V2 = b"CAIRNPF2"
MAGIC_V1 = b"CAIRNPF1"
KINDS = {1: "get", 2: "list", 3: "recall", 4: "hybrid", 5: "filtered"}
SCORED = ("recall", "hybrid", "filtered")
MAX_QUERY_TEXT = 1 << 20
# Caps of a saved file (docs/PROOFS.md, "Saved proof files"): at most 100,000 items and 128 MiB in all.
MAX_FILE_ITEMS = 100_000
MAX_FILE_BYTES = 2 * MAX_PROOF
KIND_CODES = {v: k for k, v in KINDS.items()}


@dataclass
class ProofFile:
    """A decoded proof file: the question (kind, namespace and the List or Recall
    parameters), the answer (items: (id, record, score f32 bits or None)), the
    proof bytes and, for version 2, the saved witness cosignatures."""

    version: int
    kind: str
    namespace: str
    items: list[tuple[bytes, bytes, int | None]]
    proof: bytes
    cosigs: list[tuple[bytes, bytes]] = field(default_factory=list)
    since: int | None = None
    until: int | None = None
    after: tuple[int, bytes] | None = None
    limit: int | None = None
    k: int | None = None
    min_ef: int | None = None
    # Kinds 4 ("hybrid": a lexical or hybrid recall) and 5 ("filtered"): the minimum fusion depth and the
    # question's text (the proof's terms must be its terms); kind 5 also the filter asked.
    min_depth: int | None = None
    query: str | None = None
    filter: RecallFilter | None = None

    @property
    def returned(self) -> list[tuple[bytes, bytes]]:
        """(id, record bytes) in answer order, as the verify_* functions take them."""
        return [(i, r) for i, r, _ in self.items]

    @property
    def scores(self) -> list[float]:
        """Recall scores as the exact floats of their f32 bits."""
        return [struct.unpack(">f", struct.pack(">I", s))[0] for _, _, s in self.items if s is not None]


def decode_proof_file(b: bytes) -> ProofFile:
    """Parses a proof file and checks its checksum (integrity only: trust comes
    from verifying the proof against a pinned node id)."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise VerifyError("proof file must be bytes")
    b = bytes(b)
    if len(b) < 8 + 32:
        raise VerifyError("proof file: truncated")
    if len(b) > MAX_FILE_BYTES:
        raise VerifyError("proof file: larger than 128 MiB")
    magic = b[:8]
    if magic == MAGIC_V2:
        version = 2
    elif magic == MAGIC_V1:
        version = 1
    else:
        raise VerifyError("proof file: wrong magic")
    body, checksum = b[:-32], b[-32:]
    if blake3.blake3(body).digest() != checksum:
        raise VerifyError("proof file: checksum mismatch (the file was changed)")
    r = Reader(body, "proof file", pos=8)
    code = r.u8("kind")
    kind = KINDS.get(code)
    if kind is None:
        raise VerifyError(f"proof file: unknown kind {code}")
    nlen = r.u16("namespace length")
    try:
        namespace = r.take(nlen, "namespace").decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError("proof file: namespace is not UTF-8") from None
    pf = ProofFile(version, kind, namespace, [], b"")
    if kind == "list":
        pf.since = r.u64("since")
        pf.until = r.u64("until")
        has_after = r.u8("has_after")
        if has_after == 1:
            pf.after = (r.u64("after created_at"), r.take(32, "after id"))
        elif has_after != 0:
            raise VerifyError(f"proof file: has_after is {has_after}")
        pf.limit = r.u32("limit")
    elif kind in SCORED:
        pf.k = r.u32("k")
        pf.min_ef = r.u32("min_ef")
        if kind != "recall":
            pf.min_depth = r.u32("min_depth")
            qlen = r.u32("query length")
            if qlen > MAX_QUERY_TEXT:
                raise VerifyError("proof file: query text over 1 MiB")
            try:
                pf.query = r.take(qlen, "query").decode("utf-8")
            except UnicodeDecodeError:
                raise VerifyError("proof file: query text is not UTF-8") from None
            if kind == "filtered":
                pf.filter = read_filter(r, ordered=False)
    item_min = 36 + (4 if kind in SCORED else 0)
    n = r.count("item count", item_min, MAX_FILE_ITEMS)
    for _ in range(n):
        id_ = r.take(32, "id")
        rlen = r.u32("record length")
        rec = r.take(rlen, "record")
        score = r.u32("score") if kind in SCORED else None
        pf.items.append((id_, rec, score))
    plen = r.u32("proof length")
    if plen > MAX_PROOF:
        raise VerifyError("proof file: proof exceeds 64 MiB")
    pf.proof = r.take(plen, "proof")
    if version == 2:
        c = r.u16("cosignature count")
        if c * 96 > r.remaining():
            raise VerifyError("proof file: truncated (cosignatures)")
        for _ in range(c):
            pf.cosigs.append((r.take(32, "witness"), r.take(64, "cosignature")))
    r.expect_end()
    return pf


def encode_proof_file(pf: ProofFile) -> bytes:
    """The bytes of a proof file, checksum included. For tests and tools."""
    ns = pf.namespace.encode()
    out = [MAGIC_V2 if pf.version == 2 else MAGIC_V1, bytes([KIND_CODES[pf.kind]]), u16be(len(ns)), ns]
    if pf.kind == "list":
        out += [u64be(pf.since), u64be(pf.until)]
        if pf.after is None:
            out.append(b"\x00")
        else:
            out += [b"\x01", u64be(pf.after[0]), pf.after[1]]
        out.append(u32be(pf.limit))
    elif pf.kind in SCORED:
        out += [u32be(pf.k), u32be(pf.min_ef)]
        if pf.kind != "recall":
            q = (pf.query or "").encode("utf-8")
            out += [u32be(pf.min_depth or 0), u32be(len(q)), q]
        if pf.kind == "filtered":
            out.append(encode_filter(pf.filter or RecallFilter()))
    out.append(u32be(len(pf.items)))
    for id_, rec, score in pf.items:
        out += [id_, u32be(len(rec)), rec]
        if pf.kind in SCORED:
            out.append(u32be(score))
    out += [u32be(len(pf.proof)), pf.proof]
    if pf.version == 2:
        out.append(u16be(len(pf.cosigs)))
        for w, s in pf.cosigs:
            out += [w, s]
    body = b"".join(out)
    return body + blake3.blake3(body).digest()


def verify_file(pf: ProofFile, trusted: bytes) -> Verified:
    """Verifies an already decoded proof file's answer against `trusted`."""
    if pf.kind == "get":
        return verify_get(pf.proof, pf.namespace, trusted, pf.returned)
    if pf.kind == "list":
        return verify_list(pf.proof, pf.namespace, trusted, pf.since, pf.until, pf.after, pf.limit, pf.returned)
    if pf.kind == "recall":
        return verify_recall(pf.proof, pf.namespace, trusted, pf.k, pf.min_ef, pf.returned, pf.scores)
    # As `cairn verify`: the mode asked is the proof's own (the file does not record it), the minimum depth is
    # at least k, and the proof's terms must be those of the saved question.
    min_depth = max(pf.min_depth or 0, pf.k or 0)
    if pf.kind == "hybrid":
        return verify_hybrid(pf.proof, pf.namespace, trusted, None, pf.k, pf.min_ef, min_depth, pf.query,
                             pf.returned, pf.scores)
    return verify_filtered(pf.proof, pf.namespace, trusted, None, pf.k, min_depth, pf.filter, pf.query,
                           pf.returned, pf.scores)


def verify_proof_file(b: bytes, trusted: bytes) -> Verified:
    """Decodes a saved proof file (either version) and verifies its answer
    against the pinned node id `trusted`, as `cairn verify --trust` does."""
    return verify_file(decode_proof_file(b), trusted)
