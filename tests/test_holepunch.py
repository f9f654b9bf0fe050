"""Hole punching: the peer datagram wire format and L{HolePunch}, on a toy NAT model.

L{ToyNet} is a tiny virtual-time network shared with C{test_pathstate}: hosts
on LANs behind NAT boxes that drop unsolicited inbound datagrams (a port is
open to a remote address only after the host sent to it from that port),
optionally symmetric (a new public port per destination), with latency, loss
and cuts. Any sans-I/O core with C{receiveDatagram / datagramsToSend /
nextTimeout / handleTimeout / nextEvent} can sit on a host; what it has to
send, replies included, leaves by C{datagramsToSend} when the network
flushes after every arrival and timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import hmac
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.client.holepunch import (
    HolePunch,
    PunchFailed,
    PunchSchedule,
    PunchState,
    PunchSucceeded,
)
from proud_twisted.crypto import pairProbeKey
from proud_twisted.errors import ProtocolError
from proud_twisted.wire import punch
from proud_twisted.wire.messages import WIRE_VERSION

SERVER = ("192.0.2.1", 33333)
KEY = pairProbeKey(b"s" * 32)
A_ID, B_ID = 1000, 1001
LAN_LATENCY = 0.001
WAN_LATENCY = 0.02


class Nat:
    """A NAT box: cone (one public port per host) or symmetric (one per destination).

    Inbound datagrams pass only from remote addresses that the public port has
    sent to; everything unsolicited is dropped.
    """

    def __init__(self, ip: str, symmetric: bool = False, hairpin: bool = True) -> None:
        self.ip = ip
        self.symmetric = symmetric
        self.hairpin = hairpin
        self._ports = {}        # (host name, destination or None) -> port
        self._owners = {}       # port -> host
        self._opened = {}       # port -> remote addresses sent to
        self._nextPort = 40000

    def outbound(self, host, dst) -> tuple:
        key = (host.name, dst if self.symmetric else None)
        port = self._ports.get(key)
        if port is None:
            port = self._ports[key] = self._nextPort
            self._nextPort += 1
            self._owners[port] = host
            self._opened[port] = set()
        self._opened[port].add(dst)
        return (self.ip, port)

    def inbound(self, dst, src):
        """The host a datagram from C{src} to public C{dst} reaches, or None."""
        if dst[0] != self.ip or src not in self._opened.get(dst[1], ()):
            return None
        return self._owners[dst[1]]


class Host:
    def __init__(self, name: str, lanName: str, lan: tuple, nat: Nat | None) -> None:
        self.name = name
        self.lanName = lanName
        self.lan = lan
        self.nat = nat
        self.core = None
        self.events = []
        self.received = []      # (time, src, data) of everything that arrived
        self.serverMapped = nat.outbound(self, SERVER) if nat else lan

    def candidates(self) -> list:
        """What the server tells a peer about this host: LAN first, then public."""
        return [self.lan, self.serverMapped]


class ToyNet:
    """Hosts, NATs and a virtual clock; everything is deterministic."""

    def __init__(self) -> None:
        self.now = 0.0
        self.hosts = []
        self.sent = []          # (time, host name, dst, data)
        self.dropped = 0
        self.cut = False        # drop every datagram between hosts
        self.drop = lambda src, dst, data, now: False
        self._queue = []
        self._seq = itertools.count()

    def addHost(self, name, lanName, lan, nat=None) -> Host:
        host = Host(name, lanName, lan, nat)
        self.hosts.append(host)
        return host

    def at(self, when: float, action) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), action))

    def send(self, host: Host, data: bytes, dst: tuple) -> None:
        self.sent.append((self.now, host.name, dst, data))
        local = [h for h in self.hosts if h.lanName == host.lanName and h.lan == dst]
        if local:
            src, latency, target = host.lan, LAN_LATENCY, local[0]
        else:
            src = host.nat.outbound(host, dst) if host.nat else host.lan
            latency, target = WAN_LATENCY, None
        if self.cut or self.drop(src, dst, data, self.now):
            self.dropped += 1
            return
        self.at(self.now + latency, lambda: self._arrive(target, src, dst, data))

    def inject(self, when: float, host: Host, data: bytes, src: tuple) -> None:
        """Deliver C{data} to C{host} as if from C{src} (a forger's datagram)."""
        self.at(when, lambda: self._deliver(host, src, data))

    def run(self, until: float) -> None:
        for _ in range(1_000_000):
            due = [t for t in (h.core.nextTimeout() for h in self.hosts if h.core)
                   if t is not None]
            if self._queue:
                due.append(self._queue[0][0])
            if not due or min(due) > until:
                self.now = until
                return
            self.now = max(self.now, min(due))
            if self._queue and self._queue[0][0] <= self.now:
                heapq.heappop(self._queue)[2]()
            else:
                for host in self.hosts:
                    timeout = host.core.nextTimeout() if host.core else None
                    if timeout is not None and timeout <= self.now:
                        host.core.handleTimeout(self.now)
            self.flush()
        raise AssertionError("the simulation does not make progress")

    def flush(self) -> None:
        """Send what every core wants to send now and collect its events."""
        for host in self.hosts:
            if host.core is None:
                continue
            for data, dst in host.core.datagramsToSend(self.now):
                self.send(host, data, dst)
            while (event := host.core.nextEvent()) is not None:
                host.events.append((self.now, event))

    def _arrive(self, target, src, dst, data) -> None:
        if target is None:
            for host in self.hosts:
                if host.nat is not None and (host.nat.ip != src[0] or host.nat.hairpin):
                    target = host.nat.inbound(dst, src) or target
            if target is None:
                self.dropped += 1
                return
        self._deliver(target, src, data)

    def _deliver(self, host: Host, src, data) -> None:
        host.received.append((self.now, src, data))
        if host.core is not None:
            host.core.receiveDatagram(data, src, self.now)


def twoHomes(symmetricB: bool = False):
    """A and B on separate LANs behind their own NATs; both LANs use 10.0.0.x."""
    net = ToyNet()
    a = net.addHost("a", "homeA", ("10.0.0.2", 5000), Nat("203.0.113.1"))
    b = net.addHost("b", "homeB", ("10.0.0.3", 5000),
                    Nat("198.51.100.2", symmetric=symmetricB))
    return net, a, b


def sharedLan():
    """A and B on one LAN behind one NAT (which hairpins)."""
    net = ToyNet()
    nat = Nat("203.0.113.1")
    a = net.addHost("a", "home", ("10.0.0.2", 5000), nat)
    b = net.addHost("b", "home", ("10.0.0.3", 5000), nat)
    return net, a, b


def startPunch(net, host, peer, localID, peerID, key=KEY, seed=0, **kw):
    host.core = HolePunch(localID, peerID, key, peer.candidates(), net.now,
                          rng=random.Random(seed), **kw)
    net.flush()
    return host.core


# Garbage that mostly gets past the version and type bytes.
garbage = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda kind, rest: bytes([WIRE_VERSION, kind]) + rest,
              st.integers(punch.PEER_TYPE_FIRST, punch.PEER_TYPE_LAST), st.binary(max_size=60)))


