"""Moving a client between cluster servers (C{NetServer.moveClient}) against
a real redis-server: the client keeps its HostID, nothing reliable sent
to it across the move is lost, duplicated or reordered, and the move token
cannot be forged, replayed or used late; only a server moves a client."""


import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from proud_twisted import (
    HOSTID_SERVER,
    MoveFailed,
    NetClient,
    ResumeRefusal,
    UnknownServer,
)
from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION
from proud_twisted.errors import ResumeRefused
from proud_twisted.server.moves import Arrival
from proud_twisted.wire.messages import encodeMessage
from tests.support import RecordingClientEvents
from tests.test_cluster_processes import besideChild

MESSAGES = 200


@defer.inlineCallbacks
def twoServersAndAClient(world):
    """Cluster servers a and b, ready, and a client of a."""
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    client = yield world.client(a)
    return a, b, client


@pytest_twisted.inlineCallbacks
def test_aMovedClientKeepsItsHostIDAndGetsEveryReliableMessageOnceInOrder(world):
    a, b, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    before = [b"before-%d" % i for i in range(MESSAGES)]
    during = [b"during-%d" % i for i in range(MESSAGES)]
    for payload in before:
        a.send(hostID, payload)
    moved = a.moveClient(hostID, "b", ticket=b"zone-7")
    # Sent on both servers while the client is on its way: a's go through b.
    for i, payload in enumerate(during):
        (a if i % 2 else b).send(hostID, payload)
    info = yield moved.addTimeout(10, reactor)
    assert info.serverID == "b"
    ((arrived, ticket),) = b.events.rec.named("onClientArrived")
    assert (arrived.hostID, ticket) == (hostID, b"zone-7")
    assert b.events.rec.named("onClientJoin") == []
    yield client.events.rec.waitCount("onServerMoved", 1)
    assert client.events.rec.named("onServerMoved") == [(b.getTcpAddress(),)]
    assert client.getLocalHostID() == hostID
    after = [b"after-%d" % i for i in range(10)]
    for payload in after:
        a.send(hostID, payload)         # routed by the HostID's old server
    got = client.events.messagesFrom(HOSTID_SERVER)
    yield client.events.rec.wait(lambda: len(got) >= 2 * MESSAGES + len(after))
    assert got[:MESSAGES] == before
    # All of them once; each server's own sends in order.
    assert sorted(got[MESSAGES:2 * MESSAGES]) == sorted(during)
    assert [p for p in got[MESSAGES:2 * MESSAGES] if int(p.split(b"-")[1]) % 2] == \
        [p for i, p in enumerate(during) if i % 2]
    assert [p for p in got[MESSAGES:2 * MESSAGES] if not int(p.split(b"-")[1]) % 2] == \
        [p for i, p in enumerate(during) if not i % 2]
    assert got[2 * MESSAGES:] == after
    # The source let it go; the target holds it, and locate says so.
    yield a.events.rec.waitCount("onClientLeave", 1)
    assert hostID in b.getClientHostIDs() and hostID not in a.getClientHostIDs()
    located = yield a.cluster.locate(hostID)
    assert located.serverID == "b"
    # The client talks to its new server.
    client.send(HOSTID_SERVER, b"hello b")
    yield b.events.rec.wait(lambda: any(
        e[1] == b"hello b" for e in b.events.rec.named("onReceiveUserMessage")))
    assert (a.stats.clientsMovedOut, b.stats.clientsMovedIn) == (1, 1)


@pytest_twisted.inlineCallbacks
def test_moveClientFailsClearly(world):
    a, _b, client = yield twoServersAndAClient(world)
    with pytest.raises(UnknownServer):
        yield a.moveClient(client.getLocalHostID(), "nowhere")
    with pytest.raises(MoveFailed):
        yield a.moveClient(123456, "b")             # no such client here
    with pytest.raises(MoveFailed):
        yield a.moveClient(client.getLocalHostID(), "a")


@pytest_twisted.inlineCallbacks
def test_forgedReplayedAndExpiredMoveTokensAreRefused(world):
    a, b, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    mover = b._engine.mover
    # b learns of a move only from a cluster member, never from a client.
    a._engine.mover.timeout = 5.0
    told = []
    original = a._engine.mover._told
    a._engine.mover._told = lambda r, h, t, token: told.append(token) or original(r, h, t, token)
    moved = a.moveClient(hostID, "b")
    yield client.events.rec.waitCount("onServerMoved", 1)
    yield moved
    (token,) = told
    now = reactor.seconds()
    # Replayed: the token worked once.
    with pytest.raises(ResumeRefused) as replayed:
        mover.admit(hostID, token)
    assert replayed.value.reason is ResumeRefusal.BAD_MOVE_TOKEN
    # Forged: an expected move, another token.
    mover.arrivals.expect(777, Arrival("a", b"k" * 16, b"", now + 60))
    with pytest.raises(ResumeRefused):
        mover.admit(777, b"x" * 16)
    assert 777 in mover.arrivals                # a wrong guess does not spoil it
    # Expired.
    mover.arrivals.expect(778, Arrival("a", b"k" * 16, b"", now - 1))
    with pytest.raises(ResumeRefused):
        mover.admit(778, b"k" * 16)


