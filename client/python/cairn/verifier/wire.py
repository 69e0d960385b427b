"""Bounds-checked big-endian reading and writing of the Cairn wire formats.

Every length read from untrusted bytes is checked against the bytes that remain
before anything is sliced or allocated, so a decoder built on `Reader` cannot be
made to allocate more than its input or to raise anything but `VerifyError`.
"""

from __future__ import annotations

from .errors import VerifyError


class Reader:
    """A cursor over a byte string that raises `VerifyError` on any over-read."""

    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, buf: bytes, what: str = "input", pos: int = 0, end: int | None = None):
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise VerifyError(f"{what}: expected bytes, got {type(buf).__name__}")
        self.buf = bytes(buf)
        self.pos = pos
        self.end = len(self.buf) if end is None else end
        self.what = what

    def remaining(self) -> int:
        """Bytes left before the end; what every length field is checked against."""
        return self.end - self.pos

    def take(self, n: int, field: str = "field") -> bytes:
        """The next `n` bytes; rejects a read past the end."""
        if n < 0 or n > self.end - self.pos:
            raise VerifyError(f"{self.what}: truncated ({field}: need {n} bytes, {self.end - self.pos} left)")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, field: str = "u8") -> int:
        """One unsigned byte."""
        if self.pos >= self.end:
            raise VerifyError(f"{self.what}: truncated ({field})")
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def u16(self, field: str = "u16") -> int:
        """u16be."""
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str = "u32") -> int:
        """u32be."""
        return int.from_bytes(self.take(4, field), "big")

    def u64(self, field: str = "u64") -> int:
        """u64be."""
        return int.from_bytes(self.take(8, field), "big")

    def count(self, field: str, item_size: int, cap: int | None = None) -> int:
        """A u32be item count, checked against `cap` and against the bytes left
        (each item at least `item_size` bytes) before the caller allocates anything."""
        n = self.u32(field)
        if cap is not None and n > cap:
            raise VerifyError(f"{self.what}: {field} {n} exceeds the cap {cap}")
        if item_size > 0 and n > (self.end - self.pos) // item_size:
            raise VerifyError(f"{self.what}: {field} {n} exceeds the bytes left")
        return n

    def expect_end(self) -> None:
        """Rejects trailing bytes."""
        if self.pos != self.end:
            raise VerifyError(f"{self.what}: {self.end - self.pos} trailing bytes")


def u16be(x: int) -> bytes:
    """2-byte big-endian encoding."""
    return x.to_bytes(2, "big")


def u32be(x: int) -> bytes:
    """4-byte big-endian encoding."""
    return x.to_bytes(4, "big")


def u64be(x: int) -> bytes:
    """8-byte big-endian encoding."""
    return x.to_bytes(8, "big")