def punchBoth(net, a, b, until, **kw):
    """Start A's and B's punches toward each other now and run until C{until}."""
    startPunch(net, a, b, A_ID, B_ID, seed=1, **kw)
    startPunch(net, b, a, B_ID, A_ID, seed=2, **kw)
    net.run(until)


def ofType(events, kind):
    return [e for _, e in events if isinstance(e, kind)]


class WireTests(SynchronousTestCase):
    def test_probeKeyDerivation(self):
        """Peers of every version must agree on it: HMAC-SHA256(secret, label)."""
        secret = bytes(range(32))
        self.assertEqual(pairProbeKey(secret), hmac.new(
            secret, b"proud_twisted peer probe key v1", hashlib.sha256).digest())
        self.assertRaises(ProtocolError, pairProbeKey, b"short")

    def test_controlRoundTrip(self):
        for kind in sorted(punch.CONTROL_TYPES):
            data = punch.encodeControl(kind, A_ID, B_ID, b"12345678", KEY)
            self.assertEqual(len(data), 34)
            self.assertEqual(data[:2], bytes([WIRE_VERSION, kind]))
            message = punch.decodePeerDatagram(data)
            self.assertEqual(message[:4], (kind, A_ID, B_ID, b"12345678"))
            self.assertTrue(punch.tagIsValid(data, KEY))
            self.assertFalse(punch.tagIsValid(data, pairProbeKey(b"t" * 32)))

    def test_typeBytesAreApartFromServerDatagrams(self):
        for kind in (punch.PUNCH_PROBE, punch.PUNCH_ANSWER, punch.DIRECT_PING,
                     punch.DIRECT_PONG, punch.DIRECT_DATA):
            self.assertTrue(punch.PEER_TYPE_FIRST <= kind <= punch.PEER_TYPE_LAST)
        self.assertFalse(punch.isPeerDatagram(bytes([WIRE_VERSION, 3, 0, 0])))
        self.assertFalse(punch.isPeerDatagram(bytes([WIRE_VERSION + 1, 0x20])))

    def test_encodeControlRefusesData(self):
        self.assertRaises(ProtocolError, punch.encodeControl, punch.DIRECT_DATA,
                          A_ID, B_ID, b"12345678", KEY)
        self.assertRaises(ProtocolError, punch.encodeControl, punch.PUNCH_PROBE,
                          A_ID, B_ID, b"short", KEY)
        self.assertRaises(ProtocolError, punch.encodeDirectData, -1, B_ID, b"")

    @settings(max_examples=200)
    @given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=200))
    def test_directDataFastPathAgreesWithSchema(self, sender, receiver, payload):
        fast = punch.encodeDirectData(sender, receiver, payload)
        built = punch.PeerDatagram.build({"message": {"type": "DIRECT_DATA", "body": {
            "sender": sender, "receiver": receiver, "payload": payload}}})
        self.assertEqual(fast, built)
        parsed = punch.PeerDatagram.parse(fast).message.body
        self.assertEqual(punch.decodeDirectData(fast),
                         (parsed.sender, parsed.receiver, parsed.payload))
        self.assertEqual(punch.decodePeerDatagram(fast),
                         (punch.DIRECT_DATA, sender, receiver, b"", b"", payload))

    @settings(max_examples=500)
    @given(garbage)
    def test_garbageRaisesOnlyProtocolError(self, data):
        try:
            message = punch.decodePeerDatagram(data)
        except ProtocolError:
            return
        self.assertIn(message.kind, punch.CONTROL_TYPES | {punch.DIRECT_DATA})

    @settings(max_examples=300)
    @given(st.sampled_from(sorted(punch.CONTROL_TYPES)), st.integers(0, 33),
           st.integers(1, 255))
    def test_anyFlippedByteBreaksTheTag(self, kind, index, flip):
        data = bytearray(punch.encodeControl(kind, A_ID, B_ID, b"12345678", KEY))
        data[index] ^= flip
        self.assertFalse(punch.tagIsValid(bytes(data), KEY))


