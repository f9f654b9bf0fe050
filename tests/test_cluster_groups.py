"""P2P groups whose members are clients of different cluster servers, on a
real redis-server and loopback sockets: join notices and acknowledgements
through the cluster, relayed frames crossing between the servers, pairs
going direct, members leaving; what a forged frame or control message
gets, and what a flood or a hung Redis does to relayed frames."""

import signal

import pytest_twisted
from twisted.internet import defer, reactor

from proud_twisted import HOSTID_SERVER, ErrorType
from proud_twisted.cluster import envelope
from tests.clustersupport import spanningGroup


@pytest_twisted.inlineCallbacks
def test_aGroupSpansServersAndCompletesOnceEveryMemberEverywhereAcknowledged(world):
    a, b, clients, ids, group = yield spanningGroup(world)
    completions = a.events.rec.named("onP2PGroupJoinMemberAckComplete")
    assert sorted(completions) == sorted((group, m, ErrorType.OK) for m in ids)
    # Every member, wherever it lives, processed every join before completion.
    for client in clients:
        assert client.getGroupMembers(group) == set(ids)
        joins = {(m, g) for m, g, _, _ in client.events.rec.named("onP2PMemberJoin")}
        assert {(m, group) for m in ids} <= joins
    assert a.getP2PGroupInfo(group).members == set(ids)
    assert b.getP2PGroups() == []               # the group lives on a alone
    # The owner's send to the group reaches its members on both servers.
    a.send(group, b"to everyone")
    for client in clients:
        yield client.events.rec.wait(
            lambda c=client: c.events.messagesFrom(HOSTID_SERVER) == [b"to everyone"])


@pytest_twisted.inlineCallbacks
def test_relayedFramesCrossServersThenPairsGoDirect(world):
    a, b, (a1, b1, b2), (idA1, idB1, idB2), _ = yield spanningGroup(world)
    for client, peer in ((a1, idB1), (b1, idA1), (b1, idB2)):
        client.forceRelay(peer)
    for i in range(5):
        a1.send(idB1, b"a1 to b1 %d" % i)
        b1.send(idA1, b"b1 to a1 %d" % i)
        b1.send(idB2, b"b1 to b2 %d" % i)       # both on b, their group on a
    yield b1.events.rec.wait(lambda: len(b1.events.messagesFrom(idA1)) == 5)
    yield a1.events.rec.wait(lambda: len(a1.events.messagesFrom(idB1)) == 5)
    yield b2.events.rec.wait(lambda: len(b2.events.messagesFrom(idB1)) == 5)
    assert b1.events.messagesFrom(idA1) == [b"a1 to b1 %d" % i for i in range(5)]
    assert a1.events.messagesFrom(idB1) == [b"b1 to a1 %d" % i for i in range(5)]
    assert b2.events.messagesFrom(idB1) == [b"b1 to b2 %d" % i for i in range(5)]
    assert a.cluster.stats.framesOut > 0 and b.cluster.stats.framesIn > 0
    assert b.cluster.stats.framesOut > 0 and a.cluster.stats.framesIn > 0
    # Their homes told each other the members' addresses: the pairs punch.
    for client, peer in ((a1, idB1), (b1, idA1), (b1, idB2)):
        client.forceRelay(peer, False)
    yield defer.gatherResults([a1.whenDirect(idB1).addTimeout(10, reactor),
                               b1.whenDirect(idA1).addTimeout(10, reactor)])
    a1.send(idB1, b"direct")
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1)[-1:] == [b"direct"])
    assert not b1.events.rec.named("onReceiveUserMessage")[-1][2].relayed


@pytest_twisted.inlineCallbacks
def test_aFloodOfRelayedFramesIsBoundedAndReliableMessagesStillArrive(world):
    # At most 3,000 bytes may wait for Redis: a burst of 20 messages of 1,000
    # bytes relayed to another server through Redis (no direct path) loses
    # frames there, counted, and the pair's reliable session sends them again.
    a, _, (a1, b1, _), (idA1, idB1, _), _ = yield spanningGroup(
        world, maxPendingBytes=3000, directRelay=False)
    a1.forceRelay(idB1)
    for i in range(20):
        a1.send(idB1, b"%02d" % i + b"x" * 998)
    yield b1.events.rec.wait(lambda: len(b1.events.messagesFrom(idA1)) == 20, timeout=20)
    assert [m[:2] for m in b1.events.messagesFrom(idA1)] == [b"%02d" % i for i in range(20)]
    assert a.cluster.stats.framesDropped > 0


