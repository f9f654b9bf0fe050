"""RMI between a whole server and clients in the memory network: one-way
calls and calls with a result, client to server, server to client, peer to
peer (relayed and direct) and to groups; declared and undeclared exceptions,
timeouts, unknown IDs, malformed arguments, floods. Deterministic (one
virtual clock), so these run under trial and pytest."""

import dataclasses
import enum
import uuid

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import (
    HOSTID_SERVER,
    DeliveryMode,
    ErrorType,
    NetClient,
    NetServer,
    Priority,
    ServerUdpState,
)
from proud_twisted.rmi import (
    DEFAULT_MAX_CALLS_IN_PROGRESS,
    RMI_MARKER,
    DeclarationError,
    HostID,
    RemoteCallFailed,
    RemoteCallTimeout,
    RemoteInterface,
    TooManyPendingCalls,
    call,
    statsOf,
)
from proud_twisted.testing import LinkConditions, MemoryNetwork
from tests.support import RecordingClientEvents, RecordingServerEvents, stopMemoryWorld

VERSION = uuid.UUID("5b0f7e3c-2d41-4c8e-b1a6-7e9d0c3f2a15")
SERVER_IP = "203.0.113.1"


class NotEnoughGold(Exception):
    pass


class Color(enum.IntEnum):
    WHITE = 0
    RED = 1


@dataclasses.dataclass(frozen=True)
class Position:
    x: float
    y: float


class Game(RemoteInterface, firstID=5000):
    def say(self, text: str, color: Color) -> None:
        """One-way chat line."""

    def move(self, where: Position) -> None:
        """One-way position."""

    @call(raises=(NotEnoughGold,))
    def buy(self, item: int, count: int, seller: HostID) -> int:
        """Gold left after buying."""

    def lookup(self, names: list[str]) -> dict[str, int | None]:
        """A call with a result (its annotation is not None)."""

    @call()
    def ping(self) -> None:
        """Answered with None."""


class Other(RemoteInterface, firstID=7000):
    def hello(self, text: str) -> None:
        """Nobody implements this one."""


class Overlapping(RemoteInterface, firstID=5003):
    def clash(self) -> None:
        """Its ID falls within Game's range."""


class Recording(Game.Stub):
    """Records each call; buy raises NotEnoughGold past 10 items, and its
    answers to item 99 are held in Deferreds until released."""

    def __init__(self):
        self.calls = []
        self.held = []

    def say(self, context, text, color):
        self.calls.append(("say", context, text, color))
        if text == "boom":
            raise ZeroDivisionError("a bug in the stub")

    def move(self, context, where):
        self.calls.append(("move", context, where))

    def buy(self, context, item, count, seller):
        self.calls.append(("buy", context, item, count, seller))
        if count > 10:
            raise NotEnoughGold(f"{count} is too many")
        if item == 99:
            d = defer.Deferred()
            self.held.append(d)
            return d
        if item == 13:
            raise KeyError("a bug in the stub")
        if item == 77:
            return "not an int"
        return 1000 - item * count

    def lookup(self, context, names):
        return {name: (len(name) if name else None) for name in names}

    def ping(self, context):
        self.calls.append(("ping", context))


