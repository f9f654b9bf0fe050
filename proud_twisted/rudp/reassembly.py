"""Receive side: data frames in, whole messages out, within a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from proud_twisted.rudp.config import DeliveryMode, SessionConfig
from proud_twisted.rudp.events import Event, MessageReceived
from proud_twisted.rudp.fifo import Fifo
from proud_twisted.rudp.frames import (
    FT_LATEST, FT_RELIABLE, FT_UNRELIABLE, MASK32, MODE_BITS,
)

ENTRY_OVERHEAD: Final = 48
"""Bookkeeping bytes charged per buffered fragment on top of its payload, so
that many tiny fragments cannot exhaust memory within the byte budget."""
_HALF: Final = 0x80000000
_MODES: Final = tuple(DeliveryMode)
_RELIABLE: Final = DeliveryMode.RELIABLE


class _Partial:
    __slots__ = ("expires", "total", "have", "cost", "pieces")

    def __init__(self, expires: float, total: int) -> None:
        self.expires = expires
        self.total = total
        self.have = 0
        self.cost = 0
        self.pieces: dict[int, bytes] = {}


class Reassembly:
    """Reorders reliable fragments, reassembles messages, drops stale ones.

    Budget: the reliable message being reassembled in order may use up to
    ``maxMessageLength``; out-of-order reliable fragments and partial
    unreliable messages share the rest of ``maxReceiveBufferBytes``.  A
    reliable fragment that does not fit is refused (the caller then leaves its
    packet unacknowledged); a partial unreliable message makes room by
    evicting the oldest others.
    """

    def __init__(self, config: SessionConfig, events: Fifo[Event]) -> None:
        self._events = events
        self._spareLimit = config.maxReceiveBufferBytes - config.maxMessageLength
        self._timeout = config.unreliableReassemblyTimeout
        self._nextSeq = 0
        self._reorder: dict[int, tuple] = {}
        self._reorderBytes = 0
        self._assembly: bytearray | None = None
        self._assemblyTotal = 0
        self._assemblyChannel = 0
        self._partials: OrderedDict[tuple, _Partial] = OrderedDict()
        self._partialBytes = 0
        self._latest: dict[int, int] = {}
        self.delivered = 0

    @property
    def bufferedBytes(self) -> int:
        """Bytes held in reorder and reassembly buffers (with overheads)."""
        assembly = self._assembly
        return self._reorderBytes + self._partialBytes + (len(assembly) if assembly else 0)

    # reliable, ordered

    def reliable(self, ftype: int, channel: int, seq32: int, payload: bytes,
                 total: int, offset: int) -> bool:
        """Take a reliable frame; False if it was refused for lack of room."""
        nxt = self._nextSeq
        diff = (seq32 - nxt) & MASK32
        if diff >= _HALF:
            return True
        if diff == 0:
            reorder = self._reorder
            if ftype == FT_RELIABLE and not reorder:
                self._nextSeq = nxt + 1
                self._assembly = None
                self.delivered += 1
                self._events.append(MessageReceived(payload, _RELIABLE, channel))
                return True
            self._inOrder(ftype, channel, payload, total, offset)
            nxt += 1
            while nxt in reorder:
                ftype, channel, payload, total, offset = reorder.pop(nxt)
                self._reorderBytes -= len(payload) + ENTRY_OVERHEAD
                self._inOrder(ftype, channel, payload, total, offset)
                nxt += 1
            self._nextSeq = nxt
            return True
        seq = nxt + diff
        if seq in self._reorder:
            return True
        cost = len(payload) + ENTRY_OVERHEAD
        if self._reorderBytes + self._partialBytes + cost > self._spareLimit:
            return False
        self._reorder[seq] = (ftype, channel, payload, total, offset)
        self._reorderBytes += cost
        return True

    def _inOrder(self, ftype: int, channel: int, payload: bytes, total: int, offset: int) -> None:
        if ftype == FT_RELIABLE:
            self._assembly = None
            self.delivered += 1
            self._events.append(MessageReceived(payload, _RELIABLE, channel))
            return
        assembly = self._assembly
        if offset == 0:
            assembly = bytearray(payload)
            self._assemblyTotal = total
            self._assemblyChannel = channel
        elif assembly is None or offset != len(assembly) or total != self._assemblyTotal:
            self._assembly = None
            return
        else:
            assembly += payload
        if len(assembly) == total:
            self._assembly = None
            self.delivered += 1
            self._events.append(MessageReceived(bytes(assembly), _RELIABLE, self._assemblyChannel))
        else:
            self._assembly = assembly

    # unreliable

    def unreliable(self, ftype: int, channel: int, seq32: int, payload: bytes,
                   total: int, offset: int, now: float) -> None:
        """Take an unreliable or latest-only frame (never a duplicate)."""
        if ftype == FT_UNRELIABLE:
            self._complete(ftype, channel, seq32, payload)
            return
        if ftype & FT_LATEST == FT_LATEST and self._stale(channel, seq32):
            return
        if ftype == FT_LATEST:
            self._complete(ftype, channel, seq32, payload)
            return
        key = (ftype, channel, seq32)
        partials = self._partials
        partial = partials.get(key)
        if partial is None:
            if len(payload) == total:
                self._complete(ftype, channel, seq32, payload)
                return
            partial = partials[key] = _Partial(now + self._timeout, total)
        elif partial.total != total or offset in partial.pieces:
            return
        cost = len(payload) + ENTRY_OVERHEAD
        while self._reorderBytes + self._partialBytes + cost > self._spareLimit:
            victim = next((k for k in partials if k != key), None)
            if victim is None:
                self._drop(key)
                return
            self._drop(victim)
        partial.pieces[offset] = payload
        partial.have += len(payload)
        partial.cost += cost
        self._partialBytes += cost
        if partial.have >= total:
            self._drop(key)
            pieces = sorted(partial.pieces.items())
            pos = 0
            for off, piece in pieces:
                if off != pos:
                    return
                pos += len(piece)
            if pos == total:
                self._complete(ftype, channel, seq32, b"".join([p for _, p in pieces]))

    def _stale(self, channel: int, seq32: int) -> bool:
        last = self._latest.get(channel)
        return last is not None and not 0 < (seq32 - last) & MASK32 < _HALF

    def _complete(self, ftype: int, channel: int, seq32: int, payload: bytes) -> None:
        if ftype & FT_LATEST == FT_LATEST:
            if self._stale(channel, seq32):
                return
            self._latest[channel] = seq32
        self.delivered += 1
        self._events.append(MessageReceived(payload, _MODES[ftype & MODE_BITS], channel))

    def _drop(self, key: tuple) -> None:
        partial = self._partials.pop(key)
        self._partialBytes -= partial.cost

    def expire(self, now: float) -> None:
        """Forget partial unreliable messages older than the timeout."""
        partials = self._partials
        while partials:
            key, partial = next(iter(partials.items()))
            if partial.expires > now:
                break
            self._drop(key)

    def nextExpiry(self) -> float | None:
        partials = self._partials
        if not partials:
            return None
        for partial in partials.values():
            return partial.expires
        return None
