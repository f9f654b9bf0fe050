"""Datagram layout of the reliable UDP session.

`DatagramSchema` (construct) is the declaration, for documentation and tests;
the functions below are the hot path, built on `struct` and checked against the
schema by the tests.  All integers are big-endian::

    datagram  = format:u8  [checksum:u32]  packetNumber:u32  frame*
    ACK       = 0x01 largest:u32 ackDelay:u16 rangeCount:u8 firstRange:u16
                     (gap:u16 length:u16) * rangeCount
    PING      = 0x02   (elicits an acknowledgement without delay)
    RELIABLE  = 0x10 channel:u8 seq:u32 length:u16 payload
    UNRELIABLE= 0x11 channel:u8 length:u16 payload
    LATEST    = 0x12 channel:u8 seq:u32 length:u16 payload
    fragments = 0x14 / 0x15 / 0x16 (the above | 0x04)
                     channel:u8 seq:u32 length:u16 total:u32 offset:u32 payload

``format`` holds the layout version (1) in its low 7 bits; its top bit says a
CRC-32 of everything after the checksum field follows (turned off where an
AEAD layer already protects each datagram).  Packet numbers and sequence
numbers are the low 32 bits of 64-bit counters; the receiver expands them
(`expand`).  The ACK's first range covers ``largest - firstRange ..
largest``; each further range lies ``gap + 1`` unacknowledged numbers below
the previous one and holds ``length + 1`` numbers.  ``ackDelay`` counts
`ACK_DELAY_UNIT` seconds.  A RELIABLE fragment's seq numbers the fragment
(fragments of one message are consecutive); an UNRELIABLE fragment's seq
names its message; LATEST seqs count messages per channel.
"""

from __future__ import annotations

import struct
from typing import Final
from zlib import crc32

from construct import (
    Array,
    Bytes,
    Check,
    ConstructError,
    Error,
    GreedyRange,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Pass,
    RawCopy,
    Struct,
    Switch,
    Terminated,
    this,
)

from proud_twisted.errors import ProtocolError

VERSION: Final = 1
CHECKSUM_FLAG: Final = 0x80
ACK_DELAY_UNIT: Final = 1e-5
MASK32: Final = 0xFFFFFFFF
ACK_NOW: Final = 2
"""What `parseDatagram` says of a datagram with a PING: acknowledge at once."""

FT_ACK: Final = 0x01
FT_PING: Final = 0x02
FT_RELIABLE: Final = 0x10
FT_UNRELIABLE: Final = 0x11
FT_LATEST: Final = 0x12
FRAGMENT: Final = 0x04
FT_RELIABLE_FRAGMENT: Final = FT_RELIABLE | FRAGMENT
FT_UNRELIABLE_FRAGMENT: Final = FT_UNRELIABLE | FRAGMENT
FT_LATEST_FRAGMENT: Final = FT_LATEST | FRAGMENT
MODE_BITS: Final = 0x03

_HEADER: Final = struct.Struct("!BI")
_CHECKED_HEADER: Final = struct.Struct("!BII")
_PN: Final = struct.Struct("!I")
_ACK: Final = struct.Struct("!BIHBH")
_ACK_RANGE: Final = struct.Struct("!HH")
_WHOLE: Final = struct.Struct("!BBIH")
_UNRELIABLE: Final = struct.Struct("!BBH")
_FRAGMENT: Final = struct.Struct("!BBIHII")

HEADER_SIZE: Final = _HEADER.size
CHECKED_HEADER_SIZE: Final = _CHECKED_HEADER.size
ACK_SIZE: Final = _ACK.size
ACK_RANGE_SIZE: Final = _ACK_RANGE.size
WHOLE_OVERHEAD: Final = _WHOLE.size
UNRELIABLE_OVERHEAD: Final = _UNRELIABLE.size
FRAGMENT_OVERHEAD: Final = _FRAGMENT.size
PING: Final = bytes([FT_PING])

AckFrame = tuple[int, int, int, list[tuple[int, int]]]
"""A parsed ACK: ``(largest32, delayUnits, firstRange, [(gap, length), ...])``."""
DataFrame = tuple[int, int, int, bytes, int, int]
"""A parsed data frame: ``(type, channel, seq32, payload, total, offset)``."""

_packChecked: Final = _CHECKED_HEADER.pack
_packAck: Final = _ACK.pack
_packAckRange: Final = _ACK_RANGE.pack
_packPn: Final = _PN.pack
_packHeader: Final = _HEADER.pack
_packWhole: Final = _WHOLE.pack
_packUnreliable: Final = _UNRELIABLE.pack
_packFragment: Final = _FRAGMENT.pack


