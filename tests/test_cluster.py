"""Cluster servers in one process against a real redis-server: membership,
HostID leases, locate, server-to-server messages, sends routed to other
servers' clients, and what hostile data from Redis gets."""

import signal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from proud_twisted import (
    HOSTID_SERVER,
    ClusterUnavailable,
    ConnectionRefusedByServer,
    DeliveryMode,
    JoinRefusal,
    MessageTooLong,
    NetClient,
    SendQueueFull,
    ServerInfo,
    UnknownHostID,
    UnknownServer,
)
from proud_twisted.cluster import envelope
from proud_twisted.cluster.leases import blockOf
from tests.clustersupport import VERSION, known
from tests.support import RecordingClientEvents


@pytest_twisted.inlineCallbacks
def test_serversSeeEachOtherAndAGracefulLeave(world):
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    joined = a.events.rec.named("onServerJoin")
    assert [info.serverID for (info,) in joined] == ["b"]
    servers = a.cluster.getServers()
    assert [s.serverID for s in servers] == ["a", "b"]
    infoB = servers[1]
    assert infoB.tag == "tag-b"
    assert infoB.tcpAddress == b.getTcpAddress()
    assert infoB.udpAddress == b.getUdpAddress()
    yield b.stopService()
    yield a.events.rec.waitCount("onServerLeave", 1)
    assert a.events.rec.named("onServerLeave") == [("b",)]
    assert [s.serverID for s in a.cluster.getServers()] == ["a"]


@pytest_twisted.inlineCallbacks
def test_aServerStartedAgainBeforeItsEntryExpiredIsAnotherServer(world):
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    onB = yield world.client(b)
    group = a.createP2PGroup([onB.getLocalHostID()])
    # b dies without a word (its heartbeat and connections stop), and a new
    # process takes the name b at once, long before the entry's 10 s TTL.
    b.cluster._beat.stop()
    yield b.cluster._link.stop()
    b.cluster._link = None
    again = world.server("b")
    yield a.events.rec.waitCount("onServerJoin", 2)
    assert [e[0] for e in a.events.rec.events if e[0] in ("onServerJoin", "onServerLeave")
            ] == ["onServerJoin", "onServerLeave", "onServerJoin"]
    assert a.events.rec.named("onServerJoin")[1][0].incarnation == again.cluster.incarnation
    # The old b's client left a's group with it.
    assert a.getP2PGroupInfo(group).members == frozenset()


@pytest_twisted.inlineCallbacks
def test_aServerMayMessageANewMemberAsSoonAsItHearsOfIt(world):
    a = world.server("a")
    yield world.ready(a)
    sent = []

    def welcome(info, record=a.events.onServerJoin):
        record(info)
        sent.append(a.cluster.send(info.serverID, b"welcome"))
    a.events.onServerJoin = welcome
    b = world.server("b")
    yield world.ready(a, b)
    yield defer.gatherResults(sent)
    yield b.events.rec.wait(lambda: b.events.fromServer("a") == [(None, b"welcome")])
    assert b.cluster.stats.unknownSender == 0


@pytest_twisted.inlineCallbacks
def test_hostIDsAreUniqueInTheClusterAndLocated(world):
    a, b = world.server("a", blockSize=4, ttl=1.0), world.server("b", blockSize=4, ttl=1.0)
    yield world.ready(a, b)
    clients = []
    for server in (a, b) * 5:       # a block of 4 runs low after 3: one more is leased
        clients.append((yield world.client(server)))  # noqa: PERF401 (a yield)
    onA = [c.getLocalHostID() for c in clients[0::2]]
    onB = [c.getLocalHostID() for c in clients[1::2]]
    assert len(set(onA + onB)) == 10
    # Each server's ids come from blocks it leased (more than one block of 4).
    assert {blockOf(h, 4) for h in onA}.isdisjoint({blockOf(h, 4) for h in onB})
    assert a.cluster.stats.blocksLeased >= 2
    located = yield a.cluster.locate(onB[0])
    assert located.serverID == "b"
    assert (yield a.cluster.locate(onA[0])).serverID == "a"
    group = b.createP2PGroup(onB[:2])
    assert (yield a.cluster.locate(group)).serverID == "b"
    assert (yield a.cluster.locate(10 ** 9)) is None     # no one leased it
    # The heartbeats carry each server's load.
    yield a.events.rec.wait(lambda: [(s.clients, s.groups) for s in a.cluster.getServers()]
                            == [(5, 0), (5, 1)])


