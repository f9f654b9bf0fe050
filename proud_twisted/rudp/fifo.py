"""`Fifo`: a first-in, first-out queue whose operations compile to native calls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Generic, TypeVar

T = TypeVar("T")

COMPACT_AFTER: Final = 64
"""Taken items the list keeps in front of its head before it is cut down
(once they are also at least half of it)."""


class Fifo(Generic[T]):
    """A list with a moving head: `append` at the tail, `popleft` from the
    head, each O(1) amortised.

    It stands in for `collections.deque` in the compiled core, where every
    call on a deque goes through Python's attribute lookup.
    """

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = list(items)
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def __iter__(self) -> Iterator[T]:
        """The items, oldest first (a snapshot: the queue may change meanwhile)."""
        return iter(self._items[self._head:])

    def append(self, item: T) -> None:
        self._items.append(item)

    def first(self) -> T:
        """The oldest item (IndexError if empty)."""
        if self._head >= len(self._items):
            raise IndexError("first() of an empty Fifo")
        return self._items[self._head]

    def popleft(self) -> T:
        """Remove and return the oldest item (IndexError if empty)."""
        items = self._items
        head = self._head
        if head >= len(items):
            raise IndexError("popleft() from an empty Fifo")
        item = items[head]
        head += 1
        if head == len(items):
            items.clear()
            head = 0
        elif head >= COMPACT_AFTER and 2 * head >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item

    def clear(self) -> None:
        self._items.clear()
        self._head = 0
