"""The declaration the RMI page of the documentation describes."""

import dataclasses
import enum

from proud_twisted.rmi import HostID, RemoteInterface, call


class NotEnoughGold(Exception):
    """The buyer cannot pay."""


class Color(enum.IntEnum):
    WHITE = 0
    RED = 1
    GREEN = 2


@dataclasses.dataclass(frozen=True)
class Position:
    x: float
    y: float


class Shop(RemoteInterface, firstID=6000):
    def say(self, text: str, color: Color) -> None:
        """A chat line (one-way)."""

    def move(self, where: Position, speed: float) -> None:
        """Where the sender is now (one-way; send it with latestOnly=)."""

    @call(raises=(NotEnoughGold,))
    def buy(self, item: int, count: int, seller: HostID) -> int:
        """Buy from a seller; the result is the gold left."""

    def prices(self, items: list[int]) -> dict[int, int | None]:
        """The price of each item (None: not for sale)."""
