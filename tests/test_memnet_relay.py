"""Whole server and clients in the memory network: the pair session over the relay.

Deterministic (one virtual clock), so these run under trial and pytest.
"""

import random
import uuid
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import HOSTID_SERVER, NetClient, NetServer, SendQueueFull, ServerUdpState
from proud_twisted.client import engine as clientEngine
from proud_twisted.server.connection import ServerConnection
from proud_twisted.testing import LinkConditions, MemoryNetwork
from tests.support import RecordingClientEvents, RecordingServerEvents, spyOn, stopMemoryWorld

VERSION = uuid.UUID("9c5e0a57-1f3b-4c1e-9a0e-6d2f3b1a7c11")
SERVER_IP = "203.0.113.1"


def mixedSizes(count: int, seed: int, largest: int = 65536) -> list:
    """Payload sizes from 1 B to C{largest}, log-uniform, seeded."""
    rng = random.Random(seed)
    return [max(1, int(largest ** rng.random())) for _ in range(count)]


class RelayWorld:
    """A server on the public internet and clients on their own public hosts.

    The paths to and from the server have C{latency}, unless C{toServer} and
    C{fromServer} give their conditions; C{serverReactor} wraps the server's
    host reactor (to give the server a clock of its own, say).
    """

    def __init__(self, testCase, seed: int = 0, clients: int = 2, latency: float = 0.01,
                 toServer: LinkConditions | None = None,
                 fromServer: LinkConditions | None = None,
                 serverReactor=lambda host: host):
        self.net = MemoryNetwork(seed=seed)
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverReactor = serverReactor(self.serverHost)
        self.serverEvents = RecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=33333, udpPort=33333,
                                reactor=self.serverReactor)
        self.server.startService()
        self.hosts = [self.net.addHost(f"198.51.100.{10 + i}") for i in range(clients)]
        plain = LinkConditions(latency=latency)
        for host in self.hosts:
            self.net.setConditions(host, self.serverHost, toServer or plain)
            self.net.setConditions(self.serverHost, host, fromServer or plain)
        self.clients = [NetClient(RecordingClientEvents(self.net.clock), reactor=host)
                        for host in self.hosts]
        joined = [c.connect(SERVER_IP, 33333, VERSION) for c in self.clients]
        assert self.net.runUntil(lambda: all(d.called for d in joined), 10)
        assert self.net.runUntil(lambda: all(
            c.getServerUdpState() is ServerUdpState.CONFIRMED for c in self.clients), 10)
        testCase.addCleanup(self.stop)

    def ids(self):
        return [c.getLocalHostID() for c in self.clients]

    def formGroup(self, allowDirectP2P: bool = False):
        """Put every client in one group (relay only, unless C{allowDirectP2P})."""
        group = self.server.createP2PGroup(self.ids(), allowDirectP2P=allowDirectP2P)
        count = len(self.clients)
        assert self.net.runUntil(
            lambda: self.serverEvents.rec.count("onP2PGroupJoinMemberAckComplete") >= count, 10)
        return group

    def toServer(self, conditions: LinkConditions) -> None:
        """Put every client's link towards the server under C{conditions}."""
        for host in self.hosts:
            self.net.setConditions(host, self.serverHost, conditions)

    def setUdpLoss(self, client: int, loss: float) -> None:
        """Lose UDP between one client and the server, both ways."""
        host = self.hosts[client]
        for a, b in ((host, self.serverHost), (self.serverHost, host)):
            self.net.setConditions(a, b, LinkConditions(loss=loss, latency=0.01))

    def stream(self, sender, receiver, payloads, timeout: float, duringStream=None):
        """Send all C{payloads} as fast as back-pressure allows; run until received."""
        target = receiver.getLocalHostID()
        senderID = sender.getLocalHostID()
        got = receiver.events.messagesFrom
        queue = list(reversed(payloads))
        deadline = self.net.clock.seconds() + timeout
        while queue and self.net.clock.seconds() < deadline:
            try:
                while queue:
                    sender.send(target, queue[-1])
                    queue.pop()
            except SendQueueFull:
                pass
            if duringStream is not None:
                duringStream(len(payloads) - len(queue))
            self.net.advance(0.02)
        assert not queue, f"{len(queue)} messages never left the sender"
        remaining = deadline - self.net.clock.seconds()
        self.net.runUntil(lambda: len(got(senderID)) >= len(payloads), max(remaining, 1))
        return got(senderID)

    def stop(self):
        stopMemoryWorld(self.net, self.server, self.clients, linger=2.0)


