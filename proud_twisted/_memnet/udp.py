"""
UDP ports of the memory network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import error
from twisted.internet.abstract import isIPAddress
from twisted.internet.interfaces import IListeningPort, IUDPTransport
from twisted.internet.protocol import AbstractDatagramProtocol
from zope.interface import implementer

from .port import BoundPort

if TYPE_CHECKING:
    from .host import HostReactor

Address = tuple[str, int]

#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507


@implementer(IListeningPort, IUDPTransport)
class MemoryUDPPort(BoundPort):
    """
    A bound UDP port on a L{HostReactor}: the transport of its datagram
    protocol, like C{twisted.internet.udp.Port}.
    """

    kind = "UDP"

    def __init__(
        self,
        reactor: HostReactor,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str,
        maxPacketSize: int,
    ) -> None:
        super().__init__(reactor, port, interface)
        self.protocol = protocol
        self.maxPacketSize = maxPacketSize
        self._connectedTo: Address | None = None
        self._broadcast = False

    def logPrefix(self) -> str:
        return f"{self.protocol.__class__.__name__} (UDP)"

    def _start(self) -> None:
        # As udp.Port does: the protocol's makeConnection calls doStart.
        self.protocol.makeConnection(self)

    def _stop(self) -> None:
        self.protocol.doStop()

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

    def _accepts(self, source: Address) -> bool:
        """
        Whether a datagram from C{source} would be read now.
        """
        return self.listening and self._connectedTo in (None, source)

    def _deliver(self, data: bytes, source: Address) -> None:
        self.protocol.datagramReceived(data[: self.maxPacketSize], source)
