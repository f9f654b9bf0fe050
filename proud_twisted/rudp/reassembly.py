"""Receive side: data frames in, whole messages out, within a byte budget."""

from __future__ import annotations

from typing import Final

from proud_twisted.rudp.config import DeliveryMode, SessionConfig
from proud_twisted.rudp.events import Event, MessageReceived
from proud_twisted.rudp.fifo import Fifo
from proud_twisted.rudp.frames import (
    FT_LATEST,
    FT_RELIABLE,
    FT_UNRELIABLE,
    MASK32,
    MODE_BITS,
)

# What buffering really costs (tracemalloc, CPython 3.11; the compiled build
# holds a little less), charged on top of the payload so that tiny fragments
# cannot hold several times the budget.  A payload is a bytes object with 33
# bytes of header (a copy: parseDatagram slices bytes, keeping no datagram).
REORDER_OVERHEAD: Final = 224
"""Per out-of-order reliable fragment: payload header, a 64-bit sequence
number key, a 5-tuple, its total and offset ints, a dict slot."""
PIECE_OVERHEAD: Final = 96
"""Per fragment of a partial unreliable message: payload header, offset int,
dict slot."""
PARTIAL_OVERHEAD: Final = 400
"""Per partial unreliable message: its object, piece dict, key, expiry time
and slot in the session's dict."""
_HALF: Final = 0x80000000
_MODES: Final = tuple(DeliveryMode)
_RELIABLE: Final = DeliveryMode.RELIABLE


class ReceiveBudget:
    """Bytes the receive buffers of many sessions may hold together (a
    server's total): pass one to each of them as ``receiveBudget``.

    Sessions charge it what they charge their own ``maxReceiveBufferBytes``
    for out-of-order reliable fragments and partial unreliable messages, and
    over it refuse or evict alike.  The reliable message each reassembles in
    order (at most ``maxMessageLength``) stays outside, its own reserve, so
    that no session can stall another's progress.  Closing a session gives
    its charge back.
    """

    def __init__(self, totalBytes: int) -> None:
        if totalBytes < 0:
            raise ValueError(f"bad totalBytes {totalBytes}")
        self.totalBytes = totalBytes
        self.usedBytes = 0


class _Partial:
    __slots__ = ("cost", "expires", "have", "pieces", "total")

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
    unreliable messages share the rest of ``maxReceiveBufferBytes`` (and the
    shared `ReceiveBudget`, if any), charged with their overheads.  A
    reliable fragment that does not fit is refused (the caller then leaves its
    packet unacknowledged); a partial unreliable message makes room by
    evicting the oldest others, as does one beyond ``maxPartialMessages``.
    """

    def __init__(self, config: SessionConfig, events: Fifo[Event],
                 budget: ReceiveBudget | None = None) -> None:
        self._events = events
        self._budget = budget
        self._spareLimit = config.maxReceiveBufferBytes - config.maxMessageLength
        self._maxPartials = config.maxPartialMessages
        self._timeout = config.unreliableReassemblyTimeout
        self._nextSeq = 0
        self._reorder: dict[int, tuple[int, int, bytes, int, int]] = {}
        self._reorderBytes = 0
        self._assembly: bytearray | None = None
        self._assemblyTotal = 0
        self._assemblyChannel = 0
        # Insertion-ordered, so oldest first (all share one timeout).
        self._partials: dict[int, _Partial] = {}
        self._partialBytes = 0
        self._latest: dict[int, int] = {}
        self.delivered = 0

    @property
    def bufferedBytes(self) -> int:
        """Bytes held in reorder and reassembly buffers (with overheads)."""
        assembly = self._assembly
        return self._reorderBytes + self._partialBytes + (len(assembly) if assembly else 0)

    def close(self) -> None:
        """Drop everything buffered and give its charge back."""
        self._charge(-self._reorderBytes - self._partialBytes)
        self._reorder = {}
        self._reorderBytes = 0
        self._partials = {}
        self._partialBytes = 0
        self._assembly = None

    def _room(self) -> int:
        room = self._spareLimit - self._reorderBytes - self._partialBytes
        budget = self._budget
        if budget is not None:
            shared = budget.totalBytes - budget.usedBytes
            if shared < room:
                return shared
        return room

    def _charge(self, cost: int) -> None:
        """Tell the shared budget of ``cost`` more bytes (or fewer, if negative)."""
        budget = self._budget
        if budget is not None:
            budget.usedBytes += cost

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
            if nxt in reorder:
                freed = 0
                while nxt in reorder:
                    ftype, channel, payload, total, offset = reorder.pop(nxt)
                    freed += len(payload) + REORDER_OVERHEAD
                    self._inOrder(ftype, channel, payload, total, offset)
                    nxt += 1
                self._reorderBytes -= freed
                self._charge(-freed)
            self._nextSeq = nxt
            return True
        seq = nxt + diff
        if seq in self._reorder:
            return True
        cost = len(payload) + REORDER_OVERHEAD
        if cost > self._room():
            return False
        self._reorder[seq] = (ftype, channel, payload, total, offset)
        self._reorderBytes += cost
        self._charge(cost)
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
        key = ftype << 40 | channel << 32 | seq32
        partials = self._partials
        partial = partials.get(key)
        cost = len(payload) + PIECE_OVERHEAD
        if partial is None:
            if len(payload) == total:
                self._complete(ftype, channel, seq32, payload)
                return
            cost += PARTIAL_OVERHEAD
            if not self._makeRoom(cost, key, len(partials) >= self._maxPartials):
                return
            partial = partials[key] = _Partial(now + self._timeout, total)
        elif partial.total != total or offset in partial.pieces:
            return
        elif not self._makeRoom(cost, key, False):
            self._drop(key)
            return
        partial.pieces[offset] = payload
        partial.have += len(payload)
        partial.cost += cost
        self._partialBytes += cost
        self._charge(cost)
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

    def _makeRoom(self, cost: int, keep: int, full: bool) -> bool:
        """Evict the oldest partial messages but ``keep`` until ``cost`` fits
        (and, if ``full``, one more partial is allowed); False if it cannot."""
        need = cost - self._room()
        if need <= 0 and not full:
            return True
        partials = self._partials
        kept = partials.get(keep)
        if need > self._partialBytes - (kept.cost if kept is not None else 0):
            return False
        while need > 0 or full:
            victim = next(k for k in partials if k != keep)
            need -= partials[victim].cost
            self._drop(victim)
            full = False
        return True

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

    def _drop(self, key: int) -> None:
        partial = self._partials.pop(key)
        self._partialBytes -= partial.cost
        self._charge(-partial.cost)

    def expire(self, now: float) -> None:
        """Forget partial unreliable messages older than the timeout."""
        expired = []
        for key, partial in self._partials.items():
            if partial.expires > now:
                break
            expired.append(key)
        for key in expired:
            self._drop(key)

    def nextExpiry(self) -> float | None:
        for partial in self._partials.values():
            return partial.expires
        return None
