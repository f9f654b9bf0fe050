"""What RMI calls fail with."""

from __future__ import annotations

from proud_twisted.errors import JoinFailed, ProtocolError, ProudError


class RemoteCallFailed(ProudError):
    """A call with a result did not give one: the remote stub raised an
    exception its declaration does not list, has no such method, was too busy,
    or the answer could not be read."""


class RemoteCallTimeout(RemoteCallFailed):
    """No answer came within the proxy's C{timeout}."""


class TooManyPendingCalls(RemoteCallFailed):
    """The proxy already waits for C{maxPendingCalls} answers; the call was not sent."""


class MalformedArguments(ProtocolError):
    """An RMI message whose arguments do not decode as its declaration says."""


class RmiVersionMismatch(JoinFailed):
    """Client and server declare a remote method differently.

    @ivar interface: the name of the declaration.
    @ivar method: the name of the method (or of the ID) they disagree on.
    """

    def __init__(self, interface: str, method: str, detail: str) -> None:
        super().__init__(f"RMI declaration {interface}.{method} differs between client "
                         f"and server: {detail}")
        self.interface = interface
        self.method = method
        self.detail = detail

    def reply(self) -> bytes:
        """How the server's refusal carries it to the client."""
        return f"{self.interface}\0{self.method}\0{self.detail}".encode()

    @classmethod
    def fromReply(cls, reply: bytes) -> RmiVersionMismatch:
        parts = reply.decode("utf-8", "replace").split("\0", 2)
        if len(parts) != 3:
            return cls("?", "?", parts[0])
        return cls(*parts)