class RmiWorld:
    """A server and clients on public hosts (so pairs may go direct), each
    with a Game stub and proxy attached."""

    def __init__(self, testCase, clients=3):
        self.net = MemoryNetwork(seed=7)
        self.net.setDefaultConditions(LinkConditions(latency=0.01))
        self.serverHost = self.net.addHost(SERVER_IP)
        self.serverEvents = RecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=33333, udpPort=33333,
                                reactor=self.serverHost)
        self.server.startService()
        self.hosts = [self.net.addHost(f"198.51.100.{10 + i}") for i in range(clients)]
        self.clients = [NetClient(RecordingClientEvents(self.net.clock), reactor=host)
                        for host in self.hosts]
        joined = [c.connect(SERVER_IP, 33333, VERSION) for c in self.clients]
        assert self.net.runUntil(lambda: all(d.called for d in joined), 10)
        assert self.net.runUntil(lambda: all(
            c.getServerUdpState() is ServerUdpState.CONFIRMED for c in self.clients), 10)
        self.extra = []
        self.serverStub = Recording()
        self.server.attachStub(self.serverStub)
        self.serverProxy = self.server.attachProxy(Game, timeout=5.0)
        self.stubs = [Recording() for _ in self.clients]
        self.proxies = []
        for client, stub in zip(self.clients, self.stubs, strict=False):
            client.attachStub(stub)
            self.proxies.append(client.attachProxy(Game, timeout=5.0))
        testCase.addCleanup(self.stop)

    def addClient(self, events):
        """Join one more client, without stub or proxy."""
        host = self.net.addHost(f"198.51.100.{10 + len(self.hosts)}")
        self.hosts.append(host)
        client = NetClient(events, reactor=host)
        self.extra.append(client)
        self.result(client.connect(SERVER_IP, 33333, VERSION), 10)
        return client

    def ids(self):
        return [c.getLocalHostID() for c in self.clients]

    def formGroup(self, allowDirectP2P=False):
        group = self.server.createP2PGroup(self.ids(), allowDirectP2P=allowDirectP2P)
        count = len(self.clients)
        assert self.net.runUntil(lambda: self.serverEvents.rec.count(
            "onP2PGroupJoinMemberAckComplete") >= count, 10)
        return group

    def result(self, d, seconds=2.0):
        """Run until C{d} fires; its result (a Failure for an errback)."""
        results = []
        d.addBoth(results.append)
        assert self.net.runUntil(lambda: results, seconds), "no result in time"
        return results[0]

    def runUntil(self, predicate, seconds=2.0):
        assert self.net.runUntil(predicate, seconds), "the condition did not come true"

    def stop(self):
        self.serverProxy.stopTimers()
        for proxy in self.proxies:
            proxy.stopTimers()
        stopMemoryWorld(self.net, self.server, self.clients + self.extra)


