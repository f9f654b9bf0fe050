"""Wire schemas: round trips, garbage, and the fast path against construct."""

import contextlib
import ipaddress
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._crypto.datagrams import CLIENT_DATAGRAM_HEADER, SERVER_DATAGRAM_HEADER
from proud_twisted.errors import MessageTooLong, ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire._schema import buildWith, parseWith
from proud_twisted.wire.addresses import addressFromWire, addressToWire, plainAddress
from proud_twisted.wire.datagrams import (
    BODIES as UDP_BODIES,
)
from proud_twisted.wire.datagrams import (
    FAST_CODECS as UDP_FAST,
)
from proud_twisted.wire.datagrams import (
    Datagram,
    decodeDatagram,
    decodePing,
    encodeDatagram,
    encodePong,
)
from proud_twisted.wire.framing import FrameDecoder, encodeFrame
from proud_twisted.wire.handshake import (
    BODIES as HANDSHAKE_BODIES,
)
from proud_twisted.wire.handshake import (
    FAST_CODECS as HANDSHAKE_FAST,
)
from proud_twisted.wire.handshake import (
    HandshakeMessage,
    decodeHandshake,
    encodeHandshake,
)
from proud_twisted.wire.messages import (
    BODIES as TCP_BODIES,
)
from proud_twisted.wire.messages import (
    FAST_CODECS as TCP_FAST,
)
from proud_twisted.wire.messages import (
    TcpMessage,
    decodeMessage,
    encodeMessage,
)

hostIDs = st.integers(0, 2**32 - 1)
u32 = st.integers(0, 2**32 - 1)
blobs = st.binary(max_size=300)
addresses = st.one_of(
    st.none(),
    st.tuples(st.ip_addresses().map(str), st.integers(1, 65535)))
wireAddresses = addresses.map(addressToWire)
floats = st.floats(allow_nan=False, allow_infinity=False)


def _isIPv4Mapped(host: str) -> bool:
    return getattr(ipaddress.ip_address(host), "ipv4_mapped", None) is not None

FIELDS = {
    "wireVersion": st.integers(0, 255), "protocolVersion": st.binary(min_size=16, max_size=16),
    "userData": blobs, "rmiFingerprints": blobs,
    "hostID": hostIDs, "udpToken": st.binary(min_size=16, max_size=16),
    "token": st.binary(min_size=16, max_size=16), "udpPort": st.integers(0, 65535),
    "challenge": st.binary(min_size=16, max_size=16),
    "clientTimeoutMs": u32, "reply": blobs, "reason": st.integers(0, 255),
    "groupID": hostIDs, "memberID": hostIDs, "memberCount": u32, "ackID": u32,
    "ackIDs": st.lists(u32, max_size=40),
    "version": st.integers(0, 255), "ephemeral": st.binary(min_size=32, max_size=32),
    "random": st.binary(min_size=32, max_size=32),
    "identity": st.binary(min_size=32, max_size=32),
    "signature": st.binary(min_size=64, max_size=64),
    "confirmation": st.binary(min_size=48, max_size=48),
    "udpAddress": wireAddresses, "lanAddress": wireAddresses, "address": wireAddresses,
    "message": blobs, "peerID": hostIDs, "payload": blobs, "flags": st.integers(0, 255),
    "targets": st.lists(hostIDs, max_size=20), "sender": hostIDs, "timestamp": floats,
    "rtt": floats, "serverTime": floats,
    "comment": blobs, "padding": blobs, "epoch": u32,
    "pairSecret": st.binary(min_size=32, max_size=32),
    "policy": st.integers(0, 255), "direct": st.booleans(),
    "entries": st.lists(st.fixed_dictionaries({"target": hostIDs, "frame": blobs}), max_size=8),
    "received": st.integers(0, 2**64 - 1), "windowMs": u32, "resumeSecret": blobs,
    "nonce": st.binary(min_size=16, max_size=16), "proof": st.binary(min_size=32, max_size=32),
    "host": blobs, "tcpPort": st.integers(0, 65535), "serverID": blobs,
}


