"""A lobby and two zones, each its own server process, one cluster (Redis).

A player logs in at the lobby, which tells it the cluster's servers and
moves it to the first zone with C{NetServer.moveClient} (the ticket names
the player: the zone hears it in C{onClientArrived}). The player's client
reconnects to the zone by itself and keeps its HostID (C{onServerMoved}).
In a zone a player asks to go to another zone (C{ZoneRequests.goTo}); the
zone moves it there. A player says a line to another player by name,
wherever that player is (C{ZoneRequests.say}): its server finds the name's
HostID in a directory the zones publish to the cluster (a zone announces
each player that arrives) and passes the line on with C{ZoneNews.heard},
which C{NetServer.send} routes through the cluster to the server holding
that HostID. Lines sent to a player while it
moves wait for it on its new server and arrive once and in order.

    python examples/zones.py --headless --redis redis://127.0.0.1:6379/0
    python examples/zones.py server --redis URL --id lobby --port 40000
    python examples/zones.py server --redis URL --id zone-a --port 40001
    python examples/zones.py server --redis URL --id zone-b --port 40002

The headless story runs the three servers and two players, alice and bob,
in one process: both go from the lobby to zone-a and chat; alice moves on
to zone-b while bob keeps saying numbered lines to her, and she answers
from zone-b. In the other mode each server runs alone (players are left to
the reader). Every event is printed as one JSON object per line.
"""

from __future__ import annotations

import argparse
import uuid

from twisted.internet import defer, task

from chat import Journal
from proud_twisted import (
    HOSTID_SERVER,
    Cluster,
    ClusterEvents,
    ErrorType,
    NetClient,
    NetClientEvents,
    NetServer,
    NetServerEvents,
)
from proud_twisted.rmi import RemoteInterface

ZONES_PROTOCOL_VERSION = uuid.UUID("9d0e7c1a-52b4-4f0e-8a61-3c2d1e0f4b77")
LOBBY = "lobby"
ZONE_TAG = "zone"
HEADLESS_TIMEOUT = 30.0
LINE_INTERVAL = 0.0
"""Seconds between bob's numbered lines while alice moves (0: one each
reactor turn). A move takes Redis hops, a reconnection and a secure
handshake, a dozen reactor turns or more, so a dozen lines or more are on
their way during it; the story ends a few lines after her arrival."""
LINES_AFTER_ARRIVAL = 3


class ZoneRequests(RemoteInterface, firstID=6000):
    """What a player asks of the server it is on."""

    def say(self, to: str, seq: int, text: str) -> None:
        """Pass line C{seq}, C{text}, to the player named C{to}."""

    def goTo(self, zone: str) -> None:
        """Move me to the zone C{zone}."""


class ZoneNews(RemoteInterface, firstID=6100):
    """What the servers tell a player."""

    def servers(self, addresses: dict[str, str]) -> None:
        """The cluster's servers: C{"host:port"} -> server ID."""

    def heard(self, name: str, zone: str, seq: int, text: str) -> None:
        """Player C{name}, in C{zone}, said line C{seq}, C{text}, to you."""

    def refused(self, reason: str) -> None:
        """What you asked for cannot be done."""


def addressKey(address) -> str:
    host, port = address
    return f"{host}:{port}"


