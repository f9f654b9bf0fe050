"""The zope interfaces of the game API.

L{INetServer} and L{INetClient} are everything a game may call on a
L{NetServer} and a L{NetClient}; L{INetServerEvent} and L{INetClientEvent}
are what a game implements to hear from them (they mirror ProudNet's
``INetServerEvent`` / ``INetClientEvent`` in Twisted naming: subclass
L{NetServerEvents} or L{NetClientEvents} and override what you need).

The methods are annotated, and declared without C{self} as zope.interface
wants; only a type checker that knows zope.interface (mypy with the
mypy-zope plugin) reads them right, or takes an C{@implementer} class for a
provider. Without it, type against L{NetServer}, L{NetClient} and the event
base classes, whose signatures are the same; an events object that
subclasses a base class is accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from twisted.application.service import IService
from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface
from zope.interface.interface import InterfaceClass

from proud_twisted.constants import ErrorType, HackKind, RelayReason, ServerUdpState
from proud_twisted.info import (
    Address,
    ClientInfo,
    ErrorInfo,
    MessageContext,
    P2PConnectionStats,
    P2PGroupInfo,
    PeerInfo,
    Targets,
)
from proud_twisted.rudp.config import DeliveryMode, Priority

if TYPE_CHECKING:
    from proud_twisted.events import LoginAnswer
    from proud_twisted.rmi import Proxy, Stub

_Class = TypeVar("_Class", bound=type)


def documentedBy(interface: InterfaceClass) -> Callable[[_Class], _Class]:
    """A class decorator: each method and property of the class without a
    docstring gets that of its namesake in C{interface}, so C{help()} and
    the API reference read the same text as the interface."""
    def document(cls: _Class) -> _Class:
        for name in interface.names(all=True):
            member = cls.__dict__.get(name)
            doc = interface[name].getDoc()
            if isinstance(member, property) and member.__doc__ is None:
                setattr(cls, name, property(member.fget, member.fset, member.fdel, doc))
            elif callable(member) and member.__doc__ is None:
                member.__doc__ = doc
        return cls
    return document


class INetCoreEvent(Interface):
    """Events both the server and the client report."""

    def onWarning(errorInfo: ErrorInfo) -> None:
        """Something suspicious happened and was handled (nothing broke);
        C{errorInfo} is an L{ErrorInfo}."""

    def onException(failure: Failure) -> None:
        """A user callback raised; C{failure} wraps the exception."""

    def onReceiveUserMessage(sender: int, payload: bytes, context: MessageContext) -> None:
        """A user message arrived from C{sender} (a HostID).

        @param context: a L{MessageContext} (reliability, relayed or not).
        """

    def onNoRmiProcessed(rmiID: int, context: MessageContext) -> None:
        """An RMI message arrived that no attached stub handles: its ID
        C{rmiID} is not declared here, or the stub does not define the method.
        """


class INetServerEvent(INetCoreEvent):
    """Events of a L{NetServer}."""

    def onConnectionRequest(address: Address,
                            userData: bytes) -> LoginAnswer | Awaitable[LoginAnswer]:
        """A client asks to join.

        Return C{True} (or C{None}) to accept, C{False} to refuse, or a
        C{(accepted, replyBytes)} tuple to also hand the client reply bytes;
        or a Deferred (or coroutine: C{async def} works) that gives one of
        those within the server's C{loginTimeout}.
        """

    def onClientJoin(clientInfo: ClientInfo) -> None:
        """A client joined and has a HostID."""

    def onClientLeave(clientInfo: ClientInfo, reason: ErrorType, comment: bytes) -> None:
        """A client left (C{reason} an L{ErrorType}); it left all its groups.
        A client moved to another server of the cluster leaves with
        C{ErrorType.MOVED} and that server's ID as C{comment}."""

    def onP2PGroupJoinMemberAckComplete(groupHostID: int, memberHostID: int,
                                        result: ErrorType) -> None:
        """Every member of the group has processed C{memberHostID}'s join."""

    def onP2PGroupRemoved(groupHostID: int) -> None:
        """A P2P group no longer exists."""

    def onClientHackSuspected(hostID: int, kind: HackKind) -> None:
        """A client did something no honest client does (C{kind} a L{HackKind}).

        The offending traffic was already dropped; the application decides
        what else to do (for example L{NetServer.closeConnection}).
        """

    def onClientOffline(clientInfo: ClientInfo) -> None:
        """A client's connection dropped; it keeps its HostID and groups for
        the recovery window, and messages to it wait for its return."""

    def onClientOnline(clientInfo: ClientInfo) -> None:
        """An offline client reconnected and resumed its session."""

    def onClientArrived(clientInfo: ClientInfo, ticket: bytes) -> None:
        """A client another server of the cluster moved here was admitted,
        under the HostID it had there (C{onClientJoin} does not fire for
        it); C{ticket} is what that server's C{moveClient} gave."""


