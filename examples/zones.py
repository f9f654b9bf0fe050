"""A lobby and two zones, each its own server process, one cluster (Redis).

A player connects to the lobby and asks for a zone; the lobby hands it a
one-time ticket for that zone (sent to the zone through the cluster) and the
zone's address. The player connects to the zone with the ticket as its login
data; the zone's onConnectionRequest admits it once the ticket has arrived
(waiting for it a little: the player may be faster than Redis). In a zone a
player says a line to another player by name, wherever that player is: the
zones keep a directory of names (announced with cluster.publish) and the
line goes out with NetServer.send, which reaches a player of another process
through the cluster. A player moves on by asking its zone for the other one.

    python examples/zones.py --headless --redis redis://127.0.0.1:6379/0
    python examples/zones.py server --redis URL --id lobby --port 40000
    python examples/zones.py server --redis URL --id zone-a --port 40001
    python examples/zones.py server --redis URL --id zone-b --port 40002

(the headless story runs the three servers and two players in one process;
players in the other mode are left to the reader). Moving here means a new
connection and a new HostID: moving a player keeping its HostID is not built
yet. Every event is printed as one JSON object per line.
"""

from __future__ import annotations

import argparse
import os

from twisted.internet import defer, task

from chat import Journal
from proud_twisted import (
    HOSTID_SERVER,
    Cluster,
    ClusterEvents,
    NetClient,
    NetClientEvents,
    NetServer,
    NetServerEvents,
)

ZONES_PROTOCOL_VERSION = "9d0e7c1a-52b4-4f0e-8a61-3c2d1e0f4b77"
LOBBY = "lobby"
TICKET_WAIT = 2.0
"""Seconds a zone waits for a ticket it has not heard of yet."""
HEADLESS_TIMEOUT = 30.0


class ZoneServerEvents(NetServerEvents, ClusterEvents):
    """The lobby or a zone: hands out tickets, admits by ticket, passes lines on."""

    def __init__(self, serverID: str, journal, reactor) -> None:
        self.serverID = serverID
        self.journal = journal
        self.reactor = reactor
        self.server = None
        self.tickets = {}           # ticket -> player name, sent here by another server
        self.ticketWaiters = {}
        self.names = {}             # player name -> HostID, in the whole cluster
        self.here = {}              # HostID -> player name, on this server

    def attachServer(self, server) -> None:
        self.server = server

    # Admission

    def onConnectionRequest(self, address, userData):
        if self.serverID == LOBBY:
            return True
        ticket = userData.split(b"|")[0].decode("ascii", "replace")
        if ticket in self.tickets:
            return True
        waiter = self.ticketWaiters.setdefault(ticket, defer.Deferred())
        return waiter.addTimeout(TICKET_WAIT, self.reactor).addCallbacks(
            lambda _: True, lambda _: False)

    def onClientJoin(self, clientInfo):
        ticket, _, name = clientInfo.userData.decode("utf-8", "replace").partition("|")
        if self.serverID != LOBBY:
            name = self.tickets.pop(ticket, name)
        self.here[clientInfo.hostID] = name
        self.journal("enter", server=self.serverID, user=name, hostID=clientInfo.hostID)
        self.announce(b"here", name, clientInfo.hostID)

    def onClientLeave(self, clientInfo, reason, comment):
        name = self.here.pop(clientInfo.hostID, None)
        self.announce(b"gone", name, clientInfo.hostID)

    # What players ask

    def onReceiveUserMessage(self, sender, payload, context):
        verb, _, rest = payload.decode("utf-8", "replace").partition(":")
        if verb == "go":
            self.sendTo(rest, sender)
        elif verb == "say":
            target, _, text = rest.partition(":")
            hostID = self.names.get(target)
            line = f"from:{self.here.get(sender)}:{text}".encode()
            if hostID is None:
                self.server.send(sender, f"error:no player {target}".encode())
            else:
                self.server.send(hostID, line)      # here or on another server

    @defer.inlineCallbacks
    def sendTo(self, zoneID: str, player: int):
        """Give C{zoneID} a ticket for C{player}, then tell the player where to go."""
        zones = {s.serverID: s for s in self.server.cluster.getServers()}
        if zoneID not in zones or zoneID in (LOBBY, self.serverID):
            self.server.send(player, f"error:no zone {zoneID}".encode())
            return
        ticket = os.urandom(8).hex()
        name = self.here.get(player, "")
        yield self.server.cluster.send(zoneID, f"ticket:{ticket}:{name}".encode())
        host, port = zones[zoneID].tcpAddress
        self.journal("ticket", server=self.serverID, user=name, zone=zoneID)
        self.server.send(player, f"goto:{zoneID}:{host}:{port}:{ticket}".encode())

    # The cluster

    def announce(self, verb: bytes, name, hostID: int) -> None:
        if name is None:
            return
        self.directory(verb, name, hostID)
        self.server.cluster.publish("players", b"%s:%s:%d" % (verb, name.encode(), hostID))

    def directory(self, verb: bytes, name: str, hostID: int) -> None:
        if verb == b"here":
            self.names[name] = hostID
        elif self.names.get(name) == hostID:      # not a newer entry of a moved player
            del self.names[name]
        else:
            return
        self.journal("directory", server=self.serverID, user=name,
                     hostID=self.names.get(name))

    def onClusterMessage(self, serverID, channel, payload):
        if channel == "players":
            verb, name, hostID = payload.split(b":")
            self.directory(verb, name.decode(), int(hostID))
        elif channel is None and payload.startswith(b"ticket:"):
            _, ticket, name = payload.decode().split(":", 2)
            self.tickets[ticket] = name
            waiter = self.ticketWaiters.pop(ticket, None)
            if waiter is not None:
                waiter.callback(None)

    def onServerJoin(self, serverInfo):
        self.journal("server_join", server=self.serverID, joined=serverInfo.serverID,
                     tag=serverInfo.tag)


