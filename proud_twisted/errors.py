"""Exceptions raised by proud_twisted."""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import CancelledError

from proud_twisted.constants import JoinRefusal, ResumeRefusal


class ProudError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(ProudError):
    """Bytes from the network that do not follow the protocol."""


class MessageTooLong(ProtocolError):
    """A message longer than the configured maximum message length."""


class UnknownHostID(ProudError, KeyError):
    """A HostID that names no client or group known here."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class InvalidGroupOperation(ProudError):
    """A group operation that the group's current state does not allow."""


class NotConnected(ProudError):
    """The client has no joined session with a server."""


class JoinFailed(ProudError):
    """Joining the server did not complete."""


class ProtocolVersionMismatch(JoinFailed):
    """Client and server speak different protocol versions."""


_REFUSALS = {
    JoinRefusal.REFUSED_BY_APPLICATION: "refused by the server application",
    JoinRefusal.SERVER_FULL: "the server is full",
    JoinRefusal.LOGIN_ERROR: "the server's login check failed",
    JoinRefusal.LOGIN_TIMEOUT: "the server's login check timed out",
}


class ConnectionRefusedByServer(JoinFailed):
    """The server refused the join: its application said no, it is full, or
    its login check failed or did not answer in time.

    @ivar reason: why, a L{JoinRefusal} member (C{REFUSED_BY_APPLICATION},
        C{SERVER_FULL}, C{LOGIN_ERROR} or C{LOGIN_TIMEOUT}).
    @ivar reply: the bytes the server application answered with.
    """

    def __init__(self, reply: bytes = b"",
                 reason: JoinRefusal = JoinRefusal.REFUSED_BY_APPLICATION) -> None:
        why = _REFUSALS.get(reason, reason.name.lower().replace("_", " "))
        super().__init__(f"server refused the connection: {why} (reply {reply!r})")
        self.reply = reply
        self.reason = reason


class HandshakeFailed(JoinFailed):
    """The secure handshake failed: the server could not prove its identity
    (wrong pinned key, bad signature) or client and server disagree on
    encryption."""


class JoinTimeout(JoinFailed):
    """The server did not complete the join in time."""


class JoinCancelled(JoinFailed, CancelledError):
    """The join was given up here: the Deferred C{connect} returned was
    cancelled, or C{disconnect} was called before the join completed.

    Both a L{JoinFailed} and Twisted's C{CancelledError}, so either check
    finds it.
    """


class SendQueueFull(ProudError):
    """A send would exceed the configured send-queue bound (back-pressure).

    @ivar hostIDs: for a send to several hosts, those whose queue lacked
        room (the message then went to none of them); empty otherwise.
    """

    def __init__(self, message: str = "", hostIDs: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.hostIDs: tuple[int, ...] = tuple(hostIDs)


class HolePunchFailed(ProudError):
    """Hole punching to a peer gave up; the pair stays relayed."""


class ResumeRefused(ProudError):
    """The server refused to resume a session (see L{ResumeRefusal})."""

    def __init__(self, reason: ResumeRefusal, why: str = "") -> None:
        super().__init__(f"resume refused ({reason.name}){': ' + why if why else ''}")
        self.reason = reason


class MoveFailed(ProudError):
    """C{NetServer.moveClient} did not complete: no cluster, an unknown or
    this server as the target, a client not here (or not resumable), or the
    client did not arrive at the target in time."""
