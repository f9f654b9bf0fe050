"""Moving a client between cluster servers (C{NetServer.moveClient}) against
a real redis-server: the client keeps its HostID, nothing reliable sent
to it across the move is lost, duplicated or reordered, and the move token
cannot be forged, replayed or used late; only a server moves a client."""


import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from proud_twisted import (
    HOSTID_SERVER,
    ErrorType,
    InvalidGroupOperation,
    MoveFailed,
    ResumeRefusal,
    UnknownHostID,
    UnknownServer,
)
from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION
from proud_twisted.errors import ResumeRefused
from proud_twisted.server.moves import Arrival
from proud_twisted.wire.messages import encodeMessage
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
    # The source let it go (saying where); the target holds it, and locate says so.
    yield a.events.rec.waitCount("onClientLeave", 1)
    ((left, reason, comment),) = a.events.rec.named("onClientLeave")
    assert (left.hostID, reason, comment) == (hostID, ErrorType.MOVED, b"b")
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
    a._engine.mover._told = lambda h, t, token: told.append(token) or original(h, t, token)
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
def test_aRepeatedOrForeignExpectingTellsTheClientToGoOnce(world):
    # The target's "expecting" tells the source to send MOVE: one from a
    # server that is not the target, or the same one again, sends nothing.
    a, _, client = yield twoServersAndAClient(world)
    hostID = client.getLocalHostID()
    mover = a._engine.mover
    told = []
    tell, expecting = mover._told, mover._expecting
    mover._told = lambda h, target, token: told.append(token) or tell(h, target, token)

    def foreignThenTwice(serverID, h):
        expecting("c", h)
        expecting(serverID, h)
        expecting(serverID, h)
    mover._expecting = foreignThenTwice
    yield a.moveClient(hostID, "b")
    yield client.events.rec.waitCount("onServerMoved", 1)
    assert len(told) == 1
    expecting("b", hostID)                      # and after the move, nothing
    assert len(told) == 1
    assert len(client.events.rec.named("onServerMoved")) == 1


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
        player = yield world.client(here, ROOMS_PROTOCOL_VERSION, encryption=False)
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


@defer.inlineCallbacks
def aMemberOfTwoGroupsIsMoved(world):
    """Client a1 of server a in a group of a's with b1 (b's) and in a group
    of b's with b2; a moves a1 to b. Its Deferred, once a1 has arrived."""
    a, b, a1, b1, b2 = yield world.twoServers()
    idA1, idB1, idB2 = (c.getLocalHostID() for c in (a1, b1, b2))
    ofA = a.createP2PGroup([idA1, idB1])
    ofB = b.createP2PGroup([idA1, idB2])
    yield a.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    yield b.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    moved = a.moveClient(idA1, "b")
    return a, b, (a1, b1, b2), (idA1, idB1, idB2), (ofA, ofB), moved


@pytest_twisted.inlineCallbacks
def test_aMovedClientLeavesItsGroupsEverywhereBeforeItGoes(world):
    """The source takes a moved client out of its groups and out of other
    servers' groups it was in through it; its peers hear it leave, and the
    client hears every member leave, itself last, before it arrives."""
    a, b, (a1, b1, b2), (idA1, idB1, idB2), (ofA, ofB), moved = \
        yield aMemberOfTwoGroupsIsMoved(world)
    yield moved.addTimeout(10, reactor)
    yield a1.events.rec.waitCount("onServerMoved", 1)
    names = [name for name, *_ in a1.events.rec.events]
    leaves = [tuple(args) for name, *args in a1.events.rec.events
              if name == "onP2PMemberLeave"]
    assert sorted(leaves) == sorted([(idB1, ofA, 1), (idA1, ofA, 1),
                                     (idB2, ofB, 1), (idA1, ofB, 1)])
    assert leaves.index((idA1, ofA, 1)) > leaves.index((idB1, ofA, 1))
    assert max(i for i, n in enumerate(names) if n == "onP2PMemberLeave") < \
        names.index("onServerMoved")
    assert a1.getPeerHostIDs() == []
    for group in (ofA, ofB):
        with pytest.raises(UnknownHostID):
            a1.getGroupMembers(group)
    # Its peers heard it leave; the groups go on without it.
    for peer, group in ((b1, ofA), (b2, ofB)):
        yield peer.events.rec.wait(lambda p=peer, g=group: (idA1, g, 1) in [
            tuple(e) for e in p.events.rec.named("onP2PMemberLeave")])
        assert peer.getGroupMembers(group) == {peer.getLocalHostID()}
    yield b.events.rec.wait(lambda: b.getP2PGroupInfo(ofB).members == {idB2})
    assert a.getP2PGroupInfo(ofA).members == {idB1}
    # Where it is now, the game makes it a member again, as of any client.
    again = b.createP2PGroup([idA1, idB2])
    yield b.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 4)
    assert a1.getGroupMembers(again) == {idA1, idB2}
    a1.send(idB2, b"hello again")
    yield b2.events.rec.wait(lambda: b2.events.messagesFrom(idA1) == [b"hello again"])