@pytest_twisted.inlineCallbacks
def test_aJoinStormLargerThanTheLeasedBlocksWaitsForTheNextBlock(world):
    """More clients join at once than the leased HostIDs (blocks of 4):
    those past the last id wait for the next block instead of being
    refused, and every one joins with an id of its own."""
    a = world.server("a", blockSize=4)
    yield world.ready(a)
    clients = [NetClient(RecordingClientEvents()) for _ in range(24)]
    world.clients.extend(clients)
    yield defer.gatherResults([c.connect("127.0.0.1", a.getTcpAddress()[1], VERSION)
                               for c in clients]).addTimeout(20, reactor)
    ids = [c.getLocalHostID() for c in clients]
    assert len(set(ids)) == 24
    assert a.cluster.stats.blocksLeased >= 6
    assert a.stats.joinsRefused == 0


@pytest_twisted.inlineCallbacks
def test_withoutRedisAJoinPastTheLeasedIDsIsRefusedAtOnce(world, redis):
    """No block can be leased while Redis is away: a join past the leased
    ids is refused as SERVER_FULL at once (it does not wait), the joined
    clients carry on, and joins work again once Redis is back."""
    a = world.server("a", blockSize=4, ttl=1.0)
    yield world.ready(a)
    redis.stop()
    yield a.events.rec.wait(lambda: not a.cluster.available)
    joined, refused = [], None
    for _ in range(9):
        client = NetClient(RecordingClientEvents())
        try:
            yield client.connect("127.0.0.1", a.getTcpAddress()[1], VERSION
                                 ).addTimeout(5, reactor)
        except ConnectionRefusedByServer as e:
            refused = e
            break
        world.clients.append(client)
        joined.append(client)
    assert refused is not None and refused.reason is JoinRefusal.SERVER_FULL
    assert 1 <= len(joined) <= 8
    joined[0].send(HOSTID_SERVER, b"still here")
    yield a.events.rec.wait(lambda: any(
        e[1] == b"still here" for e in a.events.rec.named("onReceiveUserMessage")))
    redis.start()
    yield a.events.rec.wait(lambda: a.cluster.available, timeout=10)
    again = yield world.client(a)
    assert again.getLocalHostID() not in [c.getLocalHostID() for c in joined]


@pytest_twisted.inlineCallbacks
def test_aHungRedisFailsCommandsWithinTheTimeoutAndTheLinkComesBack(world, redis):
    """Redis stops answering (the process stopped, as a network split would
    look): each command waiting fails with ClusterUnavailable within the
    command timeout (one watchdog for all, not a timer each), the link is
    dropped, and once Redis answers again the server is back in the cluster."""
    a = world.server("a", commandTimeout=0.5, ttl=1.0)
    yield world.ready(a)
    redis.process.send_signal(signal.SIGSTOP)
    try:
        started = reactor.seconds()
        waits = [a.cluster.locate(10 ** 8 + i) for i in range(50)]
        results = yield defer.DeferredList(waits, consumeErrors=True)
        took = reactor.seconds() - started
    finally:
        redis.process.send_signal(signal.SIGCONT)
    assert all(not ok and failure.check(ClusterUnavailable) for ok, failure in results)
    assert "did not answer" in results[0][1].getErrorMessage()
    assert 0.4 <= took < 2.0, took
    yield a.events.rec.wait(lambda: a.cluster.available, timeout=10)
    assert (yield a.cluster.locate(10 ** 8)) is None


@pytest_twisted.inlineCallbacks
def test_aServerStopsWhileRedisIsDown(world, redis):
    # Its connections to Redis are gone and being tried again: stopping
    # finishes anyway (tests/test_cluster_auth.py: one that Redis refused).
    a = world.server("a")
    yield world.ready(a)
    redis.stop()
    yield a.events.rec.wait(lambda: not a.cluster.available, timeout=10)
    yield a.stopService().addTimeout(5, reactor)
    assert not a.running


@pytest_twisted.inlineCallbacks
def test_sendAndPublishArriveInOrderPerSender(world):
    a, b, c = world.server("a"), world.server("b"), world.server("c")
    yield world.ready(a, b, c)
    sends = []
    for i in range(50):
        sends.append(a.cluster.send("b", b"to-b %d" % i))
        if i % 5 == 0:
            sends.append(a.cluster.publish("chat", b"all %d" % i))
    yield defer.gatherResults(sends)
    expected = []
    for i in range(50):
        expected.append((None, b"to-b %d" % i))
        if i % 5 == 0:
            expected.append(("chat", b"all %d" % i))
    yield b.events.rec.wait(lambda: len(b.events.fromServer("a")) == len(expected))
    assert b.events.fromServer("a") == expected
    yield c.events.rec.wait(lambda: len(c.events.fromServer("a")) == 10)
    assert c.events.fromServer("a") == [("chat", b"all %d" % i) for i in range(0, 50, 5)]
    assert a.events.fromServer("a") == []           # a hears not its own publications
    with pytest.raises(UnknownServer):
        yield a.cluster.send("nobody", b"x")


