"""RMI between a server and clients over real loopback sockets (pytest-twisted):
calls each way, peer to peer relayed and direct, a declared exception, and a
declaration the server declares otherwise refused at connect."""

import uuid

import pytest
import pytest_twisted
from twisted.internet import defer

from proud_twisted import HOSTID_SERVER, NetClient, NetServer
from proud_twisted.rmi import HostID, RemoteInterface, RmiVersionMismatch, call
from tests.support import RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("7e3a1c5b-2f4d-4a6e-9b8c-0d1e2f3a4b5c")


class Refused(Exception):
    pass


class Duel(RemoteInterface, firstID=8000):
    def taunt(self, text: str) -> None:
        """One-way."""

    @call(raises=(Refused,))
    def challenge(self, who: HostID, stake: int, odds: float) -> str:
        """Accepted or refused."""


class Dueller(Duel.Stub):
    def __init__(self, name):
        self.name = name
        self.taunts = defer.DeferredQueue()

    def taunt(self, context, text):
        self.taunts.put((context.sender, context.relayed, text))

    def challenge(self, context, who, stake, odds):
        if stake > 100:
            raise Refused(f"{self.name} refuses a stake of {stake}")
        return f"{self.name} accepts {stake} at {odds} from {context.sender}"


@pytest.fixture
def server():
    netServer = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1")
    netServer.attachStub(Dueller("server"))
    netServer.startService()
    yield netServer
    pytest_twisted.blockon(netServer.stopService())


@defer.inlineCallbacks
def joined(server, count):
    clients = []
    for i in range(count):
        client = NetClient(RecordingClientEvents())
        client.dueller = Dueller(f"client{i}")
        client.attachStub(client.dueller)
        client.proxy = client.attachProxy(Duel, timeout=5.0)
        clients.append(client)
    port = server.getTcpAddress()[1]
    yield defer.gatherResults([c.connect("127.0.0.1", port, VERSION) for c in clients])
    return clients


def timeout(d, seconds=5.0):
    from twisted.internet import reactor
    return d.addTimeout(seconds, reactor)


@pytest_twisted.inlineCallbacks
def test_callsBothWaysBetweenClientAndServer(server):
    (client,) = yield joined(server, 1)
    try:
        answer = yield timeout(client.proxy.challenge(HOSTID_SERVER, 0, 10, 1.5))
        assert answer == f"server accepts 10 at 1.5 from {client.getLocalHostID()}"
        with pytest.raises(Refused, match="server refuses a stake of 500"):
            yield timeout(client.proxy.challenge(HOSTID_SERVER, 0, 500, 1.0))
        serverProxy = server.attachProxy(Duel)
        answer = yield timeout(serverProxy.challenge(client.getLocalHostID(), 0, 3, 2.0))
        assert answer == "client0 accepts 3 at 2.0 from 1"
    finally:
        yield client.disconnect()


@pytest_twisted.inlineCallbacks
def test_peerToPeerRelayedAndDirect(server):
    a, b, c = yield joined(server, 3)
    idA, idB, idC = (x.getLocalHostID() for x in (a, b, c))
    try:
        server.createP2PGroup([idA, idB], allowDirectP2P=False)
        server.createP2PGroup([idA, idC])
        yield timeout(a.events.rec.wait(lambda: {idB, idC} <= set(a.getPeerHostIDs())))
        yield timeout(b.events.rec.wait(lambda: idA in b.getPeerHostIDs()))
        a.proxy.taunt(idB, "relayed")
        assert (yield timeout(b.dueller.taunts.get())) == (idA, True, "relayed")
        answer = yield timeout(a.proxy.challenge(idB, idA, 7, 0.5))
        assert answer == f"client1 accepts 7 at 0.5 from {idA}"
        yield timeout(a.whenDirect(idC), 10)
        yield timeout(c.events.rec.wait(lambda: not c.getPeerInfo(idA).relayed))
        a.proxy.taunt(idC, "direct")
        assert (yield timeout(c.dueller.taunts.get())) == (idA, False, "direct")
    finally:
        yield defer.gatherResults([x.disconnect() for x in (a, b, c)])


def changedDuel():
    """Duel as another version of the game declares it."""
    class Duel(RemoteInterface, firstID=8000):
        def taunt(self, text: bytes) -> None:
            """The server sends str here."""

    return Duel


@pytest_twisted.inlineCallbacks
def test_aChangedDeclarationIsRefusedAtConnect(server):
    client = NetClient(RecordingClientEvents())
    client.attachProxy(changedDuel())
    with pytest.raises(RmiVersionMismatch, match=r"Duel\.taunt"):
        yield timeout(client.connect("127.0.0.1", server.getTcpAddress()[1], VERSION))
    assert server.getClientHostIDs() == []
