"""The resumable client <-> server stream: counted frames, acknowledgements
and the resend buffer that carries reliable messages across a reconnection
(pure, no I/O).

TCP delivers each connection's frames once and in order, so neither side
numbers them on the wire: both count, after the join, the frames that
L{isCounted} (the same function on both ends). A receiver tells its count
now and then (C{STREAM_ACK}); a sender keeps every counted frame it sent
until the other side has counted it. When the connection drops and the
client resumes its session on a new one, each side says how many frames it
counted (C{RESUME} / C{RESUME_ACCEPTED}) and the other sends again exactly
those after that count, in order: nothing counted is lost, duplicated or
reordered across the gap.

Counted: everything reliable. Not counted: the link's own messages (hello,
join answers, pings, acknowledgements, the resume exchange) and what may
be lost anyway: unreliable messages and the peers' own session frames,
which their end-to-end sessions send again themselves.
"""

from __future__ import annotations

from collections import deque

from proud_twisted.errors import ProtocolError
from proud_twisted.wire import relay
from proud_twisted.wire.messages import MessageType

_UNCOUNTED = frozenset(MessageType.encmapping[name] for name in (
    "HELLO", "JOIN_ACCEPTED", "JOIN_REFUSED", "PING", "PONG", "GOODBYE", "STREAM_ACK",
    "RECOVERY", "RESUME_REQUEST", "RESUME_CHALLENGE", "RESUME", "RESUME_ACCEPTED",
    "RESUME_REFUSED", "SESSION_ENDED", "MOVE_ARRIVE", "MOVE_ACCEPTED",
))
# Where the relay flags byte sits in each data frame.
_FLAGS_AT = {relay.TCP_USER_MESSAGE: 1, relay.TCP_RELAY_REQUEST: 1,
             relay.TCP_RELAY_BUNDLE: 1, relay.TCP_RELAYED: 5}
ACK_EVERY_FRAMES = 32
"""A receiver acknowledges at once after this many counted frames..."""
ACK_EVERY_BYTES = 64 * 1024
"""... or this many bytes of them, so a sender's resend buffer holds about
what is in flight; otherwise within its next acknowledgement tick (the
server's sweep, a second; the client's, half a second)."""


def isCounted(body: bytes) -> bool:
    """Whether the frame body C{body} is counted on the resumable stream."""
    kind = body[0]
    if kind in _UNCOUNTED:
        return False
    at = _FLAGS_AT.get(kind)
    if at is None:
        return True
    if len(body) <= at:
        return False            # truncated: its parser refuses it
    flags = body[at]
    return bool(flags & relay.FLAG_RELIABLE) and not flags & relay.FLAG_SESSION


class ResendOverflow(Exception):
    """More unacknowledged bytes than the stream's bound."""


class ResumableStream:
    """One end's counts of the resumable stream, and its resend buffer.

    @param maxUnacknowledged: bytes of sent, unacknowledged frames held;
        L{sending} raises L{ResendOverflow} past it.
    """

    __slots__ = ("_unacked", "acknowledged", "maxUnacknowledged", "received",
                 "receivedBytes", "reported", "sent", "unacknowledgedBytes")

    def __init__(self, maxUnacknowledged: int) -> None:
        self.maxUnacknowledged = maxUnacknowledged
        self.sent = 0                   # counted frames sent
        self.acknowledged = 0           # ... of which the other side counted
        self.unacknowledgedBytes = 0
        self._unacked: deque | None = None     # made at first use: most idle
        self.received = 0               # counted frames received
        self.reported = 0               # ... of which we told the other side
        self.receivedBytes = 0          # ... bytes since the last report

    # Sending

    def sending(self, body: bytes) -> None:
        """Keep C{body}, a counted frame about to be sent, until acknowledged."""
        size = self.unacknowledgedBytes + len(body)
        if size > self.maxUnacknowledged:
            raise ResendOverflow(f"{size} bytes unacknowledged, more than the "
                                 f"{self.maxUnacknowledged} allowed")
        if self._unacked is None:
            self._unacked = deque()
        self._unacked.append(body)
        self.unacknowledgedBytes = size
        self.sent += 1

    def acknowledge(self, count: int) -> None:
        """The other side has counted C{count} frames: forget those.

        An old count (acknowledgements may cross a resume) changes nothing;
        one beyond what was sent is a L{ProtocolError}."""
        if count > self.sent:
            raise ProtocolError(f"acknowledges {count} frames, only {self.sent} were sent")
        unacked = self._unacked
        while self.acknowledged < count:
            self.unacknowledgedBytes -= len(unacked.popleft())
            self.acknowledged += 1
        if unacked is not None and not unacked:
            self._unacked = None

    def resendAfter(self, count: int) -> list:
        """The frames to send again on a new connection, the other side
        having counted C{count} frames (L{ProtocolError} if it cannot have)."""
        if count < self.acknowledged:
            raise ProtocolError(f"claims {count} frames, {self.acknowledged} were "
                                "acknowledged already")
        self.acknowledge(count)
        return list(self._unacked or ())

    # Receiving

    def receivedFrame(self, size: int) -> bool:
        """Count a frame of C{size} bytes; whether an acknowledgement is due now."""
        self.received += 1
        self.receivedBytes += size
        return (self.received - self.reported >= ACK_EVERY_FRAMES
                or self.receivedBytes >= ACK_EVERY_BYTES)

    def report(self) -> int | None:
        """The count to acknowledge, if there is anything new to tell."""
        if self.received == self.reported:
            return None
        self.reported = self.received
        self.receivedBytes = 0
        return self.received
