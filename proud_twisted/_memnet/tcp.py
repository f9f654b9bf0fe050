"""
TCP of the memory network: listening ports, connectors and stream transports.

A connection is two L{MemoryTCPTransport}s joined by two L{StreamPipe}s, one
per direction.  Everything a side sends (data, and the markers for
handshake, close and reset) goes through its pipe, so it arrives in order
after the path's delay, and waits while the path is blocked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.base import BaseConnector
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IListeningPort,
    IProducer,
    IProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .port import BoundPort

if TYPE_CHECKING:
    from .host import HostReactor
    from .network import MemoryNetwork, Route

Address = tuple[str, int]

# What travels in a pipe besides data.
SYN, SYNACK, REFUSED, DATA, EOF, FIN, RST = (
    "syn", "synack", "refused", "data", "eof", "fin", "rst"
)


class StreamPipe:
    """
    One direction of a connection: ordered, delayed, stalled while blocked.
    """

    def __init__(
        self, network: MemoryNetwork, route: Route, reverse: bool, receiver: Any
    ) -> None:
        self._network = network
        self._route = route
        self._reverse = reverse
        self._receiver = receiver
        # Entries are [arrival time or None while stalled, kind, data].
        self._queue: deque[list] = deque()
        self._last = 0.0
        self._armed = False

    def _state(self):
        return self._network._linkState(self._route, self._reverse)

    def send(self, kind: str, data: bytes = b"") -> None:
        conditions, blocked = self._state()
        if blocked or (self._queue and self._queue[-1][0] is None):
            self._queue.append([None, kind, data])
            self._stall()
        else:
            self._queue.append([self._arrival(conditions), kind, data])
            self._arm()

    def _arrival(self, conditions) -> float:
        network = self._network
        when = network.clock.seconds() + conditions.sampleDelay(network.random)
        self._last = when = max(when, self._last)
        return when

    def _stall(self) -> None:
        self._network.stats["tcp.stalled"] += 1
        self._network._stalled[self] = None

    def _arm(self) -> None:
        if not self._armed and self._queue and self._queue[0][0] is not None:
            self._armed = True
            when = self._queue[0][0]
            self._network._events.at(when, self._pump, when)

    def _pump(self, until: float) -> None:
        self._armed = False
        queue = self._queue
        while queue and queue[0][0] is not None and queue[0][0] <= until:
            if self._state()[1]:
                for entry in queue:
                    entry[0] = None
                self._stall()
                return
            _, kind, data = queue.popleft()
            self._receiver(kind, data)
        self._arm()

    def wake(self) -> bool:
        """
        Reschedule stalled entries if the path is open; C{True} if it was.
        """
        conditions, blocked = self._state()
        if blocked:
            return False
        for entry in self._queue:
            if entry[0] is None:
                entry[0] = self._arrival(conditions)
        self._arm()
        return True


class StreamLink:
    """
    The two pipes of one connection, and the handshake between them.
    """

    def __init__(self, network: MemoryNetwork, client: MemoryTCPTransport,
                 route: Route) -> None:
        self.network = network
        self.route = route
        self.client = client
        self.server: MemoryTCPTransport | None = None
        self.natPort = route.natPort
        self.up = StreamPipe(network, route, False, self._toServer)
        self.down = StreamPipe(network, route, True, client._receive)

    def _toServer(self, kind: str, data: bytes) -> None:
        if kind == SYN:
            self._accept()
        elif self.server is not None:
            self.server._receive(kind, data)

    def _accept(self) -> None:
        if self.client.disconnected:
            return
        stats = self.network.stats
        host = self.route.host
        if host is None:
            stats.drop("tcp", "filtered")
            return
        listener = host._listener(self.route.destination[1])
        if listener is None:
            stats["tcp.refused"] += 1
            self.down.send(REFUSED)
            return
        stats["tcp.accepted"] += 1
        server = MemoryTCPTransport(
            host, self.route.destination, self.route.source, self.down
        )
        self.server = server
        protocol = listener.factory.buildProtocol(server.getPeer())
        self.down.send(SYNACK)
        if protocol is None:
            server.disconnected = True
            self.down.send(FIN)
            return
        server._attach(protocol)

    def release(self) -> None:
        """
        Give back the client's NAT port.
        """
        if self.natPort is not None:
            nat, port = self.natPort
            self.natPort = None
            nat._closeTCP(port)


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTCPTransport:
    """
    One end of an in-memory TCP connection.
    """

    log = Logger()

    connected = False
    disconnected = False
    disconnecting = False
    producer: IProducer | None = None
    streamingProducer = False
    _outClosed = False

    def __init__(self, reactor: HostReactor, host: Address, peer: Address,
                 out: StreamPipe | None,
                 connector: MemoryConnector | None = None) -> None:
        self.reactor = reactor
        self._host = host
        self._peer = peer
        self._out = out
        self.connector = connector
        self.link: StreamLink | None = None
        self.protocol: IProtocol | None = None
        self._noDelay = False
        self._keepAlive = False
        self._closeWhenUnregistered = False
        self._pulling = False

    def __repr__(self) -> str:
        side = "client" if self.connector is not None else "server"
        return f"<MemoryTCPTransport {side} {self._host} -> {self._peer}>"

    def logPrefix(self) -> str:
        return f"{self.protocol.__class__.__name__},{self._peer[0]}"

    def _attach(self, protocol: IProtocol) -> None:
        self.connected = True
        self.protocol = protocol
        self.reactor._connections[self] = None
        protocol.makeConnection(self)

    # ITransport

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data)!r}")
        if not data or self._outClosed or not self.connected:
            return
        self.reactor.network.stats["tcp.sent"] += 1
        self._out.send(DATA, data)
        if self.producer is not None and not self.streamingProducer:
            self._pullSoon()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.disconnecting or self.disconnected:
            return
        self.disconnecting = True
        if self.producer is not None:
            self._closeWhenUnregistered = True
        else:
            self.reactor.network._events.after(0, self._flushAndClose)

    def _flushAndClose(self) -> None:
        # Like a socket whose buffer has drained: what was written before
        # now goes first, then the close.
        if not self.disconnected:
            self._outClosed = True
            self._out.send(FIN)
            self._closed(Failure(error.ConnectionDone()))

    def abortConnection(self) -> None:
        if self.disconnected:
            return
        self.disconnecting = True
        self._outClosed = True
        self._out.send(RST)
        self.reactor.network._events.after(
            0, self._closed, Failure(error.ConnectionAborted())
        )

    def loseWriteConnection(self) -> None:
        if self._outClosed or self.disconnected:
            return
        self._outClosed = True
        self._out.send(EOF)
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is not None:
            half.writeConnectionLost()

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", *self._host)

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", *self._peer)

    def getTcpNoDelay(self) -> bool:
        return self._noDelay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self._noDelay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self._keepAlive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self._keepAlive = bool(enabled)

    # IConsumer / IPushProducer

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer}, because producer "
                f"{self.producer} was never unregistered."
            )
        if self.disconnected:
            producer.stopProducing()
            return
        self.producer = producer
        self.streamingProducer = streaming
        if not streaming:
            self._pullSoon()

    def unregisterProducer(self) -> None:
        self.producer = None
        if self._closeWhenUnregistered and not self.disconnected:
            self._closeWhenUnregistered = False
            self.reactor.network._events.after(0, self._flushAndClose)

    def _pullSoon(self) -> None:
        if not self._pulling:
            self._pulling = True
            self.reactor.network._events.after(0, self._pull)

    def _pull(self) -> None:
        self._pulling = False
        if self.producer is not None and not self.streamingProducer:
            self.producer.resumeProducing()

    def pauseProducing(self) -> None:
        """
        No-op: memory transports read everything at once.
        """

    def resumeProducing(self) -> None:
        """
        No-op: memory transports never pause.
        """

    def stopProducing(self) -> None:
        self.loseConnection()

    # Connecting (the client side, driven by BaseConnector)

    def failIfNotConnected(self, err: Exception) -> None:
        """
        Give up a connection attempt that has not completed.
        """
        if self.connected or self.disconnected or self.connector is None:
            return
        self.disconnected = True
        self._release()
        if self.link is not None and self.link.server is not None:
            self.link.up.send(RST)
        connector, self.connector = self.connector, None
        connector.connectionFailed(Failure(err))

    def _release(self) -> None:
        self.reactor._connections.pop(self, None)
        if self.link is not None:
            # The client side owns its local port and its NAT mapping.
            self.reactor._releasePort("tcp", self._host[1], self)
            self.link.release()

    # Arrivals

    def _receive(self, kind: str, data: bytes) -> None:
        if self.disconnected:
            return
        if kind == DATA:
            self.reactor.network.stats["tcp.delivered"] += 1
            try:
                self.protocol.dataReceived(data)
            except Exception:
                self.log.failure("Unhandled error in {protocol}.dataReceived",
                                 protocol=self.protocol)
                self._out.send(RST)
                self._closed(Failure())
        elif kind == SYNACK:
            self._connected()
        elif kind == REFUSED:
            self.failIfNotConnected(error.ConnectionRefusedError())
        elif kind == EOF:
            half = IHalfCloseableProtocol(self.protocol, None)
            if half is not None:
                half.readConnectionLost()
            else:
                self._out.send(FIN)
                self._closed(Failure(error.ConnectionDone()))
        elif kind == FIN:
            self._closed(Failure(error.ConnectionDone()))
        elif kind == RST:
            self._closed(Failure(error.ConnectionLost()))

    def _connected(self) -> None:
        protocol = self.connector.buildProtocol(self.getPeer())
        if protocol is None:
            protocol = Protocol()
            self._attach(protocol)
            self.loseConnection()
        else:
            self._attach(protocol)

    def _closed(self, reason: Failure) -> None:
        if self.disconnected:
            return
        wasConnected = self.connected
        self.disconnected = True
        self.disconnecting = True
        self.connected = False
        self._release()
        if self.producer is not None:
            producer, self.producer = self.producer, None
            producer.stopProducing()
        if not wasConnected:
            connector, self.connector = self.connector, None
            if connector is not None:
                connector.connectionFailed(reason)
            return
        try:
            self.protocol.connectionLost(reason)
        finally:
            connector, self.connector = self.connector, None
            if connector is not None:
                connector.connectionLost(reason)

    def _vanish(self) -> None:
        """
        The host died: tell the peer with a reset, tell nobody here.
        """
        if self.disconnected:
            return
        if self._out is not None and (self.connected or self.link.server):
            self._out.send(RST)
        self.disconnected = True
        self.connected = False
        self.connector = None
        self._release()


@implementer(IListeningPort)
class MemoryTCPPort(BoundPort):
    """
    A listening TCP port on a L{HostReactor}; stopping it leaves the
    connections it accepted up.
    """

    kind = "TCP"

    def __init__(self, reactor: HostReactor, port: int, factory: Factory,
                 interface: str) -> None:
        super().__init__(reactor, port, interface)
        self.factory = factory

    def _start(self) -> None:
        self.factory.doStart()

    def _stop(self) -> None:
        self.factory.doStop()


class MemoryConnector(BaseConnector):
    """
    An L{IConnector} for L{HostReactor.connectTCP}.
    """

    def __init__(self, reactor: HostReactor, host: str, port: int,
                 factory: ClientFactory, timeout: float | None,
                 bindAddress: Address | None) -> None:
        super().__init__(factory, timeout, reactor)
        self.host = host
        self.port = port
        self.bindAddress = bindAddress

    def _makeTransport(self) -> MemoryTCPTransport:
        return self.reactor._startConnecting(self)

    def getDestination(self) -> IPv4Address:
        return IPv4Address("TCP", self.host, self.port)