class INetClientEvent(INetCoreEvent):
    """Events of a L{NetClient}."""

    def onJoinServerComplete(result: ErrorType, reply: bytes) -> None:
        """The join finished: C{result} is C{ErrorType.OK} or why it failed."""

    def onLeaveServer(reason: ErrorType) -> None:
        """The client is no longer connected (C{reason} an L{ErrorType})."""

    def onP2PMemberJoin(memberHostID: int, groupHostID: int, memberCount: int,
                        message: bytes) -> None:
        """A member (possibly this client) joined a group this client is in."""

    def onP2PMemberLeave(memberHostID: int, groupHostID: int, memberCount: int) -> None:
        """A member (possibly this client) left a group this client is in."""

    def onChangeP2PRelayState(peerHostID: int, reason: RelayReason) -> None:
        """The path to a peer changed between relayed and direct."""

    def onChangeServerUdpState(state: ServerUdpState) -> None:
        """The UDP path to the server changed (a L{ServerUdpState})."""

    def onServerOffline(reason: ErrorType) -> None:
        """The connection to the server dropped (C{reason} an L{ErrorType});
        the client reconnects by itself and keeps its HostID, groups and
        peers meanwhile. Reliable messages sent now wait for the server."""

    def onServerOnline() -> None:
        """The client reconnected and resumed its session after
        C{onServerOffline}: nothing reliable was lost either way."""

    def onServerMoved(serverAddress: tuple[str, int]) -> None:
        """The server moved this client to another server of its cluster,
        now at C{serverAddress} (host, TCP port): the client kept its HostID;
        what the server sent it before the move came first, what was sent
        to it meanwhile comes now, once each and in order. The move left
        every P2P group: C{onP2PMemberLeave} fired for each member of each,
        this client last, before this."""

    def onP2PMemberOffline(memberHostID: int) -> None:
        """A peer's connection to the server dropped: it is still a member
        of its groups and may come back (C{onP2PMemberOnline}) or leave."""

    def onP2PMemberOnline(memberHostID: int) -> None:
        """A peer that was offline resumed its session."""


class IRmiHost(Interface):
    """Where remote interfaces attach: a L{NetServer} or a L{NetClient}."""

    def attachStub(stub: Stub) -> None:
        """Handle a remote interface's calls with C{stub} (an instance of a
        subclass of C{Declaration.Stub}); see L{proud_twisted.rmi}.

        @raise DeclarationError: the declaration's IDs overlap those of
            another one attached here, a stub of it is attached already, or a
            stub method takes other arguments than its declaration sends.
        """

    def attachProxy(declaration: type, *, timeout: float = 30.0,
                    maxPendingCalls: int = 10000) -> Proxy:
        """A proxy calling C{declaration}'s remote methods from here (see
        L{proud_twisted.rmi}): C{proxy.say(target, text)} sends; a call with a
        result returns a Deferred that fails with L{RemoteCallTimeout} after
        C{timeout} seconds, or with L{TooManyPendingCalls} while
        C{maxPendingCalls} others wait; C{disconnect} and C{stopService}
        fail the calls still waiting with L{RemoteCallFailed}.

        @raise DeclarationError: the declaration's IDs overlap those of
            another one attached here.
        """


