"""Unsigned LEB128 varints of at most 64 bits, the RMI encoding's integers
(pure; compiled with mypyc where it can be: every call and answer reads
and writes a few).

The one- and two-byte values (method IDs, request IDs and HostIDs below
16,384, nearly all) take the first lines of each function.
"""

from __future__ import annotations

VARINT_MAX = (1 << 64) - 1


def encodeVarint(n: int, out: bytearray) -> None:
    """Append C{n} (0 <= n < 2**64) as an unsigned LEB128 varint."""
    if 0 <= n < 0x80:
        out.append(n)
        return
    if 0 <= n < 0x4000:
        out.append((n & 0x7F) | 0x80)
        out.append(n >> 7)
        return
    if 0 <= n < 0x200000:
        out.append((n & 0x7F) | 0x80)
        out.append(((n >> 7) & 0x7F) | 0x80)
        out.append(n >> 14)
        return
    if not 0 <= n <= VARINT_MAX:
        raise OverflowError(f"{n} is outside 0..2**64-1")
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def decodeVarint(data: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint of at most ten bytes (64 bits)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    b2 = data[pos + 1]
    if b2 < 0x80:
        return (b & 0x7F) | (b2 << 7), pos + 2
    b3 = data[pos + 2]
    if b3 < 0x80:
        return (b & 0x7F) | ((b2 & 0x7F) << 7) | (b3 << 14), pos + 3
    result = (b & 0x7F) | ((b2 & 0x7F) << 7) | ((b3 & 0x7F) << 14)
    shift = 21
    pos += 3
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result > VARINT_MAX:
                raise ValueError("varint above 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")
