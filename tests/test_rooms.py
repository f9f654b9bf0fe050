"""The built-in rooms app: its request format, and a server and clients on loopback."""

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import HOSTID_SERVER, NetClient, ProtocolError
from proud_twisted.apps.rooms import (
    LEAVE,
    ROOMS_PROTOCOL_VERSION,
    RoomClientEvents,
    joinRequest,
    parseRequest,
)
from proud_twisted.tap import Options, makeService
from tests.support import Recorder


class RequestTests(SynchronousTestCase):
    def test_joinRoundTrip(self):
        self.assertEqual(joinRequest("lobby"), b"join:lobby")
        self.assertEqual(parseRequest(joinRequest("säle 2")), ("join", "säle 2"))

    def test_leave(self):
        self.assertEqual(parseRequest(LEAVE), ("leave", None))

    def test_badRequestsAreProtocolErrors(self):
        for payload in (b"", b"hello", b"join:", b"join:" + b"x" * 65,
                        b"join:\xff", b"join:a\nb", b"leave "):
            self.assertRaises(ProtocolError, parseRequest, payload)

    def test_joinRequestRefusesBadNames(self):
        self.assertRaises(ProtocolError, joinRequest, "")
        self.assertRaises(ProtocolError, joinRequest, "x" * 65)


class RecordingRoomClient(RoomClientEvents):
    """Room client events that record what they hear."""

    def __init__(self) -> None:
        super().__init__()
        self.rec = Recorder()

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        super().onP2PMemberJoin(memberHostID, groupHostID, memberCount, message)
        self.rec.record("onP2PMemberJoin", memberHostID, groupHostID, message)

    def onRoomMemberLeave(self, room, member):
        self.rec.record("onRoomMemberLeave", room, member)

    def onRoomMessage(self, room, sender, payload):
        self.rec.record("onRoomMessage", room, sender, payload)

    def onRoomError(self, explanation):
        self.rec.record("onRoomError", explanation)

    def onLeaveServer(self, reason):
        super().onLeaveServer(reason)
        self.rec.record("onLeaveServer", reason)


@pytest.fixture
def server(tmp_path):
    config = Options()
    config.parseOptions(["--tcp", "0", "--udp", "0", "--interface", "127.0.0.1",
                        "--key-file", str(tmp_path / "server.key")])
    top = makeService(config)
    top.startService()
    yield top.getServiceNamed("proudserver")
    pytest_twisted.blockon(top.stopService())


@defer.inlineCallbacks
def connect(server, count):
    """C{count} joined clients, each with L{RecordingRoomClient} events."""
    clients = []
    for _ in range(count):
        events = RecordingRoomClient()
        client = NetClient(events)
        events.attachClient(client)
        clients.append(client)
    port = server.getTcpAddress()[1]
    yield defer.gatherResults([c.connect("127.0.0.1", port, ROOMS_PROTOCOL_VERSION)
                               for c in clients])
    return clients


def waitUntil(predicate, timeout=10.0):
    """Fire once C{predicate()} holds (polled); fail after C{timeout} seconds."""
    return Recorder().wait(predicate, timeout)


def joinAll(clients, room, timeout=10.0):
    return defer.gatherResults([c.events.joinRoom(room).addTimeout(timeout, c._engine.reactor)
                                for c in clients])


@pytest_twisted.inlineCallbacks
def test_membersOfARoomSeeEachOtherAndTalk(server):
    alice, bob = yield connect(server, 2)
    groups = yield joinAll([alice, bob], "a")
    group = groups[0]
    assert groups == [group, group]
    assert server.events.rooms() == {"a": group}
    ids = {alice.getLocalHostID(), bob.getLocalHostID()}
    for client in (alice, bob):
        yield client.events.rec.wait(
            lambda c=client: {m for m, g, _ in c.events.rec.named("onP2PMemberJoin")
                              if g == group} == ids)
        assert client.events.members == ids
        assert client.events.room == "a"
        assert {msg for _, _, msg in client.events.rec.named("onP2PMemberJoin")} == {b"a"}
    alice.events.say(b"hello from alice")
    yield bob.events.rec.waitCount("onRoomMessage", 1)
    assert bob.events.rec.named("onRoomMessage") == [
        ("a", alice.getLocalHostID(), b"hello from alice")]
    yield defer.gatherResults([alice.disconnect(), bob.disconnect()])


@pytest_twisted.inlineCallbacks
def test_roomIsDestroyedWhenTheLastMemberLeaves(server):
    alice, bob = yield connect(server, 2)
    group, _ = yield joinAll([alice, bob], "a")
    alice.events.leaveRoom()
    yield bob.events.rec.wait(lambda: bob.events.members == {bob.getLocalHostID()})
    assert server.getP2PGroupInfo(group).members == {bob.getLocalHostID()}
    assert alice.events.room is None
    bob.events.leaveRoom()
    yield waitUntil(lambda: group not in server.getP2PGroups())
    assert server.events.rooms() == {}
    assert bob.events.rec.named("onRoomMemberLeave")[-1] == ("a", bob.getLocalHostID())
    yield defer.gatherResults([alice.disconnect(), bob.disconnect()])


@pytest_twisted.inlineCallbacks
def test_roomIsDestroyedWhenTheLastMemberDisconnects(server):
    alice, bob = yield connect(server, 2)
    group, _ = yield joinAll([alice, bob], "a")
    aliceID = alice.getLocalHostID()
    yield alice.disconnect()
    yield bob.events.rec.wait(lambda: bob.events.members == {bob.getLocalHostID()})
    assert server.events.roomOf(aliceID) is None
    yield bob.disconnect()
    yield waitUntil(lambda: group not in server.getP2PGroups())
    assert server.events.rooms() == {}


@pytest_twisted.inlineCallbacks
def test_joiningAnotherRoomLeavesTheFirst(server):
    alice, bob = yield connect(server, 2)
    first, _ = yield joinAll([alice, bob], "a")
    second = yield alice.events.joinRoom("b").addTimeout(10, alice._engine.reactor)
    assert second != first
    yield bob.events.rec.wait(lambda: bob.events.members == {bob.getLocalHostID()})
    assert server.events.rooms() == {"a": first, "b": second}
    assert alice.events.room == "b" and alice.events.members == {alice.getLocalHostID()}
    assert server.events.roomOf(alice.getLocalHostID()) == "b"
    yield defer.gatherResults([alice.disconnect(), bob.disconnect()])
    yield waitUntil(lambda: server.events.rooms() == {})
    assert not server.getP2PGroups()


@pytest_twisted.inlineCallbacks
def test_badRequestIsAnsweredWithAnError(server):
    (alice,) = yield connect(server, 1)
    alice.send(HOSTID_SERVER, b"dance")
    yield alice.events.rec.waitCount("onRoomError", 1)
    assert "unknown request" in alice.events.rec.named("onRoomError")[0][0]
    assert server.events.rooms() == {}
    yield alice.disconnect()
