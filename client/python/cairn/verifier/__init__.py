"""An independent verifier for Cairn's proofs, written from docs/PROOFS.md (the lexical parts also read against the Rust source).

A client that pins a node id (its Ed25519 public key) can check with this
package that Get, List and Recall answers are authentic, complete and faithful,
that roots are fresh, and count witness cosignatures. Lexical and hybrid
(CPX1) and filtered (CPF1) recall proofs are verified too (hybrid.py,
filtered.py, over lexical.py's tokenizer and fixed-point BM25). Every rejection raises
`VerifyError`, whatever the input bytes.
"""

from .errors import VerifyError
from .filtered import RecallFilter, verify_filtered
from .hybrid import verify_hybrid
from .proof_file import ProofFile, decode_proof_file, encode_proof_file, verify_proof_file
from .proofs import Verified, verify_get, verify_list, verify_recall
from .record import Record, decode_record, encode_record, record_id
from .root import Root, check_fresh, decode_signed_root
from .witness import count_witnesses

__all__ = [
    "VerifyError", "Record", "decode_record", "encode_record", "record_id", "Root", "decode_signed_root",
    "Verified", "verify_get", "verify_list", "verify_recall", "check_fresh", "count_witnesses",
    "ProofFile", "decode_proof_file", "encode_proof_file", "verify_proof_file",
    "verify_hybrid", "verify_filtered", "RecallFilter",
]
