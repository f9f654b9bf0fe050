"""Hostile inputs derived from valid frames, and a harness that throws them
at a live server on loopback while honest clients talk through it.

Generators (each driven by a seeded C{random.Random}):

- L{Mutator}: bit flips, byte settings, interesting integers and real
  HostIDs written over the bytes, truncation, extension, insertion,
  deletion, duplication of a range, splicing with another valid input,
  repetition (replay inside one input), wholly random bytes.
- L{Corpus}: valid inputs to mutate: TCP frame bodies (a real ClientHello,
  the other handshake messages, every kind in C{messages.BODIES}, the relay
  fast paths), UDP datagrams (every kind in C{datagrams.BODIES}, the relay
  fast paths, every peer datagram of C{punch}), real reliable-UDP session
  datagrams, and real sealed datagrams captured from the honest clients.
- L{TcpFraming}: frame bodies into stream bytes, with wrong, huge or missing
  length prefixes now and then.
- L{UdpDatagrams}: one hostile datagram and the socket it leaves from:
  mutated plain datagrams (often with an honest client's HostID in bytes
  2..6, forging it), replays and mutations of sealed datagrams captured from
  the honest clients, datagrams sealed under made-up keys, random bytes, and
  mutated plaintexts sealed by an I{insider} (an attacker that joined the
  server, so its datagrams authenticate and reach the parsers behind the
  AEAD).
- L{HostileStream}: one hostile TCP connection: raw mutated frames; or a
  real handshake (sometimes with a mutated hello or finished message) then
  mutated plaintexts sealed with the real keys, or records damaged after
  sealing, replayed or skipped; or a real join, then mutated messages a
  joined client may send. Bytes go all at once, in random pieces, or
  dribbled one by one; the connection ends with a close, an abort, or by
  waiting for the server.

L{FuzzHarness} runs a real L{NetServer} on 127.0.0.1 with two honest
L{NetClient}s in one relayed P2P group that exchange sequence-numbered
reliable messages the whole time, joins a few insiders (hostile members of
that group), throws the inputs and checks the pass criteria
(L{FuzzResult.problems}). C{bench/fuzz_server.py} runs it with a million
inputs; C{tests/test_fuzz_server.py} with a few thousand.
"""

from __future__ import annotations

import collections
import gc
import os
import random
import resource
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer, task
from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from proud_twisted import NetClient, NetClientEvents, NetServer, NetServerEvents
from proud_twisted._crypto.datagrams import (
    CLIENT_DATAGRAM_HEADER,
    SERVER_DATAGRAM_HEADER,
    openDatagram,
    sealDatagram,
)
from proud_twisted.constants import HOSTID_NONE, HOSTID_SERVER, ServerUdpState
from proud_twisted.crypto import ClientHandshake, SecureChannel
from proud_twisted.errors import ProtocolError, ProudError
from proud_twisted.rudp import DeliveryMode, Priority, ReliableSession, SessionConfig
from proud_twisted.wire import datagrams, handshake, messages, punch, relay
from proud_twisted.wire.framing import FrameDecoder, encodeFrame

LOOPBACK = "127.0.0.1"
VERSION = uuid.UUID("5f0d2c1e-9a4b-4c77-8e3d-2b1a0f9e8d7c")
HONEST = b"honest"
INSIDER = b"insider"
PROBE = b"probe"
RECOVERY_WINDOW = 0.5
"""Seconds the fuzzed server keeps a cut insider's session for a resume."""
INTERESTING_8 = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
INTERESTING_32 = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                  0xFFFFFFFE, 0xFFFFFFFF)
MAX_DATAGRAM = 9000
_PAGE = os.sysconf("SC_PAGE_SIZE")
_U32 = struct.Struct(">I")
_HONEST_HEAD = struct.Struct(">4sQ")
_HONEST_MAGIC = b"HNST"
_HONEST_SIZES = (16, 40, 100, 300, 16, 40, 900, 3000)


# Mutations


class Mutator:
    """Damages bytes in the ways parsers meet in the wild.

    @param donors: valid inputs to splice from (a list that may grow).
    @param hostIDs: HostIDs worth writing over bytes (real clients, groups).
    """

    def __init__(self, rng: random.Random, donors=(), hostIDs=()) -> None:
        self.rng = rng
        self.donors = donors
        self.hostIDs = hostIDs
        ops = [
            (6, self.flipBits), (3, self.setBytes), (4, self.interestingInt),
            (4, self.truncate), (1, self.chopFront), (3, self.extend), (2, self.insert),
            (2, self.delete), (1, self.duplicateRange), (2, self.splice),
            (1, self.repeat), (1, self.randomize),
        ]
        self._ops = [op for weight, op in ops for _ in range(weight)]

    def mutate(self, data: bytes, rounds: int = 0) -> bytes:
        """C{data} with 1 to 3 (or C{rounds}) mutations stacked."""
        rng = self.rng
        if not rounds:
            rounds = 1 + (rng.random() < 0.35) + (rng.random() < 0.1)
        buf = bytearray(data)
        for _ in range(rounds):
            buf = rng.choice(self._ops)(buf)
        return bytes(buf)

    def _pos(self, buf, end: int = 0) -> int:
        return self.rng.randrange(max(1, len(buf) - end + 1))

    def flipBits(self, buf):
        if buf:
            for _ in range(self.rng.choice((1, 1, 1, 2, 3, 8))):
                buf[self.rng.randrange(len(buf))] ^= 1 << self.rng.randrange(8)
        return buf

    def setBytes(self, buf):
        if buf:
            for _ in range(self.rng.choice((1, 1, 2, 4))):
                value = (self.rng.choice(INTERESTING_8) if self.rng.random() < 0.6
                         else self.rng.randrange(256))
                buf[self.rng.randrange(len(buf))] = value
        return buf

    def interestingInt(self, buf):
        rng = self.rng
        if rng.random() < 0.5 and self.hostIDs:
            value, size = rng.choice(self.hostIDs), 4
        elif rng.random() < 0.5:
            value, size = rng.choice(INTERESTING_32), 4
        else:
            value, size = rng.choice(INTERESTING_16), 2
        if rng.random() < 0.5:
            value = rng.randrange(1 << (8 * size)) if rng.random() < 0.3 else value
        raw = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
        if len(buf) < size:
            return buf + raw
        at = rng.randrange(len(buf) - size + 1)
        buf[at:at + size] = raw
        return buf

    def truncate(self, buf):
        return buf[:self.rng.randrange(len(buf) + 1)]

    def chopFront(self, buf):
        return buf[self.rng.randrange(len(buf) + 1):]

    def extend(self, buf):
        size = self.rng.choice((1, 2, 4, 16, 64, 300, 1200))
        return buf + self.rng.randbytes(self.rng.randint(1, size))

    def insert(self, buf):
        at = self._pos(buf)
        buf[at:at] = self.rng.randbytes(self.rng.randint(1, 16))
        return buf

    def delete(self, buf):
        if not buf:
            return buf
        at = self.rng.randrange(len(buf))
        del buf[at:at + self.rng.randint(1, 16)]
        return buf

    def duplicateRange(self, buf):
        if not buf:
            return buf
        start = self.rng.randrange(len(buf))
        chunk = buf[start:start + self.rng.randint(1, 32)]
        at = self._pos(buf)
        buf[at:at] = chunk
        return buf

    def splice(self, buf):
        if not self.donors:
            return self.repeat(buf)
        donor = self.rng.choice(self.donors)
        return buf[:self._pos(buf)] + donor[self.rng.randrange(len(donor) + 1):]

    def repeat(self, buf):
        return buf + buf if len(buf) < 4096 else buf

    def randomize(self, buf):
        size = len(buf) if self.rng.random() < 0.5 else self.rng.randrange(1500)
        return bytearray(self.rng.randbytes(size))


# Valid inputs


@dataclass
class Context:
    """What the valid inputs may refer to: real HostIDs and keys of this run."""

    honest: tuple = ()          # HostIDs of honest clients
    insiders: tuple = ()        # HostIDs of insiders
    groups: tuple = ()          # P2P group HostIDs
    version: bytes = VERSION.bytes

    @property
    def hostIDs(self) -> tuple:
        return (HOSTID_NONE, HOSTID_SERVER, *self.honest, *self.insiders, *self.groups)


def _address(rng: random.Random) -> dict:
    # Loopback, empty or not an IP address: nothing may be sent elsewhere.
    return {"host": rng.choice(("127.0.0.1", "127.0.0.2", "", "localhost", "256.0.0.1")),
            "port": rng.choice((0, 1, 33333, 65535, rng.randrange(65536)))}


def _payload(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 8, 32, 200, 1100)))


