"""`ReliableSession`: one end of a reliable-UDP conversation, without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proud_twisted.errors import MessageTooLong, ProtocolError, ProudError
from proud_twisted.rudp.acks import ACK_EVERY, ReceivedPackets
from proud_twisted.rudp.config import DeliveryMode, Priority, SessionConfig
from proud_twisted.rudp.congestion import CongestionWindow
from proud_twisted.rudp.events import Event, PathAlive, PathDead
from proud_twisted.rudp.fifo import Fifo
from proud_twisted.rudp.frames import (
    ACK_DELAY_UNIT,
    MASK32,
    MODE_BITS,
    PING,
    AckFrame,
    ackRanges,
    encodeDatagram,
    expand,
    headerSize,
    parseDatagram,
)
from proud_twisted.rudp.reassembly import Reassembly, ReceiveBudget
from proud_twisted.rudp.recovery import SentPacket, SentPackets
from proud_twisted.rudp.rtt import RttEstimator
from proud_twisted.rudp.sendqueue import SendQueue

LOSS_RATE_WEIGHT: Final = 1 / 32
"""Weight of each resolved datagram in the smoothed `SessionStats.lossRate`."""
_LOSS_RATE_KEEP: Final = 1 - LOSS_RATE_WEIGHT
PERSISTENT_CONGESTION_PTOS: Final = 3
"""Probe timeouts in a row that collapse the window (RFC 9002 7.6)."""
_MIN_ROOM: Final = 32
"""Congestion-window room (bytes) below which no data datagram is started."""
_MODES: Final = frozenset(DeliveryMode)
_PRIORITIES: Final = frozenset(Priority)


class SessionClosed(ProudError):
    """The session was closed; it sends nothing more."""


@dataclass
class SessionStats:
    """A snapshot of a session's counters (times in seconds)."""

    srtt: float | None
    """Smoothed RTT; None until the first sample."""
    rttvar: float | None
    rto: float
    lossRate: float
    """Fraction of ack-eliciting datagrams declared lost, an exponentially
    weighted average over recently resolved datagrams (weight 1/32 each)."""
    retransmissions: int
    """Reliable frames sent again."""
    bytesInFlight: int
    window: int
    """Congestion window in bytes."""
    sendQueueLength: int
    sendQueueBytes: int
    datagramsSent: int
    datagramsReceived: int
    messagesDelivered: int
    datagramsLost: int = 0
    receiveBufferBytes: int = 0
    """Bytes held in reorder and reassembly buffers, with their overheads."""