def payloadsOf(sizes):
    return [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 1)
            if size >= 4 else bytes([i % 251]) * size
            for i, size in enumerate(sizes)]


class ReliableOverLossyRelayTests(SynchronousTestCase):
    def runStream(self, loss: float, count: int, seed: int, largest: int = 65536):
        world = RelayWorld(self, seed=seed)
        world.formGroup()
        world.setUdpLoss(0, loss)
        world.setUdpLoss(1, loss)
        sent = payloadsOf(mixedSizes(count, seed, largest))
        a, b = world.clients
        received = world.stream(a, b, sent, timeout=3600)
        self.assertEqual(len(received), len(sent))
        self.assertTrue(received == sent, "reliable stream differs from what was sent")
        stats = a.getPeerInfo(b.getLocalHostID()).stats
        self.assertGreater(stats.retransmissions, 0)
        return world

    def test_tenThousandMixedMessagesWithTenPercentLossEachWay(self):
        world = self.runStream(0.10, 10_000, seed=10)
        self.assertGreater(world.net.stats["udp.dropped"], 0)

    def test_thirtyPercentLossStillCompletes(self):
        self.runStream(0.30, 2_000, seed=30, largest=16384)


class PathSwitchTests(SynchronousTestCase):
    def test_udpRelayDiesMidStreamTcpRelayCarriesTheRest(self):
        world = RelayWorld(self, seed=5)
        world.formGroup()
        a, b = world.clients
        sent = payloadsOf(mixedSizes(3000, 5, 8192))
        switched = []

        def cutUdpHalfway(sentSoFar):
            if not switched and sentSoFar >= len(sent) // 2:
                switched.append(world.net.clock.seconds())
                world.setUdpLoss(0, 1.0)     # every UDP datagram of A is lost from now on

        received = world.stream(a, b, sent, timeout=600, duringStream=cutUdpHalfway)
        self.assertTrue(switched)
        self.assertEqual(a.getServerUdpState(), ServerUdpState.LOST)
        self.assertEqual(len(received), len(sent))
        self.assertTrue(received == sent, "reliable stream differs after the path switch")


class UnreliableModesTests(SynchronousTestCase):
    def test_unreliableNeverDuplicatedUnderDuplication(self):
        world = RelayWorld(self, seed=7)
        world.formGroup()
        world.toServer(LinkConditions(duplicate=0.5, reorder=0.2, latency=0.01))
        a, b = world.clients
        sent = [b"pos%04d" % i for i in range(500)]
        for payload in sent:
            a.send(b.getLocalHostID(), payload, reliable=False)
            world.net.advance(0.001)
        world.net.advance(2)
        got = b.events.messagesFrom(a.getLocalHostID())
        self.assertGreater(len(got), 400)
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(set(got) <= set(sent))

    def test_latestOnlyNeverGoesBackwards(self):
        from proud_twisted.rudp import DeliveryMode
        world = RelayWorld(self, seed=8)
        world.formGroup()
        world.toServer(LinkConditions(reorder=0.3, reorderDelay=0.05, latency=0.01))
        a, b = world.clients
        for i in range(300):
            a.send(b.getLocalHostID(), i.to_bytes(2, "big"), mode=DeliveryMode.UNRELIABLE_LATEST,
                   channel=3)
            world.net.advance(0.002)
        world.net.advance(2)
        got = [int.from_bytes(p, "big") for p in b.events.messagesFrom(a.getLocalHostID())]
        self.assertTrue(got)
        self.assertEqual(got, sorted(set(got)))
        self.assertEqual(got[-1], 299)
        contexts = [ctx for _, _, ctx in b.events.rec.named("onReceiveUserMessage")]
        self.assertTrue(all(ctx.channel == 3 and not ctx.reliable for ctx in contexts))

    def test_unreliableToServerOverUdpSession(self):
        world = RelayWorld(self, seed=9, clients=1)
        (a,) = world.clients
        big = b"x" * 20000          # larger than a datagram: fragmented, delivered whole
        a.send(1, big, reliable=False)
        self.assertTrue(world.net.runUntil(
            lambda: world.serverEvents.rec.count("onReceiveUserMessage") >= 1, 5))
        sender, payload, ctx = world.serverEvents.rec.named("onReceiveUserMessage")[0]
        self.assertEqual((sender, payload, ctx.reliable), (a.getLocalHostID(), big, False))
        world.server.send(a.getLocalHostID(), big, reliable=False)
        self.assertTrue(world.net.runUntil(lambda: a.events.messagesFrom(1) == [big], 5))