@pytest_twisted.inlineCallbacks
def test_aClientBeingMovedJoinsNoGroupAndGetsNoFrameFromFormerPeers(world):
    """While a client is on its way, the game cannot put it into a group of
    the source (a clear error), and a former peer that keeps sending to it
    gets its frames refused: nothing reaches the moved client from a host
    it shares no group with, and the former peers carry on."""
    a, b, (a1, b1, b2), (idA1, idB1, idB2), (ofA, _), moved = \
        yield aMemberOfTwoGroupsIsMoved(world)
    with pytest.raises(InvalidGroupOperation, match="being moved"):
        a.joinP2PGroup(idA1, ofA)
    with pytest.raises(InvalidGroupOperation, match="being moved"):
        a.createP2PGroup([idA1])
    yield moved.addTimeout(10, reactor)
    yield b1.events.rec.wait(lambda: b1.getGroupMembers(ofA) == {idB1})
    # b1 is no peer of a1's any more: its server drops the frames as to a
    # member that just left (not held against b1, which did nothing wrong).
    departed = b.stats.relayToDeparted
    suspected = []
    b.events.onClientHackSuspected = lambda *args: suspected.append(args)
    for i in range(20):
        b1.send(idA1, b"still there? %d" % i)
    yield b.events.rec.wait(lambda: b.stats.relayToDeparted == departed + 20)
    assert b.stats.relayRejected == 0
    assert suspected == []
    a1.send(HOSTID_SERVER, b"marker")
    yield b.events.rec.wait(lambda: any(
        e[1] == b"marker" for e in b.events.rec.named("onReceiveUserMessage")))
    assert a1.events.messagesFrom(idB1) == []
    # b1's group goes on: a new member hears b1.
    a.joinP2PGroup(idB2, ofA)
    yield a.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    b1.send(idB2, b"welcome")
    yield b2.events.rec.wait(lambda: b2.events.messagesFrom(idB1) == [b"welcome"])


@pytest_twisted.inlineCallbacks
def test_aMovedClientJoinsGroupsOfEveryServerAndGoesDirectWithItsPeers(world):
    """After a1 moved from a to b: a (its source) and c (which finds it by
    its HostID's block, a's) put it into groups. Their notices, pair
    introductions and relayed frames reach it on b (a passes c's on), its
    acknowledgements complete the joins, its peers hear it and go direct,
    and when it leaves b every owner drops it."""
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    yield world.ready(a, b, c)
    a1, a2, c1 = yield defer.gatherResults([world.client(a), world.client(a),
                                            world.client(c)])
    idA1, idA2, idC1 = (x.getLocalHostID() for x in (a1, a2, c1))
    yield a.moveClient(idA1, "b").addTimeout(10, reactor)
    yield a1.events.rec.waitCount("onServerMoved", 1)
    ofA = a.createP2PGroup([idA1, idA2])
    ofC = c.createP2PGroup([idA1, idC1])
    yield a.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    yield c.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    assert a1.getGroupMembers(ofA) == {idA1, idA2}
    assert a1.getGroupMembers(ofC) == {idA1, idC1}
    assert a.cluster.stats.malformed == b.cluster.stats.malformed == \
        c.cluster.stats.malformed == 0
    # Relayed first, both ways (c1's frames go through a, then on to b).
    for client, peer in ((a1, idA2), (a2, idA1), (a1, idC1), (c1, idA1)):
        client.forceRelay(peer)
    for i in range(5):
        a1.send(idC1, b"a1 to c1 %d" % i)
        c1.send(idA1, b"c1 to a1 %d" % i)
        a2.send(idA1, b"a2 to a1 %d" % i)
    yield c1.events.rec.wait(lambda: len(c1.events.messagesFrom(idA1)) == 5)
    yield a1.events.rec.wait(lambda: len(a1.events.messagesFrom(idC1)) == 5
                             and len(a1.events.messagesFrom(idA2)) == 5)
    assert c1.events.messagesFrom(idA1) == [b"a1 to c1 %d" % i for i in range(5)]
    assert a1.events.messagesFrom(idC1) == [b"c1 to a1 %d" % i for i in range(5)]
    assert a1.events.messagesFrom(idA2) == [b"a2 to a1 %d" % i for i in range(5)]
    # Then direct: the pairs' addresses found their way.
    for client, peer in ((a1, idC1), (c1, idA1)):
        client.forceRelay(peer, False)
    yield defer.gatherResults([a1.whenDirect(idC1).addTimeout(10, reactor),
                               c1.whenDirect(idA1).addTimeout(10, reactor)])
    assert a1.getPeerInfo(idC1).udpAddress == c1.getPublicUdpAddress()
    # It leaves b: both owners drop it, and its peers hear it.
    yield a1.disconnect()
    world.clients.remove(a1)
    yield a.events.rec.wait(lambda: a.getP2PGroupInfo(ofA).members == {idA2})
    yield c.events.rec.wait(lambda: c.getP2PGroupInfo(ofC).members == {idC1})
    yield c1.events.rec.wait(lambda: (idA1, ofC, 1) in c1.events.rec.named("onP2PMemberLeave"))


