"""
What UDP ports and listening TCP ports of the memory network share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.address import IPv4Address

if TYPE_CHECKING:
    from .host import HostReactor


class BoundPort:
    """
    A port bound on a L{HostReactor}: start, stop, unbind and address.

    Subclasses set C{kind} ("UDP" or "TCP") and say what starting and
    stopping mean to their protocol or factory.
    """

    kind = ""

    def __init__(self, reactor: HostReactor, port: int, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.listening = False

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.interface}:{self.port}>"

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def startListening(self) -> None:
        self.listening = True
        self._start()

    def stopListening(self) -> defer.Deferred[None]:
        """
        Unbind and stop; an already-fired Deferred.
        """
        if self.listening:
            self._unbind()
            self._stop()
        return defer.succeed(None)

    def loseConnection(self) -> defer.Deferred[None]:
        return self.stopListening()

    def _unbind(self) -> None:
        self.listening = False
        self.reactor._releasePort(self.kind.lower(), self.port, self)

    def getHost(self) -> IPv4Address:
        return IPv4Address(self.kind, self.interface, self.port)
