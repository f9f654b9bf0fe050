"""The cluster's interfaces: what a game calls (L{ICluster}) and hears
(L{IClusterEvent})."""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import Attribute, Interface

from proud_twisted.cluster.serverinfo import ServerInfo


class ICluster(Interface):
    """A server process's membership in a cluster of servers sharing one
    Redis (a L{Cluster}, handed to C{NetServer(cluster=...)}).

    Every call that needs Redis fails with L{ClusterUnavailable} while Redis
    cannot be reached; the server keeps serving its own clients meanwhile,
    and registers again by itself when Redis is back.
    """

    serverID = Attribute("This server's ID in the cluster (C{--server-id}).")
    stats = Attribute("The L{ClusterStats} counters.")
    available = Attribute("Whether Redis answers and this server is registered now.")

    def whenReady() -> defer.Deferred[ServerInfo]:
        """A Deferred that fires with this server's L{ServerInfo} once it is
        registered and holds HostIDs (at once if it is now)."""

    def getServers() -> list[ServerInfo]:
        """The live members (this one too), by ID, as of the last heartbeat
        or announcement; L{ClusterUnavailable} while Redis is unreachable."""

    def locate(hostID: int) -> defer.Deferred[ServerInfo | None]:
        """The member holding the client or group C{hostID}: this one for its
        own, else the one that leased the HostID's block; None if that
        member is gone or no one leased it."""

    def send(serverID: str, payload: bytes) -> defer.Deferred[None]:
        """Send C{payload} to the server C{serverID} alone: its events'
        C{onClusterMessage(thisID, None, payload)}. Messages from one server
        arrive in the order it sent them. Fails with L{UnknownServer} if no
        such member is listening."""

    def publish(channel: str, payload: bytes) -> defer.Deferred[int]:
        """Send C{payload} to every other member: C{onClusterMessage(thisID,
        channel, payload)}; fires with the number of servers that got it."""


class IClusterEvent(Interface):
    """What a cluster member hears; L{ClusterEvents} does nothing for each.

    The server's events object hears them if it provides this interface
    (subclass both L{NetServerEvents} and L{ClusterEvents}), unless the
    L{Cluster} was given events of its own.
    """

    def onServerJoin(serverInfo: ServerInfo) -> None:
        """Another server joined the cluster (or came back after a failure)."""

    def onServerLeave(serverID: str) -> None:
        """A server left: it stopped, or its entry expired (it was killed or
        cut off from Redis for longer than the TTL)."""

    def onClusterMessage(serverID: str, channel: str | None, payload: bytes) -> None:
        """A message from the server C{serverID}: sent to this one alone
        (C{channel} None) or published on C{channel}."""