_AckRange = Struct("gap" / Int16ub, "length" / Int16ub)
_Whole = Struct(
    "channel" / Int8ub, "seq" / Int32ub, "length" / Int16ub,
    "payload" / Bytes(this.length),
)
_Fragment = Struct(
    "channel" / Int8ub, "seq" / Int32ub, "length" / Int16ub,
    "total" / Int32ub, "offset" / Int32ub, "payload" / Bytes(this.length),
)
Frame = Struct(
    "type" / Int8ub,
    "body" / Switch(this.type, {
        FT_ACK: Struct(
            "largest" / Int32ub, "ackDelay" / Int16ub, "rangeCount" / Int8ub,
            "firstRange" / Int16ub, "ranges" / Array(this.rangeCount, _AckRange),
        ),
        FT_PING: Pass,
        FT_RELIABLE: _Whole,
        FT_UNRELIABLE: Struct(
            "channel" / Int8ub, "length" / Int16ub, "payload" / Bytes(this.length),
        ),
        FT_LATEST: _Whole,
        FT_RELIABLE_FRAGMENT: _Fragment,
        FT_UNRELIABLE_FRAGMENT: _Fragment,
        FT_LATEST_FRAGMENT: _Fragment,
    }, default=Error),
)
DatagramBody = Struct(
    "packetNumber" / Int32ub,
    "frames" / GreedyRange(Frame),
    Terminated,
)
DatagramSchema = Struct(
    "format" / Int8ub,
    Check(lambda ctx: ctx.format & ~CHECKSUM_FLAG == VERSION),
    "checksum" / If(this.format & CHECKSUM_FLAG, Int32ub),
    "body" / RawCopy(DatagramBody),
    Check(lambda ctx: ctx.checksum is None or ctx.checksum == crc32(ctx.body.data)),
)


def parseWithSchema(data: bytes):
    """Parse with `DatagramSchema` (slow; tests and tools only)."""
    try:
        return DatagramSchema.parse(data)
    except ConstructError as e:
        raise ProtocolError(f"malformed datagram: {e}") from None


def expand(truncated: int, expected: int) -> int:
    """The 64-bit number nearest to ``expected`` whose low 32 bits are ``truncated``."""
    diff = (truncated - expected) & MASK32
    if diff >= 0x80000000:
        diff -= 0x100000000
    return expected + diff


def headerSize(checksum: bool) -> int:
    return CHECKED_HEADER_SIZE if checksum else HEADER_SIZE


def encodeDatagram(pn: int, frames: list[bytes], checksum: bool) -> bytes:
    """The datagram numbered ``pn`` carrying the encoded ``frames``."""
    pn &= MASK32
    if checksum:
        crc = crc32(_packPn(pn))
        for frame in frames:
            crc = crc32(frame, crc)
        return b"".join([_packChecked(VERSION | CHECKSUM_FLAG, crc, pn), *frames])
    return b"".join([_packHeader(VERSION, pn), *frames])


