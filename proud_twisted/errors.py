"""Exceptions raised by proud_twisted."""


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


class ConnectionRefusedByServer(JoinFailed):
    """The server application refused the connection request."""

    def __init__(self, reply: bytes = b"") -> None:
        super().__init__(f"server refused the connection (reply {reply!r})")
        self.reply = reply


class HandshakeFailed(JoinFailed):
    """The secure handshake failed: the server could not prove its identity
    (wrong pinned key, bad signature) or client and server disagree on
    encryption."""


class JoinTimeout(JoinFailed):
    """The server did not complete the join in time."""


class SendQueueFull(ProudError):
    """A send would exceed the configured send-queue bound (back-pressure)."""


class HolePunchFailed(ProudError):
    """Hole punching to a peer gave up; the pair stays relayed."""
