"""L{ServerInfo}: what a cluster member says about itself (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from proud_twisted.cluster.keys import checkServerID
from proud_twisted.errors import ProtocolError

MAX_INFO_BYTES = 4096
"""A member's entry is a few hundred bytes; more is not one of ours."""


@dataclass(frozen=True)
class ServerInfo:
    """A member of the cluster, as it last registered.

    @ivar serverID: its name (C{--server-id}).
    @ivar tcpAddress: C{(host, port)} clients connect to (C{--advertise}).
    @ivar udpAddress: C{(host, port)} of its UDP port.
    @ivar tag: free-form (a zone, a region, C{"lobby"}).
    @ivar clients: clients joined there.
    @ivar groups: P2P groups there.
    @ivar cpu: the share of one core its process used over the last
        heartbeat (0.0 to about 1.0).
    @ivar incarnation: random, new each time a process starts: a server
        started again under the same ID before its old entry expired is
        another server (its old clients and groups are gone).
    @ivar encryption: whether its clients' sessions are encrypted; the
        servers of a cluster must agree (a member that does not is kept out).
    @ivar relayKey: the secret, in hex, its direct paths' keys derive from
        (L{proud_twisted.cluster.direct}); empty: frames to it go through Redis.
    """

    serverID: str
    tcpAddress: tuple[str, int]
    udpAddress: tuple[str, int]
    tag: str = ""
    clients: int = 0
    groups: int = 0
    cpu: float = 0.0
    incarnation: str = ""
    encryption: bool = True
    relayKey: str = ""

    def toJSON(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def fromJSON(cls, data: bytes) -> ServerInfo:
        """The L{ServerInfo} in C{data}; L{ProtocolError} if it is not one."""
        if not isinstance(data, bytes) or len(data) > MAX_INFO_BYTES:
            raise ProtocolError("server entry missing or too long")
        try:
            fields = json.loads(data)
            info = cls(checkServerID(fields["serverID"]), _address(fields["tcpAddress"]),
                       _address(fields["udpAddress"]), _typed(fields["tag"], str),
                       _typed(fields["clients"], int), _typed(fields["groups"], int),
                       float(_typed(fields["cpu"], (int, float))),
                       _typed(fields["incarnation"], str), _flag(fields["encryption"]),
                       _typed(fields.get("relayKey", ""), str))
        except (ValueError, TypeError, KeyError) as e:
            raise ProtocolError(f"malformed server entry: {e}") from None
        # Nine fields: a server without direct paths (an earlier version).
        if (len(fields) - ("relayKey" in fields) != 9 or len(info.incarnation) > 64
                or len(info.relayKey) > 64):
            raise ProtocolError("server entry with unknown fields")
        return info


def _typed(value, kind):
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not {kind}")
    return value


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def _address(value) -> tuple[str, int]:
    host, port = value
    if not 0 <= _typed(port, int) <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    return (_typed(host, str), port)