class ClientServerTests(SynchronousTestCase):
    def setUp(self):
        self.world = RmiWorld(self)

    def test_oneWayClientToServer(self):
        w = self.world
        self.assertIsNone(w.proxies[0].say(HOSTID_SERVER, "hello", Color.RED))
        w.runUntil(lambda: w.serverStub.calls)
        name, context, text, color = w.serverStub.calls[0]
        self.assertEqual((name, text, color), ("say", "hello", Color.RED))
        self.assertIs(type(color), Color)
        self.assertEqual(context.sender, w.ids()[0])
        self.assertTrue(context.reliable)
        self.assertFalse(context.relayed)

    def test_callClientToServerFiresWithItsResult(self):
        w = self.world
        self.assertEqual(w.result(w.proxies[0].buy(HOSTID_SERVER, 5, 3, 1234)), 985)
        self.assertEqual(w.serverStub.calls[0][2:], (5, 3, 1234))
        self.assertEqual(w.result(w.proxies[1].lookup(HOSTID_SERVER, ["ab", ""])),
                         {"ab": 2, "": None})
        self.assertIsNone(w.result(w.proxies[1].ping(HOSTID_SERVER)))
        self.assertEqual(w.proxies[0].pendingCalls(), 0)

    def test_serverToClient(self):
        w = self.world
        first, second = w.ids()[:2]
        w.serverProxy.say([first, second], "welcome", Color.WHITE)
        w.runUntil(lambda: w.stubs[0].calls and w.stubs[1].calls)
        for stub in w.stubs[:2]:
            self.assertEqual(stub.calls[0][0::2], ("say", "welcome"))
            self.assertEqual(stub.calls[0][1].sender, HOSTID_SERVER)
        self.assertEqual(w.stubs[2].calls, [])
        self.assertEqual(w.result(w.serverProxy.buy(second, 2, 2, HOSTID_SERVER)), 996)

    def test_unreliableModeFromTheServer(self):
        w = self.world
        w.serverProxy.move(w.ids()[0], Position(1.5, -2.0), mode=DeliveryMode.UNRELIABLE)
        w.runUntil(lambda: w.stubs[0].calls)
        self.assertEqual(w.stubs[0].calls[0][2], Position(1.5, -2.0))
        self.assertFalse(w.stubs[0].calls[0][1].reliable)

    def test_latestOnlyFromTheServer(self):
        w = self.world
        w.serverProxy.move(w.ids()[0], Position(0.5, 0.25), latestOnly=3,
                           priority=Priority.HIGH)
        w.runUntil(lambda: w.stubs[0].calls)
        context = w.stubs[0].calls[0][1]
        self.assertEqual((context.mode, context.channel), (DeliveryMode.UNRELIABLE_LATEST, 3))
        self.assertRaises(ValueError, w.serverProxy.move, w.ids()[0], Position(0, 0),
                          latestOnly=3, mode=DeliveryMode.RELIABLE)

    def test_declaredExceptionArrivesAsThatException(self):
        w = self.world
        failure = w.result(w.proxies[0].buy(HOSTID_SERVER, 1, 11, 0))
        self.assertTrue(failure.check(NotEnoughGold))
        self.assertEqual(str(failure.value), "11 is too many")
        self.assertEqual(w.serverEvents.rec.count("onException"), 0)

    def test_undeclaredExceptionIsReportedAndFailsTheCall(self):
        w = self.world
        reported = []
        w.server.events.onException = reported.append
        failure = w.result(w.proxies[0].buy(HOSTID_SERVER, 13, 1, 0))
        self.assertTrue(failure.check(RemoteCallFailed))
        self.assertIn("KeyError", str(failure.value))
        self.assertEqual([f.type for f in reported], [KeyError])
        self.assertEqual(statsOf(w.server).stubExceptions, 1)
        self.flushLoggedErrors(KeyError)

    def test_aResultOfTheWrongTypeIsReportedAndFailsTheCall(self):
        w = self.world
        reported = []
        w.server.events.onException = reported.append
        failure = w.result(w.proxies[0].buy(HOSTID_SERVER, 77, 1, 0))
        self.assertTrue(failure.check(RemoteCallFailed))
        self.assertIn("did not encode", str(failure.value))
        self.assertEqual([f.type for f in reported], [TypeError])
        self.assertIn("'not an int', not a int", str(reported[0].value))
        self.flushLoggedErrors(TypeError)

    def test_aStubRaisingInAOneWayCallIsReported(self):
        w = self.world
        reported = []
        w.server.events.onException = reported.append
        w.proxies[0].say(HOSTID_SERVER, "boom", Color.RED)
        w.runUntil(lambda: reported)
        self.assertTrue(reported[0].check(ZeroDivisionError))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_deferredAnswerAndTimeout(self):
        w = self.world
        proxy = w.proxies[0]
        answered = proxy.buy(HOSTID_SERVER, 99, 1, 0)
        silent = proxy.buy(HOSTID_SERVER, 99, 2, 0)
        w.runUntil(lambda: len(w.serverStub.held) == 2)
        w.serverStub.held[0].callback(42)
        self.assertEqual(w.result(answered), 42)
        failure = w.result(silent, seconds=6.0)
        self.assertTrue(failure.check(RemoteCallTimeout))
        self.assertIn("Game.buy", str(failure.value))
        self.assertEqual(proxy.pendingCalls(), 0)
        self.assertEqual(statsOf(w.clients[0]).timeouts, 1)

    def test_disconnectingFailsTheCallsWaitingAndLeavesNoTimer(self):
        w = self.world
        proxy = w.proxies[0]
        waiting = proxy.buy(HOSTID_SERVER, 99, 1, 0)
        w.runUntil(lambda: w.serverStub.held)
        answered = proxy.buy(HOSTID_SERVER, 1, 1, 0)
        self.assertEqual(w.result(answered), 999)
        self.assertIsNotNone(proxy._timer)
        w.clients[0].disconnect()
        failure = self.failureResultOf(waiting, RemoteCallFailed)
        self.assertIn("Game.buy: the client disconnected", str(failure.value))
        self.assertEqual((proxy.pendingCalls(), proxy._timer), (0, None))
        self.assertEqual(w.clients[0]._engine.rmi.calls, {})

    def test_rawMessagesStillReachOnReceiveUserMessage(self):
        w = self.world
        w.clients[0].send(HOSTID_SERVER, b"raw bytes")
        w.proxies[0].say(HOSTID_SERVER, "typed", Color.RED)
        w.server.send(w.ids()[0], b"raw back")
        w.runUntil(lambda: w.serverStub.calls and w.clients[0].events.messagesFrom(
            HOSTID_SERVER))
        w.runUntil(lambda: w.serverEvents.rec.count("onReceiveUserMessage"))
        self.assertEqual([e[1] for e in w.serverEvents.rec.named("onReceiveUserMessage")],
                         [b"raw bytes"])
        self.assertEqual(w.clients[0].events.messagesFrom(HOSTID_SERVER), [b"raw back"])


