"""Relayed frames sent straight between cluster servers over UDP, on a real
redis-server and loopback sockets: the path comes up by itself and carries
the pairs' frames; forged, replayed and misdirected datagrams are rejected,
logged once, counted and never answered; a path that dies (iptables drops
it) sends frames through Redis again, and nothing reliable is lost."""

import contextlib
import os
import shutil
import socket
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from proud_twisted.cluster.direct import DirectPaths
from proud_twisted.wire.datagrams import UDP_CLUSTER_TYPE
from proud_twisted.wire.messages import WIRE_VERSION
from tests.clustersupport import spanningGroup


@defer.inlineCallbacks
def directGroup(world, **clusterOptions):
    """L{spanningGroup}, both servers' direct paths up, a1 and b1 relaying."""
    a, b, (a1, b1, b2), ids, group = yield spanningGroup(world, **clusterOptions)
    yield a.events.rec.wait(lambda: a.cluster.isDirect("b") and b.cluster.isDirect("a"))
    a1.forceRelay(ids[1])
    b1.forceRelay(ids[0])
    return a, b, (a1, b1, b2), ids, group


@pytest_twisted.inlineCallbacks
def test_relayedFramesGoStraightToTheOtherServerOnceItAnswers(world):
    a, b, (a1, b1, _), (idA1, idB1, _), _ = yield directGroup(world)
    viaRedis = [s.cluster.stats.framesOut - s.cluster.stats.framesDirect for s in (a, b)]
    before = a.cluster.stats.framesDirect, b.cluster.stats.framesDirect
    for i in range(10):
        a1.send(idB1, b"a1 to b1 %d" % i)
        b1.send(idA1, b"b1 to a1 %d" % i)
    yield b1.events.rec.wait(lambda: len(b1.events.messagesFrom(idA1)) == 10)
    yield a1.events.rec.wait(lambda: len(a1.events.messagesFrom(idB1)) == 10)
    assert b1.events.messagesFrom(idA1) == [b"a1 to b1 %d" % i for i in range(10)]
    assert a1.events.messagesFrom(idB1) == [b"b1 to a1 %d" % i for i in range(10)]
    # (A session frame may carry several messages.)
    assert a.cluster.stats.framesDirect > before[0] and b.cluster.stats.framesDirect > before[1]
    assert [s.cluster.stats.framesOut - s.cluster.stats.framesDirect for s in (a, b)] == viaRedis
    for server in (a, b):
        assert server.cluster.stats.directRejected == server.cluster.stats.directUnknown == 0
        assert server.cluster.gauges() == {"available": 1, "members": 1, "directPaths": 1,
                                           "pendingBytes": 0}


@pytest_twisted.inlineCallbacks
def test_theFramesOfOneRelayRequestForOneServerShareADatagram(world):
    a, _, (a1, b1, b2), (idA1, idB1, idB2), _ = yield directGroup(world)
    a1.forceRelay(idB2)
    stats = a.cluster.stats
    frames, datagrams = stats.framesDirect, stats.directDatagrams
    a1.send(idB1, b"to b1")             # one turn: a1's one relay request,
    a1.send(idB2, b"to b2")             # two frames for clients of b
    yield b2.events.rec.wait(lambda: b2.events.messagesFrom(idA1) == [b"to b2"])
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1)[-1:] == [b"to b1"])
    assert stats.framesDirect - frames >= 2
    assert stats.directDatagrams - datagrams < stats.framesDirect - frames


@pytest_twisted.inlineCallbacks
def test_withoutDirectRelayFramesGoThroughRedis(world):
    a, _, (a1, b1, _), (idA1, idB1, _), _ = yield spanningGroup(world, directRelay=False)
    a1.forceRelay(idB1)
    a1.send(idB1, b"through Redis")
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1) == [b"through Redis"])
    assert a.cluster.stats.framesOut > 0 and a.cluster.stats.framesDirect == 0
    assert not a.cluster.isDirect("b")
    # A server datagram to a member without direct paths is rejected and counted.
    claimant = DirectPaths("b", "b-1", 1.0)
    claimant.add("a", a.cluster.incarnation, "00" * 32, a.getUdpAddress())
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.sendto(claimant.probe("a")[0], a.getUdpAddress())
        yield a.events.rec.wait(lambda: a.cluster.stats.directRejected == 1)


@pytest_twisted.inlineCallbacks
def test_forgedReplayedAndMisdirectedServerDatagramsAreRejectedLoggedOnceAndNeverAnswered(
        world):
    a, b, (a1, b1, _), (idA1, idB1, _), _ = yield directGroup(world)
    c = world.server("c")
    yield world.ready(a, b, c)
    target = a.getUdpAddress()
    genuine, _ = b.cluster.direct.probe("a")        # b's, sent by the attacker
    forC, _ = b.cluster.direct.probe("c")
    forged = bytearray(b.cluster.direct.probe("a")[0])
    forged[-1] ^= 1
    name = b"b"
    datagrams = [genuine, genuine, forC, bytes(forged),
                 bytes([WIRE_VERSION, UDP_CLUSTER_TYPE, 1]) + b"x" + bytes(30),  # a stranger
                 bytes([WIRE_VERSION, UDP_CLUSTER_TYPE, len(name)]) + name]     # cut short
    datagrams += [bytes(forged)] * 44                                           # a flood
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    attacker.setblocking(False)
    warnings = Warnings(attacker.getsockname())
    rejected, unknown = a.cluster.stats.directRejected, a.cluster.stats.directUnknown
    try:
        for datagram in datagrams:
            attacker.sendto(datagram, target)
        # The first copy of b's probe is genuine: a answers it, to b; "x" is
        # no member (counted apart: it might be one a has not heard of yet).
        yield a.events.rec.wait(
            lambda: a.cluster.stats.directRejected == rejected + len(datagrams) - 2)
        yield a.events.rec.wait(lambda: a.cluster.stats.directUnknown == unknown + 1)
        with pytest.raises(BlockingIOError):
            attacker.recv(2048)                 # nothing ever came back to the sender
    finally:
        attacker.close()
        warnings.close()
    assert len(warnings.events) == 1
    assert "claimed to come from a cluster server" in warnings.events[0]["log_format"]
    # Nobody else noticed.
    a1.send(idB1, b"after the attack")
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1)[-1:] == [b"after the attack"])
    assert a.cluster.isDirect("b") and b.cluster.stats.directRejected == 0


