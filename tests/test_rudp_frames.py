"""The datagram layout: the struct fast path agrees with the construct schema."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.errors import ProtocolError
from proud_twisted.rudp import frames as F

MAX_MESSAGE = 65536
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def fragments(draw):
    ftype = draw(st.sampled_from(
        [F.FT_RELIABLE_FRAGMENT, F.FT_UNRELIABLE_FRAGMENT, F.FT_LATEST_FRAGMENT]))
    payload = draw(st.binary(min_size=1, max_size=64))
    total = draw(st.integers(len(payload), MAX_MESSAGE))
    offset = draw(st.integers(0, total - len(payload)))
    return (ftype, draw(u8), draw(u32), payload, total, offset)


wholes = st.builds(
    lambda ftype, channel, seq, payload: (ftype, channel, seq, payload, len(payload), 0),
    st.sampled_from([F.FT_RELIABLE, F.FT_LATEST]), u8, u32, st.binary(max_size=64))
unreliables = st.builds(
    lambda channel, payload: (F.FT_UNRELIABLE, channel, 0, payload, len(payload), 0),
    u8, st.binary(max_size=64))
acks = st.tuples(u32, u16, u16, st.lists(st.tuples(u16, u16), max_size=20))


@st.composite
def datagrams(draw):
    """A datagram model: (pn, ack, pings, frames) and its frame order."""
    pn = draw(u32)
    ack = draw(st.one_of(st.none(), acks))
    data = draw(st.lists(st.one_of(wholes, unreliables, fragments()), max_size=6))
    pings = draw(st.integers(0, 2))
    items = [("data", f) for f in data] + [("ping", None)] * pings
    items = draw(st.permutations(items))
    if ack is not None:
        items.insert(draw(st.integers(0, len(items))), ("ack", ack))
    return pn, ack, items


def packModel(pn: int, items: list, checksum: bool) -> bytes:
    """Encode with the fast path."""
    parts = []
    for kind, value in items:
        if kind == "ack":
            largest, delay, first, ranges = value
            parts.append(F.packAck(largest, delay, first, ranges))
        elif kind == "ping":
            parts.append(F.PING)
        else:
            ftype, channel, seq, payload, total, offset = value
            if ftype == F.FT_UNRELIABLE:
                parts.append(F.packUnreliable(channel, payload))
            elif ftype & F.FRAGMENT:
                parts.append(F.packFragment(ftype, channel, seq, payload, total, offset))
            else:
                parts.append(F.packWhole(ftype, channel, seq, payload))
    return F.encodeDatagram(pn, parts, checksum)


def buildModel(pn: int, items: list, checksum: bool) -> bytes:
    """Encode with the construct schema."""
    frames = []
    for kind, value in items:
        if kind == "ack":
            largest, delay, first, ranges = value
            body = dict(largest=largest, ackDelay=delay, rangeCount=len(ranges),
                        firstRange=first, ranges=[dict(gap=g, length=n) for g, n in ranges])
            frames.append(dict(type=F.FT_ACK, body=body))
        elif kind == "ping":
            frames.append(dict(type=F.FT_PING, body=None))
        else:
            ftype, channel, seq, payload, total, offset = value
            body = dict(channel=channel, length=len(payload), payload=payload)
            if ftype != F.FT_UNRELIABLE:
                body["seq"] = seq
            if ftype & F.FRAGMENT:
                body.update(total=total, offset=offset)
            frames.append(dict(type=ftype, body=body))
    body = F.DatagramBody.build(dict(packetNumber=pn, frames=frames))
    return F.DatagramSchema.build(dict(
        format=F.VERSION | (F.CHECKSUM_FLAG if checksum else 0),
        checksum=zlib.crc32(body) if checksum else None,
        body=dict(data=body)))


def fromSchema(data: bytes):
    """Parse with construct into the fast parser's result shape."""
    parsed = F.parseWithSchema(data)
    ack = None
    elicits = ping = False
    frames = []
    for frame in parsed.body.value.frames:
        body = frame.body
        if frame.type == F.FT_ACK:
            ack = (body.largest, body.ackDelay, body.firstRange,
                   [(r.gap, r.length) for r in body.ranges])
            continue
        if frame.type == F.FT_PING:
            ping = True
            continue
        elicits = True
        if frame.type == F.FT_UNRELIABLE:
            frames.append((frame.type, body.channel, 0, body.payload, body.length, 0))
        elif frame.type & F.FRAGMENT:
            frames.append((frame.type, body.channel, body.seq, body.payload,
                           body.total, body.offset))
        else:
            frames.append((frame.type, body.channel, body.seq, body.payload, body.length, 0))
    return parsed.body.value.packetNumber, ack, F.ACK_NOW if ping else elicits, frames


def expected(pn: int, ack, items: list):
    data = [value for kind, value in items if kind == "data"]
    kinds = {kind for kind, _ in items}
    return pn, ack, F.ACK_NOW if "ping" in kinds else "data" in kinds, data


