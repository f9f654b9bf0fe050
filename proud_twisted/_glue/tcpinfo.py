"""The round-trip time the kernel measures on a TCP connection (Linux TCP_INFO)."""

from __future__ import annotations

import socket
import struct

_TCP_INFO = getattr(socket, "TCP_INFO", None)
_RTT = struct.Struct("=I")
_RTT_OFFSET = 68
"""Where C{tcpi_rtt} (microseconds, smoothed) lies in Linux's C{struct
tcp_info}: after 8 one-byte fields and 15 32-bit ones, since Linux 2.6."""
_INFO_SIZE = 104


def tcpRoundTrip(transport) -> float | None:
    """The smoothed round-trip time in seconds the kernel measured on
    C{transport}'s socket, or C{None} where it cannot say (another OS, a
    transport without a socket, a closed one)."""
    if _TCP_INFO is None:
        return None
    try:
        info = transport.getHandle().getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_SIZE)
    except (AttributeError, OSError):
        return None
    if len(info) < _RTT_OFFSET + _RTT.size:
        return None
    return _RTT.unpack_from(info, _RTT_OFFSET)[0] / 1e6
