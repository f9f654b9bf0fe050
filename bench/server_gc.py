"""What a game server's Python heap costs in garbage-collection pauses as it
holds more players: GC-tracked objects per joined client in the server
process, and the time of one full collection there.

CPython's full (generation 2) collection visits every object the collector
tracks (instances, dicts, lists, sets, closures, Deferreds, ...), and the
whole server, every player's traffic through it, waits while it runs; so
each object a server keeps per player lengthens the pause everyone feels.

The server runs in a process of its own (this script with ``--serve``, an
internal mode), so the clients' objects do not count; the bench process
holds the clients and talks to it over its stdin and stdout (one JSON line
per answer). Ours: a NetServer on 127.0.0.1 (encryption on unless
``--no-encryption``; the clients pin its key) that puts the clients into P2P
groups of ``--group-size`` (default 20) in the order they join
(``createP2PGroup`` for a group's first member, ``joinP2PGroup`` for the
others), so every pair inside a group are peers and the server keeps
per-pair state too. The bench process joins ``--clients`` (default 400) real
NetClients, in batches, and waits (bounded) until every client's UDP to the
server is confirmed, every client has its group's members as peers, and the
server has seen every member's ``onP2PGroupJoinMemberAckComplete``.

The server process is measured twice: at 0 clients (its fixed cost: the
modules it imports, the reactor, its ports) and with the N clients joined.
Each measurement is three untimed ``gc.collect()``, then the number of
objects ``gc.get_objects()`` returns, then five timed ``gc.collect()``
(their median is the figure). Per client: (objects at N - objects at 0) / N.

Baseline, in the same run: a bare Twisted server process (the same
``--serve`` mode with ``--bare``; it imports Twisted only) accepting N TCP
connections (``Int32StringReceiver``, TCP_NODELAY) and holding one UDP port;
per client it keeps what the least server of this kind must: the connection
in a dict by HostID (which it sends the client), the client's UDP address
(the bench process sends one datagram per client from the client's own UDP
port), and for each group of ``--group-size`` a set of member HostIDs.
Ratios read ours / baseline, lower is better; there is no goal, every line
is (information). ``--verbose`` also prints, per client, the references the
collection follows (``gc.get_referents``) and which object types the server
holds (the types of ``gc.get_objects()`` at N minus at 0).

What a server creates once, at its first join (modules and cffi types it
imports then: some 800 objects for ours, 130 for the baseline), counts in
the per-client figure divided by N: read it at the default N, not at tiny
ones. Object counts vary little from run to run; collection times wander
by tens of per cent between runs (compare the min and max of a run).

    python bench/server_gc.py [--clients 400] [--group-size 20] [--no-encryption]
                              [--verbose] [--timeout 180]
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import statistics
import struct
import sys
import uuid

from twisted.internet import defer, protocol, task
from twisted.protocols.basic import Int32StringReceiver

# Loading _common imports Twisted only: the bare server process uses its
# control channel and imports nothing of ours (its fixed cost is a bare
# Twisted server's).
import _common
from _common import LOOPBACK, BenchFailure, clock, ms

SERVING = __name__ == "__main__" and sys.argv[1:2] == ["--serve"]

VERSION = uuid.UUID("9e1c0a57-3b2d-4f6e-8a90-51c7d2e4f6a8")
UNTIMED_COLLECTIONS = 3
TIMED_COLLECTIONS = 5
TOP_TYPES = 15
JOIN_BATCH = 40
"""Clients connecting at once: below the listen backlog (50) of both servers."""
STEP_WAIT = 30.0
"""At most this long for any one step (a batch of joins, a measurement)."""
POLL = 0.05
SETTLE = 0.5
"""Seconds to let the last messages of the joins settle before measuring."""
_ID = struct.Struct("!I")


# The server process (--serve)

class Control(_common.JsonControl):
    """The server process's control channel on stdin and stdout: one command
    a line (``status``, ``measure``, ``quit``), one JSON line an answer."""

    def __init__(self, holder, reactor, verbose: bool) -> None:
        super().__init__(reactor)
        self.holder = holder
        self.verbose = verbose
        self.baseTypes = None
        self.explicitFull = 0
        self.commands = {"status": holder.status,
                         "measure": lambda: dict(holder.status(), **self.measure())}

    def connectionMade(self) -> None:
        self.answer(dict(self.holder.addresses(), pid=os.getpid()))

    def measure(self) -> dict:
        automatic = gc.get_stats()[2]["collections"] - self.explicitFull
        for _ in range(UNTIMED_COLLECTIONS):
            gc.collect()
        objects = len(gc.get_objects())
        times = []
        for _ in range(TIMED_COLLECTIONS):
            start = clock()
            gc.collect()
            times.append(clock() - start)
        self.explicitFull += UNTIMED_COLLECTIONS + TIMED_COLLECTIONS
        reply = {"objects": objects, "collect": times, "automaticFull": automatic}
        if self.verbose:        # after the figures: the Counter kept is one more dict
            objects = gc.get_objects()
            types = collections.Counter(typeName(o) for o in objects)
            reply["references"] = sum(len(gc.get_referents(o)) for o in objects)
            del objects
            if self.baseTypes is None:
                self.baseTypes = types
            else:
                reply["types"] = (types - self.baseTypes).most_common(TOP_TYPES)
        return reply


def typeName(o) -> str:
    kind = type(o)
    return (kind.__qualname__ if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}")


class BareConnection(Int32StringReceiver):
    """The bare server's side of one client's TCP connection."""

    hostID = group = 0
    udpAddress = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.factory.hub.join(self)
        self.sendString(_ID.pack(self.hostID))

    def connectionLost(self, reason) -> None:
        self.factory.hub.leave(self)

    def stringReceived(self, data: bytes) -> None:
        pass


class BareUdp(protocol.DatagramProtocol):
    def __init__(self, hub) -> None:
        self.hub = hub

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) == _ID.size:
            connection = self.hub.connections.get(_ID.unpack(data)[0])
            if connection is not None:
                connection.udpAddress = addr


class BareHub:
    """The bare server: connections by HostID, groups as sets of HostIDs."""

    def __init__(self, reactor, groupSize: int) -> None:
        self.groupSize = groupSize
        self.connections = {}       # hostID -> BareConnection
        self.groups = {}            # groupID -> {hostID}
        self.lastID = 0
        self.group = 0
        factory = protocol.Factory.forProtocol(BareConnection)
        factory.hub = self
        self.tcp = reactor.listenTCP(0, factory, interface=LOOPBACK)
        self.udp = reactor.listenUDP(0, BareUdp(self), interface=LOOPBACK)

    def allocate(self) -> int:
        self.lastID += 1
        return self.lastID

    def join(self, connection: BareConnection) -> None:
        connection.hostID = self.allocate()
        self.connections[connection.hostID] = connection
        if not self.group or len(self.groups[self.group]) >= self.groupSize:
            self.group = self.allocate()
            self.groups[self.group] = set()
        connection.group = self.group
        self.groups[self.group].add(connection.hostID)

    def leave(self, connection: BareConnection) -> None:
        self.connections.pop(connection.hostID, None)
        self.groups.get(connection.group, set()).discard(connection.hostID)

    def addresses(self) -> dict:
        return {"tcpPort": self.tcp.getHost().port, "udpPort": self.udp.getHost().port,
                "key": None}

    def status(self) -> dict:
        udp = sum(1 for c in self.connections.values() if c.udpAddress is not None)
        return {"clients": len(self.connections), "udp": udp, "acked": udp,
                "groups": len(self.groups), "failures": []}


def oursHolder(reactor, groupSize: int, encrypted: bool):
    """A started NetServer that groups the clients as they join."""
    from proud_twisted import ErrorType, NetServer, NetServerEvents

    class Placer(NetServerEvents):
        def __init__(self) -> None:
            self.server = None
            self.group = None
            self.members = 0
            self.acked = 0
            self.failures = []

        def onClientJoin(self, clientInfo):
            if self.group is None or self.members >= groupSize:
                self.group = self.server.createP2PGroup([clientInfo.hostID])
                self.members = 1
            else:
                self.server.joinP2PGroup(clientInfo.hostID, self.group)
                self.members += 1

        def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
            if result == ErrorType.OK:
                self.acked += 1
            else:
                self.failures.append(f"ack-complete of {memberHostID} in {groupHostID}:"
                                     f" {result}")

        def onException(self, failure):
            self.failures.append(failure.getTraceback())

    class Holder:
        def __init__(self) -> None:
            self.events = Placer()
            self.server = NetServer(self.events, VERSION, tcpPort=0, udpPort=0,
                                    interface=LOOPBACK, reactor=reactor,
                                    encryption=encrypted)
            self.events.server = self.server
            self.server.startService()

        def addresses(self) -> dict:
            identity = self.server.identity
            return {"tcpPort": self.server.getTcpAddress()[1],
                    "udpPort": self.server.getUdpAddress()[1],
                    "key": identity.publicKey().toHex() if identity is not None else None}

        def status(self) -> dict:
            ids = self.server.getClientHostIDs()
            udp = sum(1 for h in ids if self.server.getClientInfo(h).udpAddress is not None)
            return {"clients": len(ids), "udp": udp, "acked": self.events.acked,
                    "groups": len(self.server.getP2PGroups()),
                    "failures": self.events.failures[:3]}

    return Holder()


def serve(argv: list) -> int:
    parser = argparse.ArgumentParser(description="server_gc.py's server process (internal)")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--group-size", type=int, required=True)
    parser.add_argument("--no-encryption", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--lifetime", type=float, required=True,
                        help="stop after this many seconds whatever happens")
    args = parser.parse_args(argv)

    from twisted.internet import reactor, stdio
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )
    # Without an observer, Twisted keeps the last 65,536 log events in memory
    # (one per join, here): errors go to stderr, the rest nowhere.
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr),
                              [LogLevelFilterPredicate(LogLevel.error)])],
        redirectStandardIO=False)
    if args.bare:
        if any(name.startswith("proud_twisted") for name in sys.modules):
            raise SystemExit("the bare server process has imported proud_twisted")
        holder = BareHub(reactor, args.group_size)
    else:
        holder = oursHolder(reactor, args.group_size, not args.no_encryption)
    if args.gc_freeze and args.bare:
        gc.collect()        # the same two steps; the bare server imports Twisted only
        gc.freeze()
    elif args.gc_freeze:
        from proud_twisted import freezeStartupObjects
        freezeStartupObjects()      # what twistd proudserver does once it listens
    control = Control(holder, reactor, args.verbose)
    stdio.StandardIO(control, reactor=reactor)
    reactor.callLater(args.lifetime, control.stop)
    reactor.run()
    return 0


# The bench process: a server process and its clients

async def startServer(reactor, budget, args, bare: bool) -> tuple:
    label = "baseline" if bare else "ours"
    options = ["--serve", "--group-size", args.group_size,
               "--lifetime", max(1.0, budget.left()) + 30.0]
    flags = {"--bare": bare, "--no-encryption": args.no_encryption,
             "--verbose": args.verbose, "--gc-freeze": args.gc_freeze}
    options += [flag for flag, wanted in flags.items() if wanted]
    process = _common.ChildProcess.spawn(reactor, label, "server_gc.py", *options)
    return process, await process.first(reactor, budget)


async def pollUntil(reactor, budget, check, what: str) -> dict:
    """Ask C{check()} (a coroutine giving (done, detail)) every POLL seconds,
    at most STEP_WAIT seconds and a bounded number of times."""
    limit = max(0.0, min(STEP_WAIT, budget.left()))
    end = clock() + limit
    detail = None
    for _ in range(int(limit / POLL) + 2):
        done, detail = await check()
        if done:
            return detail
        if clock() >= end:
            break
        await task.deferLater(reactor, POLL, lambda: None)
    raise BenchFailure(f"timed out after {limit:.1f} s waiting for {what}: {detail}")


def groupSizes(args) -> list:
    G = args.group_size
    return [min(G, args.clients - start) for start in range(0, args.clients, G)]


async def measure(process, budget, N: int, groups: int) -> dict:
    answer = await process.ask(budget, "measure")
    if (answer["clients"], answer["acked"], answer["groups"]) != (N, N, groups):
        raise BenchFailure(
            f"{process.label}: measured with {answer['clients']} clients,"
            f" {answer['acked']} join acks, {answer['groups']} groups; expected {N}, {N},"
            f" {groups}")
    return answer


async def measureJoined(reactor, budget, process, args, start: float, ready,
                        what: str) -> tuple:
    """Once C{ready} (see L{pollUntil}) says every client is in: the seconds
    since C{start}, and the server's measurement with them."""
    await pollUntil(reactor, budget, ready, what)
    joined = clock() - start
    await task.deferLater(reactor, SETTLE, lambda: None)
    return joined, await measure(process, budget, args.clients, len(groupSizes(args)))


