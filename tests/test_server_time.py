"""Server time and round trips, whole server and clients in the memory
network: a server whose clock is offset on purpose, asymmetric and jittery
paths, and clients that lie, forge and flood.

Deterministic (one virtual clock), so these run under trial and pytest.
"""

import math

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import NetClient, ServerUdpState
from proud_twisted.server.connection import ServerConnection
from proud_twisted.server.udp import ServerDatagramProtocol
from proud_twisted.testing import LinkConditions, MemoryNetwork
from proud_twisted.wire.datagrams import encodeDatagram
from proud_twisted.wire.messages import RTT_UNKNOWN
from tests.support import OffsetReactor, spyOn
from tests.test_memnet_relay import RelayWorld

OFFSET = -86_400.0 * 365 + 0.123456     # the server's clock: a year and a bit behind
THERE, BACK, JITTER = 0.060, 0.010, 0.004    # asymmetric: the estimate is off, within bound


class TimeWorld(RelayWorld):
    """A server on an offset clock and clients on their own hosts, with a
    slow path to the server and a fast one back."""

    def __init__(self, testCase, clients: int = 2, seed: int = 0) -> None:
        super().__init__(testCase, seed, clients,
                         toServer=LinkConditions(latency=THERE, jitter=JITTER),
                         fromServer=LinkConditions(latency=BACK, jitter=JITTER),
                         serverReactor=lambda host: OffsetReactor(host, OFFSET))

    def serverClock(self) -> float:
        return self.serverReactor.seconds()

    def offBy(self, client) -> float:
        return abs(client.getServerTime() - self.serverClock())

    def connection(self, client) -> ServerConnection:
        return self.server._engine._clients[client.getLocalHostID()]


class ServerTimeTests(SynchronousTestCase):
    def test_noServerTimeBeforeJoining(self):
        client = NetClient(reactor=MemoryNetwork().addHost("198.51.100.9"))
        self.assertEqual((client.getServerTime(), client.getServerTimeError(),
                          client.getServerRtt()), (None, None, None))

    def test_theServerClockIsKnownWithinASecondAndStaysWithinTheBound(self):
        world = TimeWorld(self)
        start = world.net.clock.seconds()
        self.assertTrue(world.net.runUntil(
            lambda: all(c.getServerTime() is not None for c in world.clients), 1.0))
        self.assertLess(world.net.clock.seconds() - start, 1.0)
        worst = 0.0
        for _ in range(120):                    # two minutes of keepalives, every 0.5 s
            world.net.advance(0.5)
            for client in world.clients:
                error = client.getServerTimeError()
                self.assertLessEqual(world.offBy(client), error)
                # Half the shortest round trip (70 ms, jittered) and a little drift.
                self.assertLess(error, (THERE + BACK) / 2 + 2 * JITTER + 0.001)
                worst = max(worst, world.offBy(client))
        # The path is asymmetric: the midpoint is 25 ms off, which the bound covers.
        self.assertGreater(worst, 0.015)

    def test_withoutUdpTheTcpKeepalivesKeepTheClockSampled(self):
        world = TimeWorld(self, clients=1)
        (client,) = world.clients
        world.setUdpLoss(0, 1.0)
        clock = client._engine._serverPath.clock
        world.net.advance(30.0)
        self.assertIs(client.getServerUdpState(), ServerUdpState.LOST)
        samples = list(clock._samples)
        world.net.advance(30.0)
        self.assertGreaterEqual(len(set(clock._samples) - set(samples)), 3)
        self.assertLessEqual(world.offBy(client), client.getServerTimeError())
        self.assertLess(client.getServerTimeError(), 0.011)    # 10 ms each way now

    def test_roundTripsAreSecondsEverywhere(self):
        world = TimeWorld(self)
        a, b = world.clients
        world.server.createP2PGroup(world.ids(), allowDirectP2P=False)
        self.assertTrue(world.net.runUntil(
            lambda: world.serverEvents.rec.count("onP2PGroupJoinMemberAckComplete") >= 2, 10))
        a.send(b.getLocalHostID(), b"ping")
        b.send(a.getLocalHostID(), b"pong")
        world.net.advance(10.0)         # a keepalive carries each client's figure to the server
        low, high = THERE + BACK - 2 * JITTER, THERE + BACK + 2 * JITTER
        for client in (a, b):
            rtt = client.getServerRtt()
            self.assertTrue(low <= rtt <= high, rtt)
            reported = world.server.getClientInfo(client.getLocalHostID()).rtt
            self.assertTrue(low <= reported <= high, reported)
        # Peer to peer through the relay: there and back twice.
        peerRtt = a.getPeerInfo(b.getLocalHostID()).rtt
        self.assertEqual(peerRtt, a.getPeerInfo(b.getLocalHostID()).stats.srtt)
        self.assertTrue(2 * low <= peerRtt <= 2 * high + 0.01, peerRtt)

    def test_theServerShowsNoFigureBeforeTheClientHasOne(self):
        world = TimeWorld(self, clients=1)
        (client,) = world.clients
        self.assertIsNone(world.server.getClientInfo(client.getLocalHostID()).rtt)
        world.net.advance(10.0)
        self.assertIsNotNone(world.server.getClientInfo(client.getLocalHostID()).rtt)