class INetServer(IService, IRmiHost):
    """A game server: accepts clients, owns P2P groups, relays between members.

    A L{NetServer} provides it; it is a Twisted service (start it with
    C{startService} or put it in a C{MultiService}).
    """

    events = Attribute("The L{INetServerEvent} provider the server reports to.")
    stats = Attribute("The L{ServerStats} counters, updated as the server runs.")
    cluster = Attribute(
        "The L{Cluster} the server belongs to (C{NetServer(cluster=...)}), or None. "
        "With one, L{send} reaches clients and groups of the other servers too.")
    identity = Attribute(
        "The server's long-term L{IdentityKey} (None with encryption off); "
        "clients pin C{identity.publicKey()}.")
    udpSocketBuffers = Attribute(
        "The L{SocketBuffers} in force on the UDP port once listening (else None).")
    allowEmptyGroups = Attribute(
        "Whether a P2P group may have no members (settable); when false, a group "
        "whose last member leaves is removed.")

    def getTcpAddress() -> Address:
        """The bound TCP C{(host, port)}."""

    def getUdpAddress() -> Address:
        """The bound UDP C{(host, port)}."""

    def createP2PGroup(members: Iterable[int] = (), message: bytes = b"",
                       allowDirectP2P: bool = True) -> int:
        """Make a P2P group of C{members} (HostIDs); return its HostID.

        Every member's client hears C{onP2PMemberJoin} for every member
        (itself included), with C{message}; once all have processed it,
        C{onP2PGroupJoinMemberAckComplete} fires. With C{allowDirectP2P}
        false, pairs that meet in this group always talk through the relay
        (the setting of the group that first puts a pair together decides).

        @raise InvalidGroupOperation: a member is unknown.
        """

    def joinP2PGroup(member: int, group: int, message: bytes = b"") -> None:
        """Add C{member} to C{group}; every member hears of it, then the
        ack-complete event fires."""

    def leaveP2PGroup(member: int, group: int) -> None:
        """Take C{member} out of C{group}; it and the others get C{onP2PMemberLeave}."""

    def destroyP2PGroup(group: int) -> None:
        """Remove C{group}; every member gets C{onP2PMemberLeave} for every member."""

    def destroyEmptyP2PGroups() -> None:
        """Remove every group that has no members left."""

    def getClientHostIDs() -> list[int]:
        """HostIDs of every joined client, sorted."""

    def getClientInfo(hostID: int) -> ClientInfo:
        """A L{ClientInfo} snapshot of client C{hostID}.

        @raise UnknownHostID: no such client.
        """

    def getConnectionCount() -> int:
        """Open TCP connections, joined or not yet joined."""

    def getP2PGroups() -> list[int]:
        """HostIDs of every P2P group."""

    def getP2PGroupInfo(group: int) -> P2PGroupInfo:
        """A L{P2PGroupInfo} snapshot of C{group}."""

    def getP2PConnectionStats(group: int) -> P2PConnectionStats:
        """A L{P2PConnectionStats}: how many member pairs of C{group} there
        are, and how many talk directly (both clients report a direct path)."""

    def getJoinedP2PGroups(client: int) -> frozenset[int]:
        """The HostIDs of the groups C{client} is a member of (a frozenset)."""

    def send(targets: Targets, payload: bytes, reliable: bool = True, *,
             mode: DeliveryMode | None = None, priority: Priority = Priority.MEDIUM,
             channel: int = 0) -> None:
        """Send a user message to clients and/or every member of groups.

        The options are those of L{INetClient.send}. A reliable message
        goes over the client's TCP connection, in order with the group
        notices the server sends (C{priority} and C{channel} then change
        nothing: a stream has no queue to reorder); the others go through
        the client's reliable-UDP session with the server while its UDP
        path works, where C{priority} orders the queue and
        C{UNRELIABLE_LATEST} drops, per C{channel}, a message older than
        one already delivered. Without a working UDP path they go over TCP,
        and are dropped (counted in C{stats.outputDropped}) while the client
        does not read, as they are when its session's queue is full: an
        unreliable send never raises L{SendQueueFull}.

        With a L{cluster}, a target held by another server (one of its
        clients or groups) is reached through Redis, in order with this
        server's other sends to that server, and sent there with the same
        options.

        @param targets: a HostID or an iterable of them (clients or groups).
        @raise MessageTooLong: C{payload} is longer than C{maxMessageLength}.
        @raise UnknownHostID: a target is neither a client nor a group (here
            or, with a cluster, on another live server).
        @raise ValueError: C{mode}, C{priority} or C{channel} (0 to 255) is
            not one.
        @raise ClusterUnavailable: a target is on another server and Redis
            cannot be reached.
        @raise SendQueueFull: reliable, to another server, while more than the
            cluster's C{maxPendingBytes} wait for Redis.
        """

    def closeConnection(hostID: int) -> None:
        """Disconnect a client: it leaves all its groups and C{onClientLeave}
        fires at once; what was sent to it gets C{closeLinger} seconds to go out."""

    def moveClient(hostID: int, serverID: str, ticket: bytes = b"") -> defer.Deferred[object]:
        """Move a client to the cluster member C{serverID} without a new login.

        The client is told the target's address and a one-time token,
        reconnects there by itself and keeps its HostID; the target fires
        C{onClientArrived(clientInfo, ticket)}, the client
        C{onServerMoved(serverAddress)}. It leaves every P2P group before it
        is told to go (its peers and then it hear C{onP2PMemberLeave}), joins
        none here while on its way, and C{onClientLeave} fires here when its
        connection closes. Sends to the
        client from now on go to the target, which delivers them after
        admitting it: reliable ones once and in order. Needs a cluster and
        connection recovery on.

        @return: a Deferred that fires with the target's L{ServerInfo} once
            the client is admitted there, or fails with L{MoveFailed} (no
            cluster, client not here, not there within the move timeout,
            10 s) or L{UnknownServer}.
        """


