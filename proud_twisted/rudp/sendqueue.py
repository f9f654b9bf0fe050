"""Send side: prioritised message queues, fragmentation, retransmissions."""

from __future__ import annotations

from typing import Final

from proud_twisted.errors import SendQueueFull
from proud_twisted.rudp.config import DeliveryMode, SessionConfig
from proud_twisted.rudp.fifo import Fifo
from proud_twisted.rudp.frames import (
    FRAGMENT_OVERHEAD,
    FT_RELIABLE,
    FT_RELIABLE_FRAGMENT,
    MASK32,
    PING,
    UNRELIABLE_OVERHEAD,
    WHOLE_OVERHEAD,
    headerSize,
    packFragment,
    packUnreliable,
    packWhole,
)

MIN_FRAGMENT: Final = 128
"""Smallest fragment worth cutting to fill the end of a datagram (less when a
whole datagram holds less)."""

_RELIABLE: Final = int(DeliveryMode.RELIABLE)
_UNRELIABLE: Final = int(DeliveryMode.UNRELIABLE)
_LATEST: Final = int(DeliveryMode.UNRELIABLE_LATEST)


class SentFrame:
    """A reliable frame kept, encoded, until acknowledged."""

    __slots__ = ("acked", "frame", "lastPn", "queued", "size")

    def __init__(self, frame: bytes, size: int, pn: int) -> None:
        self.frame = frame
        self.size = size
        self.acked = False
        self.lastPn = pn
        self.queued = False


class _Message:
    __slots__ = ("cancelled", "channel", "mode", "offset", "payload", "priority", "seq")

    def __init__(self, payload: bytes, mode: int, channel: int, seq: int,
                 priority: int = 0) -> None:
        self.payload = payload
        self.mode = mode
        self.channel = channel
        self.seq = seq
        self.offset = 0
        self.cancelled = False
        self.priority = priority


