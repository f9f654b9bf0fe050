"""The zope interfaces of the game API.

L{INetServer} and L{INetClient} are everything a game may call on a
L{NetServer} and a L{NetClient}; L{INetServerEvent} and L{INetClientEvent}
are what a game implements to hear from them (they mirror ProudNet's
``INetServerEvent`` / ``INetClientEvent`` in Twisted naming: subclass
L{NetServerEvents} or L{NetClientEvents} and override what you need).
"""

from twisted.application.service import IService
from zope.interface import Attribute, Interface

from proud_twisted.rudp.config import Priority


def documentedBy(interface):
    """A class decorator: each method and property of the class without a
    docstring gets that of its namesake in C{interface}, so C{help()} and
    the API reference read the same text as the interface."""
    def document(cls):
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

    def onWarning(errorInfo):
        """Something suspicious happened and was handled (nothing broke);
        C{errorInfo} is an L{ErrorInfo}."""

    def onException(failure):
        """A user callback raised; C{failure} wraps the exception."""

    def onReceiveUserMessage(sender, payload, context):
        """A user message arrived from C{sender} (a HostID).

        @param context: a L{MessageContext} (reliability, relayed or not).
        """


class INetServerEvent(INetCoreEvent):
    """Events of a L{NetServer}."""

    def onConnectionRequest(address, userData):
        """A client asks to join.

        Return C{True} (or C{None}) to accept, C{False} to refuse, or a
        C{(accepted, replyBytes)} tuple to also hand the client reply bytes.
        """

    def onClientJoin(clientInfo):
        """A client joined and has a HostID."""

    def onClientLeave(clientInfo, reason, comment):
        """A client left (C{reason} an L{ErrorType}); it left all its groups."""

    def onP2PGroupJoinMemberAckComplete(groupHostID, memberHostID, result):
        """Every member of the group has processed C{memberHostID}'s join."""

    def onP2PGroupRemoved(groupHostID):
        """A P2P group no longer exists."""

    def onClientHackSuspected(hostID, kind):
        """A client did something no honest client does (C{kind} a L{HackKind}).

        The offending traffic was already dropped; the application decides
        what else to do (for example L{NetServer.closeConnection}).
        """


class INetClientEvent(INetCoreEvent):
    """Events of a L{NetClient}."""

    def onJoinServerComplete(result, reply):
        """The join finished: C{result} is C{ErrorType.OK} or why it failed."""

    def onLeaveServer(reason):
        """The client is no longer connected (C{reason} an L{ErrorType})."""

    def onP2PMemberJoin(memberHostID, groupHostID, memberCount, message):
        """A member (possibly this client) joined a group this client is in."""

    def onP2PMemberLeave(memberHostID, groupHostID, memberCount):
        """A member (possibly this client) left a group this client is in."""

    def onChangeP2PRelayState(peerHostID, reason):
        """The path to a peer changed between relayed and direct."""

    def onChangeServerUdpState(state):
        """The UDP path to the server changed (a L{ServerUdpState})."""