# ours

async def joinOurs(reactor, budget, args, server: dict, clients: list) -> None:
    from proud_twisted import NetClient, PublicIdentity

    pinned = PublicIdentity.fromHex(server["key"]) if server["key"] else None
    for start in range(0, args.clients, JOIN_BATCH):
        batch = []
        for number in range(start, min(args.clients, start + JOIN_BATCH)):
            client = NetClient(_common.clientEvents(f"client {number}"), reactor=reactor,
                               udpInterface=LOOPBACK, encryption=not args.no_encryption,
                               serverKey=pinned)
            clients.append(client)
            batch.append(client.connect(LOOPBACK, server["tcpPort"], VERSION))
        try:
            await budget.wait(defer.gatherResults(batch, consumeErrors=True), STEP_WAIT,
                              f"clients {start} to {start + len(batch) - 1} to join")
        except defer.FirstError as e:
            if e.subFailure.check(defer.CancelledError):    # the bounded wait ran out
                raise BenchFailure(
                    f"timed out waiting for clients {start} to {start + len(batch) - 1}"
                    " to join") from None
            raise BenchFailure(f"a client failed to join:"
                                       f" {e.subFailure.getErrorMessage()}") from None


async def runOurs(reactor, budget, args) -> tuple:
    from proud_twisted import ServerUdpState

    sizes = groupSizes(args)
    pairs = sum(s * (s - 1) for s in sizes)         # each pair from both sides
    process, server = await startServer(reactor, budget, args, bare=False)
    clients = []
    try:
        empty = await measure(process, budget, 0, 0)
        start = clock()
        await joinOurs(reactor, budget, args, server, clients)

        async def ready():
            status = await process.ask(budget, "status")
            confirmed = sum(1 for c in clients
                            if c.getServerUdpState() is ServerUdpState.CONFIRMED)
            peers = sum(len(c.getPeerHostIDs()) for c in clients)
            failures = [e.failures[0] for c in clients for e in [c.events] if e.failures]
            if failures:
                raise BenchFailure(f"a client's event handler raised:"
                                           f" {failures[0].getTraceback()}")
            return ((status["clients"], status["acked"], status["udp"], confirmed, peers)
                    == (args.clients, args.clients, args.clients, args.clients, pairs),
                    (f"server: {status['clients']} clients, {status['acked']} join acks"
                     f" complete, {status['udp']} UDP addresses; clients: {confirmed} UDP"
                     f" confirmed, {peers} of {pairs} peer entries"))

        joined, full = await measureJoined(reactor, budget, process, args, start, ready,
                                           "every client joined, grouped and acked")
    finally:
        await _common.disconnect(reactor, clients, 0, 10.0)
        await process.stop(reactor)
    return empty, full, joined


