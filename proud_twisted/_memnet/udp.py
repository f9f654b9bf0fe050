"""
UDP ports of the memory network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort, IUDPTransport
from twisted.internet.protocol import AbstractDatagramProtocol
from zope.interface import implementer

if TYPE_CHECKING:
    from .host import HostReactor

Address = tuple[str, int]

#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507


@implementer(IListeningPort, IUDPTransport)
class MemoryUDPPort:
    """
    A bound UDP port on a L{HostReactor}: the transport of its datagram
    protocol, like C{twisted.internet.udp.Port}.
    """

    def __init__(
        self,
        reactor: HostReactor,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str,
        maxPacketSize: int,
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.maxPacketSize = maxPacketSize
        self.listening = False
        self._connectedTo: Address | None = None
        self._broadcast = False

    def __repr__(self) -> str:
        return f"<MemoryUDPPort {self.interface}:{self.port}>"

    def logPrefix(self) -> str:
        return f"{self.protocol.__class__.__name__} (UDP)"

    def startListening(self) -> None:
        """
        Hand this port to the protocol, as C{udp.Port} does.
        """
        self.listening = True
        self.protocol.makeConnection(self)

    def stopListening(self) -> defer.Deferred[None]:
        """
        Unbind and stop the protocol; an already-fired Deferred.
        """
        if self.listening:
            self._unbind()
            self.protocol.doStop()
        return defer.succeed(None)

    loseConnection = stopListening

    def _unbind(self) -> None:
        self.listening = False
        self.reactor._releasePort("udp", self.port, self)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface, self.port)

    def connect(self, host: str, port: int) -> None:
        """
        Talk to one address only, as connected UDP does.
        """
        if self._connectedTo is not None:
            raise RuntimeError("already connected, reconnecting is not supported")
        if not isIPAddress(host):
            raise error.InvalidAddressError(host, "not an IPv4 address")
        self._connectedTo = (host, port)

    def write(self, datagram: bytes, addr: Address | None = None) -> None:
        """
        Send C{datagram} to C{addr}, an C{(ip, port)} tuple.
        """
        if not isinstance(datagram, bytes):
            raise TypeError(f"datagram must be bytes, not {type(datagram)!r}")
        if self._connectedTo is not None:
            if addr not in (None, self._connectedTo):
                raise ValueError("connected UDP port given another address")
            addr = self._connectedTo
        elif addr is None:
            raise ValueError("an unconnected UDP port needs an address")
        host, port = addr
        if not isIPAddress(host):
            raise error.InvalidAddressError(host, "not an IPv4 address")
        if len(datagram) > MAX_DATAGRAM:
            raise error.MessageLengthError(f"{len(datagram)} bytes")
        network = self.reactor.network
        if not self.listening:
            network.stats.drop("udp", "closed")
            return
        network._sendUDP(self.reactor, self.port, (host, int(port)), datagram)

    def writeSequence(self, seq: list[bytes], addr: Address | None = None) -> None:
        self.write(b"".join(seq), addr)

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self._broadcast = bool(enabled)

    def getBroadcastAllowed(self) -> bool:
        return self._broadcast

    def _deliver(self, data: bytes, source: Address) -> bool:
        """
        Hand an arriving datagram to the protocol; C{False} if refused.
        """
        if not self.listening:
            return False
        if self._connectedTo is not None and source != self._connectedTo:
            return False
        self.protocol.datagramReceived(data[: self.maxPacketSize], source)
        return True