@pytest_twisted.inlineCallbacks
def test_aClientShowingAForgedTokenIsRefusedOnTheWire(world):
    a, b, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    engine = client._engine
    original = engine.server_MOVE

    def forge(fields):
        fields.token = bytes(16)
        original(fields)
    engine.server_MOVE = forge
    a._engine.mover.timeout = 0.5               # (the source gives up soon)
    moved = a.moveClient(hostID, "b")
    yield client.events.rec.waitCount("onLeaveServer", 1)
    assert b.stats.movesRefused == 1
    assert hostID not in b.getClientHostIDs()
    with pytest.raises(MoveFailed):
        yield moved.addTimeout(10, reactor)


@pytest_twisted.inlineCallbacks
def test_aClientCannotMoveItself(world):
    a, b, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    # Asking its server for a move is no message a client may send: cut.
    client._engine._connection.sendBody(encodeMessage(
        "MOVE", host=b"127.0.0.1", tcpPort=1, udpPort=1, token=bytes(16), serverID=b"b"))
    yield a.events.rec.waitCount("onClientLeave", 1)
    # Arriving unasked at another server, with its own HostID: refused.
    other = yield world.client(a)
    other._engine._move = ("127.0.0.1", b.getTcpAddress()[1], 0, bytes(16))
    other._engine._hostID = hostID
    other._engine._server = ("127.0.0.1", b.getTcpAddress()[1])
    before = b.stats.movesRefused
    other._engine._goOffline(other._engine._offlineReason, moving=True)
    yield other.events.rec.waitCount("onLeaveServer", 1)
    assert b.stats.movesRefused == before + 1
    assert hostID not in b.getClientHostIDs()


@pytest_twisted.inlineCallbacks
def test_aClientMovesToAServerProcessWithMessagesInFlight(world, redis):
    """To a C{twistd proudserver --cluster} child process (no encryption, as
    the child has it off), with reliable messages sent before, during and
    after the move."""
    here = world.server("here", version=ROOMS_PROTOCOL_VERSION, encryption=False)
    yield world.ready(here)

    @defer.inlineCallbacks
    def test(serverInfo, child):
        player = NetClient(RecordingClientEvents(), encryption=False)
        world.clients.append(player)
        yield player.connect("127.0.0.1", here.getTcpAddress()[1], ROOMS_PROTOCOL_VERSION)
        hostID = player.getLocalHostID()
        sent = [b"m%d" % i for i in range(150)]
        for payload in sent[:50]:
            here.send(hostID, payload)
        moved = here.moveClient(hostID, "zone-1")
        for payload in sent[50:100]:
            here.send(hostID, payload)
        info = yield moved.addTimeout(10, reactor)
        assert info.serverID == "zone-1"
        for payload in sent[100:]:
            here.send(hostID, payload)
        got = player.events.messagesFrom(HOSTID_SERVER)
        yield player.events.rec.wait(lambda: len(got) >= len(sent))
        assert got == sent
        assert player.events.rec.named("onServerMoved") == [(info.tcpAddress,)]
        assert player.getLocalHostID() == hostID
        located = yield here.cluster.locate(hostID)
        assert located.serverID == "zone-1"
        # The rooms app of the child answers the moved player.
        player.send(HOSTID_SERVER, b"bogus request")
        yield player.events.rec.wait(lambda: any(
            m.startswith(b"error:") for m in got))

    yield besideChild(here, redis, "zone-1", test)


@pytest_twisted.inlineCallbacks
def test_whenAMovedClientLeavesItsHostIDIsFreedWhereItWasLeased(world):
    a, b, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    yield a.moveClient(hostID, "b").addTimeout(10, reactor)
    yield a.events.rec.waitCount("onClientLeave", 1)
    # Reserved on a (it lives on b), and routed there.
    assert hostID in a._engine._hostIDs
    assert a.cluster.movedTo == {hostID: "b"}
    yield client.disconnect()
    world.clients.remove(client)
    yield b.events.rec.waitCount("onClientLeave", 1)
    yield a.events.rec.wait(lambda: hostID not in a.cluster.movedTo)
    assert hostID not in a._engine._hostIDs
    moved = yield a.cluster._link.command("HGETALL", a.cluster.keys.moved)
    assert not moved
