"""What an idle player costs the server: keepalives over UDP only, and no
cipher contexts held while nothing is sealed or opened."""


from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ServerUdpState
from proud_twisted.client.engine import TCP_KEEPALIVE_WHILE_UDP
from proud_twisted.server.connection import ServerConnection
from tests.support import spyOn
from tests.test_memnet_relay import RelayWorld


class KeepaliveTests(SynchronousTestCase):
    def countTcpPings(self):
        pings = []
        spyOn(self, ServerConnection, "handle_PING",
              lambda connection, fields: pings.append(connection.hostID))
        return pings

    def test_anIdleClientKeepsAliveOverUdpOnly(self):
        pings = self.countTcpPings()
        world = RelayWorld(self, seed=3)
        world.formGroup()
        world.net.advance(1.0)      # past the pings that sample the server's clock at joining
        del pings[:]
        udpBefore = world.net.stats["udp.delivered"]
        world.net.advance(2 * TCP_KEEPALIVE_WHILE_UDP)
        for client in world.clients:
            self.assertLessEqual(pings.count(client.getLocalHostID()), 2)
            self.assertIs(client.getServerUdpState(), ServerUdpState.CONFIRMED)
        self.assertEqual(world.server.getClientHostIDs(), sorted(world.ids()))
        # A keepalive and its answer every 6.7 s (18 in 120 s) for each client.
        udp = world.net.stats["udp.delivered"] - udpBefore
        self.assertGreaterEqual(udp, 2 * 2 * 17)
        self.assertLessEqual(udp, 2 * 2 * 21)

    def test_withoutUdpAnswersTcpKeepsTheClientConnected(self):
        pings = self.countTcpPings()
        world = RelayWorld(self, seed=4)
        world.formGroup()
        world.setUdpLoss(0, 1.0)
        del pings[:]
        world.net.advance(TCP_KEEPALIVE_WHILE_UDP)
        lost, kept = world.clients
        self.assertIs(lost.getServerUdpState(), ServerUdpState.LOST)
        # Every keepalive (9 in 60 s) once an answer is missing.
        self.assertGreaterEqual(pings.count(lost.getLocalHostID()), 6)
        self.assertLessEqual(pings.count(kept.getLocalHostID()), 1)
        self.assertEqual(world.server.getClientHostIDs(), sorted(world.ids()))


class CipherContextTests(SynchronousTestCase):
    def test_idleClientsHoldNoCipherContextsAndUseThemAgainAtOnce(self):
        world = RelayWorld(self, seed=5)
        world.formGroup()
        world.net.advance(10)
        connections = list(world.server._engine._clients.values())
        for connection in connections:
            for channel in (connection.tcpChannel, connection.udpChannel):
                self.assertIsNone(channel._encrypt)
                self.assertIsNone(channel._decrypt)
        a, b = world.clients
        a.send(b.getLocalHostID(), b"after the release")
        world.server.send(a.getLocalHostID(), b"from the server")
        self.assertTrue(world.net.runUntil(
            lambda: b"after the release" in b.events.messagesFrom(a.getLocalHostID())
            and a.events.messagesFrom(1) == [b"from the server"], 5))

    def test_aKeepaliveAnswerDropsTheUdpContextsAtOnce(self):
        world = RelayWorld(self, seed=6)
        world.formGroup()
        channel = world.server._engine._clients[world.ids()[0]].udpChannel
        answered = []
        spyOn(self, ServerConnection, "answerKeepalive",
              lambda connection, pong: answered.append(connection.udpChannel))
        self.assertTrue(world.net.runUntil(lambda: channel in answered, 10))
        self.assertIsNone(channel._encrypt)
        self.assertIsNone(channel._decrypt)
        self.assertIs(world.clients[0].getServerUdpState(), ServerUdpState.CONFIRMED)
