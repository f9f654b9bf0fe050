"""(host, port) addresses on the wire: to and from their schema form (pure)."""

import ipaddress
import socket

from proud_twisted.errors import ProtocolError


def plainAddress(address):
    """C{(host, port)} with an IPv4-mapped IPv6 host (C{::ffff:192.0.2.1}: how
    a dual-stack socket sees an IPv4 peer) as plain IPv4, the form an IPv4
    socket can send to and a person expects; None stays None."""
    if address is None or ":" not in address[0]:
        return address
    try:
        mapped = ipaddress.IPv6Address(address[0]).ipv4_mapped
    except ValueError:
        return address      # no IP: a receiver refuses it (L{addressFromWire})
    return address if mapped is None else (str(mapped), address[1])


def addressToWire(address):
    """The wire form of L{plainAddress}C{(address)}; None means "unknown"."""
    if address is None:
        return {"host": "", "port": 0}
    host, port = plainAddress(address)
    return {"host": host, "port": port}


def _isIPLiteral(host: str) -> bool:
    """Whether C{host} is an IPv4 or IPv6 literal (a scoped one too), checked
    by the C library first: each membership notice carries two addresses."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    try:
        ipaddress.ip_address(host)      # fe80::1%eth0, which inet_pton refuses
    except ValueError:
        return False
    return True


def addressFromWire(container):
    """C{(host, port)}, or None for "unknown"; L{ProtocolError} unless the
    host is an IP literal and the port is not 0 (a hostname would make a
    later send look it up, and a UDP write refuses it)."""
    host, port = container.host, container.port
    if not host and not port:
        return None
    if not _isIPLiteral(host):
        raise ProtocolError(f"address host {host!r} is not an IP address")
    if not port:
        raise ProtocolError(f"address {host} has port 0")
    return (host, port)