class ScheduleTests(SynchronousTestCase):
    def probeTimes(self, schedule, rng=None):
        p = HolePunch(A_ID, B_ID, KEY, [("10.0.0.3", 1)], 0.0, schedule, rng)
        times = []
        while p.nextTimeout() is not None:
            now = p.nextTimeout()
            p.handleTimeout(now)
            if p.datagramsToSend(now):
                times.append(now)
        return times, p

    def test_backsOffUpToTheMaximumThenGivesUp(self):
        times, p = self.probeTimes(PunchSchedule())
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
        self.assertEqual(gaps[:4], [0.05, 0.075, 0.1125, 0.16875])
        self.assertEqual(max(gaps), 1.0)
        self.assertTrue(times[-1] < 10.0)
        self.assertEqual(p.state, PunchState.FAILED)
        self.assertIsInstance(p.nextEvent(), PunchFailed)
        self.assertIsNone(p.nextEvent())

    def test_jitterIsRepeatableWithASeed(self):
        schedule = PunchSchedule(jitter=0.2)
        first, _ = self.probeTimes(schedule, random.Random(7))
        second, _ = self.probeTimes(schedule, random.Random(7))
        plain, _ = self.probeTimes(PunchSchedule())
        self.assertEqual(first, second)
        self.assertNotEqual(first, plain)

    def test_badSchedulesAreRefused(self):
        self.assertRaises(ValueError, PunchSchedule, firstInterval=0)
        self.assertRaises(ValueError, PunchSchedule, backoff=0.5)
        self.assertRaises(ValueError, PunchSchedule, jitter=1.0)

    def test_noCandidatesFailsAtOnce(self):
        p = HolePunch(A_ID, B_ID, KEY, [None], 0.0)
        self.assertEqual(p.nextEvent(), PunchFailed("no candidate addresses"))
        self.assertIsNone(p.nextTimeout())
        self.assertEqual(p.datagramsToSend(0.0), [])

    def test_probesGoToEveryCandidateInOrder(self):
        p = HolePunch(A_ID, B_ID, KEY, [("10.0.0.3", 1), ("198.51.100.2", 2),
                                        ("10.0.0.3", 1)], 5.0)
        self.assertEqual(p.nextTimeout(), 5.0)
        sent = p.datagramsToSend(5.0)
        self.assertEqual([dst for _, dst in sent], [("10.0.0.3", 1), ("198.51.100.2", 2)])
        self.assertEqual(p.datagramsToSend(5.01), [])
        self.assertEqual(p.nextTimeout(), 5.05)


