"""Cluster servers in processes of their own (C{twistd -n proudserver
--cluster ...}) beside one in the test's process, on a real redis-server:
a send to a client of the other process, Redis stopped and started again
mid-run, and a killed process leaving the cluster within its TTL."""

import sys
import tempfile
import time

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from proud_twisted import HOSTID_SERVER
from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION
from proud_twisted.cluster.leases import blockOf
from tests.clustersupport import known
from tests.test_examples import environment

CHILD_TTL = 1.0
"""The child's --cluster-ttl: a heartbeat every 0.2 s."""
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class Child(protocol.ProcessProtocol):
    """A child process; C{ended} fires when it has exited."""

    def __init__(self) -> None:
        self.ended = defer.Deferred()
        self.output = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


def spawnProudserver(redis, serverID: str, directory: str) -> Child:
    child = Child()
    reactor.spawnProcess(child, sys.executable, [
        *TWISTD, "-n", "--pidfile=", "proudserver", "--tcp", "0", "--udp", "0",
        "--interface", "127.0.0.1", "--no-encryption", "--no-gc-freeze",
        "--cluster", redis.url, "--server-id", serverID, "--advertise", "127.0.0.1",
        "--tag", "zone", "--cluster-ttl", str(CHILD_TTL)],
        env=environment(), path=directory)
    return child


@defer.inlineCallbacks
def besideChild(here, redis, serverID: str, test):
    """Run C{test(info, child)} beside a C{twistd proudserver --cluster} child
    named C{serverID}, once C{here} has heard it join (C{info}; the child's
    output is the failure if it never does). The child is killed after,
    whatever happened."""
    heard = here.events.rec.count("onServerJoin")
    with tempfile.TemporaryDirectory() as directory:
        child = spawnProudserver(redis, serverID, directory)
        try:
            try:
                yield here.events.rec.waitCount("onServerJoin", heard + 1, timeout=30)
            except defer.TimeoutError:
                pytest.fail(b"".join(child.output).decode(errors="replace"))
            (info,) = here.events.rec.named("onServerJoin")[heard]
            yield test(info, child)
        finally:
            if not child.ended.called:
                child.transport.signalProcess("KILL")
                yield child.ended


@pytest_twisted.inlineCallbacks
def test_aSendReachesAnotherProcessAcrossARedisRestartAndAKilledOneLeavesWithinItsTTL(
        world, redis):
    here = world.server("here", encryption=False)     # as the child runs
    yield world.ready(here)
    yield besideChild(here, redis, "zone-1",
                      lambda info, child: checkChild(world, here, child, redis, info))


@defer.inlineCallbacks
def checkChild(world, here, child, redis, info):
    assert (info.serverID, info.tag, info.tcpAddress[0]) == ("zone-1", "zone", "127.0.0.1")

    # A client of the child process, reached through the cluster.
    player = yield world.clientAt(info.tcpAddress[1], ROOMS_PROTOCOL_VERSION,
                                  encryption=False)
    block = blockOf(player.getLocalHostID())
    yield here.events.rec.wait(lambda: here.cluster._owners.get(block) == "zone-1")
    located = yield here.cluster.locate(player.getLocalHostID())
    assert located.serverID == "zone-1"
    for i in range(10):
        here.send(player.getLocalHostID(), b"across %d" % i)
    yield player.events.rec.wait(
        lambda: len(player.events.messagesFrom(HOSTID_SERVER)) == 10)
    assert player.events.messagesFrom(HOSTID_SERVER) == [b"across %d" % i
                                                        for i in range(10)]

    # Redis stopped: the child keeps serving its player (the rooms app
    # answers a bad request); Redis started again, empty: both register
    # again and the send goes through once more.
    redis.stop()
    yield here.events.rec.wait(lambda: not here.cluster.available)
    player.send(HOSTID_SERVER, b"bogus request")
    yield player.events.rec.wait(lambda: any(
        m.startswith(b"error:") for m in player.events.messagesFrom(HOSTID_SERVER)))
    redis.start()
    yield here.events.rec.wait(lambda: here.cluster.available and "zone-1" in known(here)
                               and here.cluster._owners.get(block) == "zone-1", timeout=10)
    here.send(player.getLocalHostID(), b"after the restart")
    yield player.events.rec.wait(
        lambda: player.events.messagesFrom(HOSTID_SERVER)[-1:] == [b"after the restart"])

    # Killed: no goodbye; its entry expires.
    leftBefore = here.events.rec.count("onServerLeave")
    child.transport.signalProcess("KILL")
    killed = time.monotonic()
    yield child.ended
    yield here.events.rec.waitCount("onServerLeave", leftBefore + 1, timeout=10)
    took = time.monotonic() - killed
    assert here.events.rec.named("onServerLeave")[leftBefore:] == [("zone-1",)]
    # The TTL, plus up to one heartbeat of this server to notice, plus slack.
    assert took < CHILD_TTL + here.cluster.heartbeat + 1.0, took


@pytest_twisted.inlineCallbacks
def test_aGroupAcrossTwoServerProcessesGoesDirect(world, redis):
    """A group of this process's server holding a client of a
    C{twistd proudserver --cluster} child: its notices cross processes
    through Redis, relayed frames cross between the two servers, and the
    pair punches and goes direct."""
    # Without encryption, as the child runs: a pair's two ends must agree.
    here = world.server("here", encryption=False)
    yield world.ready(here)

    @defer.inlineCallbacks
    def test(info, child):
        mine = yield world.client(here, encryption=False)
        theirs = yield world.clientAt(info.tcpAddress[1], ROOMS_PROTOCOL_VERSION,
                                      encryption=False)
        idMine, idTheirs = mine.getLocalHostID(), theirs.getLocalHostID()
        yield here.events.rec.wait(
            lambda: here.cluster._owners.get(blockOf(idTheirs)) == "zone-2")
        group = here.createP2PGroup([idMine, idTheirs])
        yield here.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2, timeout=10)
        assert theirs.getGroupMembers(group) == {idMine, idTheirs}
        mine.forceRelay(idTheirs)
        for i in range(5):
            mine.send(idTheirs, b"relayed %d" % i)
        yield theirs.events.rec.wait(lambda: len(theirs.events.messagesFrom(idMine)) == 5)
        assert theirs.events.messagesFrom(idMine) == [b"relayed %d" % i for i in range(5)]
        assert all(context.relayed
                   for _, _, context in theirs.events.rec.named("onReceiveUserMessage"))
        mine.forceRelay(idTheirs, False)
        yield defer.gatherResults([mine.whenDirect(idTheirs).addTimeout(10, reactor),
                                   theirs.whenDirect(idMine).addTimeout(10, reactor)])
        mine.send(idTheirs, b"direct")
        yield theirs.events.rec.wait(
            lambda: theirs.events.messagesFrom(idMine)[-1:] == [b"direct"])
        assert not theirs.events.rec.named("onReceiveUserMessage")[-1][2].relayed

    yield besideChild(here, redis, "zone-2", test)
