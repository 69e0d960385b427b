"""Ed25519 `verify_strict` (as ed25519-dalek defines it) on top of `cryptography`.

OpenSSL's Ed25519 check (used by `cryptography`) is cofactorless, rejects a
non-canonical S and compares the recomputed R by its encoding, like dalek's
`verify_strict`; it does not reject small-order public keys or small-order R.
Those two checks are added here with a few lines of Edwards arithmetic.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(b: bytes):
    """Affine (x, y) of a compressed point, or None if it is not on the curve.
    Like curve25519-dalek, y is taken mod p (non-canonical y is not rejected)."""
    y = (int.from_bytes(b, "little") & ((1 << 255) - 1)) % _P
    sign = b[31] >> 7
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = (_P - x) % _P
    return x, y


def _add(p1, p2):
    x1, y1 = p1
    x2, y2 = p2
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def _order_divides_8_slow(b: bytes) -> bool:
    pt = _decompress(b)
    if pt is None:
        return False
    for _ in range(3):
        pt = _add(pt, pt)
    return pt == (0, 1)


# The y coordinates of the 8 points of order dividing 8: 1 (identity), p - 1
# (order 2), 0 (order 4) and +-y8 (order 8). Checked once at import with
# explicit doublings, then used as a fast test.
_Y8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
_SMALL_Y = frozenset({1, _P - 1, 0, _Y8, _P - _Y8})
assert all(_order_divides_8_slow(y.to_bytes(32, "little")) for y in _SMALL_Y)
assert not _order_divides_8_slow(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


def is_small_order(b: bytes) -> bool:
    """True if the encoded point has order dividing 8 (the weak keys/R values
    `verify_strict` refuses), with y taken mod p as dalek does."""
    return ((int.from_bytes(b, "little") & ((1 << 255) - 1)) % _P) in _SMALL_Y


def verify_strict(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid strict Ed25519 signature of `message`."""
    try:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        public_key = bytes(public_key)
        signature = bytes(signature)
        if int.from_bytes(signature[32:], "little") >= _L:
            return False
        if is_small_order(public_key) or is_small_order(signature[:32]):
            return False
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, bytes(message))
        return True
    except InvalidSignature:
        return False
    except Exception:  # malformed key etc.: never raise from a check
        return False
