"""Declaration fingerprints at join: a compatible declaration joins, a
changed one is refused with an error naming the declaration and the method.
Deterministic (the memory network), so these run under trial and pytest."""

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import ErrorType, NetClient, NetServer
from proud_twisted.rmi import RemoteInterface, RmiVersionMismatch, call
from proud_twisted.rmi.fingerprint import decodeFingerprints, encodeFingerprints, findMismatch
from proud_twisted.testing import MemoryNetwork
from tests.support import RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("1f6c2b7a-93d4-4e5f-8a0b-c1d2e3f4a5b6")
SERVER_IP = "203.0.113.1"


class NotFound(Exception):
    pass


def declareGame(variant):
    """A declaration named Game, as the server has it (variant "v1") or changed."""
    if variant == "v1":
        class Game(RemoteInterface, firstID=5000):
            def say(self, text: str, color: int) -> None: ...
            def find(self, name: str) -> int: ...
    elif variant == "added":
        class Game(RemoteInterface, firstID=5000):
            def say(self, text: str, color: int) -> None: ...
            def find(self, name: str) -> int: ...
            def wave(self) -> None: ...
    elif variant == "signature":
        class Game(RemoteInterface, firstID=5000):
            def say(self, text: str, color: float) -> None: ...
            def find(self, name: str) -> int: ...
    elif variant == "raises":
        class Game(RemoteInterface, firstID=5000):
            def say(self, text: str, color: int) -> None: ...
            @call(raises=(NotFound,))
            def find(self, name: str) -> int: ...
    elif variant == "inserted":
        class Game(RemoteInterface, firstID=5000):
            def wave(self) -> None: ...
            def say(self, text: str, color: int) -> None: ...
            def find(self, name: str) -> int: ...
    return Game


class Other(RemoteInterface, firstID=9000):
    def ping(self) -> None: ...


class JoinTests(SynchronousTestCase):
    def setUp(self):
        self.net = MemoryNetwork(seed=3)
        self.serverEvents = RecordingServerEvents(self.net.clock)
        self.server = NetServer(self.serverEvents, VERSION, tcpPort=4000, udpPort=4000,
                                reactor=self.net.addHost(SERVER_IP))
        self.server.attachProxy(declareGame("v1"))
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.hosts = 0

    def join(self, *declarations):
        self.hosts += 1
        events = RecordingClientEvents(self.net.clock)
        client = NetClient(events, reactor=self.net.addHost(f"198.51.100.{self.hosts}"))
        for declaration in declarations:
            client.attachProxy(declaration)
        results = []
        client.connect(SERVER_IP, 4000, VERSION).addBoth(results.append)
        self.assertTrue(self.net.runUntil(lambda: results, 10))
        self.addCleanup(client.disconnect, linger=0)
        return results[0], events

    def test_theSameOrAnAddedMethodOrAnotherDeclarationJoins(self):
        for declarations in ([declareGame("v1")], [declareGame("added"), Other], []):
            result, _ = self.join(*declarations)
            self.assertIsInstance(result, int, declarations)

    def test_aChangedSignatureIsRefusedNamingTheMethod(self):
        for variant, method in (("signature", "say"), ("raises", "find"),
                                ("inserted", "say")):
            failure, events = self.join(declareGame(variant))
            self.assertTrue(failure.check(RmiVersionMismatch), variant)
            error = failure.value
            self.assertEqual((error.interface, error.method), ("Game", method))
            self.assertIn("Game.", str(error))
            self.assertEqual(events.rec.named("onJoinServerComplete")[0][0],
                             ErrorType.PROTOCOL_VERSION_MISMATCH)
        self.assertEqual(self.server.getClientHostIDs(), [])
        # The server goes on admitting clients that match.
        result, _ = self.join(declareGame("v1"))
        self.assertIsInstance(result, int)


class FingerprintTests(SynchronousTestCase):
    def test_roundTrip(self):
        game = declareGame("v1")
        decoded = decodeFingerprints(encodeFingerprints([game, Other]))
        self.assertEqual(sorted(decoded), ["Game", "Other"])
        self.assertEqual([(i, n) for i, n, _ in decoded["Game"]], [(5000, "say"), (5001, "find")])
        self.assertIsNone(findMismatch({"Game": game}, encodeFingerprints([game])))
        self.assertIsNone(findMismatch({"Game": game}, b""))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(min_size=1, max_size=80))
    def test_garbageFingerprintsAreAMismatchNotACrash(self, garbage):
        result = findMismatch({"Game": declareGame("v1")}, garbage)
        self.assertTrue(result is None or isinstance(result, RmiVersionMismatch))

    def test_theReplyCarriesInterfaceMethodAndDetail(self):
        error = RmiVersionMismatch("Game", "say", "the signatures differ")
        again = RmiVersionMismatch.fromReply(error.reply())
        self.assertEqual((again.interface, again.method, again.detail),
                         ("Game", "say", "the signatures differ"))
        self.assertEqual(RmiVersionMismatch.fromReply(b"\xff").interface, "?")
