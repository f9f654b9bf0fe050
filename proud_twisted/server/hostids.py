"""HostID allocation: from 1000 up, a released id reused only after a quiet period."""

from collections import deque

from proud_twisted.constants import FIRST_ALLOCATED_HOSTID

DEFAULT_QUIET_PERIOD = 60.0


class HostIDAllocator:
    """Hands out HostIDs for clients and groups (one id space for both).

    A released id goes to the back of a queue and is handed out again only
    once C{quietPeriod} seconds have passed, so a late message addressed to a
    departed host cannot reach its successor.
    """

    def __init__(self, quietPeriod: float = DEFAULT_QUIET_PERIOD,
                 first: int = FIRST_ALLOCATED_HOSTID, last: int = 0xFFFFFFFF) -> None:
        self.quietPeriod = quietPeriod
        self._next = first
        self._last = last
        self._released = deque()
        self._inUse = set()

    def allocate(self, now: float) -> int:
        if self._released and self._released[0][0] <= now:
            hostID = self._released.popleft()[1]
        elif self._next <= self._last:
            hostID = self._next
            self._next += 1
        else:
            raise RuntimeError("no HostID left")
        self._inUse.add(hostID)
        return hostID

    def release(self, hostID: int, now: float) -> None:
        if hostID not in self._inUse:
            return
        self._inUse.discard(hostID)
        self._released.append((now + self.quietPeriod, hostID))

    def __contains__(self, hostID: int) -> bool:
        return hostID in self._inUse