class Corpus:
    """Valid inputs of every kind the server may meet, built once per run.

    @param sessionDatagrams: real reliable-UDP datagrams (see
        L{sessionDatagrams}) to carry as session payloads.
    """

    def __init__(self, rng: random.Random, context: Context, variants: int = 8) -> None:
        self.rng = rng
        self.context = context
        self.sessionDatagrams = sessionDatagrams(rng)
        self.tcpBodies = {}         # kind -> [frame body]
        for kind in messages.BODIES:
            self.tcpBodies[kind] = [encodeMessage(kind, self._tcpFields(kind))
                                    for _ in range(variants)]
        self.tcpBodies["fast path"] = [self._tcpFastPath() for _ in range(4 * variants)]
        self.tcpBodies["handshake"] = [self._handshake() for _ in range(2 * variants)]
        self.udpDatagrams = {}      # kind -> [datagram]
        for kind in datagrams.BODIES:
            self.udpDatagrams[kind] = [
                datagrams.encodeDatagram(kind, **self._udpFields(kind, self._anyID()))
                for _ in range(variants)]
        self.udpDatagrams["fast path"] = [self._udpFastPath(self._anyID())
                                          for _ in range(4 * variants)]
        self.udpDatagrams["peer"] = [self._peerDatagram() for _ in range(2 * variants)]
        self.allTcp = [b for bodies in self.tcpBodies.values() for b in bodies]
        self.allUdp = [d for grams in self.udpDatagrams.values() for d in grams]
        self.donors = self.allTcp + self.allUdp + self.sessionDatagrams
        self.mutator = Mutator(rng, self.donors, context.hostIDs)

    # picking

    def _anyID(self) -> int:
        rng = self.rng
        if rng.random() < 0.8:
            return rng.choice(self.context.hostIDs)
        return rng.choice((rng.randrange(1000, 1100), rng.randrange(1 << 32)))

    def tcpBody(self, joined: bool = True) -> bytes:
        """A valid TCP frame body (C{joined}: one a joined client may send)."""
        rng = self.rng
        if joined and rng.random() < 0.5:
            kind = rng.choice(_JOINED_KINDS)
        else:
            kind = rng.choice(list(self.tcpBodies))
        return rng.choice(self.tcpBodies[kind])

    def udpDatagram(self) -> bytes:
        kind = self.rng.choice(list(self.udpDatagrams))
        return self.rng.choice(self.udpDatagrams[kind])

    def insiderDatagram(self, hostID: int, token: bytes) -> bytes:
        """A valid datagram an insider C{hostID} may send (before sealing)."""
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            return self._udpFastPath(hostID)
        if r < 0.9:
            kind = rng.choice(("UDP_HELLO", "UDP_USER", "UDP_RELAY", "UDP_PING",
                               "UDP_RELAY_BUNDLE", "UDP_RELAYED", "UDP_PONG",
                               "UDP_HELLO_ACK", "UDP_PEER_FRAME", "UDP_CHALLENGE",
                               "UDP_CHALLENGE_RESPONSE"))
            fields = self._udpFields(kind, hostID)
            if kind == "UDP_HELLO" and rng.random() < 0.7:
                fields["token"] = token
            return datagrams.encodeDatagram(kind, **fields)
        return self._peerDatagram(hostID)

    # field builders

    def _tcpFields(self, kind: str) -> dict:
        rng, anyID = self.rng, self._anyID
        u32 = lambda: rng.choice((*INTERESTING_32, rng.randrange(1 << 32)))  # noqa: E731
        builders = {
            "HELLO": lambda: dict(
                wireVersion=rng.choice((messages.WIRE_VERSION,) * 3 + (0, 2, 255)),
                protocolVersion=rng.choice((self.context.version,) * 3 + (bytes(16),)),
                userData=_payload(rng)),
            "JOIN_ACCEPTED": lambda: dict(
                hostID=anyID(), udpToken=rng.randbytes(16), udpPort=rng.randrange(65536),
                clientTimeoutMs=u32(), reply=_payload(rng)),
            "JOIN_REFUSED": lambda: dict(reason=rng.randrange(256), reply=_payload(rng)),
            "MEMBER_JOIN": lambda: dict(
                groupID=anyID(), memberID=anyID(), memberCount=u32(), ackID=u32(),
                udpAddress=_address(rng), lanAddress=_address(rng), message=_payload(rng)),
            "MEMBER_JOIN_ACK": lambda: dict(ackIDs=[rng.choice((0, 1, 2, 3, u32()))
                                                    for _ in range(rng.randrange(4))]),
            "MEMBER_LEAVE": lambda: dict(groupID=anyID(), memberID=anyID(),
                                         memberCount=u32()),
            "PEER_ADDRESSES": lambda: dict(peerID=anyID(), udpAddress=_address(rng),
                                           lanAddress=_address(rng)),
            "LAN_ADDRESS": lambda: dict(address=_address(rng)),
            "USER_MESSAGE": lambda: dict(flags=self._flags(), payload=self._relayPayload()),
            "RELAY_REQUEST": lambda: dict(flags=self._flags(), targets=self._targets(),
                                          payload=self._relayPayload()),
            "RELAYED": lambda: dict(sender=anyID(), flags=self._flags(),
                                    payload=self._relayPayload()),
            "PING": lambda: dict(timestamp=rng.choice((0.0, -1.0, 1e300, rng.random())),
                                 rtt=rng.choice((-1.0, float("nan"), 1e300, rng.random()))),
            "PONG": lambda: dict(timestamp=rng.random(), serverTime=rng.random()),
            "GOODBYE": lambda: dict(comment=_payload(rng)),
            "UDP_LOST": dict,
            "PEER_PAIR": lambda: dict(peerID=anyID(), epoch=u32(),
                                      pairSecret=rng.randbytes(32), policy=rng.randrange(256)),
            "P2P_PATH": lambda: dict(peerID=anyID(), direct=rng.random() < 0.5),
            "RELAY_BUNDLE": lambda: dict(flags=self._flags(), entries=[
                {"target": anyID(), "frame": self._relayPayload()}
                for _ in range(rng.choice((0, 1, 2, 5)))]),
            "STREAM_ACK": lambda: dict(received=rng.choice((0, 1, 2, u32(), (1 << 64) - 1))),
            "RECOVERY": lambda: dict(windowMs=u32(), resumeSecret=_payload(rng)),
            "RESUME_REQUEST": lambda: dict(
                wireVersion=rng.choice((messages.WIRE_VERSION,) * 3 + (0, 255)),
                hostID=anyID()),
            "RESUME_CHALLENGE": lambda: dict(nonce=rng.randbytes(16)),
            "RESUME": lambda: dict(hostID=anyID(), received=rng.choice((0, 1, u32())),
                                   proof=rng.randbytes(32)),
            "RESUME_ACCEPTED": lambda: dict(received=u32()),
            "RESUME_REFUSED": lambda: dict(reason=rng.randrange(256)),
            "MEMBER_OFFLINE": lambda: dict(memberID=anyID()),
            "MEMBER_ONLINE": lambda: dict(memberID=anyID()),
            "SESSION_ENDED": dict,
            "MOVE": lambda: dict(host=_payload(rng), tcpPort=rng.randrange(65536),
                                 udpPort=rng.randrange(65536), token=rng.randbytes(16),
                                 serverID=_payload(rng)),
            "MOVE_ARRIVE": lambda: dict(
                wireVersion=rng.choice((messages.WIRE_VERSION,) * 3 + (0, 255)),
                hostID=anyID(), token=rng.randbytes(16)),
            "MOVE_ACCEPTED": lambda: dict(udpToken=rng.randbytes(16),
                                          udpPort=rng.randrange(65536),
                                          clientTimeoutMs=u32(), resumeSecret=_payload(rng)),
        }
        return builders[kind]()   # a KeyError here: a new message kind wants a builder

    def _udpFields(self, kind: str, hostID: int) -> dict:
        rng = self.rng
        builders = {
            "UDP_HELLO": lambda: dict(hostID=hostID, token=rng.randbytes(16),
                                      padding=bytes(rng.choice((0, 16, 64, 64, 300)))),
            "UDP_HELLO_ACK": lambda: dict(address=_address(rng)),
            "UDP_CHALLENGE": lambda: dict(challenge=rng.randbytes(16)),
            "UDP_CHALLENGE_RESPONSE": lambda: dict(hostID=hostID, challenge=rng.randbytes(16)),
            "UDP_USER": lambda: dict(hostID=hostID, flags=self._flags(),
                                     payload=self._relayPayload()),
            "UDP_RELAY": lambda: dict(hostID=hostID, flags=self._flags(),
                                      targets=self._targets(), payload=self._relayPayload()),
            "UDP_RELAYED": lambda: dict(sender=self._anyID(), flags=self._flags(),
                                        payload=self._relayPayload()),
            "UDP_PING": lambda: dict(hostID=hostID, timestamp=rng.random(),
                                     rtt=rng.choice((-1.0, float("inf"), rng.random()))),
            "UDP_PONG": lambda: dict(timestamp=rng.random(), serverTime=rng.random()),
            "UDP_PEER_FRAME": lambda: dict(sender=self._anyID(), flags=self._flags(),
                                           payload=self._relayPayload()),
            "UDP_RELAY_BUNDLE": lambda: dict(hostID=hostID, flags=self._flags(), entries=[
                {"target": self._anyID(), "frame": self._relayPayload()}
                for _ in range(rng.choice((0, 1, 2, 4)))]),
        }
        return builders[kind]()   # a KeyError here: a new datagram kind wants a builder

    def _flags(self) -> int:
        rng = self.rng
        return rng.choice((0, relay.FLAG_RELIABLE, relay.FLAG_SESSION, relay.FLAG_PUNCH,
                           relay.FLAG_RELIABLE | relay.FLAG_SESSION,
                           relay.FLAG_RELIABLE | relay.FLAG_PUNCH, rng.randrange(256)))

    def _targets(self) -> list:
        count = self.rng.choice((0, 1, 1, 2, 3, 8))
        return [self._anyID() for _ in range(count)]

    def _relayPayload(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return relay.encodeSessionFrame(rng.choice((0, 1, 2, rng.randrange(1 << 32))),
                                            rng.choice(self.sessionDatagrams))
        if r < 0.6:
            return rng.choice(self.sessionDatagrams)
        return _payload(rng)

    def _tcpFastPath(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return relay.encodeTcpUserMessage(self._flags(), self._relayPayload())
        if r < 0.6:
            return relay.encodeTcpRelayRequest(self._targets(), self._flags(),
                                               self._relayPayload())
        if r < 0.85:
            return relay.encodeTcpRelayBundle(self._flags(), [
                (self._anyID(), self._relayPayload()) for _ in range(rng.choice((1, 2, 3)))])
        return relay.encodeTcpRelayed(self._anyID(), self._flags(), self._relayPayload())

    def _udpFastPath(self, hostID: int) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return relay.encodeUdpUser(hostID, self._flags(), self._relayPayload())
        if r < 0.65:
            return relay.encodeUdpRelay(hostID, self._targets(), self._flags(),
                                        self._relayPayload())
        if r < 0.9:
            return relay.encodeUdpRelayBundle(hostID, self._flags(), [
                (self._anyID(), self._relayPayload()) for _ in range(rng.choice((1, 2, 3)))])
        return relay.encodeUdpRelayed(self._anyID(), self._flags(), self._relayPayload())

    def _peerDatagram(self, sender: int | None = None) -> bytes:
        rng = self.rng
        sender = self._anyID() if sender is None else sender
        kind = rng.choice([*sorted(punch.CONTROL_TYPES), punch.DIRECT_DATA])
        if kind == punch.DIRECT_DATA:
            return punch.encodeDirectData(sender, self._anyID(), self._relayPayload())
        return punch.encodeControl(kind, sender, self._anyID(), rng.randbytes(8),
                                   rng.randbytes(32))

    def _handshake(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            return ClientHandshake(randomBytes=rng.randbytes).start()
        if r < 0.75:
            return handshake.encodeHandshake(
                "CLIENT_FINISHED", confirmation=rng.randbytes(handshake.CONFIRMATION_SIZE))
        if r < 0.9:
            return handshake.encodeHandshake(
                "SERVER_HELLO", ephemeral=rng.randbytes(32), random=rng.randbytes(32),
                identity=rng.randbytes(32), signature=rng.randbytes(64))
        return handshake.encodeHandshake(
            "CLIENT_HELLO", version=rng.choice((0, 2, 255)), ephemeral=rng.randbytes(32),
            random=rng.randbytes(32))


# Kinds a joined client may send: the ones the server handles past HELLO.
_JOINED_KINDS = ("fast path", "MEMBER_JOIN_ACK", "LAN_ADDRESS", "P2P_PATH", "UDP_LOST",
                 "PING", "RELAY_REQUEST", "RELAY_BUNDLE", "USER_MESSAGE", "GOODBYE")


def encodeMessage(kind: str, fields: dict) -> bytes:
    return messages.encodeMessage(kind, **fields)


def sessionDatagrams(rng: random.Random) -> list:
    """Real reliable-UDP datagrams: every delivery mode, fragments, and acks."""
    config = SessionConfig(mtu=1136)
    a, b = ReliableSession(config, 0.0), ReliableSession(config, 0.0)
    out = []
    now = 0.0
    for i, mode in enumerate(list(DeliveryMode) * 2):
        size = (0, 10, 200, 3000, 5000)[i % 5]
        a.send(rng.randbytes(size), now, mode, rng.choice(list(Priority)), i % 3)
    for _ in range(3):
        now += 0.05
        sent = a.datagramsToSend(now)
        out += sent
        for datagram in sent:
            b.receiveDatagram(datagram, now)
        acks = b.datagramsToSend(now + 0.03)
        out += acks
        for datagram in acks:
            a.receiveDatagram(datagram, now + 0.03)
    return out or [b"\x00"]


# TCP


class TcpFraming:
    """Frame bodies into stream bytes, now and then with a lying length prefix."""

    def __init__(self, rng: random.Random, maxFrameLength: int) -> None:
        self.rng = rng
        self.prefixes = (0, 1, maxFrameLength, maxFrameLength + 1, 0x7FFFFFFF, 0xFFFFFFFF)

    def frame(self, body: bytes, honest: float = 0.85) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < honest:
            return encodeFrame(body)
        if r < honest + (1 - honest) * 0.6:
            length = rng.choice((*self.prefixes, len(body) - 1, len(body) + 1,
                                 rng.randrange(1 << 32)))
            return _U32.pack(max(0, length)) + body
        return body     # no prefix at all


class HostileStream(Protocol):
    """One hostile TCP connection; its script is drawn as it goes."""

    def __init__(self, fuzzer: TcpStreams, index: int, kind: str) -> None:
        self.fuzzer = fuzzer
        self.index = index
        self.kind = kind
        self.rng = random.Random(fuzzer.seed * 1_000_003 + index)
        self.corpus = fuzzer.corpus
        self.mutator = Mutator(self.rng, fuzzer.corpus.donors, fuzzer.corpus.context.hostIDs)
        self.framing = TcpFraming(self.rng, fuzzer.maxFrameLength)
        self.decoder = FrameDecoder(1 << 24)
        self.handshake = None
        self.channel = None
        self.joined = False
        self.finished = False       # no more bytes from us
        self.record = []            # (what, plaintext) for diagnosis
        self.timer = None
        self.queue = collections.deque()    # byte strings, then how to end
        self.writing = False

    # the script

    def connectionMade(self) -> None:
        fuzzer = self.fuzzer
        self.timer = fuzzer.reactor.callLater(fuzzer.streamTimeout, self.end, "abort")
        fuzzer.connected(self)
        if self.kind == "raw":
            self.send(self.rawBytes(), self.ending())
            return
        self.handshake = ClientHandshake(randomBytes=self.rng.randbytes)
        hello = self.handshake.start()
        if self.rng.random() < 0.15:
            self.note("mutated ClientHello", hello)
            self.send(self.framing.frame(self.mutator.mutate(hello), 0.9), self.ending())
            self.handshake = None
        else:
            self.send(encodeFrame(hello), None)

    def rawBytes(self) -> bytes:
        """Frames that ignore the handshake: mutated bodies of every kind."""
        rng, corpus = self.rng, self.corpus
        if rng.random() < 0.05:
            data = rng.randbytes(rng.choice((1, 3, 4, 5, 64, 2000)))
            self.note("random bytes", data)
            return data
        parts = []
        if rng.random() < 0.3:
            hello = ClientHandshake(randomBytes=rng.randbytes).start()
            self.note("ClientHello", hello)
            parts.append(encodeFrame(hello))
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            body = corpus.tcpBody(joined=False)
            if rng.random() < 0.8:
                body = self.mutator.mutate(body)
            self.note("body", body)
            parts.append(self.framing.frame(body))
        data = b"".join(parts)
        if rng.random() < 0.1:
            data = self.mutator.mutate(data)
            self.note("stream mutated", data)
        return data

    def dataReceived(self, data: bytes) -> None:
        if self.finished and self.handshake is None and self.channel is None:
            return
        try:
            bodies = self.decoder.feed(data)
        except ProtocolError:
            self.end("abort")
            return
        for body in bodies:
            if self.transport is None or self.fuzzer.reactor is None:
                return
            if self.handshake is not None:
                self.serverHello(body)
            elif self.channel is not None and not self.joined:
                try:
                    plain = self.channel.open(body)
                except ProtocolError:
                    continue
                if plain[:1] == b"\x02":        # JOIN_ACCEPTED
                    self.joined = True
                    self.hostile(joined=True)

    def serverHello(self, body: bytes) -> None:
        handshake_, self.handshake = self.handshake, None
        try:
            finished = handshake_.receive(body)
        except ProtocolError:
            self.end("abort")       # JOIN_REFUSED in the clear, most likely
            return
        keys = handshake_.keys
        self.channel = keys.clientChannel("tcp")
        r = self.rng.random()
        if r < 0.1:
            self.note("mutated ClientFinished", finished)
            self.send(self.framing.frame(self.mutator.mutate(finished), 0.9), self.ending())
        elif r < 0.13:
            self.end(self.rng.choice(("abort", "close")))
        elif self.kind == "join":
            self.send(encodeFrame(finished), None)
            hello = encodeMessage("HELLO", dict(
                wireVersion=messages.WIRE_VERSION, protocolVersion=self.corpus.context.version,
                userData=self.rng.randbytes(self.rng.choice((0, 8, 100)))))
            self.note("HELLO", hello)
            self.send(encodeFrame(self.channel.seal(hello)), None)
        else:
            self.send(encodeFrame(finished), None)
            self.hostile(joined=False)

    def hostile(self, joined: bool) -> None:
        """Mutated plaintexts sealed with the real keys, or damaged records."""
        rng, channel = self.rng, self.channel
        parts = []
        for _ in range(rng.choice((1, 1, 2, 3, 6))):
            body = self.corpus.tcpBody(joined)
            if rng.random() < (0.5 if joined else 0.75):
                body = self.mutator.mutate(body)
            self.note("sealed body", body)
            record = channel.seal(body)
            r = rng.random()
            if r < 0.06:
                record = self.mutator.mutate(record)
                self.note("record damaged", record)
            elif r < 0.09 and parts:
                parts.append(parts[-1])
                self.note("record replayed", b"")
            elif r < 0.11:
                self.note("record skipped", b"")
                continue
            parts.append(self.framing.frame(record, 0.95))
        self.send(b"".join(parts), self.ending(joined))

    def ending(self, joined: bool = False) -> str:
        r = self.rng.random()
        if joined and r < 0.2:
            return "goodbye"
        return self.rng.choice(("abort", "abort", "abort", "close", "wait", "wait"))

    # moving bytes

    def send(self, data: bytes, then) -> None:
        """Queue C{data} whole, in pieces or dribbled, then end as C{then} says."""
        rng = self.rng
        r = rng.random()
        if r < 0.7 or len(data) < 2:
            chunks = [data]
        elif r < 0.9:
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1,
                                                               rng.randint(1, 6))))
            chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        else:
            dribble = min(len(data), 48)
            chunks = [data[i:i + 1] for i in range(dribble)] + [data[dribble:]]
        if rng.random() < 0.05:
            chunks = chunks[:rng.randint(1, len(chunks))]     # cut short
            chunks[-1] = chunks[-1][:rng.randrange(len(chunks[-1]) + 1)]
            then = "abort"
        self.queue.extend(c for c in chunks if c)
        if then is not None:
            self.queue.append(then)
        if not self.writing:
            self.writeNext()

    def writeNext(self) -> None:
        """Write the next queued piece; one piece per reactor turn."""
        self.writing = False
        if self.transport is None or self.finished or not self.queue:
            return
        item = self.queue.popleft()
        if isinstance(item, str):
            self.end(item)
            return
        self.transport.write(item)
        if self.queue:
            self.writing = True
            self.fuzzer.reactor.callLater(0, self.writeNext)

    def end(self, how: str) -> None:
        if self.finished or self.transport is None:
            return
        if how == "wait":
            # Let the server answer or hang up; the timer ends it otherwise.
            linger = self.rng.choice((0.01, 0.05, 0.2))
            self.fuzzer.reactor.callLater(linger, self.end, "abort")
            self.queue.clear()
            return
        self.finished = True
        if how == "goodbye" and self.channel is not None:
            self.transport.write(encodeFrame(self.channel.seal(
                encodeMessage("GOODBYE", dict(comment=b"bye")))))
            how = "close"
        if how == "close":
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.finished = True
        self.fuzzer.ended(self)

    def note(self, what: str, data: bytes) -> None:
        if len(self.record) < 16:
            self.record.append((what, data[:512]))


