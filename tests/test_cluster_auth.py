"""A cluster on a Redis that asks for a password (C{requirepass}, the URL's
C{redis://:PASSWORD@HOST}): servers that know it join and talk; one with a
wrong password is refused by Redis, says so once, and stays out of the
cluster (nothing reaches the others), and stops cleanly (it used to wait
forever for the connection Redis had refused to close)."""

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from proud_twisted import ConnectionRefusedByServer, JoinRefusal, NetClient
from tests.clustersupport import VERSION, ClusterWorld, known
from tests.redisserver import RedisServer
from tests.support import RecordingClientEvents

PASSWORD = "s3cret-of-the-cluster"


@pytest.fixture
def lockedWorld(redisServer):
    # (redisServer: the session's Redis fixture skips or fails the test, as
    # the other cluster tests, where redis-server is missing)
    locked = RedisServer(password=PASSWORD).start()
    world = ClusterWorld(locked)
    yield world
    world.close()
    locked.close()


@pytest_twisted.inlineCallbacks
def test_serversWithThePasswordJoinAndOneWithoutItIsKeptOut(lockedWorld):
    world = lockedWorld
    a, b = world.server("a"), world.server("b")
    yield world.ready(a, b)
    yield a.cluster.send("b", b"hello")
    yield b.events.rec.wait(lambda: b.events.fromServer("a") == [(None, b"hello")])

    refused = defer.Deferred()

    def watch(event):
        text = str(event.get("message", ""))
        if "auth" in text.lower() and not refused.called:
            refused.callback(text)
    globalLogPublisher.addObserver(watch)
    try:
        wrong = world.redis.url.replace(PASSWORD, "guess")
        intruder = world.server("intruder", url=wrong)
        said = yield refused.addTimeout(10, reactor)
    finally:
        globalLogPublisher.removeObserver(watch)
    assert "could not auth" in said
    assert not intruder.cluster.available
    assert "intruder" not in known(a) and "intruder" not in known(b)
    # It leased no HostIDs: a player who comes to it is refused at once.
    player = NetClient(RecordingClientEvents())
    with pytest.raises(ConnectionRefusedByServer) as refusedJoin:
        yield player.connect("127.0.0.1", intruder.getTcpAddress()[1], VERSION
                             ).addTimeout(5, reactor)
    assert refusedJoin.value.reason is JoinRefusal.SERVER_FULL
    # The members carry on.
    yield b.cluster.send("a", b"still here")
    yield a.events.rec.wait(lambda: a.events.fromServer("b") == [(None, b"still here")])