class PunchTests(SynchronousTestCase):
    def assertDirect(self, host, peerAddress):
        self.assertEqual(host.core.state, PunchState.SUCCEEDED)
        self.assertEqual(host.core.directAddress, peerAddress)
        [succeeded] = ofType(host.events, PunchSucceeded)
        self.assertEqual(succeeded.address, peerAddress)
        self.assertIsNone(host.core.nextTimeout())

    def assertBothDirect(self, a, b, lan=False):
        self.assertDirect(a, b.lan if lan else b.serverMapped)
        self.assertDirect(b, a.lan if lan else a.serverMapped)

    def test_bothSidesAtOnce(self):
        net, a, b = twoHomes()
        punchBoth(net, a, b, 1.0)
        self.assertBothDirect(a, b)
        [succeeded] = ofType(a.events, PunchSucceeded)
        self.assertAlmostEqual(succeeded.rtt, 2 * WAN_LATENCY)
        self.assertEqual(a.core.rejected + b.core.rejected, 0)
        # Nothing is pending once both sides are done.
        net.run(30.0)
        self.assertEqual(ofType(a.events + b.events, PunchFailed), [])

    def test_oneSideLate(self):
        net, a, b = twoHomes()
        startPunch(net, a, b, A_ID, B_ID)
        net.at(3.0, lambda: startPunch(net, b, a, B_ID, A_ID))
        net.run(2.9)
        self.assertEqual(a.core.state, PunchState.PUNCHING)
        net.run(3.5)
        self.assertBothDirect(a, b)
        # A finished within a few round trips of B's start, not at its next tick.
        [(when, _)] = a.events
        self.assertTrue(when < 3.0 + 4 * WAN_LATENCY, when)

    def test_singleLostProbesAreSurvived(self):
        net, a, b = twoHomes()
        lost = set()

        def dropFirstOfEachKind(src, dst, data, now):
            key = (src, dst, data[1])
            if key in lost:
                return False
            lost.add(key)
            return True
        net.drop = dropFirstOfEachKind
        punchBoth(net, a, b, 2.0)
        self.assertTrue(net.dropped >= 4)
        self.assertBothDirect(a, b)

    def test_heavyLossStillSucceeds(self):
        net, a, b = twoHomes()
        rng = random.Random(3)
        net.drop = lambda src, dst, data, now: rng.random() < 0.5
        punchBoth(net, a, b, 10.0)
        self.assertBothDirect(a, b)

    def test_giveUpWhenThePeerNeverAnswers(self):
        net, a, b = twoHomes()
        startPunch(net, a, b, A_ID, B_ID)
        net.run(9.9)
        self.assertEqual(a.events, [])
        net.run(20.0)
        [(when, failed)] = a.events
        self.assertEqual(when, 10.0)
        self.assertIsInstance(failed, PunchFailed)
        self.assertIn("no answer", failed.reason)
        self.assertIsNone(a.core.nextTimeout())
        self.assertIsNone(a.core.directAddress)
        self.assertFalse([t for t, name, _, _ in net.sent if name == "a" and t > 10.0])

    def test_symmetricNatGivesUpButAnswersStill(self):
        net, a, b = twoHomes(symmetricB=True)
        punchBoth(net, a, b, 5.0, schedule=PunchSchedule(giveUpAfter=3.0))
        self.assertEqual(len(ofType(a.events, PunchFailed)), 1)
        self.assertEqual(len(ofType(b.events, PunchFailed)), 1)
        self.assertIsNone(a.core.directAddress)
        self.assertIsNone(b.core.directAddress)
        # A failed attempt still answers a probe from a candidate.
        probe = punch.encodeControl(punch.PUNCH_PROBE, B_ID, A_ID, b"87654321", KEY)
        a.core.receiveDatagram(probe, b.serverMapped, net.now)
        [(answer, dst)] = a.core.datagramsToSend(net.now)
        self.assertEqual(dst, b.serverMapped)
        self.assertEqual(punch.decodePeerDatagram(answer)[:4],
                         (punch.PUNCH_ANSWER, A_ID, B_ID, b"87654321"))

    def test_answersContinueAfterSuccess(self):
        net, a, b = twoHomes()
        punchBoth(net, a, b, 1.0)
        probe = punch.encodeControl(punch.PUNCH_PROBE, B_ID, A_ID, b"abcdefgh", KEY)
        a.core.receiveDatagram(probe, b.serverMapped, net.now)
        replies = a.core.datagramsToSend(net.now)
        self.assertEqual([dst for _, dst in replies], [b.serverMapped])
        self.assertEqual(punch.decodePeerDatagram(replies[0][0]).kind, punch.PUNCH_ANSWER)

    def test_lanCandidateWinsWhenReachable(self):
        net, a, b = sharedLan()
        punchBoth(net, a, b, 1.0)
        self.assertBothDirect(a, b, lan=True)

    def test_publicCandidateWhenLanIsSomeoneElse(self):
        # B's LAN address, 10.0.0.3:5000, exists on A's LAN too: here, C.
        net, a, b = twoHomes()
        c = net.addHost("c", "homeA", ("10.0.0.3", 5000))
        startPunch(net, c, b, 2000, B_ID)       # C answers as someone else
        punchBoth(net, a, b, 1.0)
        self.assertDirect(a, b.serverMapped)
        self.assertTrue(c.core.rejected > 0)