class _StreamFactory(ClientFactory):
    noisy = False

    def __init__(self, stream: HostileStream) -> None:
        self.stream = stream

    def buildProtocol(self, addr):
        return self.stream

    def clientConnectionFailed(self, connector, reason) -> None:
        self.stream.fuzzer.failed(self.stream, reason)


class TcpStreams:
    """Opens hostile streams, at most C{concurrency} at a time."""

    KINDS = (("raw", 0.45), ("handshake", 0.35), ("join", 0.20))

    def __init__(self, reactor, corpus: Corpus, target, seed: int, total: int,
                 concurrency: int, maxFrameLength: int, streamTimeout: float) -> None:
        self.reactor = reactor
        self.corpus = corpus
        self.target = target            # (host, port)
        self.seed = seed
        self.total = total
        self.concurrency = concurrency
        self.maxFrameLength = maxFrameLength
        self.streamTimeout = streamTimeout
        self.rng = random.Random(seed + 17)
        self.started = self.connectedCount = self.ended_ = self.connectFailures = 0
        self.active = 0
        self.byKind = collections.Counter()
        self.joinedStreams = 0
        self.records = collections.OrderedDict()    # local port -> stream (recent)
        self.stopped = False
        self._sources = [f"127.0.0.{i}" for i in range(2, 34)]

    @property
    def done(self) -> bool:
        return self.connectedCount >= self.total and self.active == 0

    def pump(self, allowed: int) -> None:
        """Open streams while fewer than C{concurrency} run (at most C{allowed} new)."""
        while (not self.stopped and self.active < self.concurrency and allowed > 0
               and self.started - self.connectFailures < self.total):
            allowed -= 1
            self.started += 1
            self.active += 1
            r = self.rng.random()
            kind = self.KINDS[-1][0]
            for candidate, share in self.KINDS:
                r -= share
                if r < 0:
                    kind = candidate
                    break
            stream = HostileStream(self, self.started, kind)
            self.reactor.connectTCP(
                self.target[0], self.target[1], _StreamFactory(stream), timeout=5,
                bindAddress=(self.rng.choice(self._sources), 0))

    def connected(self, stream: HostileStream) -> None:
        self.connectedCount += 1
        self.byKind[stream.kind] += 1
        self.records[stream.transport.getHost().port] = stream
        while len(self.records) > 512:
            self.records.popitem(last=False)

    def ended(self, stream: HostileStream) -> None:
        self.active -= 1
        self.ended_ += 1
        if stream.joined:
            self.joinedStreams += 1

    def failed(self, stream: HostileStream, reason) -> None:
        self.active -= 1
        self.connectFailures += 1