class SendQueue:
    """Messages waiting to go out, and reliable frames waiting to go again.

    `fill` packs a datagram: retransmissions first, then new messages by
    priority (FIFO within one priority).  A message whose first fragment has
    gone out is finished before any other message starts, so fragments of
    different messages never interleave and reliable sequence numbers follow
    transmission order.  A queued latest-only message that has not started is
    replaced by a newer one on the same channel (in its place in the queue
    when the priority is the same).
    """

    def __init__(self, config: SessionConfig) -> None:
        self._maxBytes = config.maxSendQueueBytes
        # Room for data in an otherwise empty datagram, less the PING that
        # may close it (see ReliableSession.datagramsToSend).
        self._maxFrame = config.mtu - headerSize(config.checksum) - len(PING)
        self._minFragment = min(MIN_FRAGMENT, self._maxFrame - FRAGMENT_OVERHEAD)
        self._queues: tuple[Fifo[_Message], ...] = (Fifo(), Fifo(), Fifo())
        self._current: _Message | None = None
        self._retransmit: Fifo[SentFrame] = Fifo()
        self._nextReliableSeq = 0
        self._nextUnreliableId = 0
        self._latestSeq: dict[int, int] = {}
        self._latestQueued: dict[int, _Message] = {}
        """Per channel, the latest-only message not yet started."""
        self.queuedBytes = 0
        self.unackedBytes = 0
        self.length = 0
        self.retransmissions = 0
        self._cancelled = 0

    def fits(self, size: int, mode: int, channel: int) -> bool:
        """Whether `push` would take a message of ``size`` bytes now (changes nothing)."""
        old = self._latestQueued.get(channel) if mode == _LATEST else None
        freed = len(old.payload) if old is not None else 0
        return self.queuedBytes + self.unackedBytes - freed + size <= self._maxBytes

    def push(self, payload: bytes, mode: int, priority: int, channel: int) -> None:
        """Queue a message, or raise `SendQueueFull`."""
        latest = mode == _LATEST
        old = self._latestQueued.get(channel) if latest else None
        freed = len(old.payload) if old is not None else 0
        total = self.queuedBytes + self.unackedBytes - freed + len(payload)
        if total > self._maxBytes:
            raise SendQueueFull(
                f"send queue would hold {total} bytes (max {self._maxBytes})")
        self.queuedBytes += len(payload) - freed
        if not latest:
            self._queues[priority].append(_Message(payload, mode, channel, 0))
            self.length += 1
            return
        seq = self._latestSeq.get(channel, 0)
        self._latestSeq[channel] = (seq + 1) & MASK32
        if old is not None and old.priority == priority:
            old.payload = payload
            old.seq = seq
            return
        if old is not None:
            old.cancelled = True
            old.payload = b""
            self.length -= 1
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled > self.length:
                self._compact()
        message = self._latestQueued[channel] = _Message(payload, mode, channel, seq, priority)
        self._queues[priority].append(message)
        self.length += 1

    def _compact(self) -> None:
        """Drop cancelled messages from the queues."""
        self._queues = tuple(Fifo([m for m in q if not m.cancelled]) for q in self._queues)
        self._cancelled = 0

    def hasData(self) -> bool:
        if self.length:
            return True
        retransmit = self._retransmit
        while retransmit and retransmit.first().acked:
            retransmit.popleft().queued = False
        return bool(retransmit)

    def requeue(self, frame: SentFrame) -> None:
        """Send ``frame`` again (unless acknowledged or already waiting)."""
        if not frame.acked and not frame.queued:
            frame.queued = True
            self._retransmit.append(frame)

    def acknowledge(self, frame: SentFrame) -> None:
        if not frame.acked:
            frame.acked = True
            self.unackedBytes -= frame.size

    def fill(self, parts: list, room: int, pn: int) -> tuple[int, list]:
        """Append frames of at most ``room`` bytes in all to ``parts`` for packet
        ``pn``; return the bytes used and the reliable frames carried."""
        used = 0
        frames: list[SentFrame] = []
        retransmit = self._retransmit
        while retransmit:
            frame = retransmit.first()
            if not frame.acked:
                n = len(frame.frame)
                if n > room - used:
                    return used, frames
                frame.lastPn = pn
                parts.append(frame.frame)
                frames.append(frame)
                used += n
                self.retransmissions += 1
            retransmit.popleft()
            frame.queued = False
        queues = self._queues
        while True:
            message = self._current
            if message is None:
                for queue in queues:
                    if queue:
                        break
                else:
                    return used, frames
                message = queue.first()
                if message.cancelled:
                    queue.popleft()
                    self._cancelled -= 1
                    continue
            payload = message.payload
            offset = message.offset
            remaining = len(payload) - offset
            avail = room - used
            mode = message.mode
            whole = False
            if offset == 0:
                overhead = UNRELIABLE_OVERHEAD if mode == _UNRELIABLE else WHOLE_OVERHEAD
                whole = remaining + overhead <= avail
                if not whole and remaining + overhead <= self._maxFrame:
                    return used, frames
            n = remaining
            if not whole:
                n = min(remaining, avail - FRAGMENT_OVERHEAD)
                if n < remaining and n < self._minFragment:
                    return used, frames
            seq = message.seq
            if offset == 0:
                queue.popleft()
                if mode == _LATEST and self._latestQueued.get(message.channel) is message:
                    del self._latestQueued[message.channel]
            if mode == _RELIABLE:
                seq = self._nextReliableSeq
                self._nextReliableSeq = seq + 1
            elif mode == _UNRELIABLE and offset == 0 and not whole:
                seq = message.seq = self._nextUnreliableId
                self._nextUnreliableId = (seq + 1) & MASK32
            if not whole:
                data = packFragment(FT_RELIABLE_FRAGMENT | mode, message.channel, seq,
                                    payload[offset:offset + n], len(payload), offset)
            elif mode == _UNRELIABLE:
                data = packUnreliable(message.channel, payload)
            else:
                data = packWhole(FT_RELIABLE | mode, message.channel, seq, payload)
            if mode == _RELIABLE:
                frames.append(SentFrame(data, n, pn))
                self.unackedBytes += n
            parts.append(data)
            used += len(data)
            self.queuedBytes -= n
            if n == remaining:
                message.offset = len(payload)
                self._current = None
                self.length -= 1
            else:
                message.offset = offset + n
                self._current = message

    def clear(self) -> None:
        """Forget everything queued or unacknowledged."""
        for queue in self._queues:
            queue.clear()
        self._current = None
        self._retransmit.clear()
        self._latestQueued.clear()
        self.queuedBytes = self.unackedBytes = self.length = self._cancelled = 0