class ZoneServerEvents(NetServerEvents, ClusterEvents):
    """The lobby or a zone: moves players, keeps the directory, passes lines on."""

    def __init__(self, serverID: str, journal) -> None:
        self.serverID = serverID
        self.journal = journal
        self.server = None
        self.news = None            # the ZoneNews proxy
        self.names = {}             # player name -> HostID, in the whole cluster
        self.here = {}              # HostID -> player name, on this server
        self.movingAway = set()     # HostIDs this server is moving elsewhere

    def attachServer(self, server) -> None:
        self.server = server
        self.news = server.attachProxy(ZoneNews)
        server.attachStub(ZoneRequestHandler(self))

    # Players come and go

    def onClientJoin(self, clientInfo):
        """A player logged in here (at the lobby, usually)."""
        hostID, name = clientInfo.hostID, clientInfo.userData.decode("utf-8", "replace")
        self.here[hostID] = name
        self.journal("enter", server=self.serverID, user=name, hostID=hostID)
        self.news.servers(hostID, {addressKey(s.tcpAddress): s.serverID
                                   for s in self.server.cluster.getServers()})
        if self.serverID != LOBBY:
            self.announce(b"here", name, hostID)
            return
        zones = self.zones()
        if zones:
            self.move(hostID, zones[0])
        else:
            self.news.refused(hostID, "no zone is open")

    def onClientArrived(self, clientInfo, ticket):
        """A player another server moved here: same HostID, named by the ticket."""
        name = ticket.decode("utf-8", "replace")
        self.here[clientInfo.hostID] = name
        self.journal("arrived", server=self.serverID, user=name, hostID=clientInfo.hostID)
        self.announce(b"here", name, clientInfo.hostID)

    def onClientLeave(self, clientInfo, reason, comment):
        name = self.here.pop(clientInfo.hostID, None)
        if reason is ErrorType.MOVED:
            return                  # it left for another server, not the game
        self.announce(b"gone", name, clientInfo.hostID)

    # Moves

    def zones(self) -> list:
        return [s.serverID for s in self.server.cluster.getServers() if s.tag == ZONE_TAG]

    def move(self, hostID: int, zone: str) -> None:
        name = self.here.get(hostID, "")
        self.journal("moving", server=self.serverID, user=name, hostID=hostID, to=zone)
        self.movingAway.add(hostID)
        d = self.server.moveClient(hostID, zone, ticket=name.encode("utf-8"))

        def moved(zoneInfo):
            self.movingAway.discard(hostID)
            self.journal("moved_out", server=self.serverID, user=name, to=zoneInfo.serverID)

        def failed(reason):
            self.movingAway.discard(hostID)
            self.journal("move_failed", server=self.serverID, user=name, to=zone,
                         why=str(reason.value))
            if hostID in self.server.getClientHostIDs():
                self.news.refused(hostID, f"cannot go to {zone}: {reason.value}")
            else:                   # the failed move cost it its connection
                self.announce(b"gone", name, hostID)

        d.addCallbacks(moved, failed)

    # The directory of names (the zones announce, every server listens)

    def announce(self, verb: bytes, name, hostID: int) -> None:
        if name is None:
            return
        self.directory(verb, name, hostID)
        self.server.cluster.publish("players", b"%s:%s:%d" % (verb, name.encode(), hostID))

    def directory(self, verb: bytes, name: str, hostID: int) -> None:
        if verb == b"here":
            self.names[name] = hostID
        elif self.names.get(name) == hostID:
            del self.names[name]
        else:
            return
        self.journal("directory", server=self.serverID, user=name,
                     hostID=self.names.get(name))

    def onClusterMessage(self, serverID, channel, payload):
        if channel == "players":
            verb, name, hostID = payload.split(b":")
            self.directory(verb, name.decode(), int(hostID))

    def onServerJoin(self, serverInfo):
        self.journal("server_join", server=self.serverID, joined=serverInfo.serverID,
                     tag=serverInfo.tag)


class ZoneRequestHandler(ZoneRequests.Stub):
    """Runs what players ask of a server."""

    def __init__(self, zone: ZoneServerEvents) -> None:
        self.zone = zone

    def say(self, context, to, seq, text):
        zone, sender = self.zone, context.sender
        name = zone.here.get(sender)
        target = zone.names.get(to)
        if name is None:
            return
        if target is None:
            zone.news.refused(sender, f"no player {to}")
            return
        zone.journal("passed", server=zone.serverID, user=name, to=to, seq=seq)
        zone.news.heard(target, name, zone.serverID, seq, text)   # wherever it is

    def goTo(self, context, zoneID):
        zone = self.zone
        if context.sender not in zone.here or context.sender in zone.movingAway:
            return
        if zoneID in (LOBBY, zone.serverID):
            zone.news.refused(context.sender, f"{zoneID} is no zone to go to")
            return
        zone.move(context.sender, zoneID)       # an unknown zone: UnknownServer


class ZoneNewsListener(ZoneNews.Stub):
    """Runs what the servers tell a player."""

    def __init__(self, player: Player) -> None:
        self.player = player

    def servers(self, context, addresses):
        self.player.servers = dict(addresses)

    def heard(self, context, name, zone, seq, text):
        player = self.player
        player.journal("heard", user=player.name, name=name, fromZone=zone, seq=seq,
                       text=text, zone=player.zone)

    def refused(self, context, reason):
        self.player.journal("refused", user=self.player.name, why=reason,
                            zone=self.player.zone)


