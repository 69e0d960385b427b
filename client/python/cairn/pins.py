"""Pins: what a client trusts and what it has seen, optionally persisted as JSON.

- the node id (ed25519 key that signs roots) to trust per node address, pinned on first use (or, for a
  replica namespace, its owner's id, pinned per address and namespace);
- the TLS certificate fingerprint per `https://` address, pinned on first use with `trust_on_first_use`;
- the newest root accepted per (node id, namespace), as (seq, root hash): the freshness rule rejects a root
  with a lower seq (rollback) or with the same seq and another hash (equivocation).

The file has the same shape as the CLI's `roots.json` (`~/.local/state/cairn/roots.json`), so a client and the
CLI can share one: `{"nodes": {addr: id, "addr ns": owner}, "roots": {"id/ns": {"seq", "hash"}}, "tls": {addr:
sha256}}`. Every change is written atomically (temp file, fsync, rename), and the file is read again before
each check so that several clients sharing it see each other's roots.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, VerificationError


@dataclass(frozen=True)
class SeenRoot:
    """The newest root accepted for a (node id, namespace)."""

    seq: int
    hash: bytes


def _empty() -> dict:
    return {"nodes": {}, "roots": {}, "tls": {}}


class PinStore:
    """Pins kept in memory, and in `path` (JSON) when given. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._state = _empty()
        self._load()

    # ----------------------------------------------------------------- file

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            raise ConfigError(f"cannot read the pins file {self.path}: {e}") from e
        try:
            state = json.loads(raw) if raw.strip() else {}
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            out = _empty()
            for k in out:
                v = state.get(k, {})
                if not isinstance(v, dict):
                    raise ValueError(f"{k!r} is not an object")
                out[k] = v
            for key, r in out["roots"].items():
                if not isinstance(r, dict) or not isinstance(r.get("seq"), int) or not isinstance(r.get("hash"), str):
                    raise ValueError(f"root {key!r} is not {{seq, hash}}")
                bytes.fromhex(r["hash"])
            # Keep entries other tools may have added (the CLI's file has only these three maps today).
            for k, v in state.items():
                if k not in out:
                    out[k] = v
        except ValueError as e:
            raise ConfigError(f"the pins file {self.path} is damaged: {e}") from e
        self._state = out

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self._state, indent=2, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:  # make the rename durable too
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    # ------------------------------------------------------------ node ids

    def node_id(self, address: str, namespace: str | None = None) -> str | None:
        """The node id pinned for `address` (or for a replica `namespace` on it), hex; None if not pinned."""
        with self._lock:
            self._load()
            key = address if namespace is None else f"{address} {namespace}"
            return self._state["nodes"].get(key)

    def pin_node_id(self, address: str, node_id: str, namespace: str | None = None) -> None:
        """Pins `node_id` for `address` (or for a replica `namespace` on it)."""
        with self._lock:
            self._load()
            key = address if namespace is None else f"{address} {namespace}"
            self._state["nodes"][key] = node_id
            self._save()

    # ----------------------------------------------------------------- TLS

    def tls_pin(self, address: str) -> str | None:
        """The certificate fingerprint pinned for an `https://` address (hex SHA-256), if any."""
        with self._lock:
            self._load()
            return self._state["tls"].get(address)

    def pin_tls(self, address: str, fingerprint: str) -> None:
        with self._lock:
            self._load()
            self._state["tls"][address] = fingerprint
            self._save()

    # --------------------------------------------------------------- roots

    @staticmethod
    def _root_key(node_id: str | bytes, namespace: str) -> str:
        nid = node_id.hex() if isinstance(node_id, (bytes, bytearray)) else node_id.lower()
        return f"{nid}/{namespace}"

    def last_seen(self, node_id: str | bytes, namespace: str) -> SeenRoot | None:
        """The newest root accepted from `node_id` for `namespace`."""
        with self._lock:
            self._load()
            r = self._state["roots"].get(self._root_key(node_id, namespace))
            return None if r is None else SeenRoot(r["seq"], bytes.fromhex(r["hash"]))

    def check(self, node_id: str | bytes, namespace: str, seq: int, root_hash: bytes) -> None:
        """Raises VerificationError if a root (seq, root_hash) is older than the newest accepted one
        (rollback) or differs from the one accepted for the same seq (equivocation)."""
        last = self.last_seen(node_id, namespace)
        _check_fresh(last, seq, root_hash, namespace)

    def accept(self, node_id: str | bytes, namespace: str, seq: int, root_hash: bytes) -> None:
        """Applies the freshness rule to a verified root, and records it when it is newer than the newest
        accepted. Atomic with respect to other threads of this process (and re-reads the file first)."""
        with self._lock:
            self._load()
            key = self._root_key(node_id, namespace)
            r = self._state["roots"].get(key)
            last = None if r is None else SeenRoot(r["seq"], bytes.fromhex(r["hash"]))
            _check_fresh(last, seq, root_hash, namespace)
            if last is None or seq > last.seq:
                self._state["roots"][key] = {"seq": int(seq), "hash": bytes(root_hash).hex()}
                self._save()

    def forget_roots(self) -> None:
        """Drops every root seen (keeps the pinned ids and certificates)."""
        with self._lock:
            self._load()
            self._state["roots"] = {}
            self._save()


def _check_fresh(last: SeenRoot | None, seq: int, root_hash: bytes, namespace: str) -> None:
    if last is None:
        return
    if seq < last.seq:
        raise VerificationError(
            f"rollback: the answer's root for {namespace!r} has seq {seq}, older than seq {last.seq} already seen"
        )
    if seq == last.seq and bytes(root_hash) != last.hash:
        raise VerificationError(
            f"equivocation: the answer's root for {namespace!r} at seq {seq} differs from the root already seen "
            f"for that seq ({bytes(root_hash).hex()} != {last.hash.hex()})"
        )
