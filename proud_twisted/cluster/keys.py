"""What the cluster keeps in Redis, by name: one place for the key layout.

Every name starts with the cluster's prefix (default C{proud}), so several
clusters can share one Redis database:

 - C{proud:servers}: a set of the server IDs that registered;
 - C{proud:server:ID}: a server's L{ServerInfo} as JSON, with a TTL that
   each heartbeat renews (a killed process's entry expires);
 - C{proud:hostids}: the counter of leased HostID blocks (C{INCRBY});
 - C{proud:leases}: a hash, block index -> the server ID that leased it;
 - pub/sub channels C{proud@DB:to:ID} (messages for one server),
   C{proud@DB:broadcast} (L{Cluster.publish}) and C{proud@DB:announce}
   (joins, leaves, leases): channels are not per database in Redis, so
   their names carry the database number.
"""

from __future__ import annotations

import re

_SERVER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
DEFAULT_PREFIX = "proud"


def checkServerID(serverID: str) -> str:
    """C{serverID} if it is 1 to 64 letters, digits, C{.}, C{_} or C{-}."""
    if not isinstance(serverID, str) or not _SERVER_ID.match(serverID):
        raise ValueError(f"server ID {serverID!r}: use 1 to 64 letters, digits, '.', '_' "
                         "or '-'")
    return serverID


class ClusterKeys:
    """The Redis key and channel names of one cluster."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, db: int = 0) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"cluster prefix {prefix!r}: non-empty, no spaces")
        self.prefix = prefix
        # Channels, unlike keys, are shared by every database of a Redis.
        self.channelPrefix = f"{prefix}@{db}"
        self.servers = f"{prefix}:servers"
        self.hostIDCounter = f"{prefix}:hostids"
        self.leases = f"{prefix}:leases"
        self.announce = f"{self.channelPrefix}:announce"
        self.broadcast = f"{self.channelPrefix}:broadcast"

    def server(self, serverID: str) -> str:
        return f"{self.prefix}:server:{serverID}"

    def inbox(self, serverID: str) -> str:
        return f"{self.channelPrefix}:to:{serverID}"