def sendRaw(client, datagram: bytes) -> None:
    """Send a datagram to the server from C{client}'s socket, sealed with its keys."""
    client._engine._sendUdp(datagram)


class HostileTests(SynchronousTestCase):
    def test_aClientCannotChangeAnotherClientsFigures(self):
        world = TimeWorld(self, seed=1)
        honest, cheat = world.clients
        world.net.advance(10.0)
        figure = world.server.getClientInfo(honest.getLocalHostID()).rtt
        spoofed = world.server.stats.spoofedDatagrams
        for rtt in (0.0, 99.0):
            sendRaw(cheat, encodeDatagram("UDP_PING", hostID=honest.getLocalHostID(),
                                          timestamp=1.0, rtt=rtt))
        world.net.advance(0.5)
        self.assertEqual(world.server.stats.spoofedDatagrams, spoofed + 2)
        self.assertEqual(world.server.getClientInfo(honest.getLocalHostID()).rtt, figure)
        self.assertLessEqual(world.offBy(honest), honest.getServerTimeError())

    def test_garbageRoundTripsAreIgnoredAndCountedAndTheKeepaliveStillAnswered(self):
        world = TimeWorld(self, seed=2)
        cheat = world.clients[1]
        world.net.advance(10.0)
        cheatID = cheat.getLocalHostID()
        figures = [world.server.getClientInfo(h).rtt for h in world.ids()]
        answered = []
        spyOn(self, ServerConnection, "answerKeepalive",
              lambda connection, pong: answered.append(connection.hostID))
        garbage = (math.nan, math.inf, -5.0, 1e9)
        for rtt in [*garbage, RTT_UNKNOWN]:
            sendRaw(cheat, encodeDatagram("UDP_PING", hostID=cheatID, timestamp=2.0, rtt=rtt))
        world.net.advance(0.5)
        self.assertEqual(world.server.stats.rttReportsRejected, len(garbage))
        self.assertEqual(answered.count(cheatID), len(garbage) + 1)
        self.assertEqual([world.server.getClientInfo(h).rtt for h in world.ids()], figures)
        # The answers echo a timestamp the cheat's own clock never sent: rejected.
        self.assertGreaterEqual(cheat._engine._serverPath.clock.rejected, len(garbage) + 1)
        self.assertLessEqual(world.offBy(cheat), cheat.getServerTimeError())

    def test_aForgedPongIsDroppedAndAGarbledOneRejectedAndCounted(self):
        world = TimeWorld(self, seed=3)
        client = world.clients[0]
        world.net.advance(5.0)
        engine = client._engine
        malformed, rejected = engine.malformedDatagrams, engine._serverPath.clock.rejected
        server, address = world.server._engine, world.connection(client).udpAddress
        # Forged: not sealed with the session's keys.
        server.sendUdp(encodeDatagram("UDP_PONG", timestamp=1.0, serverTime=0.0), address)
        # Sealed by the server, but answering no ping, or with no time in it.
        for timestamp, serverTime in ((12345.0, 0.0), (engine.reactor.seconds(), math.nan)):
            world.connection(client).sendDatagram(encodeDatagram(
                "UDP_PONG", timestamp=timestamp, serverTime=serverTime))
        world.net.advance(0.5)
        self.assertEqual(engine.malformedDatagrams, malformed + 1)
        self.assertEqual(engine._serverPath.clock.rejected, rejected + 2)
        self.assertLessEqual(world.offBy(client), client.getServerTimeError())

    def test_aFloodOfTimeRequestsIsAnsweredByNoMoreBytesThanItBrings(self):
        world = TimeWorld(self, seed=4)
        honest, flooder = world.clients
        world.net.advance(5.0)
        flooderAddress = world.connection(flooder).udpAddress
        into, outOf = [], []
        spyOn(self, ServerDatagramProtocol, "datagramReceived",
              lambda protocol, data, addr: into.append(len(data))
              if addr == flooderAddress else None)
        spyOn(self, type(world.server._engine), "sendUdp",
              lambda engine, data, addr: outOf.append(len(data))
              if addr == flooderAddress else None)
        now = flooder._engine.reactor.seconds()
        for i in range(500):
            sendRaw(flooder, encodeDatagram("UDP_PING", hostID=flooder.getLocalHostID(),
                                            timestamp=now + i * 1e-6, rtt=0.07))
        world.net.advance(1.0)
        self.assertGreaterEqual(len(into), 500)
        self.assertLessEqual(len(outOf), len(into))
        self.assertLessEqual(sum(outOf), sum(into))
        self.assertLessEqual(max(outOf), min(into))
        # The honest client's clock and figures are untouched; the flooder's own too.
        self.assertLessEqual(world.offBy(honest), honest.getServerTimeError())
        self.assertLessEqual(world.offBy(flooder), flooder.getServerTimeError())
        self.assertEqual(world.server.getClientHostIDs(), sorted(world.ids()))