class ForgeryTests(SynchronousTestCase):
    """Forged probes and answers never set a direct address."""

    def setUp(self):
        self.net, self.a, self.b = twoHomes()
        self.punch = startPunch(self.net, self.a, self.b, A_ID, B_ID)
        # The nonces A has sent so far, as a forger on the path would see them.
        self.nonces = [punch.decodePeerDatagram(data).nonce for _, _, _, data in self.net.sent]

    def answer(self, key=KEY, sender=B_ID, receiver=A_ID, nonce=None):
        return punch.encodeControl(punch.PUNCH_ANSWER, sender, receiver,
                                   nonce or self.nonces[0], key)

    def assertIgnored(self, data, src, rejected=True):
        before = self.punch.rejected
        self.punch.receiveDatagram(data, src, 0.01)
        self.assertEqual(self.punch.datagramsToSend(0.01), [])
        self.assertEqual(self.punch.rejected, before + rejected)
        self.assertIsNone(self.punch.directAddress)
        self.assertIsNone(self.punch.nextEvent())
        self.assertEqual(self.punch.state, PunchState.PUNCHING)

    def test_wrongKey(self):
        self.assertIgnored(self.answer(key=pairProbeKey(b"x" * 32)), self.b.serverMapped)

    def test_nonCandidateAddress(self):
        self.assertIgnored(self.answer(), ("198.51.100.66", 40000))
        self.assertIgnored(self.answer(), (self.b.serverMapped[0], 40001))

    def test_otherHostIDs(self):
        self.assertIgnored(self.answer(sender=B_ID + 1), self.b.serverMapped)
        self.assertIgnored(self.answer(receiver=A_ID + 1), self.b.serverMapped)
        # Our own probe reflected back at us names us as the sender.
        reflected = punch.encodeControl(punch.PUNCH_ANSWER, A_ID, B_ID, self.nonces[0], KEY)
        self.assertIgnored(reflected, self.b.serverMapped)

    def test_probeReflectedAsAnswer(self):
        probe = punch.encodeControl(punch.PUNCH_PROBE, B_ID, A_ID, self.nonces[0], KEY)
        forged = probe[:1] + bytes([punch.PUNCH_ANSWER]) + probe[2:]
        self.assertIgnored(forged, self.b.serverMapped)

    def test_unknownNonceIsNotSuccess(self):
        self.assertIsNone(self.punch.directAddress)
        self.punch.receiveDatagram(self.answer(nonce=b"\0" * 8), self.b.serverMapped, 0.01)
        self.assertEqual(self.punch.datagramsToSend(0.01), [])
        self.assertEqual(self.punch.rejected, 0)
        self.assertIsNone(self.punch.directAddress)
        self.assertIsNone(self.punch.nextEvent())

    def test_forgedProbesGetNoAnswer(self):
        probe = punch.encodeControl(punch.PUNCH_PROBE, B_ID, A_ID, b"12345678",
                                    pairProbeKey(b"x" * 32))
        self.assertIgnored(probe, self.b.serverMapped)

    def test_dataAndPingsAreNotForThePunch(self):
        data = punch.encodeDirectData(B_ID, A_ID, b"hello")
        self.assertIgnored(data, self.b.serverMapped, rejected=False)
        ping = punch.encodeControl(punch.DIRECT_PING, B_ID, A_ID, b"12345678", KEY)
        self.assertIgnored(ping, self.b.serverMapped, rejected=False)

    def test_forgerOnTheNetworkDoesNotWin(self):
        net, a, b = self.net, self.a, self.b
        for i, nonce in enumerate(self.nonces):
            net.inject(0.001 * i, a, self.answer(key=b"k" * 32, nonce=nonce), b.serverMapped)
            net.inject(0.001 * i, a, self.answer(nonce=nonce), ("203.0.113.99", 1))
        net.run(11.0)
        self.assertEqual(ofType(a.events, PunchSucceeded), [])
        self.assertEqual(len(ofType(a.events, PunchFailed)), 1)
        self.assertEqual(self.punch.rejected, 2 * len(self.nonces))