def ackRanges(largest: int, firstRange: int,
              gaps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (low, high) packet number ranges of an ACK frame, highest first
    (``largest`` already expanded; the lowest ``low`` may come out negative)."""
    low = largest - firstRange
    ranges = [(low, largest)]
    for gap, length in gaps:
        high = low - gap - 2
        low = high - length
        ranges.append((low, high))
    return ranges


def packAck(largest: int, delayUnits: int, firstRange: int,
            ranges: list[tuple[int, int]]) -> bytes:
    """An ACK frame; ``ranges`` is a list of (gap, length) pairs."""
    head = _packAck(FT_ACK, largest & MASK32, delayUnits, len(ranges), firstRange)
    if not ranges:
        return head
    return head + b"".join([_packAckRange(g, n) for g, n in ranges])


def packWhole(ftype: int, channel: int, seq: int, payload: bytes) -> bytes:
    """A RELIABLE or LATEST frame carrying a whole message."""
    return _packWhole(ftype, channel, seq & MASK32, len(payload)) + payload


def packUnreliable(channel: int, payload: bytes) -> bytes:
    return _packUnreliable(FT_UNRELIABLE, channel, len(payload)) + payload


def packFragment(ftype: int, channel: int, seq: int, payload: bytes,
                 total: int, offset: int) -> bytes:
    return _packFragment(ftype, channel, seq & MASK32, len(payload), total, offset) + payload


def _truncated(what: str, pos: int) -> ProtocolError:
    return ProtocolError(f"datagram truncated inside {what} frame at byte {pos}")


# Big-endian reads by byte indexing: compiled, these are a few machine
# instructions each, where a struct call boxes every field it returns.

def _u16(data: bytes, pos: int) -> int:
    return data[pos] << 8 | data[pos + 1]


def _u32(data: bytes, pos: int) -> int:
    return data[pos] << 24 | data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3]


def parseDatagram(
    data: bytes, maxMessageLength: int, requireChecksum: bool = False,
) -> tuple[int, AckFrame | None, int, list[DataFrame]]:
    """Split a datagram into ``(packetNumber32, ack, elicitsAck, dataFrames)``.

    ``elicitsAck`` is 0, 1, or `ACK_NOW` (2: a PING asks for the
    acknowledgement without delay).
    ``ack`` is None or ``(largest32, delayUnits, firstRange, [(gap, length)...])``;
    each data frame is ``(type, channel, seq32, payload, total, offset)`` (a
    whole message has ``total == len(payload)`` and ``offset == 0``).  Raises
    `ProtocolError` on anything malformed; touches no state.
    """
    n = len(data)
    if n < 5:
        raise ProtocolError(f"datagram of {n} bytes is shorter than its header")
    form = data[0]
    if form == VERSION | CHECKSUM_FLAG:
        if n < 9:
            raise ProtocolError(f"datagram of {n} bytes is shorter than its header")
        if crc32(data[5:]) != _u32(data, 1):
            raise ProtocolError("datagram checksum mismatch")
        pn = _u32(data, 5)
        pos = 9
    elif form == VERSION:
        if requireChecksum:
            raise ProtocolError("datagram without checksum refused")
        pn = _u32(data, 1)
        pos = 5
    else:
        raise ProtocolError(f"unsupported datagram format 0x{form:02x}")
    ack: AckFrame | None = None
    eliciting = 0
    ping = False
    frames: list[DataFrame] = []
    while pos < n:
        ftype = data[pos]
        if ftype == FT_RELIABLE or ftype == FT_LATEST:
            if pos + 8 > n:
                raise _truncated("data", pos)
            length = _u16(data, pos + 6)
            start = pos + 8
            end = start + length
            if end > n:
                raise _truncated("data", start)
            frames.append((ftype, data[pos + 1], _u32(data, pos + 2), data[start:end], length, 0))
            pos = end
            eliciting = 1
        elif ftype == FT_UNRELIABLE:
            if pos + 4 > n:
                raise _truncated("unreliable", pos)
            length = _u16(data, pos + 2)
            start = pos + 4
            end = start + length
            if end > n:
                raise _truncated("unreliable", start)
            frames.append((ftype, data[pos + 1], 0, data[start:end], length, 0))
            pos = end
            eliciting = 1
        elif FT_RELIABLE_FRAGMENT <= ftype <= FT_LATEST_FRAGMENT:
            if pos + 16 > n:
                raise _truncated("fragment", pos)
            length = _u16(data, pos + 6)
            total = _u32(data, pos + 8)
            offset = _u32(data, pos + 12)
            start = pos + 16
            end = start + length
            if end > n:
                raise _truncated("fragment", start)
            if length == 0 or offset + length > total or total > maxMessageLength:
                raise ProtocolError(
                    f"bad fragment: {length} bytes at {offset} of {total}"
                    f" (max message {maxMessageLength})")
            frames.append((ftype, data[pos + 1], _u32(data, pos + 2), data[start:end],
                           total, offset))
            pos = end
            eliciting = 1
        elif ftype == FT_ACK:
            if ack is not None:
                raise ProtocolError("two ACK frames in one datagram")
            if pos + 10 > n:
                raise _truncated("ACK", pos)
            count = data[pos + 7]
            start = pos + 10
            end = start + 4 * count
            if end > n:
                raise _truncated("ACK", start)
            ranges: list[tuple[int, int]] = []
            for p in range(start, end, 4):
                ranges.append((_u16(data, p), _u16(data, p + 2)))
            ack = (_u32(data, pos + 1), _u16(data, pos + 5), _u16(data, pos + 8), ranges)
            pos = end
        elif ftype == FT_PING:
            pos += 1
            ping = True
        else:
            raise ProtocolError(f"unknown frame type 0x{ftype:02x} at byte {pos}")
    return pn, ack, ACK_NOW if ping else eliciting, frames