class Warnings:
    """The cluster's warnings about datagrams from C{address}."""

    def __init__(self, address) -> None:
        self.address = address
        self.events = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event) -> None:
        if event.get("address") == self.address:
            self.events.append(event)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self)


@pytest_twisted.inlineCallbacks
def test_aServerNamedInDatagramsThatStaysUnknownIsWarnedOfOnceAtTheNextHeartbeat(world):
    a, b = world.server("a", heartbeat=0.2), world.server("b", heartbeat=0.2)
    yield world.ready(a, b)
    ghost = DirectPaths("ghost", "g-1", 1.0)
    ghost.add("a", a.cluster.incarnation, a.cluster.direct.relayKey, a.getUdpAddress())
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        warnings = Warnings(sock.getsockname())
        try:
            for _ in range(100):
                sock.sendto(ghost.probe("a")[0], a.getUdpAddress())
            yield a.events.rec.wait(lambda: a.cluster.stats.directUnknown == 100)
            assert warnings.events == []            # not before the members are read
            yield a.events.rec.wait(lambda: warnings.events, timeout=5)
        finally:
            warnings.close()
    assert len(warnings.events) == 1 and "'ghost'" in str(warnings.events[0]["error"])
    assert a.cluster.stats.directRejected == 0 and a.cluster._unknownClaims == {}


@pytest_twisted.inlineCallbacks
def test_aMemberNotHeardOfYetIsNotReportedAsForged(world):
    # c probes a before a has heard of c (as when servers start together):
    # counted, and forgotten once a reads c among the members.
    a = world.server("a", heartbeat=0.2)
    yield world.ready(a)
    c = world.server("c", heartbeat=0.2)
    c.cluster.direct.add("a", a.cluster.incarnation, a.cluster.direct.relayKey,
                         a.getUdpAddress())
    warnings = Warnings(c.getUdpAddress())
    try:
        c.cluster._sendDirect(c.cluster.direct.probe("a"))
        yield a.events.rec.wait(lambda: a.cluster.stats.directUnknown == 1)
        yield world.ready(a, c)
        yield a.events.rec.wait(lambda: a.cluster.isDirect("c") and c.cluster.isDirect("a"))
        yield a.events.rec.wait(lambda: a.cluster._unknownClaims == {})
    finally:
        warnings.close()
    assert warnings.events == [] and a.cluster.stats.directRejected == 0


@pytest_twisted.inlineCallbacks
def test_aServerInNoClusterRejectsServerDatagrams(world):
    from proud_twisted import NetServer
    from tests.clustersupport import VERSION
    from tests.support import RecordingServerEvents

    a, b, *_ = yield spanningGroup(world)
    lone = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1")
    lone.startService()
    try:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
            sock.sendto(b.cluster.direct.probe("a")[0], lone.getUdpAddress())
            yield a.events.rec.wait(lambda: lone.stats.malformedDatagrams == 1)
        assert a.cluster.stats.directRejected == 0
    finally:
        yield lone.stopService()


def _iptablesUsable() -> str:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return "needs root and iptables"
    return ""


@contextlib.contextmanager
def droppedBetween(portA: int, portB: int):
    """Loopback UDP between these two ports dropped, both ways, for the block."""
    rules = [["OUTPUT", "-o", "lo", "-p", "udp", "--sport", str(src), "--dport", str(dst),
              "-j", "DROP"] for src, dst in ((portA, portB), (portB, portA))]
    for rule in rules:
        subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)


@pytest_twisted.inlineCallbacks
def test_whenTheDirectPathDiesFramesGoThroughRedisAndNothingReliableIsLost(world):
    why = _iptablesUsable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"this test {why} (CI runs as root with iptables)")
        pytest.skip(why)
    a, b, (a1, b1, _), (idA1, idB1, _), _ = yield directGroup(world, heartbeat=0.2)
    with droppedBetween(a.getUdpAddress()[1], b.getUdpAddress()[1]):
        for i in range(5):
            a1.send(idB1, b"%d" % i)
        # Probes go unanswered: within 2.5 heartbeats a sends through Redis.
        yield a.events.rec.wait(lambda: not a.cluster.isDirect("b"), timeout=5)
        throughRedis = a.cluster.stats.framesOut - a.cluster.stats.framesDirect
        for i in range(5, 10):
            a1.send(idB1, b"%d" % i)
        yield b1.events.rec.wait(lambda: len(b1.events.messagesFrom(idA1)) == 10, timeout=20)
        assert b1.events.messagesFrom(idA1) == [b"%d" % i for i in range(10)]
        assert a.cluster.stats.framesOut - a.cluster.stats.framesDirect > throughRedis
    # The path answers again: back to UDP.
    yield a.events.rec.wait(lambda: a.cluster.isDirect("b"), timeout=5)
    direct = a.cluster.stats.framesDirect
    a1.send(idB1, b"straight again")
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1)[-1:] == [b"straight again"])
    assert a.cluster.stats.framesDirect > direct
