"""An honest count of reliable messages lost, duplicated or reordered.

Every sender numbers its reliable messages (one sequence for all it sends);
the ledger writes down whom each number was addressed to and who got it.

A pair's reliable session delivers everything once and in order for as long
as the pair exists. When the server parts a pair (its members left each
other's view), what was still in flight may be dropped with the session: the
framework promises nothing more. So, per sender and receiver, the addressed
numbers fall into I{segments}, one per time the pair was together as the
sender saw it, and:

 - a number the receiver never got, with a later number of the same segment
   received, is B{lost} (a hole in a reliable stream);
 - in the segment still open when the run ends (the pair still together),
   every number must arrive: one missing at the end is B{lost} too;
 - the missing tail of a closed segment was B{dropped at parting} (allowed);
 - a number received twice is B{duplicated}; one received after a higher
   number from the same sender is B{reordered}.

Pure: the caller reports sends, partings and receipts as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LedgerCounts:
    """What the ledger found so far."""

    sent: int = 0            # (message, receiver) pairs addressed
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    droppedAtParting: int = 0
    pending: int = 0         # addressed in an open segment, not yet received

    @property
    def broken(self) -> int:
        """Everything a reliable session must never do."""
        return self.lost + self.duplicated + self.reordered


@dataclass
class _Stream:
    """One sender's messages to one receiver."""

    segments: list[list[int]] = field(default_factory=lambda: [[]])
    received: set[int] = field(default_factory=set)
    highest: int = -1


class DeliveryLedger:
    """Reliable messages addressed and received, per sender and receiver."""

    def __init__(self) -> None:
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._duplicated = 0
        self._reordered = 0

    def _stream(self, sender: int, receiver: int) -> _Stream:
        key = (sender, receiver)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        return stream

    def sent(self, sender: int, seq: int, receivers) -> None:
        """C{sender} sent its message C{seq} (increasing) to C{receivers}."""
        for receiver in receivers:
            self._stream(sender, receiver).segments[-1].append(seq)

    def parted(self, sender: int, receiver: int) -> None:
        """C{sender} no longer has C{receiver} as a peer: its session is gone."""
        stream = self._streams.get((sender, receiver))
        if stream is not None and stream.segments[-1]:
            stream.segments.append([])

    def received(self, sender: int, receiver: int, seq: int) -> None:
        """C{receiver} got C{sender}'s message C{seq}."""
        stream = self._stream(sender, receiver)
        if seq in stream.received:
            self._duplicated += 1
            return
        if seq < stream.highest:
            self._reordered += 1
        else:
            stream.highest = seq
        stream.received.add(seq)

    def counts(self, final: bool = False) -> LedgerCounts:
        """The counts now; with C{final}, a number still missing from an
        open segment counts as lost rather than pending."""
        counts = LedgerCounts(duplicated=self._duplicated, reordered=self._reordered)
        for stream in self._streams.values():
            got = stream.received
            counts.received += len(got)
            last = len(stream.segments) - 1
            for index, segment in enumerate(stream.segments):
                counts.sent += len(segment)
                arrived = [seq in got for seq in segment]
                # Everything before the last number that arrived must be there.
                lastArrived = max((n for n, ok in enumerate(arrived) if ok), default=-1)
                counts.lost += arrived[:lastArrived].count(False)
                tail = len(segment) - 1 - lastArrived
                if index < last:
                    counts.droppedAtParting += tail
                elif final:
                    counts.lost += tail
                else:
                    counts.pending += tail
        return counts