@pytest_twisted.inlineCallbacks
def test_netServerSendReachesClientsAndGroupsOfAnotherServer(world):
    a, b, onA, onB1, onB2 = yield world.twoServers()
    group = b.createP2PGroup([onB1.getLocalHostID(), onB2.getLocalHostID()])
    for i in range(20):
        a.send(onB1.getLocalHostID(), b"reliable %d" % i)
    a.send(group, b"to the group")
    a.send([onA.getLocalHostID(), onB2.getLocalHostID()], b"mixed")
    yield onB1.events.rec.wait(lambda: len(onB1.events.messagesFrom(HOSTID_SERVER)) == 21)
    assert onB1.events.messagesFrom(HOSTID_SERVER) == (
        [b"reliable %d" % i for i in range(20)] + [b"to the group"])
    yield onB2.events.rec.wait(lambda: len(onB2.events.messagesFrom(HOSTID_SERVER)) == 2)
    assert onB2.events.messagesFrom(HOSTID_SERVER) == [b"to the group", b"mixed"]
    yield onA.events.rec.wait(lambda: onA.events.messagesFrom(HOSTID_SERVER) == [b"mixed"])
    # send's options travel with it.
    a.send(onB2.getLocalHostID(), b"latest", mode=DeliveryMode.UNRELIABLE_LATEST, channel=3)
    yield onB2.events.rec.wait(lambda: onB2.events.messagesFrom(HOSTID_SERVER)[-1:] == [b"latest"])
    context = onB2.events.rec.named("onReceiveUserMessage")[-1][2]
    assert (context.mode, context.channel) == (DeliveryMode.UNRELIABLE_LATEST, 3)
    assert b.cluster.stats.routedIn == 23
    assert a.cluster.stats.routedOut == 23 and a.cluster.stats.messagesSent == 0
    with pytest.raises(UnknownHostID):
        a.send(10 ** 9, b"nobody leased it")


@pytest_twisted.inlineCallbacks
def test_remoteSendsObeyTheLimitsOfLocalOnes(world):
    a, b = world.server("a", maxPendingBytes=4096), world.server("b")
    yield world.ready(a, b)
    onB = yield world.client(b)
    target = onB.getLocalHostID()
    with pytest.raises(MessageTooLong):
        a.send(target, b"x" * (64 * 1024 + 1))
    with pytest.raises(MessageTooLong):
        a.cluster.send("b", b"x" * (64 * 1024 + 1))
    # A burst larger than the bytes allowed to wait for Redis: reliable sends
    # fail once it is full, unreliable ones are dropped and counted.
    sent = refused = 0
    for _ in range(100):
        try:
            a.send(target, b"r" * 1000)
            sent += 1
        except SendQueueFull:
            refused += 1
    assert 0 < sent <= 4 and refused == 100 - sent
    for _ in range(10):
        a.send(target, b"u" * 1000, reliable=False)
    assert a.cluster.stats.routedDropped == 10
    yield onB.events.rec.wait(lambda: len(onB.events.messagesFrom(HOSTID_SERVER)) == sent)
    # Once Redis has answered, sends go again.
    yield onB.events.rec.wait(lambda: a.cluster._link.pendingBytes == 0)
    a.send(target, b"after")
    yield onB.events.rec.wait(lambda: onB.events.messagesFrom(HOSTID_SERVER)[-1:] == [b"after"])


@pytest_twisted.inlineCallbacks
def test_messagesFromUnknownServersOrMalformedAreRejectedLoggedOnceCounted(
        world, redis):
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    inbox = a.cluster.keys.inbox("a")
    ghost = envelope.encodeMessage("ghost", "", b"let me in")
    for _ in range(3):
        redis.call("PUBLISH", inbox, ghost)
    for garbage in (b"", b"PC\x01\x09\x01x", b"not an envelope", b"PC\x01\x01\x05ab"):
        redis.call("PUBLISH", inbox, garbage)
    # An announcement that claims to be a join, with a bad entry.
    redis.call("PUBLISH", a.cluster.keys.announce, envelope.encodeJoin("evil", b"{}"))
    # A routed send on the broadcast channel (it belongs in an inbox).
    redis.call("PUBLISH", a.cluster.keys.broadcast, envelope.encodeRoute("b", [1000], b"x"))
    # Then an honest message: everything before it was handled.
    yield b.cluster.send("a", b"honest")
    yield a.events.rec.wait(lambda: a.events.fromServer("b") == [(None, b"honest")])
    assert a.cluster.stats.unknownSender == 3
    assert a.cluster.stats.malformed == 6
    assert a.events.fromServer("ghost") == []
    assert "evil" not in known(a)
    warnings = [r for r in redisWarnings(a) if "ghost" in r]
    assert len(warnings) == 1