# UDP


class _Drain(DatagramProtocol):
    """An attacker's socket: sends, and counts what comes back."""

    noisy = False

    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, data, addr) -> None:
        self.received += 1


class UdpDatagrams:
    """Draws hostile datagrams and throws them at the server's UDP port."""

    def __init__(self, rng: random.Random, corpus: Corpus, attackers: list,
                 insiders: list, captured) -> None:
        self.rng = rng
        self.corpus = corpus
        self.mutator = corpus.mutator
        self.attackers = attackers      # listening ports (Twisted)
        self.insiders = insiders        # Insider objects (ready ones are used)
        self.captured = captured        # deque of real sealed honest datagrams
        self.byKind = collections.Counter()
        self.fakeChannels = [SecureChannel(rng.randbytes(32), rng.randbytes(32))
                             for _ in range(4)]
        self.last = collections.deque(maxlen=64)   # (kind, bytes) for diagnosis

    def draw(self):
        """C{(kind, datagram, port)}: what to send and from which socket."""
        rng = self.rng
        attacker = rng.choice(self.attackers)
        r = rng.random()
        insiders = [i for i in self.insiders if i.ready]
        if r < 0.35 and insiders:
            insider = rng.choice(insiders)
            plain = self.corpus.insiderDatagram(insider.hostID, insider.udpToken)
            if rng.random() < 0.7:
                plain = self.mutator.mutate(plain)
            data = sealDatagram(insider.udpChannel, plain, CLIENT_DATAGRAM_HEADER)
            kind = "insider"
            if rng.random() < 0.04:
                data = self.mutator.mutate(data)
                kind = "insider damaged"
            elif rng.random() < 0.04:
                self.last.append(("insider (first copy)", data, plain))
                insider.udpPort.write(data, insider.serverUdp)
                kind = "insider replayed"
            port = insider.udpPort if rng.random() < 0.85 else attacker
            return kind, data, port, plain
        if r < 0.55:
            data = self.mutator.mutate(self.corpus.udpDatagram())
            if rng.random() < 0.5 and len(data) >= CLIENT_DATAGRAM_HEADER:
                data = self._forge(data)
            return "plain", data, attacker, None
        if r < 0.68 and self.captured:
            data = rng.choice(self.captured)
            if rng.random() < 0.6:
                data = self.mutator.mutate(data, 1)
                return "captured mutated", data, attacker, None
            return "captured replayed", data, attacker, None
        if r < 0.78:
            plain = self.mutator.mutate(self.corpus.udpDatagram()) if rng.random() < 0.5 \
                else self.corpus.udpDatagram()
            if len(plain) >= CLIENT_DATAGRAM_HEADER:
                plain = self._forge(plain)
            data = sealDatagram(rng.choice(self.fakeChannels), plain, CLIENT_DATAGRAM_HEADER)
            return "sealed, wrong keys", data, attacker, plain
        if r < 0.88:
            size = rng.choice((0, 1, 2, 5, 6, 7, 30, 200, 1400, rng.randrange(MAX_DATAGRAM)))
            data = rng.randbytes(size)
            if size >= CLIENT_DATAGRAM_HEADER and rng.random() < 0.5:
                data = self._forge(data)
            return "random", data, attacker, None
        donor = rng.choice(self.corpus.donors)
        data = self.mutator.mutate(donor, 3)
        return "donor", data[:MAX_DATAGRAM], attacker, None

    def _forge(self, data: bytes) -> bytes:
        """C{data} claiming, in bytes 2..6, to come from a real client."""
        ids = self.corpus.context.honest + self.corpus.context.insiders
        if not ids:
            return data
        return data[:2] + _U32.pack(self.rng.choice(ids)) + data[CLIENT_DATAGRAM_HEADER:]


