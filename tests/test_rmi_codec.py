"""The RMI encoding: the fast codecs against the construct schema of record,
every supported type and nesting, and what garbage does to the decoders."""

import contextlib
import dataclasses
import enum
import struct
import tracemalloc
import types
import typing
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rmi import HostID, MalformedArguments, RemoteInterface, call
from proud_twisted.rmi.codec import INT_MAX, INT_MIN, codecFor
from proud_twisted.rmi.schema import argumentsSchema, schemaFor
from proud_twisted.rmi.varint import VARINT_MAX, encodeVarint

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


class Color(enum.IntEnum):
    BLACK = -1
    WHITE = 0
    RED = 300


class Suit(enum.Enum):
    HEARTS = "h"
    SPADES = "s"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: int


@dataclasses.dataclass(frozen=True)
class Unit:
    owner: HostID
    name: str
    at: Point
    path: list[Point]
    tags: dict[str, Suit | None]


class Everything(RemoteInterface, firstID=300):
    def numbers(self, a: int, b: float, c: bool, d: HostID) -> None:
        """Scalars."""

    def texts(self, a: str, b: bytes) -> None:
        """Length-prefixed."""

    def enums(self, a: Color, b: Suit) -> None:
        """Both kinds of enum."""

    def containers(self, a: list[int], b: dict[HostID, list[str]],
                   c: tuple[int, str, bool], d: tuple[bytes, ...]) -> None:
        """Counted and fixed."""

    def optional(self, a: int | None, b: list[str | None] | None) -> None:
        """Present or not."""

    def units(self, a: Unit, b: list[Unit]) -> None:
        """Dataclasses, nested."""

    @call(raises=(KeyError,))
    def query(self, names: list[str]) -> dict[str, Unit]:
        """A call with a result."""

    def nothing(self) -> None:
        """No arguments at all."""


SCHEMAS = {method.name: argumentsSchema([codec.annotation for _, codec in method.parameters])
           for method in Everything.methods}
LEAVES = [int, float, bool, str, bytes, HostID, Color, Suit, Point, Unit]
KEYS = [int, str, bytes, HostID, Color, Suit, bool]


def _extend(inner):
    return st.one_of(
        inner.map(lambda t: list[t]),
        inner.map(lambda t: Optional[t]),   # noqa: UP045 (the typing form is under test)
        inner.map(lambda t: tuple[t, ...]),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: tuple[tuple(ts)]),
        st.tuples(st.sampled_from(KEYS), inner).map(lambda kv: dict[kv[0], kv[1]]),
    )


annotations = st.recursive(st.sampled_from(LEAVES), _extend, max_leaves=6)
floats = st.floats(allow_nan=False)