@pytest_twisted.inlineCallbacks
def test_framesWaitingOnAHungRedisAreBoundedCountedAndSentAgain(world, redis):
    # Redis hangs while a client relays to a peer on the other server: the
    # frames published meanwhile (no Deferred each) wait for their replies
    # up to maxPendingBytes, later ones are dropped; the watchdog drops the
    # link and counts the unanswered ones; once Redis answers again the
    # pair's reliable session sends everything again, in order.
    a, _, (a1, b1, _), (idA1, idB1, _), _ = yield spanningGroup(
        world, maxPendingBytes=3000, commandTimeout=0.5, directRelay=False)
    a1.forceRelay(idB1)
    stats = a.cluster.stats
    redis.process.send_signal(signal.SIGSTOP)
    try:
        for i in range(10):
            a1.send(idB1, b"%02d" % i + b"x" * 498)
        yield a.events.rec.wait(lambda: stats.publishesFailed > 0, timeout=10)
        assert 0 < stats.publishesFailed <= 3000 // 500
        assert stats.framesDropped > 0
        assert a.cluster._link.pendingBytes == 0
    finally:
        redis.process.send_signal(signal.SIGCONT)
    yield b1.events.rec.wait(lambda: len(b1.events.messagesFrom(idA1)) == 10, timeout=30)
    assert [m[:2] for m in b1.events.messagesFrom(idA1)] == [b"%02d" % i for i in range(10)]


@pytest_twisted.inlineCallbacks
def test_membersLeavingAcrossServers(world):
    a, b, (a1, b1, b2), (idA1, _, idB2), group = yield spanningGroup(world)
    yield b1.disconnect()
    world.clients.remove(b1)
    yield a1.events.rec.wait(lambda: a1.getGroupMembers(group) == {idA1, idB2})
    yield b2.events.rec.wait(lambda: b2.getGroupMembers(group) == {idA1, idB2})
    assert a.getP2PGroupInfo(group).members == {idA1, idB2}
    a.leaveP2PGroup(idB2, group)
    yield b2.events.rec.wait(lambda: group not in b2.getLocalJoinedP2PGroups())
    yield a1.events.rec.wait(lambda: a1.getGroupMembers(group) == {idA1})
    # The server that held them leaving takes its clients out of a's groups.
    a.joinP2PGroup(idB2, group)
    yield a1.events.rec.wait(lambda: a1.getGroupMembers(group) == {idA1, idB2})
    world.clients.remove(b2)
    yield b.stopService()
    yield a.events.rec.waitCount("onServerLeave", 1)
    assert a.getP2PGroupInfo(group).members == {idA1}
    yield a1.events.rec.wait(lambda: a1.getGroupMembers(group) == {idA1})


@pytest_twisted.inlineCallbacks
def test_peersOnEveryServerHearAMemberGoOfflineAndComeBack(world):
    _, b, (a1, b1, b2), (_, idB1, _), _ = yield spanningGroup(world)
    # b1's connection drops (reset by its server): it reconnects and resumes.
    b._engine._clients[idB1].transport.abortConnection()
    for peer in (a1, b2):       # a1 on the owner, b2 beside b1 on its home
        yield peer.events.rec.waitCount("onP2PMemberOnline", 1, timeout=20)
        assert peer.events.rec.named("onP2PMemberOffline") == [(idB1,)]
        assert peer.events.rec.named("onP2PMemberOnline") == [(idB1,)]
    assert b1.getLocalHostID() == idB1