def messages(bodies):
    """Any message of the given schema table, as (kind, fields)."""
    choices = []
    for kind, struct in sorted(bodies.items()):
        names = [sub.name for sub in struct.subcons]
        choices.append(st.tuples(st.just(kind), st.fixed_dictionaries(
            {name: FIELDS[name] for name in names})))
    return st.one_of(choices)


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class RoundTripTests(SynchronousTestCase):
    @settings(max_examples=400)
    @given(messages(TCP_BODIES))
    def test_everyTcpMessageRoundTrips(self, message):
        kind, fields = message
        decoded = decodeMessage(encodeMessage(kind, **fields))
        self.assertEqual((decoded[0], plain(decoded[1])), (kind, plain(fields)))

    @settings(max_examples=300)
    @given(messages(UDP_BODIES))
    def test_everyDatagramRoundTrips(self, message):
        kind, fields = message
        decoded = decodeDatagram(encodeDatagram(kind, **fields))
        self.assertEqual((decoded[0], plain(decoded[1])), (kind, plain(fields)))

    @given(addresses.filter(lambda a: a is None or not _isIPv4Mapped(a[0])))
    def test_addressRoundTrip(self, address):
        self.assertEqual(addressFromWire(_Obj(**addressToWire(address))), address)

    def test_plainAddressUnmapsOnlyIPv4MappedHosts(self):
        for address, plain in [(None, None), (("192.0.2.1", 5), ("192.0.2.1", 5)),
                               (("::1", 5), ("::1", 5)), (("2001:db8::1", 5), ("2001:db8::1", 5)),
                               (("::ffff:192.0.2.1", 5), ("192.0.2.1", 5)),
                               (("::ffff:c000:201", 5), ("192.0.2.1", 5)),
                               (("not:an:ip", 5), ("not:an:ip", 5))]:
            self.assertEqual(plainAddress(address), plain)

    @given(st.ip_addresses(v=4), st.integers(1, 65535))
    def test_ipv4MappedAddressesTravelAsIPv4(self, ipv4, port):
        """A dual-stack server sees IPv4 clients as ::ffff:a.b.c.d; their
        peers, on IPv4 sockets, can only send to a.b.c.d."""
        for mapped in (f"::ffff:{ipv4}", str(ipaddress.IPv6Address(f"::ffff:{ipv4}"))):
            self.assertEqual(addressFromWire(_Obj(**addressToWire((mapped, port)))),
                             (str(ipv4), port))

    def test_addressThatIsNoIpAddressIsAProtocolError(self):
        """A hostname would be looked up by a later send; port 0 reaches nobody."""
        for host, port in (("localhost", 1), ("game.example", 33333), ("256.0.0.1", 1),
                           ("", 5), ("10.0.0.1", 0)):
            self.assertRaises(ProtocolError, addressFromWire,
                              _Obj(**addressToWire((host, port))))
        self.assertEqual(addressFromWire(_Obj(**addressToWire(("::1", 7)))), ("::1", 7))
        self.assertEqual(addressFromWire(_Obj(**addressToWire(("fe80::1%eth0", 7)))),
                         ("fe80::1%eth0", 7))
        for host in ("01.2.3.4", "1.2.3.4\x00", " 1.2.3.4", "fe80::1%"):
            self.assertRaises(ProtocolError, addressFromWire, _Obj(host=host, port=1))

    def test_unencodableFieldIsProtocolError(self):
        self.assertRaises(ProtocolError, encodeMessage, "MEMBER_JOIN_ACK", ackIDs=[-1])
        self.assertRaises(ProtocolError, encodeMessage, "MEMBER_JOIN_ACK", ackIDs=[2 ** 32])


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _parsers():
    return [decodeMessage, decodeDatagram, relay.decodeSessionFrame, relay.decodeTcpRelayBundle,
            relay.decodeUdpRelayBundle, relay.decodeTcpRelayRequest,
            relay.decodeTcpRelayed, relay.decodeTcpUserMessage, relay.decodeUdpSender,
            relay.decodeUdpRelay]