# the bare baseline

class BareClient(Int32StringReceiver):
    def __init__(self, udpPort, serverUdp) -> None:
        self.udpPort = udpPort
        self.serverUdp = serverUdp
        self.hostID = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, data: bytes) -> None:
        self.hostID = _ID.unpack(data)[0]
        self.sendUdp()

    def sendUdp(self) -> None:
        if self.hostID is not None:
            self.udpPort.write(_ID.pack(self.hostID), self.serverUdp)


async def runBare(reactor, budget, args) -> tuple:
    process, server = await startServer(reactor, budget, args, bare=True)
    serverUdp = (LOOPBACK, server["udpPort"])
    clients, ports, connectors = [], [], []

    def connect(number: int) -> None:
        udpPort = reactor.listenUDP(0, protocol.DatagramProtocol(), interface=LOOPBACK)
        ports.append(udpPort)
        client = BareClient(udpPort, serverUdp)
        clients.append(client)
        connectors.append(reactor.connectTCP(
            LOOPBACK, server["tcpPort"], protocol.ClientFactory.forProtocol(lambda: client)))

    try:
        empty = await measure(process, budget, 0, 0)
        start = clock()
        for first in range(0, args.clients, JOIN_BATCH):
            for number in range(first, min(args.clients, first + JOIN_BATCH)):
                connect(number)

            async def batchIn():
                known = sum(1 for c in clients if c.hostID is not None)
                return known == len(clients), f"{known} of {len(clients)} have their HostID"

            await pollUntil(reactor, budget, batchIn, f"bare clients from {first} to connect")

        async def ready():
            status = await process.ask(budget, "status")
            if status["udp"] < args.clients:
                for client in clients:      # a datagram may be lost: send again
                    client.sendUdp()
            return ((status["clients"], status["udp"]) == (args.clients, args.clients),
                    f"server: {status['clients']} clients, {status['udp']} UDP addresses")

        joined, full = await measureJoined(reactor, budget, process, args, start, ready,
                                           "every bare client's TCP and UDP")
    finally:
        for connector in connectors:
            connector.disconnect()
        for port in ports:
            await defer.maybeDeferred(port.stopListening)
        await process.stop(reactor)
    return empty, full, joined


