"""construct helpers shared by the TCP and UDP schemas."""

import ipaddress

import construct as c

from proud_twisted.errors import ProtocolError

HostID = c.Int32ub
Blob = c.Prefixed(c.Int16ub, c.GreedyBytes)
Token = c.Bytes(16)

# An (host, port) address; an empty host and port 0 stand for "unknown".
AddressStruct = c.Struct("host" / c.PascalString(c.Int8ub, "ascii"), "port" / c.Int16ub)
RelayFlags = c.Int8ub
Targets = c.PrefixedArray(c.Int16ub, HostID)
# Frames for several targets in one relay request: (target, frame) pairs.
BundleEntries = c.PrefixedArray(c.Int16ub, c.Struct("target" / HostID, "frame" / Blob))


def addressToWire(address):
    if address is None:
        return {"host": "", "port": 0}
    return {"host": address[0], "port": address[1]}


def addressFromWire(container):
    """C{(host, port)}, or None for "unknown"; L{ProtocolError} unless the
    host is an IP literal and the port is not 0 (a hostname would make a
    later send look it up, and a UDP write refuses it)."""
    host, port = container.host, container.port
    if not host and not port:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ProtocolError(f"address host {host!r} is not an IP address") from None
    if not port:
        raise ProtocolError(f"address {host} has port 0")
    return (host, port)


def messageFormat(typeEnum, bodies):
    """A C{Struct} of a type byte and a body chosen by it; unknown types fail."""
    return c.Struct(
        "type" / typeEnum,
        "body" / c.Switch(c.this.type, bodies,
                          default=c.Error),
        c.Terminated,
    )


def parseWith(fmt, data: bytes, what: str):
    """Parse C{data}, turning every construct failure into L{ProtocolError}."""
    try:
        return fmt.parse(data)
    except (c.ConstructError, UnicodeDecodeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"malformed {what}: {e.__class__.__name__}") from None


def buildWith(fmt, container, what: str) -> bytes:
    try:
        return fmt.build(container)
    except (c.ConstructError, UnicodeEncodeError, ValueError, OverflowError) as e:
        raise ProtocolError(f"cannot encode {what}: {e}") from None
