"""The CPR2 vector coding (docs/PROOFS.md, "Vector coding"): zigzag, then Rice
with k = 3, most significant bit first, zero-padded to a byte.

Decoding is table driven (one lookup per input byte) so that a proof of thousands
of 384-component vectors decodes quickly in pure Python.
"""

from __future__ import annotations

from .errors import VerifyError

MAX_RUN = 31  # a longer run of zero bits is rejected

# z -> int8 byte (two's complement) and int8 byte -> z.
UNZIGZAG = bytes((((z >> 1) ^ -(z & 1)) & 0xFF) for z in range(256))
ZIGZAG = bytes(
    ((((x - 256 if x > 127 else x) << 1) ^ ((x - 256 if x > 127 else x) >> 7)) & 0xFF) for x in range(256)
)

# DFA states: 0..31 = reading the unary part with q zero bits seen;
# 32 + 7*q + o = after the one bit of a component with quotient q, o encoding
# (bits of the remainder read, their value): o = 0 | 1+v (1 bit) | 3+v (2 bits).
_N_STATES = 32 + 32 * 7
_ERR = -1
_TABLE: list | None = None


def _step(state: int, bit: int):
    """One bit: returns (state, emitted z or None), state _ERR on a run > 31."""
    if state < 32:
        if bit:
            return 32 + 7 * state, None
        if state + 1 > MAX_RUN:
            return _ERR, None
        return state + 1, None
    q, o = divmod(state - 32, 7)
    if o == 0:
        r, v = 0, 0
    elif o < 3:
        r, v = 1, o - 1
    else:
        r, v = 2, o - 3
    v = v * 2 + bit
    r += 1
    if r == 3:
        return 0, (q << 3) | v
    return 32 + 7 * q + (1 + v if r == 1 else 3 + v), None


def _build():
    """Builds the flat (state * 256 + byte) -> (next state * 256, emitted
    components) table, composing two nibble steps (fast enough to build on
    first use). States are premultiplied by 256 so the lookup is `st | byte`;
    the error state's row maps every byte back to the error state."""
    global _TABLE
    nib = []
    for s in range(_N_STATES):
        for x in range(16):
            st = s
            outs = []
            for i in range(3, -1, -1):
                st, z = _step(st, (x >> i) & 1)
                if st == _ERR:
                    break
                if z is not None:
                    outs.append(z)
            nib.append((st, tuple(outs)))
    err = _N_STATES * 256
    table = [(err, ())] * ((_N_STATES + 1) * 256)
    for s in range(_N_STATES):
        base = s * 16
        for hi in range(16):
            st1, o1 = nib[base + hi]
            row = s * 256 + hi * 16
            if st1 == _ERR:
                continue
            base2 = st1 * 16
            for lo in range(16):
                st2, o2 = nib[base2 + lo]
                table[row + lo] = (err if st2 == _ERR else st2 * 256, o1 + o2 if o2 else o1)
    _TABLE = table
    return table


_ERR_ROW = _N_STATES * 256
_MAX_BITS_PER_COMPONENT = MAX_RUN + 1 + 3


def decode_vector(buf: bytes, pos: int, end: int, dim: int) -> tuple[bytes, int]:
    """Decodes one coded vector of `dim` components starting at byte `pos`
    (bits may not run past `end`). Returns (int8 bytes, position after the
    padding). Rejects a zero run over 31 bits, truncation and nonzero padding."""
    table = _TABLE or _build()
    if dim == 0:
        return b"", pos
    # No valid coding is longer than 35 bits a component: read at most that.
    stop = min(end, pos + (dim * _MAX_BITS_PER_COMPONENT + 7) // 8)
    outs: list[int] = []
    st = 0
    p = pos
    for b in buf[pos:stop]:
        p += 1
        st, o = table[st | b]
        if o:
            outs += o
            if len(outs) >= dim:
                break
    if st == _ERR_ROW:
        raise VerifyError("coded vector: a run of more than 31 zero bits")
    if len(outs) < dim:
        raise VerifyError("coded vector: bits run past the end of the proof")
    if len(outs) != dim or st >= 32 * 256:
        raise VerifyError("coded vector: nonzero padding bits")
    return bytes(outs).translate(UNZIGZAG), p


def encode_vector(vec: bytes) -> bytes:
    """Codes int8 bytes as the proof does. For tests and provers."""
    bits = []
    for z in vec.translate(ZIGZAG):
        bits.append("0" * (z >> 3) + "1" + format(z & 7, "03b"))
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    return int(s, 2).to_bytes(len(s) // 8, "big") if s else b""

