"""Cluster servers for tests against a real Redis (tests/redisserver.py)."""

import uuid

import pytest_twisted
from twisted.internet import defer

from proud_twisted import ClusterEvents, NetClient, NetServer, ServerUdpState
from proud_twisted.cluster import Cluster
from tests.support import RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("5c1a5e70-0000-4000-8000-000000000018")


class RecordingClusterEvents(RecordingServerEvents, ClusterEvents):
    """Server events that also record what the cluster reports."""

    def onServerJoin(self, serverInfo):
        self.rec.record("onServerJoin", serverInfo)

    def onServerLeave(self, serverID):
        self.rec.record("onServerLeave", serverID)

    def onClusterMessage(self, serverID, channel, payload):
        self.rec.record("onClusterMessage", serverID, channel, payload)

    def fromServer(self, serverID):
        return [(c, p) for s, c, p in self.rec.named("onClusterMessage") if s == serverID]


class ClusterWorld:
    """In-process cluster servers on one real Redis; stopped by L{close}."""

    def __init__(self, redis) -> None:
        self.redis = redis
        self.servers = []
        self.clients = []

    def server(self, serverID, version=VERSION, encryption: bool = True, url=None,
               **clusterOptions) -> NetServer:
        events = RecordingClusterEvents()
        cluster = Cluster(url or self.redis.url, serverID, tag=f"tag-{serverID}",
                          **clusterOptions)
        server = NetServer(events, version, interface="127.0.0.1", encryption=encryption,
                           cluster=cluster)
        server.startService()
        self.servers.append(server)
        return server

    @defer.inlineCallbacks
    def ready(self, *servers):
        """Wait until each server is registered and every one knows the others."""
        yield defer.gatherResults([s.cluster.whenReady().addTimeout(10, _reactor())
                                   for s in servers])
        for server in servers:
            others = {s.cluster.serverID for s in servers} - {server.cluster.serverID}
            yield server.events.rec.wait(
                lambda server=server, others=others: others <= known(server))

    def client(self, server, version=VERSION, encryption: bool = True):
        """A client joined to C{server} (see L{clientAt})."""
        return self.clientAt(server.getTcpAddress()[1], version, encryption)

    @defer.inlineCallbacks
    def clientAt(self, tcpPort: int, version=VERSION, encryption: bool = True) -> NetClient:
        """A client joined to the server on C{tcpPort} of loopback (one of
        this world's, or a child process's), its UDP confirmed; disconnected
        by L{close}."""
        client = NetClient(RecordingClientEvents(), encryption=encryption)
        self.clients.append(client)
        yield client.connect("127.0.0.1", tcpPort, version)
        yield client.events.rec.wait(
            lambda: client.getServerUdpState() is ServerUdpState.CONFIRMED)
        return client

    @defer.inlineCallbacks
    def twoServers(self, **clusterOptions):
        """Servers a and b, ready, with a client of a and two of b."""
        a, b = self.server("a", **clusterOptions), self.server("b", **clusterOptions)
        yield self.ready(a, b)
        onA = yield self.client(a)
        onB1, onB2 = yield defer.gatherResults([self.client(b), self.client(b)])
        return a, b, onA, onB1, onB2

    def close(self) -> None:
        pytest_twisted.blockon(defer.gatherResults(
            [c.disconnect() for c in self.clients]
            + [s.stopService() for s in self.servers if s.running]))


@defer.inlineCallbacks
def spanningGroup(world, **clusterOptions):
    """A group on server a of a1 (a's client) and b1, b2 (b's clients)."""
    a, b, a1, b1, b2 = yield world.twoServers(**clusterOptions)
    ids = [c.getLocalHostID() for c in (a1, b1, b2)]
    group = a.createP2PGroup(ids[:2], b"welcome")
    a.joinP2PGroup(ids[2], group, b"late")
    yield a.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    return a, b, (a1, b1, b2), ids, group


def known(server) -> set:
    """The IDs of the other members C{server} knows now."""
    return set(server.cluster._servers)


def _reactor():
    from twisted.internet import reactor
    return reactor