class FastPathAgreesWithSchema(SynchronousTestCase):

    @settings(max_examples=200, deadline=None)
    @given(datagrams(), st.booleans())
    def test_packThenParseBoth(self, model, checksum: bool) -> None:
        pn, ack, items = model
        data = packModel(pn, items, checksum)
        want = expected(pn, ack, items)
        self.assertEqual(F.parseDatagram(data, MAX_MESSAGE, checksum), want)
        self.assertEqual(fromSchema(data), want)

    @settings(max_examples=200, deadline=None)
    @given(datagrams(), st.booleans())
    def test_schemaBuildsWhatFastPathPacks(self, model, checksum: bool) -> None:
        pn, _ack, items = model
        self.assertEqual(buildModel(pn, items, checksum), packModel(pn, items, checksum))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=80))
    def test_randomBytes(self, tail: bytes) -> None:
        """Whatever the fast path accepts, the schema reads the same way."""
        data = bytes([F.VERSION]) + tail
        self.assertRaises(ProtocolError, F.parseDatagram, data, MAX_MESSAGE, True)
        try:
            fast = F.parseDatagram(data, MAX_MESSAGE)
        except ProtocolError:
            return
        self.assertEqual(fromSchema(data), fast)

    @settings(max_examples=300, deadline=None)
    @given(datagrams(), st.lists(st.tuples(st.integers(0, 10**6), u8), min_size=1, max_size=4),
           st.integers(0, 8), st.booleans())
    def test_mutated(self, model, flips, cut: int, checksum: bool) -> None:
        pn, _ack, items = model
        original = packModel(pn, items, checksum)
        data = bytearray(original)
        for where, value in flips:
            data[where % len(data)] = value
        data = bytes(data[:len(data) - cut])
        try:
            fast = F.parseDatagram(data, MAX_MESSAGE, checksum)
        except ProtocolError:
            return
        self.assertEqual(fromSchema(data), fast)
        if checksum:
            self.assertEqual(data, original)


class Rejections(SynchronousTestCase):

    def test_version(self) -> None:
        for form in (b"\x02", b"\x82", b"\x00"):
            data = form + bytes(12)
            with self.assertRaisesRegex(ProtocolError, "unsupported datagram format"):
                F.parseDatagram(data, MAX_MESSAGE)
            self.assertRaises(ProtocolError, F.parseWithSchema, data)

    def test_checksum(self) -> None:
        data = F.encodeDatagram(7, [F.PING], True)
        self.assertEqual(F.parseDatagram(data, MAX_MESSAGE, True), (7, None, F.ACK_NOW, []))
        bad = data[:-1] + b"\x03"
        self.assertRaisesRegex(ProtocolError, "checksum", F.parseDatagram, bad, MAX_MESSAGE)
        self.assertRaises(ProtocolError, F.parseWithSchema, bad)
        plain = F.encodeDatagram(7, [F.PING], False)
        self.assertRaisesRegex(ProtocolError, "without checksum", F.parseDatagram, plain,
                               MAX_MESSAGE, True)
        self.assertEqual(F.parseDatagram(plain, MAX_MESSAGE), (7, None, F.ACK_NOW, []))

    def test_short(self) -> None:
        for data in (b"", b"\x01", b"\x01\x00\x00\x00"):
            self.assertRaises(ProtocolError, F.parseDatagram, data, MAX_MESSAGE)

    def test_unknownFrame(self) -> None:
        with self.assertRaisesRegex(ProtocolError, "0x7f"):
            F.parseDatagram(F.encodeDatagram(1, [], False) + b"\x7f", MAX_MESSAGE)
        with self.assertRaises(ProtocolError):
            F.parseWithSchema(F.encodeDatagram(1, [], False) + b"\x7f")

    def test_truncatedPayload(self) -> None:
        data = F.encodeDatagram(1, [], False) + F.packWhole(F.FT_RELIABLE, 0, 0, b"hello")
        self.assertRaises(ProtocolError, F.parseDatagram, data[:-1], MAX_MESSAGE)
        self.assertRaises(ProtocolError, F.parseWithSchema, data[:-1])

    def test_fragmentBounds(self) -> None:
        head = F.encodeDatagram(1, [], False)
        for payload, total, offset in [(b"ab", 3, 2), (b"", 3, 0), (b"a", 70000, 0)]:
            data = head + F.packFragment(F.FT_RELIABLE_FRAGMENT, 0, 0, payload, total, offset)
            self.assertRaises(ProtocolError, F.parseDatagram, data, MAX_MESSAGE)

    def test_twoAcks(self) -> None:
        ack = F.packAck(1, 0, 0, [])
        self.assertRaises(ProtocolError, F.parseDatagram,
                          F.encodeDatagram(1, [], False) + ack + ack, MAX_MESSAGE)

    def test_overheads(self) -> None:
        """Per-datagram and per-frame overhead stay a few bytes."""
        self.assertEqual(F.headerSize(False), 5)
        self.assertEqual(F.headerSize(True), 9)
        self.assertEqual(F.WHOLE_OVERHEAD, 8)
        self.assertEqual(F.UNRELIABLE_OVERHEAD, 4)
        self.assertEqual(F.FRAGMENT_OVERHEAD, 16)
        self.assertEqual(F.ACK_SIZE, 10)


class Expand(SynchronousTestCase):

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, 2**62), st.integers(-(2**31) + 1, 2**31 - 1))
    def test_nearest(self, expected: int, offset: int) -> None:
        actual = expected + offset
        self.assertEqual(F.expand(actual & F.MASK32, expected), actual)
