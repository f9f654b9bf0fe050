"""Delivery modes, priorities and the tunables of a reliable UDP session."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeliveryMode(enum.IntEnum):
    """How a message travels."""

    RELIABLE = 0
    """Exactly once, in order (per priority, see `ReliableSession.send`)."""
    UNRELIABLE = 1
    """May be lost; never duplicated, never damaged."""
    UNRELIABLE_LATEST = 2
    """Like UNRELIABLE, but per channel an older message is dropped once a
    newer one has been delivered (or replaced while still queued)."""


class Priority(enum.IntEnum):
    """Send order among queued messages: HIGH goes first."""

    HIGH = 0
    MEDIUM = 1
    LOW = 2


MAX_CHANNEL = 255
"""The highest channel: one byte in a data frame (see `frames`)."""


def deliveryMode(reliable: bool, mode: DeliveryMode | None) -> DeliveryMode:
    """What a ``send(..., reliable, mode=...)`` asks for: ``mode`` if given."""
    if mode is not None:
        return mode
    return DeliveryMode.RELIABLE if reliable else DeliveryMode.UNRELIABLE


def checkedSendOptions(mode: int, priority: int,
                       channel: int) -> tuple[DeliveryMode, Priority]:
    """The ``mode`` and ``priority`` of a send as enums; ValueError if either,
    or ``channel`` (0 to `MAX_CHANNEL`), is not one."""
    if type(channel) is not int or not 0 <= channel <= MAX_CHANNEL:
        raise ValueError(f"channel {channel!r} is not an int from 0 to {MAX_CHANNEL}")
    # (the enums themselves without a lookup: this runs on every send)
    return (mode if type(mode) is DeliveryMode else DeliveryMode(mode),
            priority if type(priority) is Priority else Priority(priority))


@dataclass(frozen=True)
class SessionConfig:
    """Tunables of a `ReliableSession`; times in seconds, sizes in bytes."""

    mtu: int = 1200
    """Largest datagram `datagramsToSend` ever returns."""
    maxMessageLength: int = 65536
    """Longest payload `send` accepts (and a peer may send us)."""
    maxSendQueueBytes: int = 4 * 1024 * 1024
    """Bound on queued-but-unsent plus sent-but-unacknowledged bytes."""
    maxReceiveBufferBytes: int = 1024 * 1024
    """Bound on reorder and reassembly buffers, charged with their
    bookkeeping overheads.  ``maxMessageLength`` of it is reserved for the
    reliable message being reassembled in order."""
    maxPartialMessages: int = 256
    """Partial unreliable messages held at once; one more evicts the oldest.
    A peer has at most ``maxWindow / mtu`` (about 218) datagrams in flight, so
    no more messages can be arriving at once; tiny hostile fragments then
    hold at most 256 x ~550 bytes (about 140 KB) of bookkeeping."""
    initialRto: float = 0.2
    minRto: float = 0.001
    """Floor of the retransmission timer: the clock granularity, as in QUIC
    (the timer is never below SRTT + 1 ms anyway).  SRTT + 4 RTTVAR already
    keeps spurious retransmissions rare, and a lost acknowledgement on a
    fast path costs no more than a millisecond of stall."""
    maxRto: float = 2.0
    delayedAckTime: float = 0.005
    """How long an acknowledgement may wait for data to ride on."""
    deadPathTimeout: float = 5.0
    """Nothing acknowledged for this long while data is outstanding: PathDead."""
    initialWindow: int = 16 * 1200
    minWindow: int = 2 * 1200
    maxWindow: int = 256 * 1024
    """Most bytes in flight: 20 Mbit/s at a 100 ms RTT, far above a game's
    needs (ENet allows 64 KiB).  A larger window only queues in socket
    buffers (Linux gives a UDP socket about 208 KiB) and overflows them."""
    unreliableReassemblyTimeout: float = 1.0
    """A partly received unreliable message is forgotten after this long."""
    checksum: bool = True
    """Send a CRC-32 in every datagram and refuse datagrams without one.
    Turn off where an AEAD layer already authenticates each datagram."""

    def __post_init__(self) -> None:
        if not 128 <= self.mtu <= 65507:
            raise ValueError(f"mtu {self.mtu} outside 128..65507")
        if not 0 <= self.maxMessageLength < 2**32:
            raise ValueError(f"bad maxMessageLength {self.maxMessageLength}")
        if self.maxReceiveBufferBytes < self.maxMessageLength + self.mtu:
            raise ValueError("maxReceiveBufferBytes must exceed maxMessageLength + mtu")
        if not 0 < self.minRto <= self.initialRto <= self.maxRto:
            raise ValueError("need 0 < minRto <= initialRto <= maxRto")
        if not self.mtu <= self.minWindow <= self.initialWindow <= self.maxWindow:
            raise ValueError("need mtu <= minWindow <= initialWindow <= maxWindow")
        if self.delayedAckTime < 0 or self.deadPathTimeout <= 0:
            raise ValueError("delayedAckTime must be >= 0 and deadPathTimeout > 0")
        if self.maxPartialMessages < 1:
            raise ValueError(f"bad maxPartialMessages {self.maxPartialMessages}")
        if self.unreliableReassemblyTimeout <= 0:
            raise ValueError("unreliableReassemblyTimeout must be > 0")
