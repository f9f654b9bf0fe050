"""HostID blocks leased from Redis: a source of fresh HostIDs (pure).

Block C{n} holds the HostIDs C{1000 + n * size} to C{1000 + (n + 1) * size - 1}.
A server leases a block by incrementing one Redis counter (C{INCRBY}, atomic),
so no two servers get the same block, and a HostID names one client or group
in the whole cluster. The server's L{HostIDAllocator} takes fresh ids from
L{LeasedBlocks} and reuses its released ones after the quiet period, as
without a cluster.

C{DEFAULT_BLOCK_SIZE} is 1,024: a busy server (10,000 joins a minute, about
170 a second) leases a block every 6 seconds, one Redis round trip; the 32-bit
id space holds some 4 million blocks, 400 days of that server joining
without a pause. A new block is asked for when fewer than a quarter of one
(256 ids, a second and a half of that storm) are left.
"""

from __future__ import annotations

from collections import deque

from proud_twisted.constants import FIRST_ALLOCATED_HOSTID

DEFAULT_BLOCK_SIZE = 1024
LAST_HOSTID = 0xFFFFFFFF


def blockOf(hostID: int, size: int = DEFAULT_BLOCK_SIZE) -> int | None:
    """The index of the block holding C{hostID}, or None below the first one."""
    if hostID < FIRST_ALLOCATED_HOSTID:
        return None
    return (hostID - FIRST_ALLOCATED_HOSTID) // size


def blockRange(block: int, size: int = DEFAULT_BLOCK_SIZE) -> range:
    first = FIRST_ALLOCATED_HOSTID + block * size
    return range(first, min(first + size, LAST_HOSTID + 1))


class LeasedBlocks:
    """The fresh HostIDs of the blocks this server leased.

    @ivar blocks: the indices of every block leased, oldest first.
    """

    def __init__(self, size: int = DEFAULT_BLOCK_SIZE, onLow=None) -> None:
        if size < 4:
            raise ValueError("HostID blocks of fewer than 4 ids")
        self.size = size
        self.lowWater = size // 4
        self.blocks: list[int] = []
        self._fresh: deque[range] = deque()
        self._left = 0
        self.onLow = onLow
        """Called with no argument when a handed-out id leaves a quarter of
        a block or less: time to lease another."""

    def add(self, block: int) -> None:
        """A newly leased block: its ids become available."""
        ids = blockRange(block, self.size)
        if not ids or block in self.blocks:
            raise ValueError(f"block {block} is empty or leased already")
        self.blocks.append(block)
        self._fresh.append(ids)
        self._left += len(ids)

    def left(self) -> int:
        return self._left

    def wantsBlock(self) -> bool:
        """Whether to lease another block now (at most a quarter of one left)."""
        return self._left <= self.lowWater

    def nextID(self) -> int | None:
        """A fresh HostID, or None if every leased one was handed out."""
        if not self._fresh:
            return None
        ids = self._fresh[0]
        hostID = ids[0]
        if len(ids) == 1:
            self._fresh.popleft()
        else:
            self._fresh[0] = ids[1:]
        self._left -= 1
        if self.onLow is not None and self.wantsBlock():
            self.onLow()
        return hostID