class GroupSendTests(SynchronousTestCase):
    def test_groupSendIsOneRelayRequestTheServerFansOut(self):
        world = RelayWorld(self, seed=11, clients=4)
        group = world.formGroup()
        world.net.advance(1)          # let join traffic settle
        a = world.clients[0]
        requestsBefore = a._engine.relayBatcher.requestsSent
        serverBefore = world.server.stats.relayRequests
        framesBefore = world.server.stats.framesRelayed
        a.send(group, b"to everyone")
        world.net.advance(0)          # this reactor turn's flushes, nothing more
        self.assertEqual(a._engine.relayBatcher.requestsSent - requestsBefore, 1)
        self.assertTrue(world.net.runUntil(lambda: all(
            c.events.messagesFrom(a.getLocalHostID()) == [b"to everyone"]
            for c in world.clients[1:]), 2))
        self.assertGreaterEqual(world.server.stats.relayRequests - serverBefore, 1)
        self.assertGreaterEqual(world.server.stats.framesRelayed - framesBefore, 3)
        self.assertEqual(a.events.messagesFrom(a.getLocalHostID()), [])


class JoinAckTests(SynchronousTestCase):
    """A client acknowledges the join notices it processed in one turn together."""

    def acksReceived(self):
        """Record every MEMBER_JOIN_ACK message the server handles."""
        received = []
        spyOn(self, ServerConnection, "handle_MEMBER_JOIN_ACK", lambda connection, fields:
              received.append((connection.hostID, list(fields.ackIDs))))
        return received

    def test_eachMemberAcknowledgesAFormingGroupInOneMessage(self):
        world = RelayWorld(self, clients=5)
        received = self.acksReceived()
        world.formGroup()
        self.assertEqual(sorted(hostID for hostID, _ in received), sorted(world.ids()))
        self.assertTrue(all(len(ackIDs) == 5 for _, ackIDs in received))
        self.assertEqual(sorted(m for _, m, _ in world.serverEvents.rec.named(
            "onP2PGroupJoinMemberAckComplete")), sorted(world.ids()))

    def test_manyAcknowledgementsAreSplitAcrossMessages(self):
        world = RelayWorld(self, clients=5)
        received = self.acksReceived()
        with mock.patch.object(clientEngine, "MAX_JOIN_ACKS", 2):
            world.formGroup()
        self.assertEqual(len(received), 5 * 3)      # 2 + 2 + 1 notices each
        self.assertEqual(sorted(len(ackIDs) for _, ackIDs in received), [1] * 5 + [2] * 10)
        self.assertEqual(world.serverEvents.rec.count("onP2PGroupJoinMemberAckComplete"), 5)


class ServerSessionTests(SynchronousTestCase):
    """The server makes a client's UDP session with it at its first use."""

    def test_madeByTheFirstUnreliableMessageEitherWay(self):
        world = RelayWorld(self, clients=2)
        a, b = world.clients
        connections = [world.server._engine._clients[c.getLocalHostID()] for c in (a, b)]
        self.assertEqual([c.udpSession for c in connections], [None, None])
        world.server.send(a.getLocalHostID(), b"to a", reliable=False)
        b.send(HOSTID_SERVER, b"from b", reliable=False)
        self.assertTrue(world.net.runUntil(
            lambda: a.events.messagesFrom(HOSTID_SERVER) == [b"to a"]
            and world.serverEvents.rec.count("onReceiveUserMessage") == 1, 5))
        self.assertEqual(world.serverEvents.rec.named("onReceiveUserMessage")[0][:2],
                         (b.getLocalHostID(), b"from b"))
        self.assertTrue(all(c.udpSession is not None for c in connections))
        # Both sessions go on from there, either way.
        world.server.send(b.getLocalHostID(), b"to b", reliable=False)
        a.send(HOSTID_SERVER, b"from a", reliable=False)
        self.assertTrue(world.net.runUntil(
            lambda: b.events.messagesFrom(HOSTID_SERVER) == [b"to b"]
            and world.serverEvents.rec.count("onReceiveUserMessage") == 2, 5))