class Player(NetClientEvents):
    """A player: logs in at the lobby, goes where it is moved, chats."""

    def __init__(self, name: str, journal, reactor) -> None:
        self.name = name
        self.journal = journal
        self.client = NetClient(self, reactor=reactor)
        self.requests = self.client.attachProxy(ZoneRequests)
        self.client.attachStub(ZoneNewsListener(self))
        self.servers = {}           # "host:port" -> server ID, told by the lobby
        self.zone = None
        self.said = 0

    @defer.inlineCallbacks
    def connect(self, host: str, port: int):
        hostID = yield self.client.connect(host, port, ZONES_PROTOCOL_VERSION,
                                           self.name.encode("utf-8"))
        self.zone = LOBBY
        self.journal("connected", user=self.name, zone=self.zone, hostID=hostID)

    def onServerMoved(self, serverAddress):
        self.zone = self.servers.get(addressKey(serverAddress), addressKey(serverAddress))
        self.journal("moved", user=self.name, zone=self.zone,
                     hostID=self.client.getLocalHostID())

    def goTo(self, zone: str) -> None:
        self.requests.goTo(HOSTID_SERVER, zone)
        self.journal("go", user=self.name, to=zone, zone=self.zone)

    def say(self, to: str, text: str) -> None:
        """Say the next numbered line to the player C{to}."""
        self.said += 1
        self.requests.say(HOSTID_SERVER, to, self.said, text)
        self.journal("said", user=self.name, to=to, seq=self.said, text=text, zone=self.zone)

    def onReceiveUserMessage(self, sender, payload, context):
        self.journal("garbage", user=self.name, sender=sender)


def startServer(url: str, serverID: str, journal, reactor, port: int = 0) -> NetServer:
    events = ZoneServerEvents(serverID, journal)
    server = NetServer(events, ZONES_PROTOCOL_VERSION, tcpPort=port, udpPort=port,
                       interface="127.0.0.1", reactor=reactor,
                       cluster=Cluster(url, serverID,
                                       tag=LOBBY if serverID == LOBBY else ZONE_TAG))
    events.attachServer(server)
    server.startService()
    return server


@defer.inlineCallbacks
def headless(reactor, url: str):
    journal = Journal(reactor=reactor)
    servers = [startServer(url, name, journal, reactor) for name in (LOBBY, "zone-a", "zone-b")]
    players = []
    try:
        yield defer.gatherResults([s.cluster.whenReady() for s in servers])
        yield journal.until(lambda: all(len(s.cluster.getServers()) == 3 for s in servers))
        lobbyPort = servers[0].getTcpAddress()[1]
        bob, alice = (Player(n, journal, reactor) for n in ("bob", "alice"))
        players = [bob, alice]

        def count(event, **fields):
            return lambda: journal.count(event, **fields)

        # Both log in at the lobby at once; it moves them to zone-a.
        yield defer.gatherResults([p.connect("127.0.0.1", lobbyPort) for p in players])
        for player in players:
            yield journal.until(count("moved", user=player.name, zone="zone-a"))
        yield journal.until(lambda: all(
            {"alice", "bob"} <= set(s.events.names) for s in servers))
        alice.say("bob", "hi bob, I am in zone-a too")
        yield journal.until(count("heard", user="bob", seq=1))
        # Bob asks for a zone that does not exist: refused, he stays.
        bob.goTo("zone-z")
        yield journal.until(count("refused", user="bob"))

        # Alice moves on to zone-b; bob keeps talking to her all the while.
        talking = task.LoopingCall(bob.say, "alice", "still here in zone-a")
        talking.clock = reactor
        talking.start(LINE_INTERVAL)
        try:
            alice.goTo("zone-b")
            yield journal.until(count("moved", user="alice", zone="zone-b"))
            lastBefore = bob.said
            yield journal.until(lambda: bob.said >= lastBefore + LINES_AFTER_ARRIVAL)
        finally:
            if talking.running:
                talking.stop()
        yield journal.until(count("heard", user="alice", name="bob", seq=bob.said))
        alice.say("bob", "now I am in zone-b")
        yield journal.until(count("heard", user="bob", seq=alice.said))
    finally:
        yield defer.gatherResults([p.client.disconnect() for p in players])
        yield defer.gatherResults([s.stopService() for s in servers])
    journal("done", ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("mode", nargs="?", choices=["server"], help="run one server")
    parser.add_argument("--headless", action="store_true", help="run the whole story")
    parser.add_argument("--redis", required=True, help="redis://HOST:PORT/DB")
    parser.add_argument("--id", default=LOBBY, help="server ID: lobby, zone-a, ...")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.headless:
        task.react(lambda reactor: headless(reactor, args.redis).addTimeout(
            HEADLESS_TIMEOUT, reactor))
    elif args.mode == "server":
        from twisted.internet import reactor
        startServer(args.redis, args.id, Journal(reactor=reactor), reactor, args.port)
        reactor.run()
    else:
        parser.error("give --headless or server")


if __name__ == "__main__":
    main()
