"""Server time over real loopback sockets (pytest-twisted), against a
server whose clock is offset on purpose."""

import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from proud_twisted import NetClient, NetServer
from tests.support import OffsetReactor, RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("5b0c2e9a-7d41-4f3e-8a26-c1e9d0f4b713")
OFFSET = 3 * 3600 + 0.271828      # the server's clock runs three hours and a bit ahead


@pytest.fixture
def offsetServer():
    serverReactor = OffsetReactor(reactor, OFFSET)
    server = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1",
                       reactor=serverReactor)
    server.startService()
    yield server, serverReactor
    pytest_twisted.blockon(server.stopService())


@pytest_twisted.inlineCallbacks
def test_theServerClockIsWithinThePromisedBound(offsetServer):
    server, serverReactor = offsetServer
    client = NetClient(RecordingClientEvents())
    yield client.connect("127.0.0.1", server.getTcpAddress()[1], VERSION)
    # The sync pings that follow the UDP path's confirmation: four samples.
    yield client.events.rec.wait(
        lambda: len(client._engine._serverPath.clock._samples) >= 4, timeout=5)
    bounds = []
    for _ in range(20):
        # The server's clock is read just before and just after the client
        # estimates it: the estimate is within its bound of some instant
        # between the two (not of a later reading, which would count the
        # time the test took between them, a context switch on a busy
        # machine, against the bound).
        before = serverReactor.seconds()
        estimate, error = client.getServerTime(), client.getServerTimeError()
        after = serverReactor.seconds()
        assert before - error <= estimate <= after + error
        bounds.append(error)
        yield deferLater(0.01)
    # Loopback round trips are well under a millisecond, and so is the bound.
    assert max(bounds) < 0.005
    assert 0 < client.getServerRtt() < 0.01
    yield client.disconnect()


def deferLater(seconds: float) -> defer.Deferred:
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