def valuesOf(annotation):
    """A strategy for values of C{annotation}."""
    simple = {
        int: st.integers(INT_MIN, INT_MAX), HostID: st.integers(0, VARINT_MAX),
        float: floats, bool: st.booleans(), str: st.text(max_size=20),
        bytes: st.binary(max_size=20),
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation is Point:
        return st.builds(Point, floats, simple[int])
    if annotation is Unit:
        return st.builds(Unit, simple[HostID], simple[str], valuesOf(Point),
                         st.lists(valuesOf(Point), max_size=2),
                         st.dictionaries(simple[str], st.none() | valuesOf(Suit), max_size=2))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return st.lists(valuesOf(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(valuesOf(args[0]), valuesOf(args[1]), max_size=3)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(valuesOf(args[0]), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*[valuesOf(a) for a in args])
    if origin is typing.Union or origin is types.UnionType:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | valuesOf(inner)
    raise AssertionError(f"no strategy for {annotation!r}")


def fastBytes(codec, value) -> bytes:
    out = bytearray()
    codec.encode(value, out)
    return bytes(out)


class RoundTripTests(SynchronousTestCase):
    @FAST
    @given(st.data())
    def test_everyTypeAndNestingAgreesWithTheSchemaOfRecord(self, data):
        annotation = data.draw(annotations, "annotation")
        value = data.draw(valuesOf(annotation), "value")
        codec, schema = codecFor(annotation), schemaFor(annotation)
        encoded = fastBytes(codec, value)
        self.assertEqual(encoded, schema.build(value))
        self.assertEqual(codec.decode(encoded, 0), (value, len(encoded)))
        self.assertEqual(schema.parse(encoded), value)
        self.assertGreaterEqual(len(encoded), codec.minSize)
        if codec.maxSize is not None:
            self.assertLessEqual(len(encoded), codec.maxSize)

    @FAST
    @given(st.data())
    def test_whatTheFastDecoderAcceptsTheSchemaReadsAlike(self, data):
        annotation = data.draw(annotations, "annotation")
        garbage = data.draw(st.binary(max_size=40), "garbage")
        codec = codecFor(annotation)
        try:
            value, end = codec.decode(garbage, 0)
        except (IndexError, ValueError, KeyError, struct.error):
            return
        self.assertEqual(schemaFor(annotation).parse(garbage[:end]), value)

    @FAST
    @given(st.data())
    def test_everyMethodsArgumentsRoundTrip(self, data):
        method = data.draw(st.sampled_from(Everything.methods), "method")
        arguments = tuple(data.draw(valuesOf(codec.annotation), name)
                          for name, codec in method.parameters)
        requestID = data.draw(st.integers(0, 0xFFFFFFFF), "requestID")
        withRequest = () if method.result is None else (requestID,)
        message = method.encodeArguments(*withRequest, *arguments)
        self.assertEqual(method.decode(message),
                         (None if method.result is None else requestID, arguments))
        header = bytearray([0xFF])
        encodeVarint(method.id, header)
        schema = SCHEMAS[method.name]
        if withRequest:
            encodeVarint(requestID, header)
        self.assertEqual(message[len(header):], schema.build(list(arguments)))

    @FAST
    @given(st.data())
    def test_everyAnswerRoundTrips(self, data):
        method = data.draw(st.sampled_from([m for m in Everything.methods if m.result]))
        requestID = data.draw(st.integers(0, 0xFFFFFFFF), "requestID")
        result = data.draw(valuesOf(method.result.annotation), "result")
        answer = method.encodeAnswer(requestID, result)
        header = bytearray([0xFF, 0])
        encodeVarint(requestID, header)
        self.assertEqual(answer[:len(header)], header)
        self.assertEqual(method.decodeAnswer(answer, len(header)), result)
        self.assertEqual(answer[len(header):], schemaFor(method.result.annotation).build(result))

    def test_smallIntegersTakeOneByte(self):
        codec = codecFor(int)
        self.assertEqual([len(fastBytes(codec, v)) for v in (-64, 0, 63, 64, -65)],
                         [1, 1, 1, 2, 2])
        self.assertEqual(len(fastBytes(codec, INT_MIN)), 10)
        self.assertRaises(OverflowError, fastBytes, codec, INT_MAX + 1)

    def test_describedSizes(self):
        self.assertEqual(codecFor(Point).describeSize(), "9-18 B")
        self.assertEqual(codecFor(bool).describeSize(), "1 B")
        self.assertEqual(codecFor(list[int]).describeSize(), "1+ B")


class HostileBytesTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(st.sampled_from(Everything.methods), st.binary(max_size=64))
    def test_garbageGivesOnlyTheCleanError(self, method, garbage):
        header = bytearray([0xFF])
        encodeVarint(method.id, header)
        for payload in (garbage, bytes(header) + garbage):
            with contextlib.suppress(MalformedArguments):
                method.decode(payload)

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_everyTruncationGivesTheCleanError(self, data):
        method = data.draw(st.sampled_from(Everything.methods), "method")
        arguments = [data.draw(valuesOf(codec.annotation), name)
                     for name, codec in method.parameters]
        withRequest = () if method.result is None else (1,)
        message = method.encodeArguments(*withRequest, *arguments)
        for end in range(len(message)):
            self.assertRaises(MalformedArguments, method.decode, message[:end])

    def test_aDeclaredSizeNeverAllocatesMoreThanTheMessage(self):
        huge = bytearray()
        encodeVarint(1 << 62, huge)
        cases = []
        for name in ("texts", "containers", "units"):
            method = Everything.method(name)
            header = bytearray([0xFF])
            encodeVarint(method.id, header)
            cases.append((method, bytes(header) + bytes(huge) + b"\x01" * 30))
        # A list that claims as many items as there are bytes left, of an
        # item type larger than a byte.
        units = Everything.method("units")
        header = bytearray([0xFF])
        encodeVarint(units.id, header)
        cases.append((units, bytes(header) + b"\x00\x00" + b"\x00" * 9 + b"\x00\x00"
                      + b"\x7f" + b"\x00" * 127))
        tracemalloc.start()
        try:
            for method, payload in cases:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                self.assertRaises(MalformedArguments, method.decode, payload)
                peak = tracemalloc.get_traced_memory()[1] - before
                self.assertLess(peak, 16 * 1024, method.name)
        finally:
            tracemalloc.stop()

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from(Everything.methods), st.binary(min_size=1, max_size=256))
    def test_decodingGarbageAllocatesInProportionToItsLength(self, method, garbage):
        header = bytearray([0xFF])
        encodeVarint(method.id, header)
        payload = bytes(header) + garbage
        tracemalloc.start()
        try:
            with contextlib.suppress(MalformedArguments):
                method.decode(payload)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # Python objects per byte of message, plus the traceback of the error.
        self.assertLess(peak, 16 * 1024 + 200 * len(payload))