@pytest_twisted.inlineCallbacks
def test_aClientArrivingBeforeItsSourcesWordThatItLeftTheTargetsGroup(world):
    """a1, a's client, is in a group of b's; a moves it to b. Should a1
    arrive before a's word that it left that group (Redis slower than the
    client), b takes it out of the group itself, and a's word, once it
    comes, changes nothing."""
    a, b, a1, b1, _b2 = yield world.twoServers()
    idA1, idB1 = a1.getLocalHostID(), b1.getLocalHostID()
    group = b.createP2PGroup([idA1, idB1])
    yield b.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    held = []
    control = a.cluster.control

    def holdGone(serverID, body):
        if b'"op":"gone"' in body:
            held.append((serverID, body))
            return defer.succeed(1)
        return control(serverID, body)
    a.cluster.control = holdGone
    yield a.moveClient(idA1, "b").addTimeout(10, reactor)
    assert held                                 # b has not heard it yet
    assert b.getP2PGroupInfo(group).members == {idB1}
    yield b1.events.rec.wait(lambda: (idA1, group, 1) in b1.events.rec.named(
        "onP2PMemberLeave"))
    for serverID, body in held:
        yield control(serverID, body)
    b.send(idA1, b"welcome to b")
    yield a1.events.rec.wait(lambda: a1.events.messagesFrom(HOSTID_SERVER)[-1:] == [
        b"welcome to b"])
    assert b.cluster.stats.malformed == 0
    assert b.getP2PGroupInfo(group).members == {idB1}


@pytest_twisted.inlineCallbacks
def test_anOwnerAddingAClientOnItsWayHearsItIsGone(world):
    """c puts a1 into a group while a is moving a1 to b: a (a1's home till
    then) answers that a1 is gone, c drops it from the group, a1 never hears
    of the group, and the move and the group go on."""
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    yield world.ready(a, b, c)
    a1, c1 = yield defer.gatherResults([world.client(a), world.client(c)])
    idA1, idC1 = a1.getLocalHostID(), c1.getLocalHostID()
    moved = a.moveClient(idA1, "b")
    group = c.createP2PGroup([idA1, idC1])
    yield c.events.rec.wait(lambda: c.getP2PGroupInfo(group).members == {idC1})
    yield moved.addTimeout(10, reactor)
    yield a1.events.rec.waitCount("onServerMoved", 1)
    assert [e for e in a1.events.rec.named("onP2PMemberJoin") if e[1] == group] == []
    assert c.cluster.stats.malformed == a.cluster.stats.malformed == 0
    yield c.events.rec.wait(lambda: (group, idC1, ErrorType.OK) in c.events.rec.named(
        "onP2PGroupJoinMemberAckComplete"))
    # Arrived, it can be added.
    c.joinP2PGroup(idA1, group)
    yield a1.events.rec.wait(lambda: a1.getPeerHostIDs() == [idC1])
