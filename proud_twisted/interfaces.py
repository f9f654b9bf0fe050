"""The zope interfaces a game implements to hear from server and client.

They mirror ProudNet's ``INetServerEvent`` / ``INetClientEvent`` in Twisted
naming. Subclass :class:`proud_twisted.events.NetServerEvents` or
:class:`proud_twisted.events.NetClientEvents` and override what you need.
"""

from zope.interface import Interface


class INetCoreEvent(Interface):
    """Events both the server and the client report."""

    def onError(errorInfo):
        """Something failed; C{errorInfo} is an L{ErrorInfo}."""

    def onWarning(errorInfo):
        """Something suspicious happened and was handled (nothing broke)."""

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
