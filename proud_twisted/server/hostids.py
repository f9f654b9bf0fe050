"""HostID allocation: from 1000 up, a released id reused only after a quiet period."""

from collections import deque

from proud_twisted.constants import FIRST_ALLOCATED_HOSTID

DEFAULT_QUIET_PERIOD = 60.0


class HostIDsExhausted(RuntimeError):
    """No HostID can be handed out now (every one is in use or quiet, or a
    cluster server has no leased block left)."""


class CountingHostIDs:
    """Fresh HostIDs for one process alone: C{first}, C{first + 1}, ... C{last}.

    A source of fresh ids has one method, C{nextID()}: a never used id, or
    C{None} if it has none now. A cluster server uses another source, the
    blocks it leases from Redis (L{proud_twisted.cluster.leases}).
    """

    def __init__(self, first: int = FIRST_ALLOCATED_HOSTID, last: int = 0xFFFFFFFF) -> None:
        self._next = first
        self._last = last

    def nextID(self):
        if self._next > self._last:
            return None
        hostID = self._next
        self._next += 1
        return hostID


class HostIDAllocator:
    """Hands out HostIDs for clients and groups (one id space for both).

    A released id goes to the back of a queue and is handed out again only
    once C{quietPeriod} seconds have passed, so a late message addressed to a
    departed host cannot reach its successor. Fresh ids come from C{source}
    (default: L{CountingHostIDs} from C{first} to C{last}).
    """

    def __init__(self, quietPeriod: float = DEFAULT_QUIET_PERIOD,
                 first: int = FIRST_ALLOCATED_HOSTID, last: int = 0xFFFFFFFF,
                 source=None) -> None:
        self.quietPeriod = quietPeriod
        self.source = CountingHostIDs(first, last) if source is None else source
        self._released = deque()
        self._inUse = set()

    def allocate(self, now: float) -> int:
        if self._released and self._released[0][0] <= now:
            hostID = self._released.popleft()[1]
        else:
            hostID = self.source.nextID()
            if hostID is None:
                raise HostIDsExhausted("no HostID left")
        self._inUse.add(hostID)
        return hostID

    def release(self, hostID: int, now: float) -> None:
        if hostID not in self._inUse:
            return
        self._inUse.discard(hostID)
        self._released.append((now + self.quietPeriod, hostID))

    def __contains__(self, hostID: int) -> bool:
        return hostID in self._inUse
