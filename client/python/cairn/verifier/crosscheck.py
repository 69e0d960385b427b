"""Cross-check this verifier against the Rust one on a corpus of proof files.

    python -m cairn.verifier.crosscheck CORPUS_DIR [--time]

CORPUS_DIR/manifest.json (written by the Rust side) lists each case's file, the
node label whose id to trust, the kind, whether it is honest or tampered, and
Rust's decision (accept, witnesses, error). For each case this runs
`verify_proof_file` and reports every disagreement; any exception other than
VerifyError is a disagreement and a bug. Exit status 1 on any disagreement or
an empty corpus, else 0. `--time` prints verify time per kind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from .errors import VerifyError
from .proof_file import decode_proof_file, verify_file
from .witness import count_witnesses


def _unhex(s, what):
    b = bytes.fromhex(s)
    if len(b) != 32:
        raise ValueError(f"{what}: expected 64 hex characters")
    return b


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return 0.0
    i = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[i]


def run(corpus: str, show_time: bool = False, out=None) -> int:
    """Runs the cross-check; returns the exit status."""
    out = out or sys.stdout
    try:
        with open(os.path.join(corpus, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("version") != 1:
            raise ValueError(f"unknown manifest version {manifest.get('version')!r}")
        node_ids = {k: _unhex(v, f"node {k}") for k, v in manifest.get("node_ids", {}).items()}
        pinned = [_unhex(h, "pinned witness") for h in manifest.get("pinned_witnesses", [])]
        cases = list(manifest.get("cases", []))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        print(f"cannot read {os.path.join(corpus, 'manifest.json')}: {e}", file=out)
        return 1
    honest = sum(1 for c in cases if c.get("honest"))
    disagreements = 0
    times: dict[str, list[float]] = {}

    for case in cases:
        fname = case.get("file", "?")
        tamper = case.get("tamper", "")
        rust_ok = bool(case.get("accept"))
        rust = f"rust {'accept' if rust_ok else 'reject'}" + (f" ({case.get('error')})" if case.get("error") else "")
        py_ok = False
        py_err = ""
        bug = False
        verified = pf = None
        try:
            with open(os.path.join(corpus, fname), "rb") as f:
                data = f.read()
            trusted = node_ids[case["node"]]
        except Exception as e:  # a corpus problem, not a verifier decision
            print(f"{fname}: {tamper}: {rust}; cannot run the case: {e!r}", file=out)
            disagreements += 1
            continue
        t0 = time.perf_counter()
        try:
            pf = decode_proof_file(data)
            verified = verify_file(pf, trusted)
            py_ok = True
        except VerifyError as e:
            py_err = str(e)
        except BaseException as e:  # noqa: BLE001 - any other type is a bug
            if isinstance(e, KeyboardInterrupt):
                raise
            bug = True
            py_err = f"BUG {type(e).__name__}: {e}\n{traceback.format_exc()}"
        times.setdefault(case.get("kind", "?"), []).append((time.perf_counter() - t0) * 1000.0)
        py = f"python {'accept' if py_ok else 'reject'}" + (f" ({py_err})" if py_err else "")
        if bug or py_ok != rust_ok:
            disagreements += 1
            print(f"{fname}: {tamper}: {rust}; {py}", file=out)
            continue
        want = case.get("witnesses")
        if py_ok and want is not None:
            try:
                got = count_witnesses(verified.root, pf.cosigs, pinned)
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                got = f"BUG {type(e).__name__}: {e}"
            if got != want:
                disagreements += 1
                print(f"{fname}: {tamper}: rust witnesses {want}; python witnesses {got}", file=out)

    if show_time:
        for kind in sorted(times):
            xs = times[kind]
            print(f"time {kind}: {len(xs)} cases, mean {sum(xs) / len(xs):.3f} ms, p50 {_pct(xs, 50):.3f} ms, "
                  f"p99 {_pct(xs, 99):.3f} ms", file=out)
    print(f"cross-check: {len(cases)} cases ({honest} honest, {len(cases) - honest} tampered) compared, "
          f"{disagreements} disagreements", file=out)
    return 1 if disagreements or not cases else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m cairn.verifier.crosscheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="directory holding manifest.json and the proof files")
    ap.add_argument("--time", action="store_true", help="print verify time per case kind (mean/p50/p99 ms)")
    a = ap.parse_args(argv)
    return run(a.corpus, a.time)


if __name__ == "__main__":
    sys.exit(main())
