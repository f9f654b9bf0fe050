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
from zlib import crc32

from construct import (
    Array, Bytes, Check, ConstructError, Error, GreedyRange, If, Int8ub, Int16ub,
    Int32ub, Pass, RawCopy, Struct, Switch, Terminated, this,
)

from proud_twisted.errors import ProtocolError

VERSION = 1
CHECKSUM_FLAG = 0x80
ACK_DELAY_UNIT = 1e-5
MASK32 = 0xFFFFFFFF
ACK_NOW = 2
"""What `parseDatagram` says of a datagram with a PING: acknowledge at once."""

FT_ACK = 0x01
FT_PING = 0x02
FT_RELIABLE = 0x10
FT_UNRELIABLE = 0x11
FT_LATEST = 0x12
FRAGMENT = 0x04
FT_RELIABLE_FRAGMENT = FT_RELIABLE | FRAGMENT
FT_UNRELIABLE_FRAGMENT = FT_UNRELIABLE | FRAGMENT
FT_LATEST_FRAGMENT = FT_LATEST | FRAGMENT
MODE_BITS = 0x03

_HEADER = struct.Struct("!BI")
_CHECKED_HEADER = struct.Struct("!BII")
_PN = struct.Struct("!I")
_ACK = struct.Struct("!BIHBH")
_ACK_RANGE = struct.Struct("!HH")
_WHOLE = struct.Struct("!BBIH")
_UNRELIABLE = struct.Struct("!BBH")
_FRAGMENT = struct.Struct("!BBIHII")

HEADER_SIZE = _HEADER.size
CHECKED_HEADER_SIZE = _CHECKED_HEADER.size
ACK_SIZE = _ACK.size
ACK_RANGE_SIZE = _ACK_RANGE.size
WHOLE_OVERHEAD = _WHOLE.size
UNRELIABLE_OVERHEAD = _UNRELIABLE.size
FRAGMENT_OVERHEAD = _FRAGMENT.size
PING = bytes([FT_PING])

_unpackHeader = _HEADER.unpack_from
_unpackChecked = _CHECKED_HEADER.unpack_from
_packChecked = _CHECKED_HEADER.pack
_packPn = _PN.pack
_unpackAck = _ACK.unpack_from
_unpackAckRange = _ACK_RANGE.unpack_from
_unpackWhole = _WHOLE.unpack_from
_unpackUnreliable = _UNRELIABLE.unpack_from
_unpackFragment = _FRAGMENT.unpack_from
_packHeader = _HEADER.pack
_packWhole = _WHOLE.pack
_packUnreliable = _UNRELIABLE.pack
_packFragment = _FRAGMENT.pack


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


def encodeDatagram(pn: int, frames: list, checksum: bool) -> bytes:
    """The datagram numbered ``pn`` carrying the encoded ``frames``."""
    pn &= MASK32
    if checksum:
        crc = crc32(_packPn(pn))
        for frame in frames:
            crc = crc32(frame, crc)
        return b"".join([_packChecked(VERSION | CHECKSUM_FLAG, crc, pn), *frames])
    return b"".join([_packHeader(VERSION, pn), *frames])


def ackRanges(largest: int, firstRange: int, gaps: list) -> list[tuple[int, int]]:
    """The (low, high) packet number ranges of an ACK frame, highest first
    (``largest`` already expanded; the lowest ``low`` may come out negative)."""
    low = largest - firstRange
    ranges = [(low, largest)]
    for gap, length in gaps:
        high = low - gap - 2
        low = high - length
        ranges.append((low, high))
    return ranges


def packAck(largest: int, delayUnits: int, firstRange: int, ranges: list) -> bytes:
    """An ACK frame; ``ranges`` is a list of (gap, length) pairs."""
    head = _ACK.pack(FT_ACK, largest & MASK32, delayUnits, len(ranges), firstRange)
    if not ranges:
        return head
    pack = _ACK_RANGE.pack
    return head + b"".join([pack(g, n) for g, n in ranges])


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


def parseDatagram(data: bytes, maxMessageLength: int, requireChecksum: bool = False):
    """Split a datagram into ``(packetNumber32, ack, elicitsAck, dataFrames)``.

    ``elicitsAck`` is false, true, or `ACK_NOW` (2: a PING asks for the
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
        _, checksum, pn = _unpackChecked(data, 0)
        if crc32(data[5:]) != checksum:
            raise ProtocolError("datagram checksum mismatch")
        pos = 9
    elif form == VERSION:
        if requireChecksum:
            raise ProtocolError("datagram without checksum refused")
        _, pn = _unpackHeader(data, 0)
        pos = 5
    else:
        raise ProtocolError(f"unsupported datagram format 0x{form:02x}")
    ack = None
    eliciting = ping = False
    frames: list[tuple] = []
    append = frames.append
    while pos < n:
        ftype = data[pos]
        if ftype == FT_RELIABLE or ftype == FT_LATEST:
            if pos + 8 > n:
                raise _truncated("data", pos)
            _, channel, seq, length = _unpackWhole(data, pos)
            pos += 8
            end = pos + length
            if end > n:
                raise _truncated("data", pos)
            append((ftype, channel, seq, data[pos:end], length, 0))
            pos = end
            eliciting = True
        elif ftype == FT_UNRELIABLE:
            if pos + 4 > n:
                raise _truncated("unreliable", pos)
            _, channel, length = _unpackUnreliable(data, pos)
            pos += 4
            end = pos + length
            if end > n:
                raise _truncated("unreliable", pos)
            append((ftype, channel, 0, data[pos:end], length, 0))
            pos = end
            eliciting = True
        elif FT_RELIABLE_FRAGMENT <= ftype <= FT_LATEST_FRAGMENT:
            if pos + 16 > n:
                raise _truncated("fragment", pos)
            _, channel, seq, length, total, offset = _unpackFragment(data, pos)
            pos += 16
            end = pos + length
            if end > n:
                raise _truncated("fragment", pos)
            if length == 0 or offset + length > total or total > maxMessageLength:
                raise ProtocolError(
                    f"bad fragment: {length} bytes at {offset} of {total}"
                    f" (max message {maxMessageLength})")
            append((ftype, channel, seq, data[pos:end], total, offset))
            pos = end
            eliciting = True
        elif ftype == FT_ACK:
            if ack is not None:
                raise ProtocolError("two ACK frames in one datagram")
            if pos + 10 > n:
                raise _truncated("ACK", pos)
            _, largest, delay, count, first = _unpackAck(data, pos)
            pos += 10
            end = pos + 4 * count
            if end > n:
                raise _truncated("ACK", pos)
            unpack = _unpackAckRange
            ack = (largest, delay, first, [unpack(data, p) for p in range(pos, end, 4)])
            pos = end
        elif ftype == FT_PING:
            pos += 1
            ping = True
        else:
            raise ProtocolError(f"unknown frame type 0x{ftype:02x} at byte {pos}")
    return pn, ack, ACK_NOW if ping else eliciting, frames