# output

def perClient(empty: dict, full: dict, N: int) -> float:
    return (full["objects"] - empty["objects"]) / N


def describe(label: str, empty: dict, full: dict, joined: float, N: int) -> None:
    collect0, collectN = statistics.median(empty["collect"]), statistics.median(full["collect"])
    print(f"  {label:8s} objects at 0: {empty['objects']:>9,}, at {N}: {full['objects']:>9,},"
          f" per client {perClient(empty, full, N):8,.1f};  full collection at 0"
          f" {ms(collect0)}, at {N} {ms(collectN)} (min {ms(min(full['collect']))}, max"
          f" {ms(max(full['collect']))});  joins took {joined:.2f} s, automatic full"
          f" collections meanwhile {full['automaticFull'] - empty['automaticFull']}")


def describeTypes(label: str, empty: dict, full: dict, N: int) -> None:
    if "types" not in full:
        return
    print(f"  {label}: references the full collection follows (gc.get_referents): at 0"
          f" {empty['references']:,}, at {N} {full['references']:,}, per client"
          f" {(full['references'] - empty['references']) / N:,.1f}; object types the"
          f" server holds per client (at {N} minus at 0):")
    for name, count in full["types"]:
        print(f"    {count / N:8.2f}  {name}")


async def run(reactor, args) -> None:
    budget = _common.Budget(reactor, args.deadline)
    N = args.clients
    sizes = groupSizes(args)
    pairs = sum(s * (s - 1) // 2 for s in sizes)
    print(f"server GC cost on loopback, server in its own process ({sys.implementation.name}"
          f" {sys.version.split()[0]}): {N} clients in {len(sizes)} P2P groups of up to"
          f" {args.group_size} ({pairs:,} peer pairs), encryption"
          f" {'OFF' if args.no_encryption else 'ON'}; {TIMED_COLLECTIONS} timed gc.collect()"
          f" after {UNTIMED_COLLECTIONS} untimed, at 0 clients and at {N}")
    ours = await runOurs(reactor, budget, args)
    bare = await runBare(reactor, budget, args)
    describe("ours", *ours, N)
    describe("baseline", *bare, N)
    describeTypes("ours", ours[0], ours[1], N)
    describeTypes("baseline", bare[0], bare[1], N)
    baseline = "bare Twisted TCP+UDP server"
    _common.report("GC-tracked objects per client in the server (information)",
                   perClient(ours[0], ours[1], N), perClient(bare[0], bare[1], N),
                   "objects", baseline)
    _common.report(f"full collection at {N} clients, median (information)",
                   statistics.median(ours[1]["collect"]) * 1e3,
                   statistics.median(bare[1]["collect"]) * 1e3, "ms", baseline)


def main() -> int:
    if SERVING:
        return serve(sys.argv[1:])
    _common.printCore()
    parser = _common.scriptParser(__doc__)
    _common.addGroupOptions(parser, 400, "each P2P group, at most --clients")
    parser.add_argument("--verbose", action="store_true",
                        help="print the object types each server holds per client")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="both servers freeze what exists once they listen out of"
                             " garbage collection (gc.freeze), as twistd proudserver does")
    _common.addTimeout(parser, 180.0)
    args = parser.parse_args()
    if args.clients < 1 or not 1 <= args.group_size <= args.clients or args.timeout <= 0:
        parser.error("need --clients >= 1, 1 <= --group-size <= --clients and --timeout > 0")
    files = _common.openFilesLimit()
    if files is not None and 2 * args.clients + 64 > files:
        parser.error(f"--clients {args.clients} needs about {2 * args.clients + 64} open files"
                     f" in this process; the limit is {files} (ulimit -n)")
    return _common.runUntilDeadline(run, args, grace=15.0)


if __name__ == "__main__":
    sys.exit(main())
