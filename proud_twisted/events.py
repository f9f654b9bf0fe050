"""No-op base classes for the event interfaces: override only what you need."""

from zope.interface import implementer

from proud_twisted.interfaces import INetClientEvent, INetServerEvent


class _NetCoreEvents:
    def onWarning(self, errorInfo):
        pass

    def onException(self, failure):
        pass

    def onReceiveUserMessage(self, sender, payload, context):
        pass


@implementer(INetServerEvent)
class NetServerEvents(_NetCoreEvents):
    """Subclass this and hand an instance to L{NetServer}."""

    def onConnectionRequest(self, address, userData):
        return True

    def onClientJoin(self, clientInfo):
        pass

    def onClientLeave(self, clientInfo, reason, comment):
        pass

    def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
        pass

    def onP2PGroupRemoved(self, groupHostID):
        pass

    def onClientHackSuspected(self, hostID, kind):
        pass


@implementer(INetClientEvent)
class NetClientEvents(_NetCoreEvents):
    """Subclass this and hand an instance to L{NetClient}."""

    def onJoinServerComplete(self, result, reply):
        pass

    def onLeaveServer(self, reason):
        pass

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        pass

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        pass

    def onChangeP2PRelayState(self, peerHostID, reason):
        pass

    def onChangeServerUdpState(self, state):
        pass
