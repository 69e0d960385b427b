#!/usr/bin/env python3
"""Check the provisioned all-MiniLM-L6-v2 ONNX model against reference embeddings.

Runs the exported graph the way Cairn uses it: tokenise with the shipped
tokenizer.json (but truncating at 256 word pieces and padding to the longest
text of the batch, as sentence-transformers does: the file itself says 128 and
fixed padding), run ONNX Runtime, mean-pool over the attention mask, L2
normalise. Then:

  * every fixture item must reach cosine >= 0.9999 with its reference vector;
  * the two scores published in the sentence-transformers docs must come out
    (0.7553 and 0.8939, to 4 decimals);
  * a text longer than 256 word pieces must be cut at exactly 256;
  * a text embedded alone and inside a padded batch must give the same vector
    (so the attention mask really masks the padding);
  * the int8 model, if present, is compared too (min/mean cosine reported,
    only a loose floor enforced: quantisation costs accuracy by design).

Needs onnxruntime, tokenizers and numpy: run it with the provisioning venv,
e.g. `$CAIRN_CACHE/venv/bin/python scripts/check_embeddings.py`, or
`scripts/provision-model --check`. Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 256
MIN_COSINE = 0.9999
# Published in the sentence-transformers documentation for all-MiniLM-L6-v2.
PUBLISHED = [
    ("A man is eating food.", "A man is eating a piece of bread.", 0.7553),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
]
PUBLISHED_TOLERANCE = 1e-3
INT8_MIN_COSINE_FLOOR = 0.95  # sanity floor only (measured ~0.97 min, ~0.99 mean)

CACHE = Path(os.environ.get("CAIRN_CACHE", Path.home() / ".cache" / "cairn"))
REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURE = REPO / "tests" / "fixtures" / "minilm-reference.json"


class Embedder:
    """Tokenizer + ONNX session + mean pooling + L2 normalisation."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # Override the shipped settings (truncate at 128, pad to a fixed 128).
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]):
        return self.tokenizer.encode_batch(texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        enc = self.encode(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        types = np.array([e.type_ids for e in enc], dtype=np.int64)
        (hidden,) = self.session.run(["last_hidden_state"], {
            "input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description="Check exported MiniLM embeddings against references.")
    ap.add_argument("--model-dir", type=Path, default=CACHE / "models" / "all-minilm-l6-v2")
    ap.add_argument("--int8-dir", type=Path, default=CACHE / "models" / "all-minilm-l6-v2-int8",
                    help="int8 model directory; checked only if it holds a model.onnx")
    ap.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    args = ap.parse_args()

    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        print(("ok   " if ok else "FAIL ") + message)
        if not ok:
            failures.append(message)

    fixture = json.loads(args.fixture.read_text())
    texts = [item["text"] for item in fixture["items"]]
    refs = np.array([item["embedding"] for item in fixture["items"]], dtype=np.float64)
    if fixture.get("max_seq_length", MAX_SEQ_LENGTH) != MAX_SEQ_LENGTH:
        check(False, f"fixture max_seq_length {fixture['max_seq_length']} != {MAX_SEQ_LENGTH}")

    fp32 = Embedder(args.model_dir)
    print(f"model: {args.model_dir / 'model.onnx'}  (onnxruntime {ort.__version__})")

    # 1. fixture: all items in one padded batch
    emb = fp32.embed(texts)
    check(emb.shape == (len(texts), 384), f"output shape {emb.shape}")
    cos = cosines(emb.astype(np.float64), refs)
    worst = int(np.argmin(cos))
    check(bool(cos.min() >= MIN_COSINE),
          f"fixture: {len(texts)} items, min cosine {cos.min():.8f} (>= {MIN_COSINE}), "
          f"mean {cos.mean():.8f}, worst {texts[worst]!r}")
    for t, c in zip(texts, cos):
        if c < MIN_COSINE:
            print(f"     {c:.6f}  {t!r}")

    # 2. published similarity scores
    for a, b, expected in PUBLISHED:
        va, vb = fp32.embed([a, b])
        score = float(va @ vb)
        check(abs(score - expected) <= PUBLISHED_TOLERANCE,
              f"published score {score:.4f} (expected {expected})  {a!r} vs {b!r}")

    # 3. truncation at 256 word pieces
    long_text = " ".join(["provenance"] + ["the quick brown fox jumps over the lazy dog"] * 60)
    n_tokens = len(fp32.encode([long_text])[0].ids)
    check(n_tokens == MAX_SEQ_LENGTH, f"long text truncated to {n_tokens} tokens "
                                      f"(expected {MAX_SEQ_LENGTH})")
    long_vec = fp32.embed([long_text])
    check(bool(np.isfinite(long_vec).all()), "long text embeds to a finite vector")

    # 4. padding invariance: alone vs. inside a batch padded to a longer text
    short = "The cat sat on the mat."
    alone = fp32.embed([short])[0]
    in_batch = fp32.embed([short, long_text])[0]
    pad_cos = float(alone @ in_batch)
    check(pad_cos >= 0.99999, f"padding invariance: cosine alone vs padded batch {pad_cos:.7f}")

    # 5. int8 model (optional)
    if (args.int8_dir / "model.onnx").is_file():
        int8 = Embedder(args.int8_dir)
        print(f"model: {args.int8_dir / 'model.onnx'}")
        q = int8.embed(texts)
        vs_fp32 = cosines(q.astype(np.float64), emb.astype(np.float64))
        vs_ref = cosines(q.astype(np.float64), refs)
        print(f"     int8 vs fp32:      min cosine {vs_fp32.min():.4f}, mean {vs_fp32.mean():.4f}")
        print(f"     int8 vs reference: min cosine {vs_ref.min():.4f}, mean {vs_ref.mean():.4f}")
        for a, b, expected in PUBLISHED:
            va, vb = int8.embed([a, b])
            print(f"     int8 published score {float(va @ vb):.4f} (fp32 reference {expected})")
        check(bool(vs_ref.min() >= INT8_MIN_COSINE_FLOOR),
              f"int8: min cosine vs reference {vs_ref.min():.4f} (sanity floor "
              f"{INT8_MIN_COSINE_FLOOR})")
    else:
        print(f"skip int8: no {args.int8_dir / 'model.onnx'}")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all embedding checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