class PeerTests(SynchronousTestCase):
    def setUp(self):
        self.world = RmiWorld(self)

    def test_relayedPeerToPeer(self):
        w = self.world
        w.formGroup(allowDirectP2P=False)
        a, b = w.ids()[:2]
        self.assertEqual(w.result(w.proxies[0].buy(b, 3, 3, a)), 991)
        context = w.stubs[1].calls[0][1]
        self.assertEqual(context.sender, a)
        self.assertTrue(context.relayed)

    def test_directPeerToPeer(self):
        w = self.world
        w.formGroup(allowDirectP2P=True)
        a, b = w.ids()[:2]
        w.result(w.clients[0].whenDirect(b), seconds=10)
        self.assertEqual(w.result(w.proxies[0].buy(b, 1, 1, a)), 999)
        w.proxies[0].move(b, Position(3.0, 4.0), latestOnly=7)
        w.runUntil(lambda: len(w.stubs[1].calls) == 2)
        buyContext = w.stubs[1].calls[0][1]
        name, moveContext, where = w.stubs[1].calls[1]
        self.assertFalse(buyContext.relayed)
        self.assertEqual((name, where), ("move", Position(3.0, 4.0)))
        self.assertEqual((moveContext.mode, moveContext.channel),
                         (DeliveryMode.UNRELIABLE_LATEST, 7))

    def test_oneWayToAGroupReachesTheOtherMembers(self):
        w = self.world
        group = w.formGroup()
        w.proxies[0].say(group, "all of you", Color.WHITE)
        w.runUntil(lambda: w.stubs[1].calls and w.stubs[2].calls)
        self.assertEqual(w.stubs[0].calls, [])
        self.assertEqual({s.calls[0][1].sender for s in w.stubs[1:]}, {w.ids()[0]})

    def test_aCallWithAResultTakesOneHost(self):
        w = self.world
        group = w.formGroup()
        self.assertRaises(ValueError, w.proxies[0].buy, group, 1, 1, 0)
        self.assertRaises(ValueError, w.proxies[0].buy, w.ids()[1:], 1, 1, 0)
        self.assertEqual(w.proxies[0].pendingCalls(), 0)


