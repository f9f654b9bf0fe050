"""A NAT lab agent: a proud_twisted server or client speaking JSON lines.

Run inside a lab namespace (see L{tests.natlab})::

    python -m tests.natlab_agent server --port 33333 [--group-when N]
    python -m tests.natlab_agent client --server 203.0.113.1:33333 --name alice

Every output line on stdout is one JSON object with at least C{"event"} (its
kind) and C{"t"} (C{time.monotonic()} when it happened: one clock for every
process on the machine, so a driver can compare times across agents).

The server puts every client that joins into ONE P2P group: created when
C{--group-when} clients (default 1) have joined, later ones join it. Events:
C{listening}, C{client_join}, C{group_create} (just before
C{createP2PGroup}), C{group_created}, C{group_join}, C{ack_complete},
C{client_leave}, C{client_offline}, C{client_online}, C{received}, C{sent},
C{stats}, C{warning}, C{error}, C{exception}.

The client greets (a reliable "hello from NAME") every peer it hears of in
C{onP2PMemberJoin}, then asks C{whenDirect}. Events: C{joined}, C{member_join},
C{member_leave}, C{hello_sent}, C{relay_state} (C{peer}, C{relayed},
C{reason}), C{direct} (C{peer}, C{address}), C{when_direct}, C{punch_failed},
C{received} (C{from}, C{payload}, C{relayed}), C{sent}, C{peer_info},
C{server_udp}, C{server_offline}, C{server_online}, C{member_offline},
C{member_online}, C{left}, C{warning}, C{error}, C{exception}.

Commands, one JSON object a line on stdin:
  - C{{"cmd": "send", "to": H, "count": N, "prefix": "x"}}: N reliable
    messages "x0".."x{N-1}" to H (from the server: to client H); with
    C{"batch": B, "interval": S} B of them every S seconds; C{"sent"} once
    all are handed over;
  - C{{"cmd": "info", "peer": H}}: a C{peer_info} event (client), or
    C{{"cmd": "stats"}}: a C{stats} event (server);
  - C{{"cmd": "quit"}}: leave and exit (so does the end of stdin).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from twisted.internet import defer, stdio
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from proud_twisted import (
    HolePunchFailed,
    NetClient,
    NetClientEvents,
    NetServer,
    NetServerEvents,
    RelayReason,
)

VERSION = uuid.UUID("6e61746c-6162-4e41-5420-6c6162000001")


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if hasattr(value, "name") and hasattr(value, "value"):     # an enum
        return value.name
    return value


class Console(LineReceiver):
    """stdin commands in, JSON events out (through the reactor, never blocking)."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, reactor, onCommand, onEnd) -> None:
        self.reactor = reactor
        self.onCommand = onCommand
        self.onEnd = onEnd
        self.closed = defer.Deferred()

    def emit(self, event: str, **fields) -> None:
        record = {"event": event, "t": time.monotonic()}
        record.update({k: _jsonable(v) for k, v in fields.items()})
        if self.transport is not None:
            self.transport.write(json.dumps(record).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            command = json.loads(line)
            name = command.pop("cmd")
        except (ValueError, KeyError, AttributeError) as e:
            self.emit("error", comment=f"bad command {line!r}: {e}")
            return
        try:
            self.onCommand(name, command)
        except Exception as e:
            self.emit("error", comment=f"command {name} failed: {e!r}")

    def connectionLost(self, reason) -> None:
        self.onEnd()
        self.closed.callback(None)

    def readConnectionLost(self) -> None:
        # stdin ended: the driver is gone or done with us.
        self.onEnd()


class _Reporting:
    """onWarning / onError / onException as events."""

    console: Console

    def onWarning(self, errorInfo):
        self.console.emit("warning", errorType=errorInfo.errorType, hostID=errorInfo.hostID,
                          comment=errorInfo.comment)

    def onError(self, errorInfo):
        self.console.emit("error", errorType=errorInfo.errorType, hostID=errorInfo.hostID,
                          comment=errorInfo.comment)

    def onException(self, failure):
        self.console.emit("exception", comment=failure.getTraceback())


# Server


class ServerAgent(_Reporting, NetServerEvents):
    def __init__(self, reactor, args) -> None:
        self.reactor = reactor
        self.groupWhen = args.group_when
        self.group = None
        self.joined = []
        self.stopping = False
        self.console = Console(reactor, self.command, self.quit)
        self.server = NetServer(self, VERSION, tcpPort=args.port, udpPort=args.port,
                                interface=args.interface, reactor=reactor,
                                clientTimeout=args.client_timeout,
                                recoveryWindow=args.recovery_window)

    def start(self) -> None:
        self.server.startService()
        self.console.emit("listening", tcp=self.server.getTcpAddress(),
                          udp=self.server.getUdpAddress())

    def onClientJoin(self, clientInfo):
        hostID = clientInfo.hostID
        self.joined.append(hostID)
        self.console.emit("client_join", hostID=hostID, tcp=clientInfo.tcpAddress,
                          udp=clientInfo.udpAddress, lan=clientInfo.lanAddress)
        if self.group is None:
            if len(self.joined) >= self.groupWhen:
                members = list(self.joined)
                self.console.emit("group_create", members=members)
                self.group = self.server.createP2PGroup(members)
                self.console.emit("group_created", group=self.group, members=members)
        else:
            self.console.emit("group_join", group=self.group, member=hostID)
            self.server.joinP2PGroup(hostID, self.group)

    def onClientLeave(self, clientInfo, reason, comment):
        if clientInfo.hostID in self.joined:
            self.joined.remove(clientInfo.hostID)
        self.console.emit("client_leave", hostID=clientInfo.hostID, reason=reason,
                          comment=comment)

    def onClientOffline(self, clientInfo):
        self.console.emit("client_offline", hostID=clientInfo.hostID)

    def onClientOnline(self, clientInfo):
        self.console.emit("client_online", hostID=clientInfo.hostID,
                          tcp=clientInfo.tcpAddress)

    def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
        self.console.emit("ack_complete", group=groupHostID, member=memberHostID,
                          result=result)

    def onReceiveUserMessage(self, sender, payload, context):
        self.console.emit("received", **{"from": sender, "payload": payload})

    def command(self, name: str, fields: dict) -> None:
        if name == "stats":
            info = {}
            for hostID in self.server.getClientHostIDs():
                client = self.server.getClientInfo(hostID)
                info[str(hostID)] = {"udp": _jsonable(client.udpAddress),
                                     "lan": _jsonable(client.lanAddress),
                                     "groups": _jsonable(client.joinedGroups)}
            self.console.emit("stats", clients=info, **self.server.stats.asDict())
        elif name == "send":
            sendNumbered(self.reactor, self.console, self.server.send, fields)
        elif name == "quit":
            self.quit()
        else:
            self.console.emit("error", comment=f"unknown command {name!r}")

    def quit(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        d = defer.maybeDeferred(self.server.stopService)
        d.addErrback(lambda f: self.console.emit("exception", comment=f.getTraceback()))
        d.addBoth(lambda _: _finish(self.reactor, self.console))


# Client


class ClientAgent(_Reporting, NetClientEvents):
    def __init__(self, reactor, args) -> None:
        self.reactor = reactor
        self.name = args.name
        host, port = args.server.rsplit(":", 1)
        self.serverAddress = (host, int(port))
        self.greeted = set()
        self.stopping = False
        self.console = Console(reactor, self.command, self.quit)
        self.client = NetClient(self, reactor=reactor)

    def start(self) -> None:
        d = self.client.connect(self.serverAddress[0], self.serverAddress[1], VERSION)
        d.addCallbacks(self._joined, self._joinFailed)

    def _joined(self, hostID):
        self.console.emit("joined", hostID=hostID, name=self.name,
                          local=self.client.getLocalUdpAddress())

    def _joinFailed(self, failure):
        self.console.emit("join_failed", comment=str(failure.value))
        self.quit()

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        self.console.emit("member_join", member=memberHostID, group=groupHostID,
                          count=memberCount)
        if memberHostID == self.client.getLocalHostID() or memberHostID in self.greeted:
            return
        self.greeted.add(memberHostID)
        # Punching starts just in time: when the pair first exchanges a message.
        self.client.send(memberHostID, f"hello from {self.name}".encode())
        self.console.emit("hello_sent", peer=memberHostID)
        whenDirect = getattr(self.client, "whenDirect", None)
        if whenDirect is not None:
            whenDirect(memberHostID).addCallbacks(
                lambda address, peer=memberHostID: self.console.emit(
                    "when_direct", peer=peer, address=address),
                lambda failure, peer=memberHostID: self._punchFailed(peer, failure))

    def _punchFailed(self, peer: int, failure: Failure) -> None:
        known = failure.check(HolePunchFailed, defer.CancelledError) is not None
        self.console.emit("punch_failed", peer=peer, error=type(failure.value).__name__,
                          comment=str(failure.value) if known else failure.getTraceback())

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        self.console.emit("member_leave", member=memberHostID, group=groupHostID,
                          count=memberCount)

    def onChangeP2PRelayState(self, peerHostID, reason):
        relayed = reason is not RelayReason.HOLE_PUNCHED
        self.console.emit("relay_state", peer=peerHostID, relayed=relayed, reason=reason)
        if not relayed:
            try:
                address = self.client.getPeerInfo(peerHostID).directAddress
            except Exception as e:
                address = None
                self.console.emit("error", comment=f"getPeerInfo({peerHostID}): {e!r}")
            self.console.emit("direct", peer=peerHostID, address=address)

    def onReceiveUserMessage(self, sender, payload, context):
        self.console.emit("received", **{"from": sender, "payload": payload,
                                         "relayed": bool(context.relayed)})

    def onChangeServerUdpState(self, state):
        self.console.emit("server_udp", state=state)

    def onServerOffline(self, reason):
        self.console.emit("server_offline", reason=reason)

    def onServerOnline(self):
        self.console.emit("server_online", hostID=self.client.getLocalHostID(),
                          groups=self.client.getLocalJoinedP2PGroups())

    def onP2PMemberOffline(self, memberHostID):
        self.console.emit("member_offline", member=memberHostID)

    def onP2PMemberOnline(self, memberHostID):
        self.console.emit("member_online", member=memberHostID)

    def onLeaveServer(self, reason):
        self.console.emit("left", reason=reason)
        self.quit()

    def command(self, name: str, fields: dict) -> None:
        if name == "send":
            sendNumbered(self.reactor, self.console, self.client.send, fields)
        elif name == "info":
            peer = int(fields["peer"])
            info = self.client.getPeerInfo(peer)
            self.console.emit("peer_info", peer=peer, relayed=info.relayed,
                              directAddress=info.directAddress, lanAddress=info.lanAddress,
                              udpAddress=info.udpAddress,
                              publicAddress=self.client.getPublicUdpAddress())
        elif name == "quit":
            self.quit()
        else:
            self.console.emit("error", comment=f"unknown command {name!r}")

    def quit(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        d = defer.maybeDeferred(self.client.disconnect)
        d.addErrback(lambda f: self.console.emit("exception", comment=f.getTraceback()))
        d.addBoth(lambda _: _finish(self.reactor, self.console))


def sendNumbered(reactor, console: Console, send, fields: dict, start: int = 0) -> None:
    """The C{send} command: C{send(to, payload)} for numbered payloads, in batches."""
    to, count = int(fields["to"]), int(fields.get("count", 1))
    prefix, batch = str(fields.get("prefix", "m")), int(fields.get("batch", 0))
    end = count if batch <= 0 else min(count, start + batch)
    for i in range(start, end):
        send(to, f"{prefix}{i}".encode())
    if end < count:
        reactor.callLater(float(fields.get("interval", 0.0)), sendNumbered, reactor, console,
                          send, fields, end)
    else:
        console.emit("sent", to=to, count=count, prefix=prefix)


def _finish(reactor, console: Console) -> None:
    console.emit("bye")
    if console.transport is not None:
        console.transport.loseConnection()      # flushes stdout first
        console.closed.addBoth(lambda _: reactor.stop())
        reactor.callLater(5, lambda: reactor.running and reactor.stop())
    else:
        reactor.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.natlab_agent")
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server")
    server.add_argument("--port", type=int, default=33333)
    server.add_argument("--interface", default="")
    server.add_argument("--group-when", type=int, default=1,
                        help="create the group once this many clients joined")
    server.add_argument("--client-timeout", type=float, default=20.0)
    server.add_argument("--recovery-window", type=float, default=30.0)
    client = sub.add_parser("client")
    client.add_argument("--server", required=True, help="HOST:PORT")
    client.add_argument("--name", required=True)
    for p in (server, client):
        p.add_argument("--debug", action="store_true", help="debug logs on stderr")
    args = parser.parse_args(argv)

    level = LogLevel.debug if args.debug else LogLevel.info
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)])],
        redirectStandardIO=False)

    from twisted.internet import reactor
    agent = (ServerAgent if args.role == "server" else ClientAgent)(reactor, args)
    stdio.StandardIO(agent.console, reactor=reactor)
    reactor.callWhenRunning(agent.start)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