class GarbageTests(SynchronousTestCase):
    def assertOnlyProtocolError(self, data):
        for parse in _parsers():
            with contextlib.suppress(ProtocolError):
                parse(data)

    @settings(max_examples=1500)
    @given(st.binary(max_size=200))
    def test_randomBytes(self, data):
        self.assertOnlyProtocolError(data)

    @settings(max_examples=1000)
    @given(messages(TCP_BODIES) | messages(UDP_BODIES), st.data())
    def test_mutatedValidMessages(self, message, data):
        kind, fields = message
        encoded = (encodeMessage(kind, **fields) if kind in TCP_BODIES
                   else encodeDatagram(kind, **fields))
        self.assertOnlyProtocolError(_mutated(encoded, data, least=1, most=4))

    def test_unknownTypeRejected(self):
        self.assertRaises(ProtocolError, decodeMessage, b"\xee")
        self.assertRaises(ProtocolError, decodeDatagram, b"\x01\xee")

    def test_wrongWireVersionRejected(self):
        datagram = encodeDatagram("UDP_PONG", timestamp=1.0, serverTime=2.0)
        self.assertRaises(ProtocolError, decodeDatagram, b"\x09" + datagram[1:])

    def test_trailingBytesRejected(self):
        self.assertRaises(ProtocolError, decodeMessage,
                          encodeMessage("MEMBER_JOIN_ACK", ackIDs=[1]) + b"x")


class FastPathTests(SynchronousTestCase):
    """The struct fast path writes and reads the bytes construct declares."""

    @given(st.lists(hostIDs, max_size=30), st.integers(0, 255), blobs)
    def test_tcpRelayRequest(self, targets, flags, payload):
        fast = relay.encodeTcpRelayRequest(targets, flags, payload)
        self.assertEqual(fast, encodeMessage("RELAY_REQUEST", flags=flags, targets=targets,
                                             payload=payload))
        self.assertEqual(relay.decodeTcpRelayRequest(fast), (flags, tuple(targets), payload))

    @given(hostIDs, st.integers(0, 255), blobs)
    def test_tcpRelayedAndUserMessage(self, sender, flags, payload):
        fast = relay.encodeTcpRelayed(sender, flags, payload)
        self.assertEqual(fast, encodeMessage("RELAYED", sender=sender, flags=flags,
                                             payload=payload))
        self.assertEqual(relay.decodeTcpRelayed(fast), (sender, flags, payload))
        user = relay.encodeTcpUserMessage(flags, payload)
        self.assertEqual(user, encodeMessage("USER_MESSAGE", flags=flags, payload=payload))
        self.assertEqual(relay.decodeTcpUserMessage(user), (flags, payload))

    @given(hostIDs, st.integers(0, 255), blobs)
    def test_udpUserAndRelayed(self, host, flags, payload):
        user = relay.encodeUdpUser(host, flags, payload)
        self.assertEqual(user, encodeDatagram("UDP_USER", hostID=host, flags=flags,
                                              payload=payload))
        relayed = relay.encodeUdpRelayed(host, flags, payload)
        self.assertEqual(relayed, encodeDatagram("UDP_RELAYED", sender=host, flags=flags,
                                                 payload=payload))
        peerFrame = relay.encodeUdpPeerFrame(host, flags, payload)
        self.assertEqual(peerFrame, encodeDatagram("UDP_PEER_FRAME", sender=host, flags=flags,
                                                   payload=payload))
        self.assertEqual(relay.decodeUdpSender(peerFrame), (host, flags, payload))
        self.assertEqual(relay.decodeUdpSender(user), (host, flags, payload))
        self.assertEqual(relay.decodeUdpSender(relayed), (host, flags, payload))

    @given(hostIDs, st.lists(hostIDs, max_size=30), st.integers(0, 255), blobs)
    def test_udpRelay(self, host, targets, flags, payload):
        fast = relay.encodeUdpRelay(host, targets, flags, payload)
        self.assertEqual(fast, encodeDatagram("UDP_RELAY", hostID=host, flags=flags,
                                              targets=targets, payload=payload))
        self.assertEqual(relay.decodeUdpRelay(fast), (host, flags, tuple(targets), payload))


    @given(hostIDs, st.integers(0, 255), st.lists(st.tuples(hostIDs, blobs), max_size=8))
    def test_relayBundles(self, host, flags, entries):
        asDicts = [{"target": t, "frame": f} for t, f in entries]
        tcp = relay.encodeTcpRelayBundle(flags, entries)
        self.assertEqual(tcp, encodeMessage("RELAY_BUNDLE", flags=flags, entries=asDicts))
        self.assertEqual(relay.decodeTcpRelayBundle(tcp), (flags, entries))
        udp = relay.encodeUdpRelayBundle(host, flags, entries)
        self.assertEqual(udp, encodeDatagram("UDP_RELAY_BUNDLE", hostID=host, flags=flags,
                                             entries=asDicts))
        self.assertEqual(relay.decodeUdpRelayBundle(udp), (host, flags, entries))