class ReliableSession:
    """Reliable, unreliable and latest-only messages over any datagram path.

    Sans-I/O: feed it datagrams (`receiveDatagram`), take datagrams from it
    (`datagramsToSend`), call `handleTimeout` at `nextTimeout`, and read
    `nextEvent` until None.  It knows nothing about addresses; tell it when
    the carrier changed with `pathChanged`.  Sessions given one
    ``receiveBudget`` cap the sum of their receive buffers (see `ReceiveBudget`).
    """

    def __init__(self, config: SessionConfig = SessionConfig(), now: float = 0.0,
                 receiveBudget: ReceiveBudget | None = None) -> None:
        self._config = config
        self._mtu = config.mtu
        self._maxMessageLength = config.maxMessageLength
        self._checksum = config.checksum
        self._headerSize = headerSize(config.checksum)
        self._events: Fifo[Event] = Fifo()
        self._rtt = RttEstimator(config)
        self._cc = CongestionWindow(config)
        self._sent = SentPackets()
        self._received = ReceivedPackets(config.delayedAckTime)
        self._queue = SendQueue(config)
        self._reassembly = Reassembly(config, self._events, receiveBudget)
        self._nextPn = 0
        self._lossTime: float | None = None
        self._ptoCount = 0
        self._probe = False
        self._progressTime = now
        self._dead = False
        self._closed = False
        self._lossRate = 0.0
        self._datagramsSent = 0
        self._datagramsReceived = 0
        self._datagramsLost = 0

    # application side

    def send(self, payload: bytes | bytearray | memoryview, now: float,
             mode: int = DeliveryMode.RELIABLE, priority: int = Priority.MEDIUM,
             channel: int = 0) -> None:
        """Queue a message.

        Reliable messages are delivered exactly once, in the order they are
        first transmitted: in `send` order among messages of one priority,
        while a higher priority may overtake lower ones that have not started.
        Raises `MessageTooLong`, `SendQueueFull` (back-pressure: try again
        after acknowledgements drain the queue) or `SessionClosed`.
        """
        if self._closed:
            raise SessionClosed("send on a closed session")
        data = payload if type(payload) is bytes else bytes(payload)
        if len(data) > self._maxMessageLength:
            raise MessageTooLong(
                f"message of {len(data)} bytes exceeds {self._maxMessageLength}")
        if mode not in _MODES or priority not in _PRIORITIES or not 0 <= channel <= 255:
            raise ValueError(f"bad mode {mode!r}, priority {priority!r} or channel {channel!r}")
        self._queue.push(data, mode, priority, channel)

    def canSend(self, size: int, mode: int = DeliveryMode.RELIABLE, channel: int = 0) -> bool:
        """Whether `send` would now find room for a message of ``size`` bytes
        (changes nothing): lets a caller check several sessions before it
        queues a message to all of them."""
        return not self._closed and self._queue.fits(size, mode, channel)

    def nextEvent(self) -> Event | None:
        events = self._events
        return events.popleft() if events else None

    # network side

    def receiveDatagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Take a datagram from the peer.  Raises `ProtocolError` on malformed
        data, before changing any state."""
        if self._closed:
            return
        raw = data if isinstance(data, bytes) else bytes(data)
        pn32, ack, elicits, frames = parseDatagram(raw, self._maxMessageLength, self._checksum)
        received = self._received
        expected = received.largest + 1
        pn = expected + ((((pn32 - expected) & MASK32) ^ 0x80000000) - 0x80000000)
        if pn < 0:
            raise ProtocolError(f"packet number {pn32} before the first packet")
        if ack is not None:
            largest, ackDelay, ranges = self._ackRanges(ack)
        self._datagramsReceived += 1
        if ack is not None:
            self._onAck(largest, ackDelay, ranges, now)
        if not received.isNew(pn):
            return
        accepted = True
        reassembly = self._reassembly
        for ftype, channel, seq, payload, total, offset in frames:
            if ftype & MODE_BITS:
                reassembly.unreliable(ftype, channel, seq, payload, total, offset, now)
            elif not reassembly.reliable(ftype, channel, seq, payload, total, offset):
                accepted = False
        received.record(pn, now, elicits, accepted)

    def datagramsToSend(self, now: float) -> list[bytes]:
        """Every datagram that may go out now, within the congestion window."""
        if self._closed:
            return []
        out = []
        queue = self._queue
        received = self._received
        sent = self._sent
        mtu = self._mtu
        window = int(self._cc.window)
        while True:
            room = window - sent.bytesInFlight
            if room > mtu:
                room = mtu
            sendData = room >= _MIN_ROOM and (queue.length or self._probe or queue.hasData())
            if not sendData:
                deadline = received.ackDeadline
                if not received.ackPending or deadline is None or deadline > now:
                    break
            pn = self._nextPn
            parts = []
            size = self._headerSize
            if received.ackPending:
                ack = received.buildAck(now)
                parts.append(ack)
                size += len(ack)
            used = 0
            if sendData:
                # One byte kept for a PING, which asks the peer to acknowledge
                # at once: on a probe, and when this datagram fills the window
                # while more data waits (the sender is blocked until an ACK).
                used, frames = queue.fill(parts, room - size - 1, pn)
                if not used:
                    if self._probe:
                        parts.append(PING)
                        used = 1
                        frames = []
                elif (window - sent.bytesInFlight - size - used < mtu
                        and (queue.length or queue.hasData())):
                    parts.append(PING)
                    used += 1
            if not parts:
                break
            size += used
            self._nextPn = pn + 1
            self._datagramsSent += 1
            out.append(encodeDatagram(pn, parts, self._checksum))
            if used:
                if not sent.bytesInFlight and not self._ptoCount:
                    self._progressTime = now
                sent.add(pn, now, size, frames)
                self._probe = False
        return out

    @property
    def dataReady(self) -> bool:
        """Whether `datagramsToSend` would now send data, not only an ACK."""
        return (not self._closed
                and self._cc.window - self._sent.bytesInFlight >= _MIN_ROOM
                and (self._probe or self._queue.hasData()))

    def nextTimeout(self) -> float | None:
        """When `handleTimeout` (then `datagramsToSend`) must next run."""
        if self._closed:
            return None
        deadline = None
        received = self._received
        if received.ackPending:
            deadline = received.ackDeadline
        if len(self._sent) or self._ptoCount:
            if self._lossTime is not None:
                timer = self._lossTime
            else:
                timer = self._sent.lastSentTime + self._probeTimeout()
            if not self._dead:
                timer = min(timer, self._progressTime + self._config.deadPathTimeout)
            if deadline is None or timer < deadline:
                deadline = timer
        expiry = self._reassembly.nextExpiry()
        if expiry is not None and (deadline is None or expiry < deadline):
            deadline = expiry
        return deadline

    def handleTimeout(self, now: float) -> None:
        if self._closed:
            return
        sent = self._sent
        if self._lossTime is not None:
            if now >= self._lossTime:
                self._detectLosses(now)
        elif (len(sent) or self._ptoCount) and now >= sent.lastSentTime + self._probeTimeout():
            self._onProbeTimeout(now)
        if (not self._dead and (len(sent) or self._ptoCount)
                and now >= self._progressTime + self._config.deadPathTimeout):
            self._dead = True
            self._events.append(PathDead(self._progressTime))
        self._reassembly.expire(now)

    def pathChanged(self, now: float) -> None:
        """The datagrams now travel another way: resend everything in flight at
        once and start RTT and window over; stream state is kept."""
        if self._closed:
            return
        self._requeue(self._sent.clear())
        self._rtt.reset()
        self._cc.reset()
        self._lossTime = None
        self._ptoCount = 0
        self._probe = False
        self._progressTime = now
        self._received.acknowledgeSoon(now)

    def close(self) -> None:
        """Drop all state (giving its receive buffers' charge back to the
        ``receiveBudget``); the session sends and schedules nothing more."""
        self._closed = True
        self._queue.clear()
        self._sent.clear()
        self._events.clear()
        self._reassembly.close()
        self._received = ReceivedPackets(self._config.delayedAckTime)
        self._lossTime = None
        self._ptoCount = 0
        self._probe = False

    # properties

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sendQueueLength(self) -> int:
        """Messages queued and not yet completely sent."""
        return self._queue.length

    @property
    def sendQueueBytes(self) -> int:
        """Bytes queued and not yet sent, plus reliable bytes not yet acknowledged."""
        return self._queue.queuedBytes + self._queue.unackedBytes

    @property
    def stats(self) -> SessionStats:
        rtt = self._rtt
        return SessionStats(
            srtt=rtt.srtt, rttvar=rtt.rttvar, rto=rtt.rto, lossRate=self._lossRate,
            retransmissions=self._queue.retransmissions,
            bytesInFlight=self._sent.bytesInFlight, window=int(self._cc.window),
            sendQueueLength=self.sendQueueLength, sendQueueBytes=self.sendQueueBytes,
            datagramsSent=self._datagramsSent, datagramsReceived=self._datagramsReceived,
            messagesDelivered=self._reassembly.delivered,
            datagramsLost=self._datagramsLost,
            receiveBufferBytes=self._reassembly.bufferedBytes,
        )

    # acknowledgements and loss

    def _ackRanges(self, ack: AckFrame) -> tuple[int, float, list[tuple[int, int]]]:
        largest32, delay, first, gaps = ack
        nextPn = self._nextPn
        largest = expand(largest32, nextPn - 1)
        if not 0 <= largest < nextPn:
            raise ProtocolError(f"ACK of packet {largest32} that was never sent")
        ranges = ackRanges(largest, first, gaps)
        if ranges[-1][0] < 0:
            raise ProtocolError("ACK range below the first packet number")
        return largest, delay * ACK_DELAY_UNIT, ranges

    def _onAck(self, largest: int, ackDelay: float, ranges: list, now: float) -> None:
        acked = self._sent.onAck(ranges)
        if not acked:
            return
        self._progressTime = now
        self._ptoCount = 0
        if self._dead:
            self._dead = False
            self._events.append(PathAlive())
        top = acked[0]
        if top.pn == largest:
            self._rtt.sample(now - top.timeSent, ackDelay)
        onAcked = self._cc.onAcked
        acknowledge = self._queue.acknowledge
        for packet in acked:
            onAcked(packet.size, packet.timeSent)
            for frame in packet.frames:
                acknowledge(frame)
        count = len(acked)
        self._lossRate *= _LOSS_RATE_KEEP if count == 1 else _LOSS_RATE_KEEP ** count
        self._detectLosses(now)

    def _detectLosses(self, now: float) -> None:
        if not len(self._sent):
            self._lossTime = None
            return
        lost, self._lossTime = self._sent.detectLosses(now, self._rtt.lossDelay())
        if lost:
            self._declareLost(lost)
            onLost = self._cc.onLost
            lossRate = self._lossRate
            for packet in lost:
                onLost(packet.timeSent, now, lossRate)

    def _declareLost(self, lost: list[SentPacket]) -> None:
        self._datagramsLost += len(lost)
        rate = self._lossRate
        for _ in lost:
            rate = rate * _LOSS_RATE_KEEP + LOSS_RATE_WEIGHT
        self._lossRate = rate
        self._requeue(lost)

    def _requeue(self, packets: list[SentPacket]) -> None:
        requeue = self._queue.requeue
        for packet in packets:
            pn = packet.pn
            for frame in packet.frames:
                if frame.lastPn == pn:
                    requeue(frame)

    def _probeTimeout(self) -> float:
        """How long after the last ack-eliciting datagram the probe timer
        fires.  The peer acknowledges at once when ACK_EVERY datagrams wait
        (or one came out of order), so its delay counts only below that."""
        return self._rtt.backedOff(self._ptoCount, len(self._sent) < ACK_EVERY)

    def _onProbeTimeout(self, now: float) -> None:
        """Nothing acknowledged for a (backed-off) RTO: resend the oldest two
        packets' data; from the third timeout in a row (RFC 9002's persistent
        congestion), collapse the window and resend everything in flight."""
        self._ptoCount += 1
        self._lossTime = None
        if self._ptoCount >= PERSISTENT_CONGESTION_PTOS:
            self._cc.onPersistentCongestion(now)
            self._declareLost(self._sent.clear())
        else:
            self._declareLost(self._sent.oldest(2))
        self._probe = True
