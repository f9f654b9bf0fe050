"""The kernel's buffers of a UDP socket: room for a burst of datagrams.

A datagram that arrives while the receive buffer is full is dropped by the
kernel before the framework sees it: a reliable message then comes one
retransmission late, an unreliable one never. The OS defaults (about
200 KiB on Linux, some 90 small datagrams) fill in a few milliseconds when
thousands of clients send to one server, or during a garbage collection
pause. So servers and clients ask for more when their UDP port opens.

Linux caps what an ordinary process may ask for at C{net.core.rmem_max} and
C{net.core.wmem_max}; a process with C{CAP_NET_ADMIN} may go beyond with
C{SO_RCVBUFFORCE} and C{SO_SNDBUFFORCE}, which L{growBuffers} tries next.
Linux reports a buffer's size with its bookkeeping included: about twice
the data it holds.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import sys
from collections.abc import Callable
from typing import NamedTuple

DEFAULT_SERVER_UDP_BUFFER = 4 * 1024 * 1024
"""Bytes of receive and send buffer a L{NetServer} asks for on its UDP port."""
DEFAULT_CLIENT_UDP_BUFFER = 1024 * 1024
"""Bytes of receive and send buffer a L{NetClient} asks for on its UDP port."""


# Linux's SO_RCVBUFFORCE and SO_SNDBUFFORCE, which Python's socket module
# lacks: the generic numbers, used on all but these architectures.
_OWN_SOCKET_NUMBERS = ("alpha", "mips", "parisc", "sparc")
_GENERIC_LINUX = (sys.platform == "linux"
                  and not platform.machine().startswith(_OWN_SOCKET_NUMBERS))
# (the option, its privileged variant where the platform has one)
_OPTIONS = ((socket.SO_RCVBUF, 33 if _GENERIC_LINUX else None),
            (socket.SO_SNDBUF, 32 if _GENERIC_LINUX else None))


class SocketBuffers(NamedTuple):
    """A UDP socket's buffer sizes in bytes, as the OS reports them."""

    receive: int
    send: int


def checkedBufferSize(size: int) -> int:
    """C{size}, a C{udpBufferSize} setting; L{ValueError} if negative."""
    if size < 0:
        raise ValueError("udpBufferSize must be 0 (the OS defaults) or more")
    return size


def growBuffers(sock, size: int) -> SocketBuffers:
    """Ask for receive and send buffers of at least C{size} bytes on C{sock}.

    A buffer already that large is left alone, so nothing ever shrinks. If
    the OS gives less, the privileged option is tried; a refusal of it
    (no C{CAP_NET_ADMIN}) keeps what the plain option gave.

    @return: the sizes in force afterwards.
    """
    return SocketBuffers(*(_grow(sock, option, force, size) for option, force in _OPTIONS))


def _grow(sock, option: int, force: int | None, size: int) -> int:
    for asking in (option, force):
        granted = sock.getsockopt(socket.SOL_SOCKET, option)
        if granted >= size or asking is None:
            return granted
        # Refused, as the privileged option is without the capability.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, asking, size)
    return sock.getsockopt(socket.SOL_SOCKET, option)


def shortfall(buffers: SocketBuffers, size: int) -> str | None:
    """What to tell the operator when C{buffers} are smaller than C{size}; else None."""
    short = [name for name, granted in zip(buffers._fields, buffers, strict=True) if granted < size]
    if not short:
        return None
    return (f"the OS gave this UDP socket less {' and '.join(short)} buffer than the"
            f" {size} bytes asked for (receive {buffers.receive}, send {buffers.send}),"
            " so the kernel may drop datagrams in a burst: reliable messages then come"
            " late, unreliable ones never. On Linux, raise the caps (sysctl -w"
            f" net.core.rmem_max={size} net.core.wmem_max={size}) or give the process"
            " CAP_NET_ADMIN.")


def sizeUdpBuffers(port, size: int,
                   warn: Callable[..., None]) -> SocketBuffers | None:
    """L{growBuffers} on the listening UDP C{port}; C{warn(format, text=...)}
    tells of a L{shortfall}.

    @return: the sizes in force, or None if C{size} is 0 (the OS defaults
        stay) or the port has no OS socket (the memory network of
        L{proud_twisted.testing}).
    """
    sock = getattr(port, "socket", None)
    if not size or not isinstance(sock, socket.socket):
        return None
    buffers = growBuffers(sock, size)
    text = shortfall(buffers, size)
    if text is not None:
        warn("{text}", text=text)
    return buffers
