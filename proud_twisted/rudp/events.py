"""What `ReliableSession.nextEvent` hands out.

Immutable values (compiled, their fields refuse assignment) that compare
and hash by their fields; the receive path makes one per message, so they are
plain classes the compiled core builds natively rather than dataclasses.
"""

from __future__ import annotations

from typing import ClassVar, Final

from proud_twisted.rudp.config import DeliveryMode


class _Value:
    """Equality, hash and repr over the fields named in `__match_args__`."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self.__match_args__])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _Value):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}"
                           for name, value in zip(self.__match_args__, self._values()))
        return f"{type(self).__name__}({fields})"


class MessageReceived(_Value):
    """A whole message from the peer."""

    __match_args__ = ("payload", "mode", "channel")
    __slots__ = __match_args__

    def __init__(self, payload: bytes, mode: DeliveryMode, channel: int) -> None:
        self.payload: Final = payload
        self.mode: Final = mode
        self.channel: Final = channel


class PathDead(_Value):
    """Nothing was acknowledged since ``since`` while data was outstanding."""

    __match_args__ = ("since",)
    __slots__ = __match_args__

    def __init__(self, since: float) -> None:
        self.since: Final = since


class PathAlive(_Value):
    """Acknowledgements arrive again after a `PathDead`."""

    __slots__ = ()


Event = MessageReceived | PathDead | PathAlive
"""What `ReliableSession.nextEvent` returns."""
