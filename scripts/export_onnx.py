#!/usr/bin/env python3
"""Export sentence-transformers/all-MiniLM-L6-v2 from safetensors to ONNX.

Cairn's own exporter: it needs neither PyTorch nor the Hugging Face hub, only
`numpy`, `onnx` and `safetensors` (plus `onnxruntime` for --int8). The graph is
written op by op with `onnx.helper` from the safetensors tensors:

    inputs   input_ids, attention_mask, token_type_ids   int64 [batch, seq]
    output   last_hidden_state                            float32 [batch, seq, hidden]

    embeddings  Gather(word) + Gather(token_type) + position table[0:seq]
                -> LayerNormalization
    N x layer   Q/K/V = MatMul + Add, Reshape/Transpose into heads,
                softmax(Q.K^T / sqrt(head_dim) + (1 - mask) * -10000) . V,
                output MatMul + Add, residual, LayerNormalization,
                FFN: MatMul + Add, GELU = x * 0.5 * (1 + erf(x / sqrt(2))),
                MatMul + Add, residual, LayerNormalization

Opset 17, standard ops only. Pooling (mean over the attention mask) and L2
normalisation stay outside the graph: the caller does them.

The output is deterministic: the same safetensors (and the same pinned `onnx`
package) give a byte-identical .onnx, so its sha256 can pin the model. Nothing
time- or host-dependent goes into the file; the pooler weights (unused by
sentence embeddings) are left out.

Usage:
    export_onnx.py MODEL_DIR_OR_SAFETENSORS OUT.onnx [--int8 OUT_INT8.onnx]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

# Bump when the graph changes: it is recorded in the model's metadata, so any
# change of the exported bytes is visible (and the pinned hash must be renewed).
EXPORTER_VERSION = "1"
OPSET = 17
# IR version 8 is the one that goes with opset 17; pinning it (rather than
# taking the `onnx` package's newest) keeps the file loadable by older runtimes
# and its bytes independent of the onnx version's default.
IR_VERSION = 8

# all-MiniLM-L6-v2's architecture; config.json, when present, must agree.
DEFAULT_CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
MASK_FILL = -10000.0  # additive mask value for padded positions (as in BERT)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_config(model_dir: Path | None) -> dict:
    """DEFAULT_CONFIG, checked against config.json when there is one."""
    cfg = dict(DEFAULT_CONFIG)
    path = model_dir / "config.json" if model_dir else None
    if path and path.is_file():
        given = json.loads(path.read_text())
        for key in cfg:
            if key in given:
                cfg[key] = given[key]
        if given.get("model_type", "bert") != "bert":
            sys.exit(f"export_onnx: {path}: model_type {given['model_type']!r} is not 'bert'")
        if given.get("position_embedding_type", "absolute") != "absolute":
            sys.exit(f"export_onnx: {path}: only absolute position embeddings are supported")
    if cfg["hidden_act"] != "gelu":
        sys.exit(f"export_onnx: hidden_act {cfg['hidden_act']!r} unsupported (only exact erf 'gelu')")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        sys.exit("export_onnx: hidden_size is not a multiple of num_attention_heads")
    return cfg


class GraphBuilder:
    """Small helper: collects nodes and initializers with stable, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._init_names: set[str] = set()

    def const(self, name: str, array: np.ndarray) -> str:
        if name not in self._init_names:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
            self._init_names.add(name)
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.array(value, dtype=np.float32))

    def ints(self, name: str, values: list[int]) -> str:
        return self.const(name, np.array(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output


def build_model(weights: dict[str, np.ndarray], cfg: dict, source_sha256: str) -> onnx.ModelProto:
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg["layer_norm_eps"])

    def w(name: str) -> np.ndarray:
        # Some checkpoints prefix the encoder's tensors with "bert.".
        for key in (name, "bert." + name):
            if key in weights:
                return weights[key].astype(np.float32, copy=False)
        sys.exit(f"export_onnx: tensor {name!r} not found in safetensors")

    g = GraphBuilder()

    def linear(x: str, prefix: str, out: str) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out].
        weight = g.const(f"{prefix}.weight_t", w(f"{prefix}.weight").T)
        bias = g.const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return g.op("Add", [g.op("MatMul", [x, weight], f"{out}/matmul"), bias], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        scale = g.const(f"{prefix}.weight", w(f"{prefix}.weight"))
        bias = g.const(f"{prefix}.bias", w(f"{prefix}.bias"))
        return g.op("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)

    # --- embeddings -------------------------------------------------------
    word = g.op("Gather", [g.const("embeddings.word_embeddings.weight",
                                   w("embeddings.word_embeddings.weight")), "input_ids"],
                "emb/word")
    token_type = g.op("Gather", [g.const("embeddings.token_type_embeddings.weight",
                                         w("embeddings.token_type_embeddings.weight")),
                                 "token_type_ids"], "emb/token_type")
    # Position embeddings: rows 0..seq-1 of the table, as a Slice bounded by the
    # input's length. Equivalent to Gather(table, Range(0, seq)), but that form
    # (seq taken as a scalar by Shape->Gather) fails in ONNX Runtime 1.32 at
    # graph optimisation level "extended" and above (the default): a fused
    # node ends up feeding a scalar to Slice ("Starts must be a 1-D array").
    seq_len = g.op("Shape", ["input_ids"], "emb/seq_len", start=1, end=2)  # [1]
    position = g.op("Slice", [g.const("embeddings.position_embeddings.weight",
                                      w("embeddings.position_embeddings.weight")),
                              g.ints("const/zero_1d", [0]), seq_len, "const/zero_1d"],
                    "emb/position")  # [seq, hidden], broadcast over the batch
    emb = g.op("Add", [g.op("Add", [word, token_type], "emb/word_plus_type"), position], "emb/sum")
    h = layer_norm(emb, "embeddings.LayerNorm", "emb/out")

    # --- additive attention mask: (1 - mask) * -10000, shaped [batch, 1, 1, seq]
    mask_f = g.op("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    inv = g.op("Sub", [g.scalar("const/one_f32", 1.0), mask_f], "mask/inverted")
    add_mask = g.op("Mul", [inv, g.scalar("const/mask_fill", MASK_FILL)], "mask/additive")
    add_mask = g.op("Unsqueeze", [add_mask, g.ints("const/axes_1_2", [1, 2])], "mask/bias")

    split_heads = g.ints("const/shape_heads", [0, 0, heads, head_dim])
    merge_heads = g.ints("const/shape_hidden", [0, 0, hidden])
    sqrt_head_dim = g.scalar("const/sqrt_head_dim", math.sqrt(head_dim))
    sqrt2 = g.scalar("const/sqrt2", math.sqrt(2.0))
    half = g.scalar("const/half", 0.5)

    # --- encoder layers ---------------------------------------------------
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        n = f"layer{i}"

        def heads_of(kind: str, perm: list[int]) -> str:
            x = linear(h, f"{p}.attention.self.{kind}", f"{n}/{kind}")
            x = g.op("Reshape", [x, split_heads], f"{n}/{kind}/split")
            return g.op("Transpose", [x], f"{n}/{kind}/heads", perm=perm)

        q = heads_of("query", [0, 2, 1, 3])   # [b, heads, seq, head_dim]
        k = heads_of("key", [0, 2, 3, 1])     # [b, heads, head_dim, seq]
        v = heads_of("value", [0, 2, 1, 3])   # [b, heads, seq, head_dim]
        scores = g.op("MatMul", [q, k], f"{n}/scores")
        scores = g.op("Div", [scores, sqrt_head_dim], f"{n}/scores_scaled")
        scores = g.op("Add", [scores, add_mask], f"{n}/scores_masked")
        probs = g.op("Softmax", [scores], f"{n}/probs", axis=-1)
        ctx = g.op("MatMul", [probs, v], f"{n}/context")
        ctx = g.op("Transpose", [ctx], f"{n}/context_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_heads], f"{n}/context_merged")
        attn = linear(ctx, f"{p}.attention.output.dense", f"{n}/attn_out")
        attn = g.op("Add", [attn, h], f"{n}/attn_residual")
        h = layer_norm(attn, f"{p}.attention.output.LayerNorm", f"{n}/attn_norm")

        # FFN with exact GELU; dividing first lets ONNX Runtime fuse it to Gelu.
        inter = linear(h, f"{p}.intermediate.dense", f"{n}/ffn_in")
        erf = g.op("Erf", [g.op("Div", [inter, sqrt2], f"{n}/gelu_div")], f"{n}/gelu_erf")
        erf1 = g.op("Add", [erf, "const/one_f32"], f"{n}/gelu_add")
        gelu = g.op("Mul", [g.op("Mul", [inter, erf1], f"{n}/gelu_mul"), half], f"{n}/gelu")
        out = linear(gelu, f"{p}.output.dense", f"{n}/ffn_out")
        out = g.op("Add", [out, h], f"{n}/ffn_residual")
        out_name = "last_hidden_state" if i == cfg["num_hidden_layers"] - 1 else f"{n}/out"
        h = layer_norm(out, f"{p}.output.LayerNorm", out_name)

    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, dims)
              for name in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                             dims + [hidden])]
    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="cairn-export_onnx",
        producer_version=EXPORTER_VERSION,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {
        "cairn.model": "sentence-transformers/all-MiniLM-L6-v2",
        "cairn.source_safetensors_sha256": source_sha256,
        "cairn.pooling": "mean",
        "cairn.normalize": "l2",
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def write_atomically(data: bytes, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates 0600; give the file the usual umask-derived mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def quantize_int8(src: Path, out: Path) -> None:
    """Dynamic int8 quantisation, per channel (per tensor loses far more accuracy)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a generic "consider pre-processing" hint through
    # the root logger; it does not apply to a graph of plain MatMul/Gather.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_out = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(src), str(tmp_out), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(tmp_out, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path,
                    help="directory holding model.safetensors (+ config.json), or the .safetensors file")
    ap.add_argument("out", type=Path, help="where to write the fp32 ONNX model")
    ap.add_argument("--int8", type=Path, metavar="OUT",
                    help="also write a dynamically quantised (int8, per-channel) copy here")
    args = ap.parse_args()

    if args.source.is_dir():
        model_dir, st_path = args.source, args.source / "model.safetensors"
    else:
        model_dir, st_path = args.source.parent, args.source
    if not st_path.is_file():
        sys.exit(f"export_onnx: {st_path} not found")

    cfg = load_config(model_dir)
    model = build_model(load_file(str(st_path)), cfg, sha256_file(st_path))
    write_atomically(model.SerializeToString(deterministic=True), args.out)
    print(f"wrote {args.out} sha256={sha256_file(args.out)}")

    if args.int8:
        args.int8.parent.mkdir(parents=True, exist_ok=True)
        quantize_int8(args.out, args.int8)
        print(f"wrote {args.int8} sha256={sha256_file(args.int8)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
