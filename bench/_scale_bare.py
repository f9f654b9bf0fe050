"""scale.py's baseline: a bare Twisted server process (``--serve``) and its
load processes (``--load``), doing the least a server of this kind must.
Both import Twisted and ``_common`` only (``--serve`` checks).

Server: an ``Int32StringReceiver`` TCP port (TCP_NODELAY, the same listen
backlog as ours) and one UDP port on 127.0.0.1 with the UDP buffers ours
asks for (``--udp-buffer``; the clients too), ``gc.freeze()`` once they
listen, as ``twistd proudserver`` does. A connection gets a HostID and a
group (``--group-size`` in the order they connect) and is sent, in one
frame, its HostID, its group and the members already there; each of those
gets a frame naming the newcomer (ours sends such member-join notices too).
A UDP ``HELLO`` (the client's HostID) records the client's UDP address and
is acknowledged; a TCP ``PING`` is answered with a ``PONG``, a UDP ``PING``
from the recorded address with a UDP ``PONG``. A UDP ``RELAY`` (sender,
target, payload) from the sender's recorded address to a member of its group
goes to the target's address as ``DATA`` (sender, payload): the bare
forwarder. Nothing is encrypted.

Load (``--load``): ``--clients`` clients; each opens one TCP connection and,
once it has its HostID, one UDP socket on 127.0.0.1 (sending ``HELLO`` until
acknowledged), and then every ``--keepalive`` seconds sends a UDP ``PING``
(13 bytes), and a TCP ``PING`` (9 bytes) at the first of these and then
every ``--tcp-keepalive`` seconds: scale.py passes NetClient's own
schedule. Commands as ``_scale_load.py``'s: ``go``, ``rejoin BATCH``, ``ready``, ``trickle RATE
SECONDS`` (UDP ``RELAY`` datagrams with a 32-byte payload to a group
member: unreliable, so what is lost stays lost), ``counts``, ``leave``.

    python bench/_scale_bare.py --serve --group-size G --backlog B --lifetime S
    python bench/_scale_bare.py --load --port TCP --udp-port UDP --clients N --lifetime S
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import socket
import struct
import sys
import time

from twisted.internet import defer, protocol, task
from twisted.protocols.basic import Int32StringReceiver

import _common

WELCOME, MEMBER, PING, PONG = b"W", b"M", b"P", b"O"
HELLO, ACK, RELAY, DATA = b"H", b"A", b"R", b"D"
_ID = struct.Struct("!I")
_PING = struct.Struct("!cd")            # PING / PONG over TCP: kind, timestamp
_UDP_PING = struct.Struct("!cId")       # UDP PING: kind, HostID, timestamp
_RELAY = struct.Struct("!cII")          # RELAY: kind, sender, target; then the payload
_DATA = struct.Struct("!cI")            # DATA: kind, sender; then the payload
MESSAGE_SIZE = 32
HELLO_RESEND = 0.5
HELLO_TRIES = 40


def growUdpBuffers(port, size: int) -> None:
    """Ask for ``size`` bytes of receive and send buffer on a UDP port, as
    ours does (the privileged option where the plain one gives less)."""
    if not size:
        return
    sock = port.socket
    for option, forced in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
        sock.setsockopt(socket.SOL_SOCKET, option, size)
        if sock.getsockopt(socket.SOL_SOCKET, option) < size and sys.platform == "linux":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, forced, size)


# the server

class BareServerConnection(Int32StringReceiver):
    hostID = group = 0
    udpAddress = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.factory.hub.join(self)

    def connectionLost(self, reason) -> None:
        self.factory.hub.leave(self)

    def stringReceived(self, data: bytes) -> None:
        if data[:1] == PING:
            self.sendString(PONG + data[1:])


class BareServerUdp(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, hub) -> None:
        self.hub = hub

    def datagramReceived(self, data: bytes, addr) -> None:
        kind = data[:1]
        hub = self.hub
        if kind == RELAY:
            _, senderID, targetID = _RELAY.unpack_from(data)
            sender = hub.connections.get(senderID)
            target = hub.connections.get(targetID)
            if (sender is None or sender.udpAddress != addr or target is None
                    or target.group != sender.group or target.udpAddress is None):
                hub.refused += 1
                return
            self.transport.write(_DATA.pack(DATA, senderID) + data[_RELAY.size:],
                                 target.udpAddress)
            hub.forwarded += 1
        elif kind == PING:
            _, hostID, stamp = _UDP_PING.unpack(data)
            client = hub.connections.get(hostID)
            if client is not None and client.udpAddress == addr:
                self.transport.write(_PING.pack(PONG, stamp), addr)
        elif kind == HELLO:
            client = hub.connections.get(_ID.unpack_from(data, 1)[0])
            if client is not None:
                client.udpAddress = addr
                self.transport.write(ACK, addr)


class BareHub:
    """Connections by HostID, groups as lists of HostIDs."""

    def __init__(self, reactor, groupSize: int, backlog: int, udpBuffer: int) -> None:
        self.groupSize = groupSize
        self.connections = {}
        self.groups = {}
        self.lastID = 0
        self.group = 0
        self.forwarded = self.refused = self.left = 0
        self.joinClock = _common.JoinClock()
        factory = protocol.Factory.forProtocol(BareServerConnection)
        factory.noisy = False
        factory.hub = self
        self.tcp = reactor.listenTCP(0, factory, backlog=backlog, interface=_common.LOOPBACK)
        self.udp = reactor.listenUDP(0, BareServerUdp(self), interface=_common.LOOPBACK)
        growUdpBuffers(self.udp, udpBuffer)

    def allocate(self) -> int:
        self.lastID += 1
        return self.lastID

    def join(self, connection: BareServerConnection) -> None:
        hostID = connection.hostID = self.allocate()
        self.connections[hostID] = connection
        if not self.group or len(self.groups[self.group]) >= self.groupSize:
            self.group = self.allocate()
            self.groups[self.group] = []
        members = self.groups[self.group]
        connection.group = self.group
        connection.sendString(WELCOME + _ID.pack(hostID) + _ID.pack(self.group)
                              + b"".join(_ID.pack(m) for m in members))
        notice = MEMBER + _ID.pack(hostID)
        for member in members:
            other = self.connections.get(member)
            if other is not None:
                other.sendString(notice)
        members.append(hostID)
        self.joinClock.joined()

    def leave(self, connection: BareServerConnection) -> None:
        if self.connections.pop(connection.hostID, None) is not None:
            self.left += 1
            members = self.groups.get(connection.group, [])
            if connection.hostID in members:
                members.remove(connection.hostID)

    def hello(self) -> dict:
        return {"pid": os.getpid(), "tcpPort": self.tcp.getHost().port,
                "udpPort": self.udp.getHost().port, "frozen": gc.get_freeze_count()}

    def mark(self, milestone: str = "0") -> dict:
        return self.joinClock.mark(milestone)

    def status(self) -> dict:
        sizes = [len(m) for m in self.groups.values()]
        return {"clients": len(self.connections), "connections": len(self.connections),
                "udp": sum(1 for c in self.connections.values() if c.udpAddress is not None),
                "groups": sum(1 for s in sizes if s),
                "peerEntries": sum(s * (s - 1) for s in sizes),
                "stats": {"framesRelayed": self.forwarded, "relayRefused": self.refused,
                          "clientsLeft": self.left},
                **self.joinClock.figures(),
                "rss": _common.processRssBytes(os.getpid())}


def serverSetup(args):
    async def setup(reactor, log):
        if any(name.startswith("proud_twisted") for name in sys.modules):
            raise RuntimeError("the bare server process has imported proud_twisted")
        hub = BareHub(reactor, args.group_size, args.backlog, args.udp_buffer)
        gc.collect()        # what freezeStartupObjects does, with Twisted only
        gc.freeze()
        return hub.hello(), {"mark": hub.mark, "status": hub.status,
                             "cpu": lambda: {"cpu": time.process_time()}}
    return setup


# the load

class BareClient(Int32StringReceiver):
    """One bare client: its TCP connection, and its UDP socket once it has a HostID."""

    def __init__(self, load) -> None:
        self.load = load
        self.hostID = 0
        self.peers = []
        self.udpPort = None
        self.confirmed = False
        self.keepalive = None
        self.lastTcpPing = float("-inf")
        self.gone = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def stringReceived(self, data: bytes) -> None:
        kind = data[:1]
        if kind == MEMBER:
            self.peers.append(_ID.unpack_from(data, 1)[0])
        elif kind == WELCOME and not self.hostID:
            self.hostID = _ID.unpack_from(data, 1)[0]
            self.peers.extend(_ID.unpack_from(data, offset)[0]
                              for offset in range(9, len(data), _ID.size))
            self.udpPort = self.load.reactor.listenUDP(0, BareClientUdp(self),
                                                        interface=_common.LOOPBACK)
            growUdpBuffers(self.udpPort, self.load.args.udp_buffer)
            self.sendHello()
            self.keepalive = task.LoopingCall(self.ping)
            self.keepalive.clock = self.load.reactor
            self.keepalive.start(self.load.keepaliveInterval, now=False)
            self.load.joined(self)

    def sendHello(self) -> None:
        self.udpPort.write(HELLO + _ID.pack(self.hostID), self.load.serverUdp)

    def ping(self) -> None:
        now = time.time()
        if now - self.lastTcpPing >= self.load.args.tcp_keepalive:
            self.lastTcpPing = now
            self.sendString(_PING.pack(PING, now))
        self.udpPort.write(_UDP_PING.pack(PING, self.hostID, now), self.load.serverUdp)

    def connectionLost(self, reason) -> None:
        self.gone = True
        if self.keepalive is not None and self.keepalive.running:
            self.keepalive.stop()
        self.load.lost(self)


class BareClientUdp(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, client: BareClient) -> None:
        self.client = client

    def datagramReceived(self, data: bytes, addr) -> None:
        kind = data[:1]
        if kind == DATA:
            self.client.load.received += 1
        elif kind == ACK:
            self.client.confirmed = True


class BareLoad(protocol.ClientFactory):
    noisy = False

    def __init__(self, reactor, args) -> None:
        self.reactor = reactor
        self.args = args
        self.serverUdp = (_common.LOOPBACK, args.udp_port)
        self.keepaliveInterval = args.keepalive
        self.clients = []
        self.times = []
        self.failures = collections.Counter()
        self.start = 0.0
        self.pending = {}           # connector -> BareClient still joining
        self.allIn = None
        self.received = 0
        self.sent = 0
        self.left = collections.Counter()
        self.leaving = False
        self.hellos = task.LoopingCall(self.resendHellos)
        self.hellos.clock = reactor
        self.helloRounds = 0

    def buildProtocol(self, addr):
        client = BareClient(self)
        client.factory = self
        return client

    async def go(self) -> dict:
        self.start = time.perf_counter()
        self.hellos.start(HELLO_RESEND, now=False)
        await self.connect(self.args.clients)
        return {"joined": len(self.times), "joinFailures": dict(self.failures),
                "times": self.times}

    async def connect(self, count: int) -> None:
        """Open ``count`` connections in this turn; wait until each has its
        HostID, failed, or timed out."""
        self.allIn = defer.Deferred()
        for _ in range(count):
            connector = self.reactor.connectTCP(_common.LOOPBACK, self.args.port, self,
                                                timeout=self.args.join_timeout)
            self.pending[connector] = None
        timer = self.reactor.callLater(self.args.join_timeout, self.timedOut)
        try:
            await self.allIn
        finally:
            if timer.active():
                timer.cancel()

    async def rejoin(self, batch: str) -> dict:
        """As many new clients as joins failed, ``batch`` at a time."""
        before, failuresBefore = len(self.clients), self.failures.copy()
        missing = self.args.clients - before
        start, size = time.perf_counter(), max(1, int(batch))
        for first in range(0, missing, size):
            await self.connect(min(size, missing - first))
        if not self.hellos.running:
            self.helloRounds = 0
            self.hellos.start(HELLO_RESEND, now=False)
        return {"tried": missing, "joined": len(self.clients) - before,
                "joinFailures": dict(self.failures - failuresBefore),
                "seconds": time.perf_counter() - start}

    def resendHellos(self) -> None:
        """Send HELLO again from every client not yet acknowledged; stop when
        all are, or after HELLO_TRIES rounds."""
        self.helloRounds += 1
        waiting = [c for c in self.clients if not c.confirmed and not c.gone]
        for client in waiting:
            client.sendHello()
        if self.helloRounds >= HELLO_TRIES or (not waiting and not self.pending):
            self.hellos.stop()

    def joined(self, client: BareClient) -> None:
        self.times.append(round(time.perf_counter() - self.start, 5))
        self.clients.append(client)
        self.pending.pop(client.transport.connector, None)
        self.checkAllIn()

    def clientConnectionFailed(self, connector, reason) -> None:
        if connector in self.pending:
            del self.pending[connector]
            self.failures[reason.type.__name__] += 1
            self.checkAllIn()

    def clientConnectionLost(self, connector, reason) -> None:
        if connector in self.pending:
            del self.pending[connector]
            self.failures[f"closed before its HostID: {reason.type.__name__}"] += 1
            self.checkAllIn()

    def timedOut(self) -> None:
        for connector in list(self.pending):
            del self.pending[connector]
            self.failures["timeout"] += 1
            connector.disconnect()
        self.checkAllIn()

    def checkAllIn(self) -> None:
        if not self.pending and self.allIn is not None and not self.allIn.called:
            self.allIn.callback(None)

    def lost(self, client: BareClient) -> None:
        if client.hostID and not self.leaving:
            self.left["connection lost"] += 1

    def present(self) -> list:
        return [c for c in self.clients if not c.gone]

    def ready(self) -> dict:
        here = self.present()
        return {"present": len(here), "confirmed": sum(1 for c in here if c.confirmed),
                "peerEntries": sum(len(c.peers) for c in here)}

    async def trickle(self, rate: str, seconds: str) -> dict:
        senders = [c for c in self.present() if c.peers and c.confirmed]
        if not senders:
            return {"sent": 0, "refused": 0, "senders": 0}
        body = _common.filler(MESSAGE_SIZE)
        before = self.sent

        def send(index: int) -> None:
            client = senders[index % len(senders)]
            peer = client.peers[(index // len(senders)) % len(client.peers)]
            client.udpPort.write(_RELAY.pack(RELAY, client.hostID, peer)
                                 + _common.payload(index, body), self.serverUdp)
            self.sent += 1

        await _common.Trickle(self.reactor, float(rate), float(seconds), send).start()
        return {"sent": self.sent - before, "refused": 0, "senders": len(senders)}

    def counts(self) -> dict:
        return {"sent": self.sent, "refused": 0, "received": self.received, "wrongSize": 0,
                "left": dict(self.left), "exceptions": []}

    async def leave(self) -> dict:
        self.leaving = True
        if self.hellos.running:
            self.hellos.stop()
        for client in self.clients:
            if client.transport is not None:
                client.transport.abortConnection()
            if client.udpPort is not None:
                await defer.maybeDeferred(client.udpPort.stopListening)
        return {"left": len(self.clients)}


def loadSetup(args):
    async def setup(reactor, log):
        load = BareLoad(reactor, args)
        return ({"clients": args.clients},
                {"go": load.go, "rejoin": load.rejoin, "ready": load.ready, "trickle": load.trickle,
                 "counts": load.counts, "leave": load.leave})
    return setup


def main() -> int:
    parser = _common.childParser(__doc__, joinsServer=False)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="be the bare server")
    mode.add_argument("--load", action="store_true", help="be a load process")
    parser.add_argument("--group-size", type=int, default=10, help="(--serve) members a group")
    parser.add_argument("--backlog", type=int, default=4096, help="(--serve) TCP listen queue")
    parser.add_argument("--port", type=int, help="(--load) the server's TCP port")
    parser.add_argument("--udp-port", type=int, help="(--load) the server's UDP port")
    parser.add_argument("--clients", type=int, default=0, help="(--load) clients")
    parser.add_argument("--join-timeout", type=float, default=10.0,
                        help="(--load) seconds a client has to get its HostID")
    parser.add_argument("--udp-buffer", type=int, default=0,
                        help="bytes of UDP receive and send buffer to ask for (0: the OS's)")
    parser.add_argument("--keepalive", type=float, default=4.0,
                        help="(--load) seconds between a client's UDP keepalives")
    parser.add_argument("--tcp-keepalive", type=float, default=4.0,
                        help="(--load) at least this many seconds between its TCP keepalives")
    return _common.runParsed(parser, serverSetup if "--serve" in sys.argv else loadSetup)


if __name__ == "__main__":
    sys.exit(main())