# Insiders: attackers that joined


class Insider(Protocol):
    """A minimal client that joins with the real handshake, keeps its session
    alive and acknowledges joins, so datagrams sealed with its keys reach the
    server's parsers. It sends nothing malformed over TCP (that would get it
    dropped); its UDP is what the fuzzer uses."""

    def __init__(self, harness, name: bytes, reactor=None, join: bool = True) -> None:
        self.harness = harness
        self.reactor = reactor if reactor is not None else harness.reactor
        self.name = name
        self.join = join
        self.decoder = FrameDecoder(1 << 24)
        self.handshake = ClientHandshake()
        self.tcp = self.udpChannel = None
        self.hostID = 0
        self.udpToken = b""
        self.udpPort = None
        self.serverUdp = None
        self.ready = False
        self.lost = False
        self.whenReady = defer.Deferred()
        self.helloCall = None
        self.pinger = None
        self.framesReceived = 0

    def connectionMade(self) -> None:
        self.transport.write(encodeFrame(self.handshake.start()))

    def dataReceived(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if self.tcp is None:
                finished = self.handshake.receive(frame)
                self.transport.write(encodeFrame(finished))
                keys = self.handshake.keys
                self.tcp = keys.clientChannel("tcp")
                self.udpChannel = keys.clientChannel("udp")
                if not self.join:
                    self.whenReady.callback(self)
                    continue
                self.sendMessage("HELLO", wireVersion=messages.WIRE_VERSION,
                                 protocolVersion=VERSION.bytes, userData=self.name)
                continue
            body = self.tcp.open(frame)
            self.framesReceived += 1
            if body[0] in (relay.TCP_RELAYED, relay.TCP_USER_MESSAGE):
                continue
            kind, fields = messages.decodeMessage(body)
            if kind == "JOIN_ACCEPTED":
                self.joined(fields)
            elif kind == "MEMBER_JOIN" and fields.ackID:
                self.sendMessage("MEMBER_JOIN_ACK", ackIDs=[fields.ackID])

    def joined(self, fields) -> None:
        self.hostID = fields.hostID
        self.udpToken = fields.udpToken
        self.serverUdp = (LOOPBACK, fields.udpPort)
        self.udpPort = self.reactor.listenUDP(0, _InsiderUdp(self), interface=LOOPBACK)
        self.pinger = task.LoopingCall(self.ping)
        self.pinger.clock = self.reactor
        self.pinger.start(2.0, now=False)
        self.udpHello()

    def udpHello(self) -> None:
        self.helloCall = None
        if self.ready or self.lost:
            return
        hello = datagrams.encodeDatagram("UDP_HELLO", hostID=self.hostID,
                                         token=self.udpToken, padding=bytes(64))
        self.udpPort.write(sealDatagram(self.udpChannel, hello, CLIENT_DATAGRAM_HEADER),
                           self.serverUdp)
        self.helloCall = self.reactor.callLater(0.1, self.udpHello)

    def udpReceived(self, data: bytes, addr) -> None:
        if self.ready or tuple(addr) != self.serverUdp:
            return
        try:
            plain = openDatagram(self.udpChannel, data, SERVER_DATAGRAM_HEADER)
        except ProtocolError:
            return
        kind, fields = datagrams.decodeDatagram(plain)
        if kind == "UDP_CHALLENGE":         # prove the address is ours
            response = datagrams.encodeDatagram(
                "UDP_CHALLENGE_RESPONSE", hostID=self.hostID, challenge=fields.challenge)
            self.udpPort.write(sealDatagram(self.udpChannel, response,
                                            CLIENT_DATAGRAM_HEADER), self.serverUdp)
        elif kind == "UDP_HELLO_ACK":
            self.ready = True
            if self.helloCall is not None and self.helloCall.active():
                self.helloCall.cancel()
            self.whenReady.callback(self)

    def ping(self) -> None:
        self.sendMessage("PING", timestamp=self.reactor.seconds(), rtt=messages.RTT_UNKNOWN)

    def sendMessage(self, kind: str, **fields) -> None:
        self.sendBody(messages.encodeMessage(kind, **fields))

    def sendBody(self, body: bytes) -> None:
        """Seal C{body} and send it as one frame."""
        if self.transport is not None and not self.lost:
            self.transport.write(encodeFrame(self.tcp.seal(body)))

    def connectionLost(self, reason) -> None:
        self.lost = True
        self.ready = False
        if self.pinger is not None and self.pinger.running:
            self.pinger.stop()
        if self.helloCall is not None and self.helloCall.active():
            self.helloCall.cancel()
        if not self.whenReady.called:
            self.whenReady.errback(reason)
        if self.harness is not None:
            self.harness.insiderLost(self)

    def stop(self):
        if self.transport is not None and not self.lost:
            self.transport.abortConnection()
        if self.udpPort is not None:
            port, self.udpPort = self.udpPort, None
            return defer.maybeDeferred(port.stopListening)
        return defer.succeed(None)


class _InsiderUdp(DatagramProtocol):
    noisy = False

    def __init__(self, insider: Insider) -> None:
        self.insider = insider

    def datagramReceived(self, data, addr) -> None:
        self.insider.udpReceived(data, addr)


def connectInsider(reactor, port: int, name: bytes = INSIDER, join: bool = True,
                   harness=None) -> defer.Deferred:
    """An L{Insider} connected to 127.0.0.1:C{port}: fires once it joined (and
    its UDP is confirmed), or with C{join=False} once the handshake is done."""
    insider = Insider(harness, name, reactor, join)
    reactor.connectTCP(LOOPBACK, port, _OneProtocolFactory(insider))
    return insider.whenReady


class _OneProtocolFactory(ClientFactory):
    noisy = False

    def __init__(self, protocol) -> None:
        self.protocol_ = protocol

    def buildProtocol(self, addr):
        return self.protocol_

    def clientConnectionFailed(self, connector, reason) -> None:
        if not self.protocol_.whenReady.called:
            self.protocol_.whenReady.errback(reason)


# Honest clients


class HonestEvents(NetClientEvents):
    def __init__(self, harness: FuzzHarness) -> None:
        self.harness = harness
        self.client = None
        self.left = []
        self.fromOthers = 0

    def onReceiveUserMessage(self, sender, payload, context):
        self.harness.honestReceived(self.client, sender, payload)

    def onLeaveServer(self, reason):
        self.left.append(reason)


def honestPayload(seq: int) -> bytes:
    size = _HONEST_SIZES[seq % len(_HONEST_SIZES)]
    return _HONEST_HEAD.pack(_HONEST_MAGIC, seq) + bytes([seq & 0xFF]) * size


@dataclass
class Direction:
    """Reliable messages from one honest client to the other."""

    sender: NetClient
    receiver: NetClient
    sent: int = 0
    received: int = 0       # distinct messages delivered intact
    next: int = 0           # the sequence number expected next
    errors: list = field(default_factory=list)   # first few deliveries out of order
    errorCount: int = 0
    sendFailures: int = 0


class FuzzServerEvents(NetServerEvents):
    def __init__(self, harness: FuzzHarness) -> None:
        self.harness = harness
        self.hacks = collections.Counter()
        self.warnings = 0
        self.errors = 0
        self.exceptions = 0
        self.userMessages = collections.Counter()

    def onClientJoin(self, clientInfo):
        self.harness.clientJoined(clientInfo)

    def onClientHackSuspected(self, hostID, kind):
        self.hacks[kind.name] += 1

    def onWarning(self, errorInfo):
        self.warnings += 1

    def onError(self, errorInfo):
        self.errors += 1

    def onException(self, failure):
        self.exceptions += 1

    def onReceiveUserMessage(self, sender, payload, context):
        self.userMessages[payload if payload == PROBE else b"other"] += 1


# Watching


class FailureWatch:
    """Counts logged failures and errors (an unhandled exception is any
    logged failure), keeps the first few with the input behind them."""

    keep = 5

    def __init__(self, harness: FuzzHarness = None) -> None:
        self.harness = harness
        self.failures = 0
        self.warnings = 0
        self.first = []
        self.formats = collections.Counter()
        self.warningFormats = collections.Counter()
        self.warningSamples = {}    # format -> the first such warning, formatted

    def __call__(self, event) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            self.failures += 1
            self.formats[str(event.get("log_format"))[:80]] += 1
            if len(self.first) < self.keep:
                self.first.append(self._describe(event))
        elif level == LogLevel.warn:
            self.warnings += 1
            key = f"{event.get('log_namespace')}: {event.get('log_format')}"[:160]
            self.warningFormats[key] += 1
            if key not in self.warningSamples and len(self.warningSamples) < 50:
                try:
                    self.warningSamples[key] = formatEvent(event)
                except Exception as e:
                    self.warningSamples[key] = repr(e)

    def _describe(self, event) -> str:
        try:
            text = formatEvent(event) or ""
        except Exception as e:     # a broken format must not hide the failure
            text = f"(unformattable event: {e!r})"
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        if self.harness is not None:
            text += self.harness.culprit()
        return text


def rssBytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peakRssBytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Sample:
    at: float
    inputs: int
    rss: int
    connections: int
    clients: int
    groups: int
    traced: int = 0

    def line(self) -> str:
        traced = f", traced {self.traced / 2**20:.1f} MB" if self.traced else ""
        return (f"{self.inputs:,} inputs at {self.at:.1f} s: RSS {self.rss / 2**20:.1f} MB"
                f"{traced}, {self.connections} connections, {self.clients} clients,"
                f" {self.groups} groups")


@dataclass
class FuzzConfig:
    inputs: int = 20_000
    tcpShare: float = 0.10
    seed: int = 1
    maxSeconds: float = 120.0
    tcpConcurrency: int = 64
    udpInFlight: int = 48
    udpSockets: int = 4
    insiders: int = 2
    honestTick: float = 0.01
    honestPerTick: int = 8
    honestWindow: int = 128
    drainSeconds: float = 30.0
    streamTimeout: float = 2.0
    maxRssGrowthMB: float = 64.0
    sampleInterval: float = 1.0
    tracemalloc: bool = False
    progress: Callable = None       # called with a line of text now and then
    progressInterval: float = 10.0


@dataclass
class FuzzResult:
    config: FuzzConfig
    tcpStreams: int = 0
    tcpByKind: dict = field(default_factory=dict)
    tcpJoined: int = 0
    tcpConnectFailures: int = 0
    udpDatagrams: int = 0
    udpByKind: dict = field(default_factory=dict)
    udpReadByServer: int = 0
    udpSendErrors: int = 0
    seconds: float = 0.0
    timedOut: bool = False
    serverStats: dict = field(default_factory=dict)
    serverRunning: bool = False
    probeAnswered: bool = False
    hacks: dict = field(default_factory=dict)
    honest: list = field(default_factory=list)     # [(label, sent, received, errors)]
    honestErrors: list = field(default_factory=list)
    honestLeft: list = field(default_factory=list)
    failures: int = 0
    failureSamples: list = field(default_factory=list)
    warnings: int = 0
    insidersLost: int = 0
    warningKinds: list = field(default_factory=list)   # (count, format, first one)
    start: Sample = None
    middle: Sample = None
    end: Sample = None
    peakRss: int = 0
    settledConnections: int = 0
    expectedConnections: int = 0
    notes: list = field(default_factory=list)

    @property
    def inputs(self) -> int:
        return self.tcpStreams + self.udpDatagrams

    @property
    def honestSent(self) -> int:
        return sum(d[1] for d in self.honest)

    @property
    def honestLost(self) -> int:
        return sum(d[1] - d[2] for d in self.honest)

    @property
    def rssGrowthSecondHalf(self) -> int:
        return self.end.rss - self.middle.rss if self.end and self.middle else 0

    def problems(self) -> list:
        """The pass criteria that failed, as sentences; empty when it passed."""
        out = []
        if self.inputs < self.config.inputs:
            out.append(f"threw {self.inputs:,} of {self.config.inputs:,} inputs"
                       + (" (time limit)" if self.timedOut else ""))
        if not self.serverRunning:
            out.append("the server stopped running")
        if not self.probeAnswered:
            out.append("a fresh client could not join and be heard after the run")
        if self.failures:
            out.append(f"{self.failures} failures logged (unhandled exceptions)")
        if self.honestLost:
            out.append(f"honest clients lost {self.honestLost} reliable messages")
        if self.honestErrors:
            out.append(f"{len(self.honestErrors)}+ honest messages out of order, duplicated"
                       " or damaged")
        if self.honestLeft:
            out.append(f"an honest client was disconnected: {self.honestLeft}")
        if self.honestSent == 0:
            out.append("the honest clients exchanged no message")
        growth = self.rssGrowthSecondHalf / 2**20
        if growth > self.config.maxRssGrowthMB:
            out.append(f"RSS grew {growth:.1f} MB in the second half"
                       f" (limit {self.config.maxRssGrowthMB:g} MB)")
        if self.settledConnections != self.expectedConnections:
            out.append(f"{self.settledConnections} server connections after the run,"
                       f" expected {self.expectedConnections}")
        if self.end is not None and self.end.clients != self.expectedConnections:
            out.append(f"{self.end.clients} clients after the run,"
                       f" expected {self.expectedConnections}")
        return out

    def report(self) -> str:
        c = self.config
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines = [
            (f"inputs thrown: {self.inputs:,} (TCP streams {self.tcpStreams:,},"
             f" UDP datagrams {self.udpDatagrams:,}) of {c.inputs:,}; seed {c.seed}"),
            f"time: {self.seconds:.1f} s, {rate:,.0f} inputs/s",
            (f"TCP streams by kind: {dict(self.tcpByKind)}; joined {self.tcpJoined:,};"
             f" connect failures {self.tcpConnectFailures}"),
            f"UDP datagrams by kind: {dict(self.udpByKind)}",
            (f"UDP datagrams the server read (hostile, counted at its protocol):"
             f" {self.udpReadByServer:,}; send errors {self.udpSendErrors}"),
            f"server stats: {self.serverStats}",
            f"hack suspicions reported to the application: {self.hacks}",
        ]
        for label, sent, received, errors in self.honest:
            lines.append(f"honest {label}: sent {sent:,}, received {received:,},"
                         f" lost {sent - received:,}, out of order/duplicated {errors}")
        lines += [
            (f"honest clients disconnected: {self.honestLeft or 'none'};"
             f" insiders lost: {self.insidersLost}"),
            f"logged failures: {self.failures}; warnings logged: {self.warnings:,}",
            (f"server running: {self.serverRunning}; fresh client joined and was heard:"
             f" {self.probeAnswered}"),
            (f"connections after the run: {self.settledConnections}"
             f" (expected {self.expectedConnections})"),
        ]
        for name in ("start", "middle", "end"):
            sample = getattr(self, name)
            if sample is not None:
                lines.append(f"memory {name}: {sample.line()}")
        lines.append(f"RSS growth in the second half: {self.rssGrowthSecondHalf / 2**20:+.1f}"
                     f" MB (limit {c.maxRssGrowthMB:g}); peak RSS {self.peakRss / 2**20:.1f} MB")
        lines += self.notes
        if self.warningKinds:
            lines.append("warnings logged, by kind (count, namespace: format, first one):")
            for count, key, sample in self.warningKinds:
                lines.append(f"  {count:,} x {key}\n      e.g. {sample[:300]}")
        for i, text in enumerate(self.failureSamples):
            lines.append(f"--- failure {i + 1} ---\n{text}")
        problems = self.problems()
        lines.append("PASS" if not problems else "FAIL: " + "; ".join(problems))
        return "\n".join(lines)


class FuzzHarness:
    """A live server, two honest clients, insiders, and the inputs."""

    def __init__(self, config: FuzzConfig, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.result = FuzzResult(config)
        self.rng = random.Random(config.seed)
        self.watch = FailureWatch(self)
        self.server = None
        self.sandbox = self.group = None
        self.honestClients = []
        self.directions = []
        self.insiders = []
        self.attackers = []
        self.captured = collections.deque(maxlen=256)
        self.udpRead = 0
        self.udpSent = 0
        self.udpWrittenOff = 0
        self._lastUdpProgress = 0.0
        self._udpFailureInput = None
        self._tcpFailureInput = None
        self.tcp = None
        self.udp = None
        self._timers = []
        self._samples = []

    # the run

    @defer.inlineCallbacks
    def run(self):
        """Fires with the L{FuzzResult} once everything is torn down."""
        globalLogPublisher.addObserver(self.watch)
        try:
            yield self._setUp()
            yield self._throw()
            yield self._settle()
        finally:
            yield self._tearDown()
            globalLogPublisher.removeObserver(self.watch)
        result = self.result
        result.failures = self.watch.failures
        result.failureSamples = list(self.watch.first)
        if self.watch.formats:
            result.notes.append(f"failure kinds: {dict(self.watch.formats)}")
        result.warnings = self.watch.warnings
        result.warningKinds = [
            (count, key, self.watch.warningSamples.get(key, ""))
            for key, count in self.watch.warningFormats.most_common()]
        return result

    @defer.inlineCallbacks
    def _setUp(self):
        c, reactor = self.config, self.reactor
        self.events = FuzzServerEvents(self)
        # A short recovery window: the insiders it cuts are offline a moment, then gone.
        self.server = NetServer(self.events, VERSION, interface=LOOPBACK, reactor=reactor,
                                recoveryWindow=RECOVERY_WINDOW)
        self.server.startService()
        self._tap()
        self.sandbox = self.server.createP2PGroup([], allowDirectP2P=False)
        port = self.server.getTcpAddress()[1]
        for _ in range(2):
            events = HonestEvents(self)
            client = NetClient(events, reactor=reactor)
            events.client = client
            self.honestClients.append(client)
        yield defer.gatherResults([cl.connect(LOOPBACK, port, VERSION, HONEST)
                                   for cl in self.honestClients], consumeErrors=True)
        yield self._until(lambda: all(cl.getServerUdpState() is ServerUdpState.CONFIRMED
                                      for cl in self.honestClients), 10, "honest UDP")
        a, b = self.honestClients
        ids = (a.getLocalHostID(), b.getLocalHostID())
        self.group = self.server.createP2PGroup(ids, allowDirectP2P=False)

        def paired():
            for me, other in ((a, ids[1]), (b, ids[0])):
                peer = me._engine.peerTable.peers.get(other)
                if peer is None or peer.driver is None:
                    return False
            return True
        yield self._until(paired, 10, "honest pair")
        for client in self.honestClients:
            self._capture(client)
        self.directions = [Direction(a, b), Direction(b, a)]
        self.insiders = yield defer.gatherResults(
            [connectInsider(reactor, port, harness=self) for _ in range(c.insiders)],
            consumeErrors=True)
        for insider in self.insiders:
            self.server.joinP2PGroup(insider.hostID, self.group)
        for _ in range(c.udpSockets):
            self.attackers.append(reactor.listenUDP(0, _Drain(), interface=LOOPBACK))
        context = Context(honest=ids, insiders=tuple(i.hostID for i in self.insiders),
                          groups=(self.group, self.sandbox))
        corpus = Corpus(self.rng, context)
        tcpTotal = round(c.inputs * c.tcpShare)
        self.udpTotal = c.inputs - tcpTotal
        self.tcp = TcpStreams(reactor, corpus, self.server.getTcpAddress(), c.seed, tcpTotal,
                              c.tcpConcurrency, self.server._engine.maxFrameLength, c.streamTimeout)
        self.udp = UdpDatagrams(self.rng, corpus, list(self.attackers),
                                self.insiders, self.captured)
        self._attackerAddrs = {(LOOPBACK, p.getHost().port) for p in self.attackers}
        self._attackerAddrs |= {(LOOPBACK, i.udpPort.getHost().port) for i in self.insiders}
        self.serverUdp = self.server.getUdpAddress()
        # Honest traffic flowing both ways before the first sample.
        self._every(c.honestTick, self._honestTick)
        yield self._until(lambda: all(d.received > 0 for d in self.directions), 10,
                          "honest traffic")
        if c.tracemalloc:
            import tracemalloc
            tracemalloc.start()
        self.result.start = self._sample(0)
        self._started = time.monotonic()

    def _throw(self):
        """Throw every input (or stop at the time limit); fires when done."""
        c = self.config
        done = defer.Deferred()
        self._every(c.sampleInterval, self._sampleTick)
        self._lastProgress = time.monotonic()

        def turn():
            elapsed = time.monotonic() - self._started
            tcp = self.tcp
            if elapsed > c.maxSeconds:
                self.result.timedOut = True
                tcp.stopped = True
            thrown = tcp.connectedCount + self.udpSent
            if self.result.middle is None and thrown >= c.inputs // 2:
                self.result.middle = self._sample(thrown, collect=True)
            tcp.pump(16)
            self._udpTurn()
            if c.progress is not None and time.monotonic() - self._lastProgress > \
                    c.progressInterval:
                self._lastProgress = time.monotonic()
                c.progress(self._progressLine(elapsed))
            udpDone = self.udpSent >= self.udpTotal or self.result.timedOut
            if udpDone and (tcp.done or (tcp.stopped and tcp.active == 0)):
                done.callback(None)
                return
            self.reactor.callLater(0, turn)
        self.reactor.callLater(0, turn)
        return done

    def _udpTurn(self) -> None:
        c, tcp = self.config, self.tcp
        if self.udpSent >= self.udpTotal or self.result.timedOut:
            return
        # Keep UDP roughly in step with TCP, which is slower.
        if tcp.total:
            ahead = self.udpSent / self.udpTotal - tcp.connectedCount / tcp.total
            if ahead > 0.02 and not tcp.done:
                return
        now = time.monotonic()
        inFlight = self.udpSent - self.udpRead - self.udpWrittenOff
        if inFlight >= c.udpInFlight:
            if now - self._lastUdpProgress > 0.05:     # lost in the kernel
                self.udpWrittenOff += inFlight
                self._lastUdpProgress = now
            return
        self._lastUdpProgress = now
        byKind = self.result.udpByKind
        for _ in range(min(c.udpInFlight - inFlight, self.udpTotal - self.udpSent)):
            kind, data, port, plain = self.udp.draw()
            byKind[kind] = byKind.get(kind, 0) + 1
            self.udpSent += 1
            self.udp.last.append((kind, data, plain))
            try:
                port.write(data, self.serverUdp)
            except (OSError, MessageLengthError):
                self.result.udpSendErrors += 1
                self.udpWrittenOff += 1

    @defer.inlineCallbacks
    def _settle(self):
        """Stop, let the honest clients drain, check the server still serves."""
        c, result, server = self.config, self.result, self.server
        result.seconds = time.monotonic() - self._started
        tcp = self.tcp
        result.tcpStreams = tcp.connectedCount
        result.tcpByKind = dict(tcp.byKind)
        result.tcpJoined = tcp.joinedStreams
        result.tcpConnectFailures = tcp.connectFailures
        result.udpDatagrams = self.udpSent
        result.udpReadByServer = self.udpRead
        if result.middle is None:
            result.middle = self._sample(result.inputs, collect=True)
        self._honestSending = False
        yield self._until(lambda: all(d.received >= d.sent for d in self.directions),
                          c.drainSeconds, None)
        for d in self.directions:
            label = f"{d.sender.getLocalHostID()}->{d.receiver.getLocalHostID()}"
            result.honest.append((label, d.sent, d.received, d.errorCount))
            result.honestErrors += d.errors
        result.honestLeft = [r for cl in self.honestClients for r in cl.events.left]
        result.serverRunning = bool(server.running and server._engine._tcpPort is not None
                                    and server._engine._udpPort is not None)
        result.probeAnswered = yield self._probe()
        result.expectedConnections = 2 + sum(1 for i in self.insiders if not i.lost)
        yield self._until(lambda: (server.getConnectionCount() == result.expectedConnections
                                   == len(server.getClientHostIDs())), 10, None)
        result.settledConnections = server.getConnectionCount()
        result.end = self._sample(result.inputs, collect=True)
        result.peakRss = peakRssBytes()
        result.serverStats = server.stats.asDict()
        result.hacks = dict(self.events.hacks)
        result.insidersLost = sum(1 for i in self.insiders if i.lost)
        sizes = self._serverSizes()
        result.notes.append(f"server internals after the run: {sizes}")

    @defer.inlineCallbacks
    def _probe(self):
        """A fresh honest client joins and the server hears it."""
        client = NetClient(reactor=self.reactor)
        try:
            yield client.connect(LOOPBACK, self.server.getTcpAddress()[1], VERSION, PROBE,
                                 timeout=10)
            client.send(HOSTID_SERVER, PROBE)
            yield self._until(lambda: self.events.userMessages[PROBE] > 0, 10, None)
            return self.events.userMessages[PROBE] > 0
        except (ProudError, defer.TimeoutError) as e:
            self.result.notes.append(f"probe client failed: {e!r}")
            return False
        finally:
            yield client.disconnect(linger=0)

    @defer.inlineCallbacks
    def _tearDown(self):
        for call in self._timers:
            if call.running:
                call.stop()
        self._timers = []
        if self.tcp is not None:
            self.tcp.stopped = True
            yield self._until(lambda: self.tcp.active == 0, 5, None)
        yield defer.gatherResults([cl.disconnect(linger=0) for cl in self.honestClients],
                                  consumeErrors=True)
        yield defer.gatherResults([i.stop() for i in self.insiders], consumeErrors=True)
        for port in self.attackers:
            yield port.stopListening()
        if self.config.tracemalloc:
            import tracemalloc
            tracemalloc.stop()
        if self.server is not None and self.server.running:
            yield self.server.stopService()

    # honest traffic

    _honestSending = True

    def _honestTick(self) -> None:
        if not self._honestSending:
            return
        c = self.config
        for d in self.directions:
            if d.sender.getLocalHostID() == HOSTID_NONE:
                continue
            room = min(c.honestPerTick, c.honestWindow - (d.sent - d.received))
            target = d.receiver.getLocalHostID()
            for _ in range(room):
                try:
                    d.sender.send(target, honestPayload(d.sent))
                except ProudError:
                    d.sendFailures += 1
                    break
                d.sent += 1

    def honestReceived(self, client, sender, payload) -> None:
        for d in self.directions:
            if d.receiver is client and d.sender.getLocalHostID() == sender:
                break
        else:
            client.events.fromOthers += 1   # insiders may send anything
            return
        seq = None
        if payload[:4] == _HONEST_MAGIC and len(payload) >= _HONEST_HEAD.size:
            seq = _HONEST_HEAD.unpack_from(payload)[1]
            if payload != honestPayload(seq):
                seq = None
        if seq == d.next:
            d.next += 1
            d.received += 1
            return
        d.errorCount += 1
        if seq is None:
            what = f"a damaged message of {len(payload)} bytes"
        elif seq < d.next:
            what = f"#{seq} again"
        else:
            what = f"#{seq} (a gap)"
            d.next = seq + 1
            d.received += 1
        if len(d.errors) < 5:
            d.errors.append(f"{sender} -> {d.receiver.getLocalHostID()}: expected"
                            f" #{d.next}, got {what}")

    # the server

    def clientJoined(self, info) -> None:
        if info.userData in (HONEST, PROBE):
            return
        self.server.joinP2PGroup(info.hostID, self.sandbox)

    def insiderLost(self, insider) -> None:
        pass

    def _tap(self) -> None:
        """Count the datagrams the server reads and remember the input behind
        a failure (wrapping the protocol instances; no server code changes)."""
        udp = self.server._engine._udp
        original = udp.datagramReceived

        def datagramReceived(data, addr):
            if addr in self._attackerAddrs:
                self.udpRead += 1
            try:
                original(data, addr)
            except BaseException:
                self._udpFailureInput = (data, addr)
                raise
        udp.datagramReceived = datagramReceived
        self._attackerAddrs = set()
        factory = self.server._engine._tcpPort.factory
        build = factory.buildProtocol

        def buildProtocol(addr):
            protocol = build(addr)
            received = protocol.dataReceived

            def dataReceived(data):
                try:
                    received(data)
                except BaseException:
                    self._tcpFailureInput = (protocol.transport.getPeer().port, data)
                    raise
            protocol.dataReceived = dataReceived
            return protocol
        factory.buildProtocol = buildProtocol

    def culprit(self) -> str:
        """The input behind the failure just logged, if the tap caught one."""
        text = ""
        if self._udpFailureInput is not None:
            data, addr = self._udpFailureInput
            self._udpFailureInput = None
            plain = next((p for k, d, p in reversed(self.udp.last) if d == data), None)
            text += f"\nUDP datagram from {addr} ({len(data)} bytes): {data.hex()}"
            if plain is not None:
                text += f"\n  its plaintext before sealing: {plain.hex()}"
        if self._tcpFailureInput is not None:
            port, data = self._tcpFailureInput
            self._tcpFailureInput = None
            text += f"\nTCP bytes from port {port} ({len(data)} bytes): {data[:512].hex()}"
            stream = self.tcp.records.get(port) if self.tcp is not None else None
            if stream is not None:
                text += f"\n  stream #{stream.index} ({stream.kind}) script:"
                for what, plain in stream.record:
                    text += f"\n    {what}: {plain.hex()}"
        return text

    def _capture(self, client: NetClient) -> None:
        """Keep copies of the real sealed datagrams C{client} sends the server."""
        protocol = client._engine._udp
        send = protocol.send
        server = client._engine.serverUdpAddress

        def captureSend(data, addr):
            if addr == server:
                self.captured.append(data)
            return send(data, addr)
        protocol.send = captureSend

    def _serverSizes(self) -> dict:
        server = self.server
        sizes = dict(connections=server.getConnectionCount(),
                     clients=len(server.getClientHostIDs()),
                     groups=len(server.getP2PGroups()))
        engine = server._engine
        sizes["pendingAcks"] = engine._table.pendingAcks()
        sizes["pairs"] = len(engine._pairs)
        sizes["directAllowed"] = len(engine._directAllowed)
        sizes["onceLogKeys"] = len(engine.onceLog._seen)
        sizes["hostIDsQuiet"] = len(engine._hostIDs._released)
        sizes["delayedCalls"] = len(self.reactor.getDelayedCalls())
        return sizes

    # helpers

    def _sample(self, inputs: int, collect: bool = False) -> Sample:
        if collect:
            gc.collect()
        traced = 0
        if self.config.tracemalloc:
            import tracemalloc
            traced = tracemalloc.get_traced_memory()[0]
        server = self.server
        started = getattr(self, "_started", None)
        at = time.monotonic() - started if started is not None else 0.0
        sample = Sample(at, inputs, rssBytes(), server.getConnectionCount(),
                        len(server.getClientHostIDs()), len(server.getP2PGroups()), traced)
        self._samples.append(sample)
        return sample

    def _sampleTick(self) -> None:
        self._sample(self.tcp.connectedCount + self.udpSent)

    def _progressLine(self, elapsed: float) -> str:
        thrown = self.tcp.connectedCount + self.udpSent
        honest = sum(d.received for d in self.directions)
        return (f"[{elapsed:6.0f} s] {thrown:,} inputs (TCP {self.tcp.connectedCount:,},"
                f" UDP {self.udpSent:,}), {thrown / max(elapsed, 1e-9):,.0f}/s;"
                f" honest delivered {honest:,}; failures {self.watch.failures};"
                f" RSS {rssBytes() / 2**20:.0f} MB;"
                f" {self.server.getConnectionCount()} connections")

    def _every(self, interval: float, f) -> None:
        call = task.LoopingCall(f)
        call.clock = self.reactor
        call.start(interval, now=False)
        self._timers.append(call)

    def _sleep(self, seconds: float):
        return task.deferLater(self.reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def _until(self, predicate, timeout: float, what):
        """Wait until C{predicate()}; after C{timeout} s, fail if C{what} names it."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                if what is not None:
                    raise defer.TimeoutError(f"{what} not ready within {timeout} s")
                return False
            yield self._sleep(0.01)
        return True