class MutationTests(SynchronousTestCase):
    """Garbage and mutated valid datagrams never change a punch's state."""

    def fresh(self):
        p = HolePunch(A_ID, B_ID, KEY, [("10.0.0.3", 5000), ("198.51.100.2", 40000)],
                      0.0, rng=random.Random(0))
        sent = p.datagramsToSend(0.0)
        return p, punch.decodePeerDatagram(sent[1][0]).nonce

    def assertUnchanged(self, p, data, src):
        with contextlib.suppress(ProtocolError):
            p.receiveDatagram(data, src, 0.02)
        self.assertEqual(p.datagramsToSend(0.02), [])
        self.assertEqual(p.state, PunchState.PUNCHING)
        self.assertIsNone(p.directAddress)
        self.assertIsNone(p.nextEvent())

    @settings(max_examples=400)
    @given(garbage)
    def test_garbage(self, data):
        p, _ = self.fresh()
        self.assertUnchanged(p, data, ("198.51.100.2", 40000))

    @settings(max_examples=400)
    @given(st.sampled_from([punch.PUNCH_ANSWER, punch.PUNCH_PROBE]), st.data())
    def test_mutatedValidDatagram(self, kind, data):
        p, nonce = self.fresh()
        valid = punch.encodeControl(kind, B_ID, A_ID, nonce, KEY)
        mutation = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
        if mutation == "flip":
            index = data.draw(st.integers(0, len(valid) - 1))
            mutated = bytearray(valid)
            mutated[index] ^= data.draw(st.integers(1, 255))
            mutated = bytes(mutated)
        elif mutation == "truncate":
            mutated = valid[:data.draw(st.integers(0, len(valid) - 1))]
        else:
            mutated = valid + data.draw(st.binary(min_size=1, max_size=8))
        self.assertUnchanged(p, mutated, ("198.51.100.2", 40000))
