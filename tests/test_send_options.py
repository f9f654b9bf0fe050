"""NetServer.send takes NetClient.send's options, and they behave the same
way from the server to a client as from a client to the server.

Deterministic: a memory network on one virtual clock.
"""

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import HOSTID_SERVER, DeliveryMode, Priority, ServerUdpState
from proud_twisted.testing import LinkConditions
from tests.test_memnet_relay import RelayWorld

LATEST = DeliveryMode.UNRELIABLE_LATEST


class Direction:
    """Messages one way between the server and the first client of C{world}."""

    def __init__(self, world: RelayWorld, toServer: bool) -> None:
        self.world = world
        self.toServer = toServer
        self.client = world.clients[0]
        self.clientID = self.client.getLocalHostID()

    def __repr__(self) -> str:
        return "client -> server" if self.toServer else "server -> client"

    def send(self, payload: bytes, **options) -> None:
        if self.toServer:
            self.client.send(HOSTID_SERVER, payload, **options)
        else:
            self.world.server.send(self.clientID, payload, **options)

    def received(self) -> list:
        """C{(payload, context)} of every message that arrived, in order."""
        if self.toServer:
            events, sender = self.world.serverEvents.rec, self.clientID
        else:
            events, sender = self.client.events.rec, HOSTID_SERVER
        return [(payload, context) for who, payload, context
                in events.named("onReceiveUserMessage") if who == sender]

    def shuffleUdp(self) -> None:
        """Reorder UDP both ways between the client and the server."""
        host, server = self.world.hosts[0], self.world.serverHost
        for a, b in ((host, server), (server, host)):
            self.world.net.setConditions(a, b, LinkConditions(
                latency=0.01, reorder=0.3, reorderDelay=0.03))


def bothDirections(testCase, seed: int):
    for toServer in (True, False):
        yield Direction(RelayWorld(testCase, seed=seed, clients=1), toServer)


def sendSpaced(direction: Direction, payloads, gap: float = 0.005, **options) -> None:
    for payload in payloads:
        direction.send(payload, **options)
        direction.world.net.advance(gap)
    direction.world.net.advance(1.0)


def numbered(count: int, channel: int) -> list:
    return [bytes([channel]) + i.to_bytes(4, "big") for i in range(count)]


class SameOptionsBothWaysTests(SynchronousTestCase):
    def test_latestOnlyNeverGoesBackOnAnyChannel(self):
        for direction in bothDirections(self, seed=21):
            direction.shuffleUdp()
            for i in range(120):
                channel = 1 + i % 2
                direction.send(bytes([channel]) + i.to_bytes(4, "big"), mode=LATEST,
                               channel=channel)
                direction.world.net.advance(0.005)
            direction.world.net.advance(1.0)
            received = direction.received()
            self.assertGreater(len(received), 20, direction)
            for channel in (1, 2):
                numbers = [int.from_bytes(payload[1:], "big") for payload, context in received
                           if context.channel == channel]
                self.assertTrue(numbers, (direction, channel))
                self.assertEqual(numbers, sorted(set(numbers)), (direction, channel))
            for payload, context in received:
                self.assertIs(context.mode, LATEST)
                self.assertEqual(context.channel, payload[0])

    def test_theSameShuffleReordersPlainUnreliableMessages(self):
        """The path the test above runs on does overtake messages."""
        for direction in bothDirections(self, seed=21):
            direction.shuffleUdp()
            sendSpaced(direction, numbered(120, 1), mode=DeliveryMode.UNRELIABLE, channel=1)
            numbers = [int.from_bytes(p[1:], "big") for p, _ in direction.received()]
            self.assertNotEqual(numbers, sorted(numbers), direction)
            self.assertGreater(len(numbers), 100, direction)

    def test_aHighPriorityMessageOvertakesQueuedLowOnes(self):
        for direction in bothDirections(self, seed=22):
            low = [b"L" + i.to_bytes(2, "big") + bytes(997) for i in range(60)]
            for payload in low:
                direction.send(payload, reliable=False, priority=Priority.LOW)
            direction.send(b"HIGH", reliable=False, priority=Priority.HIGH)
            direction.world.net.advance(2.0)
            order = [payload for payload, _ in direction.received()]
            self.assertEqual(sorted(order), sorted([*low, b"HIGH"]), direction)
            # The window (16 datagrams at first) holds the queue back: the
            # high one goes out with the first room, long before the last low one.
            self.assertLess(order.index(b"HIGH"), 30, direction)

    def test_badOptionsAreRefusedAndSendNothing(self):
        for direction in bothDirections(self, seed=23):
            for options in (dict(channel=256), dict(channel=-1), dict(mode=9),
                            dict(priority=7), dict(reliable=False, channel=1.5)):
                self.assertRaises(ValueError, direction.send, b"bad", **options)
            direction.world.net.advance(1.0)
            self.assertEqual(direction.received(), [], direction)


class ServerSendTests(SynchronousTestCase):
    def test_aReliableMessageKeepsItsPlaceAfterTheGroupNotices(self):
        world = RelayWorld(self, seed=24, clients=1)
        client = world.clients[0]
        group = world.server.createP2PGroup([client.getLocalHostID()])
        world.server.send(group, b"welcome", mode=DeliveryMode.RELIABLE,
                          priority=Priority.HIGH, channel=7)
        self.assertTrue(world.net.runUntil(lambda: client.events.messagesFrom(1), 5))
        names = [event[0] for event in client.events.rec.events]
        self.assertLess(names.index("onP2PMemberJoin"), names.index("onReceiveUserMessage"))
        (_, _, context), = client.events.rec.named("onReceiveUserMessage")
        self.assertTrue(context.reliable)

    def test_aGroupGetsTheModeAndChannel(self):
        world = RelayWorld(self, seed=25, clients=3)
        group = world.formGroup()
        world.server.send(group, b"state", mode=LATEST, channel=3, priority=Priority.LOW)
        self.assertTrue(world.net.runUntil(
            lambda: all(c.events.messagesFrom(1) for c in world.clients), 5))
        for client in world.clients:
            (_, payload, context), = client.events.rec.named("onReceiveUserMessage")
            self.assertEqual((payload, context.mode, context.channel), (b"state", LATEST, 3))

    def test_withoutUdpUnreliableMessagesTakeTcp(self):
        world = RelayWorld(self, seed=26, clients=1)
        client = world.clients[0]
        world.setUdpLoss(0, 1.0)
        self.assertTrue(world.net.runUntil(
            lambda: client.getServerUdpState() is ServerUdpState.LOST, 60))
        world.net.advance(1.0)      # the client's word that its UDP is lost reaches the server
        world.server.send(client.getLocalHostID(), b"still there", mode=LATEST, channel=2)
        self.assertTrue(world.net.runUntil(lambda: client.events.messagesFrom(1), 5))
        (_, _, context), = client.events.rec.named("onReceiveUserMessage")
        self.assertFalse(context.reliable)
