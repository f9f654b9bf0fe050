"""Hardening over real loopback sockets (pytest-twisted): a client that stops
reading its TCP socket, which only real socket buffers can show (finding 3
of issue #13). Every wait is bounded; nothing sleeps.
"""

import os
import shutil
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from proud_twisted import ErrorType, NetServer
from proud_twisted.server.connection import unsentBytes
from tests.support import RecordingServerEvents
from tests.test_loopback import VERSION, connectClients, disconnectAll

OUTPUT_BUDGET = 256 * 1024
CHUNK = 16 * 1024
MAX_CHUNKS = 4000           # 64 MB: far beyond loopback's socket buffers
LINGER = 0.5


@pytest.fixture
def server():
    events = RecordingServerEvents()
    netServer = NetServer(events, VERSION, interface="127.0.0.1", clientTimeout=20.0,
                          maxClientOutput=OUTPUT_BUDGET, closeLinger=LINGER)
    netServer.startService()
    yield netServer
    pytest_twisted.blockon(netServer.stopService())


def stopReading(client):
    """The client reads nothing more from its TCP socket (it still writes)."""
    client._engine._connection.transport.pauseProducing()


@defer.inlineCallbacks
def fillUntil(server, hostID, done, reliable=True):
    """Send CHUNK-byte messages to C{hostID} until C{done()}, one a turn
    (bounded); return the largest unsent backlog its connection held."""
    connection = server._engine._clients[hostID]
    worst = 0
    for _ in range(MAX_CHUNKS):
        if done():
            break
        server.send(hostID, bytes(CHUNK), reliable)
        worst = max(worst, unsentBytes(connection.transport) or 0)
        yield task.deferLater(reactor, 0, lambda: None)
    return worst


@defer.inlineCallbacks
def congestedClient(server):
    """A joined client that stopped reading, with more than Twisted's buffer
    size waiting for it at the server: C{(client, hostID)}."""
    slow, = yield connectClients(server, 1)
    slowID = slow.getLocalHostID()
    stopReading(slow)
    def congested():
        return server._engine._clients[slowID].congestedSince is not None
    yield fillUntil(server, slowID, congested)
    assert congested()
    return slow, slowID


@pytest_twisted.inlineCallbacks
def test_aClientThatStopsReadingIsDisconnectedWithinItsOutputBudget(server):
    a, b, slow = yield connectClients(server, 3)
    ida, idb, slowID = (c.getLocalHostID() for c in (a, b, slow))
    server.createP2PGroup([ida, idb, slowID], allowDirectP2P=False)
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    stopReading(slow)
    received = []
    b.events.onReceiveUserMessage = lambda sender, payload, context: received.append(payload)
    # The honest pair talks the whole time; a group member relays to the slow one too.
    sent = []

    def talk():
        sent.append(b"honest %d" % len(sent))
        a.send(idb, sent[-1])
        a.send(slowID, b"r" * 1000)
    honest = task.LoopingCall(talk)
    honest.start(0.01)
    def gone():
        return slowID not in server.getClientHostIDs()
    worst = yield fillUntil(server, slowID, gone)
    yield server.events.rec.wait(gone, timeout=10)
    honest.stop()
    leave = server.events.rec.named("onClientLeave")[-1]
    assert (leave[0].hostID, leave[1]) == (slowID, ErrorType.SLOW_CONSUMER)
    assert server.stats.slowConsumers == 1
    # Never more than the budget held (one message more at most), whatever was sent.
    assert worst <= OUTPUT_BUDGET + CHUNK + 64
    yield b.events.rec.wait(lambda: len(received) == len(sent), timeout=10)
    assert received == sent
    fresh, = yield connectClients(server, 1)
    yield disconnectAll([a, b, fresh])


@pytest_twisted.inlineCallbacks
def test_unreliableOutputToAClientThatDoesNotReadIsDropped(server):
    slow, = yield connectClients(server, 1)
    slowID = slow.getLocalHostID()
    server._engine.udpLost(server._engine._clients[slowID])      # unreliable now goes over TCP too
    stopReading(slow)
    def dropped():
        return server.stats.outputDropped > 0
    worst = yield fillUntil(server, slowID, dropped, reliable=False)
    assert dropped()
    assert slowID in server.getClientHostIDs()     # unreliable loss is no offence
    assert worst <= OUTPUT_BUDGET
    slow._engine._connection.transport.resumeProducing()
    yield disconnectAll([slow])


@pytest_twisted.inlineCallbacks
def test_closeConnectionLeavesAtOnceAndCutsANonReaderAfterTheLinger(server):
    slow, slowID = yield congestedClient(server)
    server.closeConnection(slowID)
    assert slowID not in server.getClientHostIDs()        # at once, events fired
    assert server.events.rec.named("onClientLeave")[-1][1] is ErrorType.KICKED
    assert server.getConnectionCount() == 1               # still lingering
    yield server.events.rec.wait(lambda: server.getConnectionCount() == 0,
                                 timeout=LINGER + 3)
    slow._engine._connection.transport.resumeProducing()          # it reads again: the cut
    yield slow.events.rec.waitCount("onLeaveServer", 1, timeout=5)


@pytest_twisted.inlineCallbacks
def test_aGoodbyeThenSilenceIsCutAfterTheLinger(server):
    slow, slowID = yield congestedClient(server)
    slow._engine._connection.sendMessage("GOODBYE", comment=b"bye")     # and reads nothing
    yield server.events.rec.wait(lambda: slowID not in server.getClientHostIDs(), timeout=5)
    yield server.events.rec.wait(lambda: server.getConnectionCount() == 0,
                                 timeout=LINGER + 3)
    slow._engine._connection.transport.resumeProducing()          # it reads again: the cut
    yield slow.events.rec.waitCount("onLeaveServer", 1, timeout=5)


@pytest.mark.skipif(shutil.which("ss") is None and not os.environ.get("CI"),
                    reason="needs ss (iproute2)")
@pytest_twisted.inlineCallbacks
def test_theListenQueueIsAsLongAsTheBacklogSetting():
    """ss shows a listening socket's queue length as its Send-Q."""
    listening = NetServer(interface="127.0.0.1", backlog=321)
    listening.startService()
    try:
        port = listening.getTcpAddress()[1]
        lines = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                               text=True, check=True, timeout=10).stdout.split("\n")
        assert {int(line.split()[2]) for line in lines if line.strip()} == {321}
    finally:
        yield listening.stopService()
