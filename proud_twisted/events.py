"""No-op base classes for the event interfaces: override only what you need."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeAlias

from twisted.python.failure import Failure
from zope.interface import implementer

from proud_twisted.constants import ErrorType, HackKind, RelayReason, ServerUdpState
from proud_twisted.info import Address, ClientInfo, ErrorInfo, MessageContext
from proud_twisted.interfaces import INetClientEvent, INetServerEvent

LoginAnswer: TypeAlias = bool | tuple[bool, bytes] | None
"""What C{onConnectionRequest} answers: C{True} or C{None} (accept), C{False}
(refuse) or C{(accepted, replyBytes)}."""


class _NetCoreEvents:
    def onWarning(self, errorInfo: ErrorInfo) -> None:
        pass

    def onException(self, failure: Failure) -> None:
        pass

    def onReceiveUserMessage(self, sender: int, payload: bytes,
                             context: MessageContext) -> None:
        pass

    def onNoRmiProcessed(self, rmiID: int, context: MessageContext) -> None:
        pass


@implementer(INetServerEvent)
class NetServerEvents(_NetCoreEvents):
    """Subclass this and hand an instance to L{NetServer}."""

    def onConnectionRequest(self, address: Address,
                            userData: bytes) -> LoginAnswer | Awaitable[LoginAnswer]:
        return True

    def onClientJoin(self, clientInfo: ClientInfo) -> None:
        pass

    def onClientLeave(self, clientInfo: ClientInfo, reason: ErrorType, comment: bytes) -> None:
        pass

    def onP2PGroupJoinMemberAckComplete(self, groupHostID: int, memberHostID: int,
                                        result: ErrorType) -> None:
        pass

    def onP2PGroupRemoved(self, groupHostID: int) -> None:
        pass

    def onClientHackSuspected(self, hostID: int, kind: HackKind) -> None:
        pass

    def onClientOffline(self, clientInfo: ClientInfo) -> None:
        pass

    def onClientOnline(self, clientInfo: ClientInfo) -> None:
        pass

    def onClientArrived(self, clientInfo: ClientInfo, ticket: bytes) -> None:
        pass


@implementer(INetClientEvent)
class NetClientEvents(_NetCoreEvents):
    """Subclass this and hand an instance to L{NetClient}."""

    def onJoinServerComplete(self, result: ErrorType, reply: bytes) -> None:
        pass

    def onLeaveServer(self, reason: ErrorType) -> None:
        pass

    def onP2PMemberJoin(self, memberHostID: int, groupHostID: int, memberCount: int,
                        message: bytes) -> None:
        pass

    def onP2PMemberLeave(self, memberHostID: int, groupHostID: int, memberCount: int) -> None:
        pass

    def onChangeP2PRelayState(self, peerHostID: int, reason: RelayReason) -> None:
        pass

    def onChangeServerUdpState(self, state: ServerUdpState) -> None:
        pass

    def onServerOffline(self, reason: ErrorType) -> None:
        pass

    def onServerOnline(self) -> None:
        pass

    def onServerMoved(self, serverAddress: tuple[str, int]) -> None:
        pass

    def onP2PMemberOffline(self, memberHostID: int) -> None:
        pass

    def onP2PMemberOnline(self, memberHostID: int) -> None:
        pass