class FramingTests(SynchronousTestCase):
    @given(st.lists(st.binary(min_size=1, max_size=500), max_size=20), st.data())
    def test_framesSurviveAnySplit(self, bodies, data):
        stream = b"".join(encodeFrame(b) for b in bodies)
        decoder = FrameDecoder(1000)
        out = []
        position = 0
        while position < len(stream):
            step = data.draw(st.integers(1, max(1, len(stream) - position)))
            out += decoder.feed(stream[position:position + step])
            position += step
        self.assertEqual(out, bodies)
        self.assertEqual(decoder.bufferedBytes, 0)

    def test_oversizedFrameRejectedBeforeBuffering(self):
        decoder = FrameDecoder(100)
        self.assertRaises(MessageTooLong, decoder.feed, b"\x00\x00\x00\x65")
        self.assertEqual(decoder.bufferedBytes, 4)

    def test_emptyFrameRejected(self):
        self.assertRaises(ProtocolError, FrameDecoder(100).feed, b"\x00\x00\x00\x00")


def _schemaParse(fmt, data, what):
    """construct's reading of C{data}: ("ok", kind, fields) or ("error",)."""
    try:
        parsed = parseWith(fmt, data, what)
    except ProtocolError:
        return ("error",)
    message = parsed.message if "message" in parsed else parsed
    return ("ok", str(message.type), plain(message.body))


def _fastParse(decode, data):
    try:
        kind, fields = decode(data)
    except ProtocolError:
        return ("error",)
    return ("ok", kind, plain(fields))