class HostileTests(SynchronousTestCase):
    def setUp(self):
        self.world = RmiWorld(self)

    def test_unknownIDFiresOnNoRmiProcessed(self):
        w = self.world
        seen = []
        w.server.events.onNoRmiProcessed = lambda rmiID, context: seen.append(
            (rmiID, context.sender))
        w.clients[0].attachProxy(Other).hello(HOSTID_SERVER, "anyone?")
        w.runUntil(lambda: seen)
        self.assertEqual(seen, [(7000, w.ids()[0])])
        self.assertEqual(statsOf(w.server).unknownIDs, 1)

    def test_aMethodTheStubLeavesOutFiresOnNoRmiProcessed(self):
        w = self.world

        class OnlySay(Game.Stub):
            def say(self, context, text, color):
                pass

        events = RecordingClientEvents(w.net.clock)
        seen = []
        events.onNoRmiProcessed = lambda rmiID, context: seen.append(rmiID)
        client = w.addClient(events)
        client.attachStub(OnlySay())
        failure = w.result(w.serverProxy.buy(client.getLocalHostID(), 1, 1, 0))
        self.assertTrue(failure.check(RemoteCallFailed))
        self.assertIn("not implemented", str(failure.value))
        self.assertEqual(seen, [Game.method("buy").id])

    def test_malformedArgumentsWarnForThatMessageOnly(self):
        w = self.world
        bad, honest = w.clients[0], w.clients[1]
        header = bytes([RMI_MARKER]) + (5000).to_bytes(2, "little")   # not a varint 5000
        sayID = bytes([RMI_MARKER, 0x88, 0x27])                       # varint 5000
        for payload in (header, sayID + b"\x05ab", sayID + b"\x02hi\x09", sayID,
                        bytes([RMI_MARKER]) + b"\xff" * 11):
            bad.send(HOSTID_SERVER, payload)
        w.proxies[1].say(HOSTID_SERVER, "still here", Color.WHITE)
        w.runUntil(lambda: w.serverStub.calls)
        w.runUntil(lambda: statsOf(w.server).malformed + statsOf(w.server).unknownIDs == 5)
        warnings = w.serverEvents.rec.named("onWarning")
        self.assertEqual(len(warnings), statsOf(w.server).malformed)
        self.assertTrue(all(info.errorType is ErrorType.PROTOCOL_ERROR
                            and info.hostID == bad.getLocalHostID() for (info,) in warnings))
        self.assertEqual([c[2] for c in w.serverStub.calls], ["still here"])
        # The sender of the garbage keeps its connection, and its calls work.
        self.assertEqual(w.result(w.proxies[0].buy(HOSTID_SERVER, 1, 1, 0)), 999)
        self.assertIsNot(honest.getServerUdpState(), ServerUdpState.LOST)

    def test_aMalformedCallWithAResultIsAnsweredWithAFailure(self):
        w = self.world
        proxy = w.proxies[0]
        requestID = proxy._endpoint.nextRequestID()
        buy = Game.method("buy")
        good = buy.encodeArguments(requestID, 1, 1, 0)
        w.clients[0].send(HOSTID_SERVER, good + b"\x00")         # a byte too many
        d = proxy._endpoint.call(proxy, buy, HOSTID_SERVER, proxy._endpoint.nextRequestID(),
                                 buy.encodeArguments(requestID + 1, 1, 1, 0)[:-2], None,
                                 None, None, None)
        failure = w.result(d)
        self.assertTrue(failure.check(RemoteCallFailed))
        self.assertEqual(statsOf(w.server).malformed, 2)

    def test_aFloodOfCallsCannotGrowTheServersTableWithoutBound(self):
        w = self.world
        proxy = w.proxies[0]
        calls = [proxy.buy(HOSTID_SERVER, 99, 1, 0) for _ in range(200)]
        results = []
        for d in calls:
            d.addBoth(results.append)
        w.runUntil(lambda: len(results) == 200 - DEFAULT_MAX_CALLS_IN_PROGRESS)
        self.assertEqual(len(w.serverStub.held), DEFAULT_MAX_CALLS_IN_PROGRESS)
        self.assertTrue(all(isinstance(r.value, RemoteCallFailed) for r in results))
        self.assertIn("in progress", str(results[0].value))
        self.assertEqual(statsOf(w.server).busyRefusals, 200 - DEFAULT_MAX_CALLS_IN_PROGRESS)
        self.assertEqual(w.server._engine.rmi._inProgress,
                         {w.ids()[0]: DEFAULT_MAX_CALLS_IN_PROGRESS})
        # Another client is not refused, and once answered the table empties.
        self.assertEqual(w.result(w.proxies[1].buy(HOSTID_SERVER, 1, 2, 0)), 998)
        for d in w.serverStub.held:
            d.callback(1)
        w.runUntil(lambda: len(results) == 200)
        self.assertEqual(w.server._engine.rmi._inProgress, {})

    def test_theProxyWaitsForAtMostMaxPendingCalls(self):
        w = self.world
        proxy = w.clients[2].attachProxy(Game, timeout=1.0, maxPendingCalls=3)
        calls = [proxy.buy(HOSTID_SERVER, 99, 1, 0) for _ in range(4)]
        self.assertTrue(self.failureResultOf(calls[3]).check(TooManyPendingCalls))
        self.assertEqual(proxy.pendingCalls(), 3)
        for d in calls[:3]:
            self.assertTrue(w.result(d).check(RemoteCallTimeout))
        self.assertEqual(proxy.pendingCalls(), 0)
        self.assertEqual(w.clients[2]._engine.rmi.calls, {})

    def test_anAnswerFromAnotherHostIsIgnored(self):
        w = self.world
        w.formGroup()
        a, b, _c = w.ids()
        d = w.proxies[0].buy(b, 99, 1, 0)
        w.runUntil(lambda: w.stubs[1].held)
        requestID = next(iter(w.clients[0]._engine.rmi.calls))
        forged = bytes([RMI_MARKER, 0]) + bytes([requestID]) + b"\x02"
        w.clients[2].send(a, forged)
        w.runUntil(lambda: statsOf(w.clients[0]).strayAnswers == 1)
        self.assertFalse(d.called)
        w.stubs[1].held[0].callback(5)
        self.assertEqual(w.result(d), 5)

    def test_aMalformedAnswerFailsOnlyItsCall(self):
        """A peer answering with bytes that do not decode (a result cut
        short, a failure with bytes after it, one naming an exception the
        declaration lacks) fails that call with RemoteCallFailed; the
        caller counts and warns, and its other calls are answered."""
        w = self.world
        w.formGroup()
        a, b, _c = w.ids()
        answers = [
            bytes([RMI_MARKER, 0]),                            # no result
            bytes([RMI_MARKER, 1, 0, 1, 0]) + b"extra",         # bytes after a failure
            bytes([RMI_MARKER, 1, 9, 0]),                      # exception 9 of 1
        ]
        warnings = []
        w.clients[0].events.onWarning = warnings.append
        calls = [w.proxies[0].buy(b, 99, 1, 0) for _ in answers]
        w.runUntil(lambda: len(w.stubs[1].held) == len(answers))
        requestIDs = list(w.clients[0]._engine.rmi.calls)
        for requestID, answer in zip(requestIDs, answers, strict=True):
            w.clients[1].send(a, answer[:2] + bytes([requestID]) + answer[2:])
        for d in calls:
            self.assertTrue(w.result(d).check(RemoteCallFailed))
        self.assertEqual(statsOf(w.clients[0]).malformed, len(answers))
        self.assertEqual([info.hostID for info in warnings], [b] * len(answers))
        self.assertEqual(w.result(w.proxies[0].buy(HOSTID_SERVER, 1, 1, 0)), 999)