class INetServer(IService):
    """A game server: accepts clients, owns P2P groups, relays between members.

    A L{NetServer} provides it; it is a Twisted service (start it with
    C{startService} or put it in a C{MultiService}).
    """

    events = Attribute("The L{INetServerEvent} provider the server reports to.")
    stats = Attribute("The L{ServerStats} counters, updated as the server runs.")
    identity = Attribute(
        "The server's long-term L{IdentityKey} (None with encryption off); "
        "clients pin C{identity.publicKey()}.")
    udpSocketBuffers = Attribute(
        "The L{SocketBuffers} in force on the UDP port once listening (else None).")
    allowEmptyGroups = Attribute(
        "Whether a P2P group may have no members (settable); when false, a group "
        "whose last member leaves is removed.")

    def getTcpAddress():
        """The bound TCP C{(host, port)}."""

    def getUdpAddress():
        """The bound UDP C{(host, port)}."""

    def createP2PGroup(members=(), message=b"", allowDirectP2P=True):
        """Make a P2P group of C{members} (HostIDs); return its HostID.

        Every member's client hears C{onP2PMemberJoin} for every member
        (itself included), with C{message}; once all have processed it,
        C{onP2PGroupJoinMemberAckComplete} fires. With C{allowDirectP2P}
        false, pairs that meet in this group always talk through the relay
        (the setting of the group that first puts a pair together decides).

        @raise InvalidGroupOperation: a member is unknown.
        """

    def joinP2PGroup(member, group, message=b""):
        """Add C{member} to C{group}; every member hears of it, then the
        ack-complete event fires."""

    def leaveP2PGroup(member, group):
        """Take C{member} out of C{group}; it and the others get C{onP2PMemberLeave}."""

    def destroyP2PGroup(group):
        """Remove C{group}; every member gets C{onP2PMemberLeave} for every member."""

    def destroyEmptyP2PGroups():
        """Remove every group that has no members left."""

    def getClientHostIDs():
        """HostIDs of every joined client, sorted."""

    def getClientInfo(hostID):
        """A L{ClientInfo} snapshot of client C{hostID}.

        @raise UnknownHostID: no such client.
        """

    def getConnectionCount():
        """Open TCP connections, joined or not yet joined."""

    def getP2PGroups():
        """HostIDs of every P2P group."""

    def getP2PGroupInfo(group):
        """A L{P2PGroupInfo} snapshot of C{group}."""

    def getP2PConnectionStats(group):
        """A L{P2PConnectionStats}: how many member pairs of C{group} there
        are, and how many talk directly (both clients report a direct path)."""

    def getJoinedP2PGroups(client):
        """The HostIDs of the groups C{client} is a member of (a frozenset)."""

    def send(targets, payload, reliable=True):
        """Send a user message to clients and/or every member of groups.

        @param targets: a HostID or an iterable of them (clients or groups).
        @raise MessageTooLong: C{payload} is longer than C{maxMessageLength}.
        @raise UnknownHostID: a target is neither a client nor a group.
        """

    def closeConnection(hostID):
        """Disconnect a client: it leaves all its groups and C{onClientLeave}
        fires at once; what was sent to it gets C{closeLinger} seconds to go out."""


class INetClient(Interface):
    """A game client: joins a server, hears about its groups, messages peers.

    A L{NetClient} provides it.
    """

    events = Attribute("The L{INetClientEvent} provider the client reports to.")
    udpSocketBuffers = Attribute(
        "The L{SocketBuffers} in force on the UDP port once joined (else None).")

    def connect(host, port, protocolVersion, userData=b"", timeout=10.0):
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

    def disconnect(comment=b"", linger=2.0):
        """Leave the server; the Deferred returned fires once the connection is closed.

        Reliable messages already sent to peers get up to C{linger} seconds
        to be acknowledged before the client leaves. While still joining,
        the join is given up at once: the Deferred C{connect} returned fails
        with L{JoinCancelled}, and this one has fired already.
        """

    def getLocalHostID():
        """This client's HostID (L{HOSTID_NONE} until joined)."""

    def getLocalJoinedP2PGroups():
        """The HostIDs of the groups this client is a member of (a frozenset)."""

    def getGroupMembers(group):
        """The HostIDs of the members of C{group} (a frozenset).

        @raise UnknownHostID: this client is not a member of C{group}.
        """

    def getPeerInfo(peer):
        """A L{PeerInfo}: path (relayed or direct), addresses, session statistics.

        @raise UnknownHostID: C{peer} shares no group with this client.
        """

    def getPeerHostIDs():
        """The HostIDs of every peer (every host sharing a group), sorted."""

    def whenDirect(peer):
        """A Deferred firing with the direct C{(host, port)} of C{peer} once the
        pair talks directly (at once if it already does).

        It fails with L{HolePunchFailed} when punching gives up or direct P2P
        is not allowed, and can be cancelled. Asking starts punching if it
        had not started yet.
        """

    def forceRelay(peer, on=True):
        """Keep the pair with C{peer} on the relay (C{on}) or let it go direct again."""

    def getServerUdpState():
        """The L{ServerUdpState} of the UDP path to the server."""

    def getPublicUdpAddress():
        """Our UDP address as the server sees it (our NAT mapping), if known."""

    def getLocalUdpAddress():
        """The C{(host, port)} our UDP socket is bound to, once joined (else None)."""

    def send(targets, payload, reliable=True, *, mode=None, priority=Priority.MEDIUM,
             channel=0):
        """Send a user message to the server, peers and/or groups.

        A group reaches each of its other members once. Each peer is reached
        through that pair's reliable-UDP session, whichever path carries it.
        C{mode} (a L{DeliveryMode}) overrides C{reliable}; C{UNRELIABLE_LATEST}
        drops, per C{channel}, a message older than one already delivered.

        A send to several hosts reaches all of them or none: if the send
        queue of any of them lacks room, it raises L{SendQueueFull} (whose
        C{hostIDs} names those) and queues the message nowhere.
        """
