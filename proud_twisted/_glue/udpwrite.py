"""Writing datagrams on a listening UDP port, fast and without raising.

Twisted's C{IListeningPort.write} parses the address on every call (to refuse
hostnames) and raises for errors a sender of UDP can do nothing about. The
framework only ever sends to IP literals (L{proud_twisted.wire._schema.
addressFromWire} refuses anything else), so L{datagramWriter} calls the
socket's C{sendto} directly, which costs well under half as much per
datagram, and treats a datagram that cannot leave as lost.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from twisted.internet import error
from twisted.internet.protocol import DatagramProtocol

# A datagram that meets one of these is lost, as on the network: the kernel's
# queue is full, the address is of the other family or unreachable, an
# earlier datagram drew an ICMP refusal, or the port has just closed.
_LOST = frozenset((
    errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAFNOSUPPORT, errno.EINVAL,
    errno.EPERM, errno.EACCES, errno.EADDRNOTAVAIL, errno.EBADF,
))


def datagramWriter(port) -> Callable[[bytes, tuple], None]:
    """A C{write(data, address)} for the listening UDP C{port}.

    Raises L{error.MessageLengthError} for a datagram too long to send (a
    bug of ours); any other failure drops the datagram. A port without a
    socket (the memory network of L{proud_twisted.testing}) is written to
    with its own C{write}, looked up on every call.
    """
    sock = getattr(port, "socket", None)
    if not isinstance(sock, socket.socket):
        return lambda data, address: port.write(data, address)  # noqa: PLW0108 - late lookup
    sendto = sock.sendto

    def write(data: bytes, address: tuple) -> None:
        try:
            sendto(data, address)
        except InterruptedError:
            write(data, address)
        except socket.gaierror:
            pass
        except OSError as e:
            if e.errno == errno.EMSGSIZE:
                raise error.MessageLengthError("message too long") from None
            if e.errno not in _LOST:
                raise

    return write


class DatagramSender(DatagramProtocol):
    """A UDP protocol whose C{send(data, address)} uses L{datagramWriter}
    while its port listens, and sends nothing before or after."""

    def startProtocol(self) -> None:
        self.send = datagramWriter(self.transport)

    def stopProtocol(self) -> None:
        del self.send

    def send(self, data: bytes, addr) -> None:
        """Send C{data} to C{addr} (nothing, while the port is not listening)."""
