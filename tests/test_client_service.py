"""NetClient as a Twisted service: joins on start, joins again after a
failure or a leave (backing off), leaves on stop.

Deterministic: a memory network on one virtual clock.
"""

import uuid

from twisted.application.service import IService, MultiService
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ErrorType, NetClient, NetServer
from proud_twisted.testing import MemoryNetwork
from tests.support import RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("6e2a9c41-0b7d-4f58-93a1-d4c8e5f27b60")
SERVER_IP = "203.0.113.1"
PORT = 33333


class ServiceWorld:
    def __init__(self, testCase, accept: bool = True, version=VERSION) -> None:
        self.net = MemoryNetwork(seed=0)
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverEvents = RecordingServerEvents(self.net.clock, accept=accept)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=PORT, udpPort=PORT,
                                reactor=self.serverHost)
        self.events = RecordingClientEvents(self.net.clock)
        self.client = NetClient(self.events, reactor=self.net.addHost("198.51.100.10"),
                                host=SERVER_IP, port=PORT, protocolVersion=version,
                                userData=b"player one")
        testCase.addCleanup(self.stop)

    def joined(self) -> list:
        return [result for result, _ in self.events.rec.named("onJoinServerComplete")
                if result is ErrorType.OK]

    def attempts(self) -> int:
        return self.net.stats["tcp.connects"]

    def stop(self) -> None:
        for service in (self.client, self.server):
            if service.running:
                service.stopService()
        self.net.advance(5)


class ClientServiceTests(SynchronousTestCase):
    def test_aMultiServiceStartsJoinsAndStopsTheClient(self):
        world = ServiceWorld(self)
        top = MultiService()
        world.server.setServiceParent(top)
        world.client.setServiceParent(top)
        self.assertTrue(IService.providedBy(world.client))
        top.startService()
        self.assertTrue(world.net.runUntil(world.joined, 5))
        (info,), = world.serverEvents.rec.named("onClientJoin")
        self.assertEqual(info.userData, b"player one")
        stopped = top.stopService()
        self.assertTrue(world.net.runUntil(lambda: stopped.called, 5))
        # (MultiService stops its children at once: the server may close first.)
        self.assertEqual(world.serverEvents.rec.count("onClientLeave"), 1)
        self.assertFalse(world.client.running)
        world.net.advance(120)
        self.assertEqual(len(world.joined()), 1)
        self.assertEqual(world.net.clock.getDelayedCalls(), [])

    def test_itKeepsTryingUntilTheServerIsThere(self):
        world = ServiceWorld(self)
        world.client.startService()
        world.net.advance(10)
        tries = world.attempts()
        self.assertGreaterEqual(tries, 3)
        self.assertLessEqual(tries, 6)          # backing off: 1 s, 1.5 s, 2.25 s, ... (+jitter)
        world.server.startService()
        self.assertTrue(world.net.runUntil(world.joined, 30))

    def test_itJoinsAgainAfterBeingDropped(self):
        world = ServiceWorld(self)
        world.server.startService()
        world.client.startService()
        self.assertTrue(world.net.runUntil(world.joined, 5))
        first = world.client.getLocalHostID()
        world.server.closeConnection(first)
        self.assertTrue(world.net.runUntil(lambda: len(world.joined()) == 2, 10))
        self.assertEqual(world.events.rec.count("onLeaveServer"), 1)
        self.assertNotEqual(world.client.getLocalHostID(), 0)

    def test_aLocalDisconnectIsNotUndone(self):
        world = ServiceWorld(self)
        world.server.startService()
        world.client.startService()
        self.assertTrue(world.net.runUntil(world.joined, 5))
        world.client.disconnect()
        world.net.advance(120)
        self.assertEqual(len(world.joined()), 1)
        self.assertEqual(world.client.getLocalHostID(), 0)

    def test_stoppingWhileItWaitsToTryAgainLeavesNothingScheduled(self):
        world = ServiceWorld(self)
        world.client.startService()
        world.net.advance(2.5)
        stopped = world.client.stopService()
        self.assertTrue(stopped.called)
        tries = world.attempts()
        world.net.advance(120)
        self.assertEqual(world.attempts(), tries)
        self.assertEqual(world.net.clock.getDelayedCalls(), [])

    def test_aRefusalByTheGameOrAnotherVersionIsNotRetried(self):
        for world in (ServiceWorld(self, accept=False),
                      ServiceWorld(self, version=uuid.UUID(int=1))):
            world.server.startService()
            world.client.startService()
            world.net.advance(120)
            self.assertEqual(world.attempts(), 1)
            self.assertEqual(world.joined(), [])
            self.assertEqual(world.events.rec.count("onJoinServerComplete"), 1)

    def test_startingNeedsAServer(self):
        client = NetClient(reactor=MemoryNetwork().addHost("198.51.100.9"))
        self.assertRaises(ValueError, client.startService)
        self.assertFalse(client.running)