def _mutated(encoded: bytes, data, least: int = 0, most: int = 3) -> bytes:
    """C{encoded} with C{least} to C{most} bits flipped, cuts or insertions."""
    encoded = bytearray(encoded)
    for _ in range(data.draw(st.integers(least, most))):
        position = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(encoded):
            encoded[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del encoded[position:]
        else:
            encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    return bytes(encoded)


def _nanSafe(value):
    """C{value} with each NaN float spelled "nan" (a mutated timestamp may be
    NaN, and NaN equals nothing, not even the same NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nanSafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map(_nanSafe, value))
    return value


class FastCodecTests(SynchronousTestCase):
    """The codecs made from the declarations agree with construct byte for byte."""

    def test_theGroupMessagesHaveOne(self):
        self.assertLessEqual({"MEMBER_JOIN", "MEMBER_JOIN_ACK", "MEMBER_LEAVE", "PEER_PAIR",
                              "PEER_ADDRESSES"}, set(TCP_FAST))
        self.assertLessEqual({"UDP_PING", "UDP_PONG", "UDP_HELLO"}, set(UDP_FAST))

    @settings(max_examples=600)
    @given(messages({k: TCP_BODIES[k] for k in TCP_FAST}), st.data())
    def test_tcp(self, message, data):
        kind, fields = message
        built = buildWith(TcpMessage, {"type": kind, "body": fields}, kind)
        self.assertEqual(encodeMessage(kind, **fields), built)
        for sample in (built, _mutated(built, data)):
            self.assertEqual(_nanSafe(_fastParse(decodeMessage, sample)),
                             _nanSafe(_schemaParse(TcpMessage, sample, "TCP message")))

    @settings(max_examples=300)
    @given(messages(HANDSHAKE_BODIES), st.data())
    def test_handshake(self, message, data):
        kind, fields = message
        self.assertEqual(set(HANDSHAKE_FAST), set(HANDSHAKE_BODIES))
        built = buildWith(HandshakeMessage, {"type": kind, "body": fields}, kind)
        self.assertEqual(encodeHandshake(kind, **fields), built)
        for sample in (built, _mutated(built, data)):
            self.assertEqual(_fastParse(decodeHandshake, sample),
                             _schemaParse(HandshakeMessage, sample, "handshake message"))

    @settings(max_examples=400)
    @given(messages({k: UDP_BODIES[k] for k in UDP_FAST}), st.data())
    def test_udp(self, message, data):
        kind, fields = message
        built = buildWith(Datagram, {"message": {"type": kind, "body": fields}}, kind)
        self.assertEqual(encodeDatagram(kind, **fields), built)
        for sample in (built, _mutated(built, data)):
            self.assertEqual(_nanSafe(_fastParse(decodeDatagram, sample)),
                             _nanSafe(_schemaParse(Datagram, sample, "UDP datagram")))

    def test_badFieldsAreProtocolErrors(self):
        for kind, fields in (
                ("PEER_PAIR", dict(peerID=1, epoch=1, pairSecret=b"short", policy=0)),
                ("MEMBER_LEAVE", dict(groupID=-1, memberID=1, memberCount=1)),
                ("MEMBER_LEAVE", dict(groupID=1, memberID=1)),
                ("PEER_ADDRESSES", dict(peerID=1, udpAddress={"host": "é", "port": 1},
                                        lanAddress={"host": "", "port": 0})),
                ("PEER_ADDRESSES", dict(peerID=1, udpAddress={"host": "1" * 256, "port": 1},
                                        lanAddress={"host": "", "port": 0}))):
            self.assertRaises(ProtocolError, encodeMessage, kind, **fields)


class PingTests(SynchronousTestCase):
    """The server's fast UDP_PING reading and answer agree with the declaration."""

    @given(st.integers(0, 2**32 - 1), st.floats(allow_nan=False), st.floats(allow_nan=False),
           st.floats(allow_nan=False))
    def test_theAnswerIsThePongConstructBuilds(self, hostID, timestamp, rtt, serverTime):
        ping = encodeDatagram("UDP_PING", hostID=hostID, timestamp=timestamp, rtt=rtt)
        sender, echo, reported = decodePing(ping)
        self.assertEqual((sender, reported), (hostID, rtt))
        self.assertEqual(encodePong(echo, serverTime),
                         encodeDatagram("UDP_PONG", timestamp=timestamp, serverTime=serverTime))

    @given(st.binary(max_size=40).filter(lambda data: len(data) != 22))
    def test_aPingOfAnotherSizeIsRefused(self, data):
        self.assertRaises(ProtocolError, decodePing, data)

    @given(st.floats(), st.floats(), st.floats())
    def test_noAnswerIsLongerThanItsPing(self, timestamp, rtt, serverTime):
        """The keepalive carries the server's clock without amplification:
        over UDP (plain, and sealed, whose overheads match: the client's
        clear header is the longer) and over TCP."""
        ping = encodeDatagram("UDP_PING", hostID=1000, timestamp=timestamp, rtt=rtt)
        pong = encodePong(decodePing(ping)[1], serverTime)
        self.assertLessEqual(len(pong), len(ping))
        self.assertLessEqual(len(pong) - SERVER_DATAGRAM_HEADER,
                             len(ping) - CLIENT_DATAGRAM_HEADER)
        self.assertLessEqual(len(encodeMessage("PONG", timestamp=timestamp,
                                               serverTime=serverTime)),
                             len(encodeMessage("PING", timestamp=timestamp, rtt=rtt)))
