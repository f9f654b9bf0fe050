"""
One host of the memory network, as the reactor its code runs on.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import error
from twisted.internet.abstract import isIPAddress
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import AbstractDatagramProtocol, ClientFactory, Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from .tcp import SYN, MemoryConnector, MemoryTCPPort, MemoryTCPTransport, StreamLink
from .udp import MemoryUDPPort

if TYPE_CHECKING:
    from .nat import NATBox
    from .network import MemoryNetwork

_EPHEMERAL_FIRST = 49152
_EPHEMERAL_COUNT = 65536 - _EPHEMERAL_FIRST
_LOOPBACK = "127.0.0.1"


@implementer(IReactorTime, IReactorUDP, IReactorTCP)
class HostReactor:
    """
    The reactor of one host on a L{MemoryNetwork}: pass it wherever Twisted
    code takes a C{reactor}.  Time is the network's one shared clock.

    C{ip} is the host's own address (its LAN address behind a C{nat}).
    """

    log = Logger()

    def __init__(self, network: MemoryNetwork, ip: str,
                 nat: NATBox | None = None) -> None:
        self.network = network
        self.ip = ip
        self.nat = nat
        self._ports: dict[str, dict[int, Any]] = {"udp": {}, "tcp": {}}
        self._nextPort = {"udp": _EPHEMERAL_FIRST, "tcp": _EPHEMERAL_FIRST}
        self._connections: dict[MemoryTCPTransport, None] = {}
        self._calls: list[IDelayedCall] = []
        self._pruneAt = 64

    def __repr__(self) -> str:
        where = f" behind {self.nat.ip}" if self.nat is not None else ""
        return f"<HostReactor {self.ip}{where}>"

    # IReactorTime

    def seconds(self) -> float:
        return self.network.clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any],
                  *args: object, **kw: object) -> IDelayedCall:
        # L{advance} steps the clock exactly onto each call's time, where
        # LoopingCall's float arithmetic can leave a remainder of a few ulps
        # and tick twice; a remainder that small means "next interval".
        if (isinstance(callable, LoopingCall) and callable.interval
                and 0 < delay < callable.interval * 1e-6):
            delay += callable.interval
        call = self.network.clock.callLater(delay, callable, *args, **kw)
        self._calls.append(call)
        if len(self._calls) > self._pruneAt:
            self._calls = [c for c in self._calls if c.active()]
            self._pruneAt = max(64, 2 * len(self._calls))
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self.network.clock.getDelayedCalls()

    # Ports

    def _bindAddress(self, interface: str, port: int, kind: str) -> tuple[str, int]:
        if interface in ("", "0.0.0.0"):
            interface = self.ip
        elif interface not in (self.ip, _LOOPBACK):
            raise error.CannotListenError(
                interface, port, OSError(errno.EADDRNOTAVAIL, "not this host's address")
            )
        used = self._ports[kind]
        if port == 0:
            if len(used) >= _EPHEMERAL_COUNT:
                raise error.CannotListenError(
                    interface, port, OSError(errno.EADDRINUSE, "no free port"))
            port = self._nextPort[kind]
            while port in used:
                port = port + 1 if port < 65535 else _EPHEMERAL_FIRST
            self._nextPort[kind] = port + 1 if port < 65535 else _EPHEMERAL_FIRST
        elif port in used:
            raise error.CannotListenError(
                interface, port, OSError(errno.EADDRINUSE, "Address already in use")
            )
        return interface, port

    def _releasePort(self, kind: str, port: int, owner: object) -> None:
        if self._ports[kind].get(port) is owner:
            del self._ports[kind][port]

    def _udpPort(self, port: int) -> MemoryUDPPort | None:
        return self._ports["udp"].get(port)

    def _listener(self, port: int) -> MemoryTCPPort | None:
        owner = self._ports["tcp"].get(port)
        return owner if isinstance(owner, MemoryTCPPort) else None

    # IReactorUDP

    def listenUDP(self, port: int, protocol: AbstractDatagramProtocol,
                  interface: str = "", maxPacketSize: int = 8192) -> MemoryUDPPort:
        interface, port = self._bindAddress(interface, port, "udp")
        udpPort = MemoryUDPPort(self, port, protocol, interface, maxPacketSize)
        self._ports["udp"][port] = udpPort
        udpPort.startListening()
        return udpPort

    # IReactorTCP

    def listenTCP(self, port: int, factory: Factory, backlog: int = 50,
                  interface: str = "") -> MemoryTCPPort:
        interface, port = self._bindAddress(interface, port, "tcp")
        tcpPort = MemoryTCPPort(self, port, factory, interface)
        self._ports["tcp"][port] = tcpPort
        tcpPort.startListening()
        return tcpPort

    def connectTCP(self, host: str, port: int, factory: ClientFactory,
                   timeout: float | None = 30, bindAddress: tuple[str, int] | None = None
                   ) -> MemoryConnector:
        """
        Connect to C{host} (an IPv4 address or C{localhost}) and C{port}.

        Nothing listening gives C{ConnectionRefusedError}; an address that
        is not reached (a NAT's public address, nobody, a blocked path) gives
        C{TimeoutError} after C{timeout}.
        """
        if host == "localhost":
            host = _LOOPBACK
        connector = MemoryConnector(self, host, port, factory, timeout, bindAddress)
        connector.connect()
        return connector

    def _startConnecting(self, connector: MemoryConnector) -> MemoryTCPTransport:
        network = self.network
        network.stats["tcp.connects"] += 1
        peer = (connector.host, connector.port)
        if not isIPAddress(connector.host):
            transport = MemoryTCPTransport(self, (self.ip, 0), peer, None, connector)
            network._events.after(
                0, transport.failIfNotConnected, error.DNSLookupError(connector.host)
            )
            return transport
        localIP, localPort = self._bindAddress(*(connector.bindAddress or ("", 0)),
                                               "tcp")
        transport = MemoryTCPTransport(self, (localIP, localPort), peer, None, connector)
        self._ports["tcp"][localPort] = transport
        self._connections[transport] = None
        route = network._route(self, localPort, peer, "tcp")
        transport.link = link = StreamLink(network, transport, route)
        transport._out = link.up
        if route.dropped is not None:
            network.stats.drop("tcp", route.dropped)
        else:
            link.up.send(SYN)
        return transport

    # Failures

    def crash(self) -> None:
        """
        This host dies at once.

        Its ports close, its connections reset (peers see C{ConnectionLost}
        after the path's delay) and the delayed calls made through this
        reactor are cancelled.  Nothing on this host is told: no
        C{connectionLost}, no C{stopProtocol}.  The host may be used again
        afterwards, like a rebooted machine.
        """
        self.log.info("{host} crashed", host=self)
        for transport in list(self._connections):
            transport._vanish()
        for kind in ("udp", "tcp"):
            for owner in list(self._ports[kind].values()):
                if isinstance(owner, (MemoryUDPPort, MemoryTCPPort)):
                    owner._unbind()
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []

    def abortConnections(self) -> None:
        """
        Abort every TCP connection of this host, as a dropped network link
        does: both ends see C{ConnectionLost}.
        """
        for transport in list(self._connections):
            if transport.connected:
                transport.abortConnection()
            else:
                transport.failIfNotConnected(error.ConnectionLost())