class Player(NetClientEvents):
    """A player: goes where it is told, says lines, hears lines."""

    def __init__(self, name: str, journal, reactor) -> None:
        self.name = name
        self.journal = journal
        self.reactor = reactor
        self.client = None
        self.zone = None
        self.told = defer.Deferred()

    @defer.inlineCallbacks
    def connect(self, host: str, port: int, ticket: str = "", zone: str = LOBBY):
        if self.client is not None:
            yield self.client.disconnect()
        self.client = NetClient(self, reactor=self.reactor)
        hostID = yield self.client.connect(host, port, ZONES_PROTOCOL_VERSION,
                                           f"{ticket}|{self.name}".encode())
        self.zone = zone
        self.journal("connected", user=self.name, zone=zone, hostID=hostID)

    @defer.inlineCallbacks
    def goTo(self, zone: str):
        """Ask the current server for C{zone} and move there."""
        self.told = defer.Deferred()
        self.client.send(HOSTID_SERVER, f"go:{zone}".encode())
        _, zoneID, host, port, ticket = (yield self.told.addTimeout(10, self.reactor))
        yield self.connect(host, int(port), ticket, zoneID)

    def say(self, to: str, text: str) -> None:
        self.client.send(HOSTID_SERVER, f"say:{to}:{text}".encode())
        self.journal("said", user=self.name, to=to, text=text, zone=self.zone)

    def onReceiveUserMessage(self, sender, payload, context):
        message = payload.decode("utf-8", "replace")
        if message.startswith("goto:"):
            self.told.callback(message.split(":"))
        elif message.startswith("from:"):
            _, name, text = message.split(":", 2)
            self.journal("heard", user=self.name, name=name, text=text, zone=self.zone)
        else:
            self.journal("told", user=self.name, text=message)


def startServer(url: str, serverID: str, journal, reactor, port: int = 0) -> NetServer:
    events = ZoneServerEvents(serverID, journal, reactor)
    server = NetServer(events, ZONES_PROTOCOL_VERSION, tcpPort=port, udpPort=port,
                       interface="127.0.0.1", reactor=reactor,
                       cluster=Cluster(url, serverID, tag="lobby" if serverID == LOBBY
                                       else "zone"))
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
        yield journal.until(lambda: journal.count("server_join", server=LOBBY) == 2)
        lobbyPort = servers[0].getTcpAddress()[1]
        bob, alice = (Player(n, journal, reactor) for n in ("bob", "alice"))
        players = [bob, alice]
        for player in players:
            yield player.connect("127.0.0.1", lobbyPort)
            yield player.goTo("zone-a")

        def heard(user, text):
            return lambda: journal.count("heard", user=user, text=text)
        # Both in zone-a (the directory is the cluster's: wait until it knows both).
        yield journal.until(lambda: all(
            {"alice", "bob"} <= set(s.events.names) for s in servers))
        alice.say("bob", "hi bob, I am in zone-a too")
        yield journal.until(heard("bob", "hi bob, I am in zone-a too"))
        # Alice moves to zone-b and keeps chatting with bob in zone-a.
        yield alice.goTo("zone-b")
        yield journal.until(lambda: servers[1].events.names.get("alice")
                            == alice.client.getLocalHostID())
        alice.say("bob", "now I am in zone-b")
        yield journal.until(heard("bob", "now I am in zone-b"))
        bob.say("alice", "I hear you from zone-a")
        yield journal.until(heard("alice", "I hear you from zone-a"))
    finally:
        yield defer.gatherResults([p.client.disconnect() for p in players if p.client])
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