def redisWarnings(server):
    return [str(key) for key in server.cluster.onceLog._seen]


@pytest_twisted.inlineCallbacks
def test_aCorruptMemberEntryIsRejectedAndCounted(world, redis):
    a, b = world.server("a", ttl=1.0), world.server("b")
    yield world.ready(a, b)
    redis.call("SADD", a.cluster.keys.servers, "bad")
    redis.call("SET", a.cluster.keys.server("bad"), b"\xff not json")
    redis.call("SADD", a.cluster.keys.servers, "liar")
    redis.call("SET", a.cluster.keys.server("liar"), ServerInfo(
        "someone-else", ("h", 1), ("h", 2)).toJSON())
    yield a.events.rec.wait(lambda: a.cluster.stats.malformed >= 2)
    assert known(a) == {"b"}


@pytest_twisted.inlineCallbacks
def test_aServerRunningEncryptionTheOtherWayIsKeptOutLoudly(world):
    """The servers of a cluster must agree on encryption (a pair of a client
    of each kind could not open each other's frames): a member that runs it
    the other way is no member for the others, nor they for it; each side
    warns once and counts; the agreeing members carry on."""
    a, b = world.server("a", ttl=1.0), world.server("b", ttl=1.0)
    plain = world.server("plain", encryption=False, ttl=1.0)
    yield world.ready(a, b)
    yield plain.cluster.whenReady().addTimeout(10, reactor)
    for server in (a, b, plain):
        yield server.events.rec.wait(lambda s=server: s.cluster.stats.mismatchedMembers >= 1)
    assert known(a) == {"b"} and known(b) == {"a"} and known(plain) == set()
    assert [i.serverID for i in a.cluster.getServers()] == ["a", "b"]
    assert plain.cluster.getServers()[0].encryption is False
    onPlain = yield world.client(plain, encryption=False)
    with pytest.raises(UnknownHostID):
        a.createP2PGroup([onPlain.getLocalHostID()])
    with pytest.raises(UnknownServer):
        yield a.cluster.send("plain", b"hello?")
    yield a.cluster.send("b", b"hello b")
    yield b.events.rec.wait(lambda: b.events.fromServer("a") == [(None, b"hello b")])
    # Warned once, however many heartbeats repeat the entry.
    yield a.events.rec.wait(lambda: a.cluster.stats.mismatchedMembers >= 2)
    assert [key for key in a.cluster.onceLog._seen if key[0] == "encryption"] == [
        ("encryption", "plain", plain.cluster.incarnation)]


@pytest_twisted.inlineCallbacks
def test_callsFailClearlyWhileRedisIsAwayAndTheServerRejoinsWhenItIsBack(world, redis):
    a, b = world.server("a", ttl=1.0), world.server("b", ttl=1.0)
    yield world.ready(a, b)
    onA = yield world.client(a)
    onB = yield world.client(b)
    redis.stop()
    yield a.events.rec.wait(lambda: not a.cluster.available and not b.cluster.available)
    with pytest.raises(ClusterUnavailable):
        a.cluster.getServers()
    with pytest.raises(ClusterUnavailable):
        yield a.cluster.send("b", b"x")
    with pytest.raises(ClusterUnavailable):
        yield a.cluster.locate(onB.getLocalHostID())
    with pytest.raises(ClusterUnavailable):
        a.send(onB.getLocalHostID(), b"x")
    # Each server still serves its own clients.
    a.send(onA.getLocalHostID(), b"still here")
    yield onA.events.rec.wait(lambda: onA.events.messagesFrom(HOSTID_SERVER) == [b"still here"])
    late = yield world.client(a)        # and admits new ones from its leased block
    redis.start()                       # empty: no persistence
    yield world.ready(a, b)
    assert a.cluster.stats.registrations == 2
    a.send([onB.getLocalHostID()], b"back")
    yield onB.events.rec.wait(lambda: onB.events.messagesFrom(HOSTID_SERVER) == [b"back"])
    b.send(late.getLocalHostID(), b"found")     # its block was claimed again
    yield late.events.rec.wait(lambda: late.events.messagesFrom(HOSTID_SERVER) == [b"found"])
