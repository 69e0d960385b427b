"""Embedding model identity (docs/PROOFS.md, "Embedding model identity")."""

from __future__ import annotations

import hashlib
import os

import blake3

from .wire import u64be

CONTEXT = "cairn 2026 embedding model identity v1"
MODEL_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")


def model_hash(file_sha256: dict[str, str]) -> bytes:
    """The 32-byte model hash roots carry, from {file name: sha256 hex}; `name`
    in the document's formula is the file name (confirmed by the vector)."""
    parts = []
    for name in sorted(file_sha256):
        nb = name.encode()
        parts += [u64be(len(nb)), nb, file_sha256[name].lower().encode()]
    return blake3.blake3(b"".join(parts), derive_key_context=CONTEXT).digest()


def model_id(name: str, file_sha256: dict[str, str], quant: str | None = None) -> str:
    """NAME[+QUANT]@H16, as a node names its model."""
    return f"{name}{'+' + quant if quant else ''}@{model_hash(file_sha256).hex()[:16]}"


def model_hash_of_dir(path: str) -> bytes:
    """The model hash of a model directory holding the five files."""
    sums = {}
    for n in MODEL_FILES:
        h = hashlib.sha256()
        with open(os.path.join(path, n), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sums[n] = h.hexdigest()
    return model_hash(sums)