class AttachTests(SynchronousTestCase):
    def test_overlappingIDRangesAreRefused(self):
        server = NetServer(encryption=False, reactor=MemoryNetwork().addHost(SERVER_IP))
        server.attachProxy(Game)
        server.attachStub(Recording())       # the same declaration: fine
        error = self.assertRaises(DeclarationError, server.attachProxy, Overlapping)
        self.assertIn("overlap", str(error))
        self.assertIn("Game", str(error))
        self.assertRaises(DeclarationError, server.attachStub, Recording())
        server.attachProxy(Other)

    def test_aStubMethodMustTakeTheDeclaredArguments(self):
        class Wrong(Game.Stub):
            def say(self, context, text):
                pass

        client = NetClient(reactor=MemoryNetwork().addHost("198.51.100.1"))
        error = self.assertRaises(DeclarationError, client.attachStub, Wrong())
        self.assertIn("Wrong.say must take (context, text, color)", str(error))

    def test_badDeclarationsAreRefused(self):
        def declare(firstID, namespace):
            return type("Bad", (RemoteInterface,), namespace, firstID=firstID)

        def method(annotation):
            def m(self, value): ...
            m.__annotations__ = {"value": annotation, "return": None}
            return m

        for firstID, namespace in [
                (3, {"a": method(int)}),                        # a reserved ID
                (100, {}),                                      # no method
                (100, {"a": method(set)}),                      # an unsupported type
                (100, {"a": method(list[tuple[()]])}),          # items of no bytes
                (100, {"a": method(dict[list[int], int])}),     # an unhashable key
                (100, {"a": method(int | str)}),                # a union
                (100, {"timeout": method(int)}),                # a proxy's own name
        ]:
            self.assertRaises(DeclarationError, declare, firstID, namespace)

        def target(self, target: int) -> None: ...
        self.assertRaises(DeclarationError, declare, 100, {"a": target})