class INetClient(IService, IRmiHost):
    """A game client: joins a server, hears about its groups, messages peers.

    A L{NetClient} provides it. Scripts join with L{connect}; it is also a
    Twisted service: C{startService} (in a C{MultiService}, say) joins the
    server named by the constructor's C{host}, C{port}, C{protocolVersion}
    and C{userData}, and joins again after a failed join or a leave, after
    1 s growing by half each time to a minute (Twisted's C{ClientService}
    policy), until C{stopService}, which leaves and returns a Deferred that
    fires once the connection is closed. A refusal by the game's login
    check, another protocol version or the wrong server key stop the
    retries (the failure is logged); leaving with L{disconnect} does not
    join again.
    """

    events = Attribute("The L{INetClientEvent} provider the client reports to.")
    udpSocketBuffers = Attribute(
        "The L{SocketBuffers} in force on the UDP port once joined (else None).")

    def connect(host: str, port: int, protocolVersion: uuid.UUID | str | bytes,
                userData: bytes = b"", timeout: float = 10.0) -> defer.Deferred[int]:
        """Join the server at C{host}:C{port}.

        C{host} is an IP address or a name; a name's IPv6 and IPv4 addresses
        are both tried (Twisted's C{HostnameEndpoint}), so an IPv6-only
        network, whose DNS gives no IPv4 address, reaches the server too.

        @return: a Deferred that fires exactly once, whatever happens: with
            the local HostID once joined, or with a L{JoinFailed}:
            L{ConnectionRefusedByServer} (its C{reason}, a L{JoinRefusal},
            says why), L{ProtocolVersionMismatch}, L{HandshakeFailed},
            L{JoinTimeout} after C{timeout} seconds, L{JoinCancelled} (also
            a C{CancelledError}) if it is cancelled or L{disconnect} is
            called first, or plain L{JoinFailed} when the connection fails
            or closes before the join. C{onJoinServerComplete} is called
            once, just before it fires. After a failure C{connect} may be
            called again, even from the errback.
        """

    def disconnect(comment: bytes = b"", linger: float = 2.0) -> defer.Deferred[None]:
        """Leave the server; the Deferred returned fires once the connection is closed.

        Reliable messages already sent to peers get up to C{linger} seconds
        to be acknowledged before the client leaves. While still joining,
        the join is given up at once: the Deferred C{connect} returned fails
        with L{JoinCancelled}, and this one has fired already.
        """

    def getLocalHostID() -> int:
        """This client's HostID (L{HOSTID_NONE} until joined)."""

    def getLocalJoinedP2PGroups() -> frozenset[int]:
        """The HostIDs of the groups this client is a member of (a frozenset)."""

    def getGroupMembers(group: int) -> frozenset[int]:
        """The HostIDs of the members of C{group} (a frozenset).

        @raise UnknownHostID: this client is not a member of C{group}.
        """

    def getPeerInfo(peer: int) -> PeerInfo:
        """A L{PeerInfo}: path (relayed or direct), addresses, session statistics.

        @raise UnknownHostID: C{peer} shares no group with this client.
        """

    def getPeerHostIDs() -> list[int]:
        """The HostIDs of every peer (every host sharing a group), sorted."""

    def whenDirect(peer: int) -> defer.Deferred[Address]:
        """A Deferred firing with the direct C{(host, port)} of C{peer} once the
        pair talks directly (at once if it already does).

        It fails with L{HolePunchFailed} when punching gives up or direct P2P
        is not allowed, and can be cancelled. Asking starts punching if it
        had not started yet.
        """

    def forceRelay(peer: int, on: bool = True) -> None:
        """Keep the pair with C{peer} on the relay (C{on}) or let it go direct again."""

    def getServerUdpState() -> ServerUdpState:
        """The L{ServerUdpState} of the UDP path to the server."""

    def getServerTime() -> float | None:
        """The server's clock now, in seconds (its C{reactor.seconds()}), or
        None before the first keepalive answer (well within a second of
        joining) and when not joined.

        It is synchronized from the keepalives' round trips and is within
        L{getServerTimeError} of the server's clock.
        """

    def getServerTimeError() -> float | None:
        """The most, in seconds, L{getServerTime} may be off the server's
        clock now: half the shortest recent round trip to the server, plus
        15 ppm of drift since that sample (None while L{getServerTime} is)."""

    def getServerRtt() -> float | None:
        """The smoothed round trip to the server, in seconds (None before
        the first keepalive answer); the figure the server shows as
        L{ClientInfo.rtt}, and the counterpart of L{PeerInfo.rtt}."""

    def getPublicUdpAddress() -> Address | None:
        """Our UDP address as the server sees it (our NAT mapping), if known."""

    def getLocalUdpAddress() -> Address | None:
        """The C{(host, port)} our UDP socket is bound to, once joined (else None)."""

    def send(targets: Targets, payload: bytes, reliable: bool = True, *,
             mode: DeliveryMode | None = None, priority: Priority = Priority.MEDIUM,
             channel: int = 0) -> None:
        """Send a user message to the server, peers and/or groups.

        A group reaches each of its other members once. Each peer is reached
        through that pair's reliable-UDP session, whichever path carries it.
        C{mode} (a L{DeliveryMode}) overrides C{reliable}; C{UNRELIABLE_LATEST}
        drops, per C{channel}, a message older than one already delivered.

        A send to several hosts reaches all of them or none: if the send
        queue of any of them lacks room, it raises L{SendQueueFull} (whose
        C{hostIDs} names those) and queues the message nowhere.
        """
