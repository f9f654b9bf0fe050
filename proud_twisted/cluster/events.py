"""L{ClusterEvents}: the no-op base of L{IClusterEvent}."""

from __future__ import annotations

from zope.interface import implementer

from proud_twisted.cluster.interfaces import IClusterEvent
from proud_twisted.cluster.serverinfo import ServerInfo


@implementer(IClusterEvent)
class ClusterEvents:
    """Subclass this (beside L{NetServerEvents}) to hear from the cluster."""

    def onServerJoin(self, serverInfo: ServerInfo) -> None:
        pass

    def onServerLeave(self, serverID: str) -> None:
        pass

    def onClusterMessage(self, serverID: str, channel: str | None, payload: bytes) -> None:
        pass