@pytest_twisted.inlineCallbacks
def test_whenTheOwnerLeavesItsGroupsLeaveTheMembersOfOtherServers(world):
    a, b, (a1, b1, b2), (_, idB1, idB2), group = yield spanningGroup(world)
    world.clients.remove(a1)
    yield a1.disconnect()
    yield a.stopService()
    yield b.events.rec.waitCount("onServerLeave", 1)
    for client in (b1, b2):
        yield client.events.rec.wait(lambda c=client: not c.getLocalJoinedP2PGroups())
    for client, hostID in ((b1, idB1), (b2, idB2)):
        assert client.events.rec.named("onP2PMemberLeave")[-1] == (hostID, group, 0)


@pytest_twisted.inlineCallbacks
def test_forgedFramesAndControlMessagesAreRefusedAndCounted(world, redis):
    a, b, (a1, b1, _), (idA1, idB1, _), _ = yield spanningGroup(world)
    inbox = a.cluster.keys.inbox("a")
    # b claims frames for pairs it has none of (a1 with a HostID of nobody's).
    redis.call("PUBLISH", inbox, envelope.encodeFrame("b", 999999, idA1, 1, b"forged"))
    redis.call("PUBLISH", inbox, envelope.encodeFrame("b", idB1, 999999, 1, b"forged"))
    for body in (b"not json", b"[]", b'{"op":"join","to":"x"}', b'{"op":"ack","member":1}',
                 b'{"op":"pair","to":%d,"peer":5,"epoch":1,"secret":"zz","policy":0}' % idA1,
                 b'{"op":"nonsense","to":%d}' % idA1):
        redis.call("PUBLISH", inbox, envelope.encodeControl("b", body))
    yield b.cluster.send("a", b"after")
    yield a.events.rec.wait(lambda: a.events.fromServer("b")[-1:] == [(None, b"after")])
    assert a.cluster.stats.framesRefused == 2
    assert a.cluster.stats.malformed == 6
    assert a1.events.messagesFrom(999999) == []
    # The group still works.
    a1.send(idB1, b"still fine")
    yield b1.events.rec.wait(lambda: b1.events.messagesFrom(idA1)[-1:] == [b"still fine"])


@pytest_twisted.inlineCallbacks
def test_aGroupOfClientsOfTwoOtherServersGoesDirect(world):
    # The owner holds no member: the two homes learn of the pair from it and
    # give each other their client's addresses.
    owner, b, c = world.server("owner"), world.server("b"), world.server("c")
    yield world.ready(owner, b, c)
    onB, onC = yield defer.gatherResults([world.client(b), world.client(c)])
    idB, idC = onB.getLocalHostID(), onC.getLocalHostID()
    group = owner.createP2PGroup([idB, idC])
    yield owner.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    assert onB.getGroupMembers(group) == onC.getGroupMembers(group) == {idB, idC}
    onB.send(idC, b"first, relayed b -> c")
    yield onC.events.rec.wait(lambda: onC.events.messagesFrom(idB) == [b"first, relayed b -> c"])
    yield defer.gatherResults([onB.whenDirect(idC).addTimeout(10, reactor),
                               onC.whenDirect(idB).addTimeout(10, reactor)])
    assert onB.getPeerInfo(idC).udpAddress == onC.getPublicUdpAddress()
    # The owner counts the pair direct: each home passes its client's path
    # report on to the server that introduced the pair.
    yield owner.events.rec.wait(lambda: owner.getP2PConnectionStats(group).directPairs == 1)
    assert owner.getP2PConnectionStats(group).totalPairs == 1
    assert owner.stats.punchSuccesses == 2


@pytest_twisted.inlineCallbacks
def test_aForgedPathReportIsRefusedAndCounted(world, redis):
    """A path report naming a client that is no remote member of the
    receiver's groups is a malformed control message."""
    a, _, _, (idA1, idB1, _), group = yield spanningGroup(world)
    inbox = a.cluster.keys.inbox("a")
    before = a.cluster.stats.malformed
    redis.call("PUBLISH", inbox, envelope.encodeControl(
        "b", b'{"op":"path","member":%d,"peer":%d,"direct":true}' % (idA1, idB1)))
    redis.call("PUBLISH", inbox, envelope.encodeControl(
        "b", b'{"op":"path","member":999999,"peer":%d,"direct":true}' % idA1))
    yield a.events.rec.wait(lambda: a.cluster.stats.malformed == before + 2)
    assert a.getP2PConnectionStats(group).directPairs == 0
