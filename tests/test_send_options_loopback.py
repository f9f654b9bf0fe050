"""NetServer.send's options over real loopback sockets (pytest-twisted):
the same checks from the server to a client as from a client to the server."""

import pytest
import pytest_twisted

from proud_twisted import HOSTID_SERVER, DeliveryMode, NetServer, Priority
from tests.support import RecordingServerEvents
from tests.test_loopback import VERSION, connectClients

LATEST = DeliveryMode.UNRELIABLE_LATEST


@pytest.fixture
def pair():
    """A server and one joined client, whose UDP path is confirmed."""
    server = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1")
    server.startService()
    (client,) = pytest_twisted.blockon(connectClients(server, 1))
    yield server, client
    pytest_twisted.blockon(client.disconnect())
    pytest_twisted.blockon(server.stopService())


def directions(server, client):
    """C{(name, send, received)} for each way between C{server} and C{client}."""
    clientID = client.getLocalHostID()

    def received(events, sender):
        return lambda: [(p, ctx) for s, p, ctx in events.rec.named("onReceiveUserMessage")
                        if s == sender]
    return [
        ("client -> server", lambda payload, **options:
         client.send(HOSTID_SERVER, payload, **options),
         received(server.events, clientID), server.events.rec),
        ("server -> client", lambda payload, **options:
         server.send(clientID, payload, **options),
         received(client.events, HOSTID_SERVER), client.events.rec),
    ]


@pytest_twisted.inlineCallbacks
def test_latestOnlyKeepsEachChannelMovingForward(pair):
    for name, send, received, rec in directions(*pair):
        for i in range(100):
            channel = 1 + i % 2
            send(bytes([channel, i]), mode=LATEST, channel=channel)
        yield rec.wait(lambda received=received:
                       {ctx.channel for _, ctx in received()} == {1, 2})
        for channel in (1, 2):
            numbers = [p[1] for p, ctx in received() if ctx.channel == channel]
            assert numbers == sorted(set(numbers)), name
        assert all(ctx.mode is LATEST and ctx.channel == p[0] for p, ctx in received()), name


@pytest_twisted.inlineCallbacks
def test_aHighPriorityMessageOvertakesQueuedLowOnes(pair):
    for name, send, received, rec in directions(*pair):
        low = [b"L" + i.to_bytes(2, "big") + bytes(997) for i in range(60)]
        for payload in low:
            send(payload, reliable=False, priority=Priority.LOW)
        send(b"HIGH", reliable=False, priority=Priority.HIGH)
        yield rec.wait(lambda received=received:
                       b"HIGH" in [p for p, _ in received()] and len(received()) >= 50)
        order = [p for p, _ in received()]
        assert order.index(b"HIGH") < 30, name


def test_badOptionsAreRefused(pair):
    for name, send, received, _ in directions(*pair):
        for options in (dict(channel=256), dict(mode=9), dict(priority=7)):
            with pytest.raises(ValueError):
                send(b"bad", **options)
        assert received() == [], name
