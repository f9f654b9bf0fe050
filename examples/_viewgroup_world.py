"""The map of the view-group example: characters wandering on a 2-D map, and
who sees whom.

Pure: no reactor, no sockets, no clock of its own; the caller says how much
time passed. Finding who sees whom looks only at the neighbouring cells of a
grid whose cells are one view radius wide, so a tick costs about
N * (players within reach) instead of N * N: hundreds of players are cheap
(a move and a view update of 1,000 characters take some 3 ms here, of 5,000
some 20 ms).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

#: Neighbours a character sees on average when the map is sized for the
#: number of players (see L{mapSide}): enough to keep pairs forming and parting.
NEIGHBOURS_IN_VIEW = 5.0

#: A pair that came into view leaves it only beyond C{radius * (1 + margin)},
#: so two characters walking along the edge do not join and leave every tick.
LEAVE_MARGIN = 0.1

Pair = tuple[int, int]


def mapSide(players: int, radius: float, neighbours: float = NEIGHBOURS_IN_VIEW) -> float:
    """The side of a square map on which C{players} scattered at random see
    C{neighbours} others each on average: C{players * pi * r^2 / side^2 = neighbours}."""
    return radius * math.sqrt(max(players, 1) * math.pi / neighbours)


@dataclass
class Character:
    """One player's character: where it is, where it heads, how fast."""

    x: float
    y: float
    heading: float
    speed: float


class WorldMap:
    """C{count} characters wandering on a C{side} x C{side} map.

    Each walks straight on at its own speed, turns a little at random each
    step and bounces off the edges. C{seed} makes a run repeatable.
    """

    def __init__(self, count: int, side: float, speed: float, seed: int = 0) -> None:
        self.side = side
        self._random = random.Random(seed)
        rnd = self._random
        self.characters = [
            Character(rnd.uniform(0, side), rnd.uniform(0, side),
                      rnd.uniform(0, 2 * math.pi), speed * rnd.uniform(0.5, 1.5))
            for _ in range(count)]

    def positions(self) -> list[tuple[float, float]]:
        return [(c.x, c.y) for c in self.characters]

    def step(self, seconds: float) -> None:
        """Move every character on by C{seconds} of walking."""
        turn = self._random.gauss
        side = self.side
        for c in self.characters:
            c.heading += turn(0.0, 0.6) * seconds
            c.x += math.cos(c.heading) * c.speed * seconds
            c.y += math.sin(c.heading) * c.speed * seconds
            if not 0.0 <= c.x <= side:
                c.x = min(max(c.x, 0.0), side)
                c.heading = math.pi - c.heading
            if not 0.0 <= c.y <= side:
                c.y = min(max(c.y, 0.0), side)
                c.heading = -c.heading


def pairsWithin(positions: list[tuple[float, float]], reach: float) -> dict[Pair, float]:
    """Every pair C{(i, j)}, C{i < j}, of C{positions} at most C{reach} apart,
    with its squared distance.

    Positions go into square cells C{reach} wide; a pair within reach lies in
    one cell or in two touching ones, so each cell is compared with itself and
    with four of its eight neighbours (the other four compare with it).
    """
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (x, y) in enumerate(positions):
        cells[(int(x // reach), int(y // reach))].append(index)
    limit = reach * reach
    found: dict[Pair, float] = {}
    for (cx, cy), here in cells.items():
        for dx, dy in ((0, 0), (1, -1), (1, 0), (1, 1), (0, 1)):
            there = here if (dx, dy) == (0, 0) else cells.get((cx + dx, cy + dy))
            if not there:
                continue
            for n, i in enumerate(here):
                xi, yi = positions[i]
                for j in (there[n + 1:] if there is here else there):
                    xj, yj = positions[j]
                    d2 = (xi - xj) ** 2 + (yi - yj) ** 2
                    if d2 <= limit:
                        found[(i, j) if i < j else (j, i)] = d2
    return found


class ViewTracker:
    """Which pairs of characters see each other, and what changed since the
    last look.

    A pair comes into view at C{radius} or closer and leaves it beyond
    C{radius * (1 + margin)}.
    """

    def __init__(self, radius: float, margin: float = LEAVE_MARGIN) -> None:
        self.radius = radius
        self.leaveRadius = radius * (1 + margin)
        self.inView: set[Pair] = set()

    def update(self, positions: list[tuple[float, float]]) -> tuple[list[Pair], list[Pair]]:
        """Look at C{positions}: the pairs that came into view and those that
        left it, each sorted."""
        near = pairsWithin(positions, self.leaveRadius)
        enter = self.radius * self.radius
        entered = sorted(pair for pair, d2 in near.items()
                         if d2 <= enter and pair not in self.inView)
        left = sorted(pair for pair in self.inView if pair not in near)
        self.inView.difference_update(left)
        self.inView.update(entered)
        return entered, left

    def forget(self, player: int) -> list[Pair]:
        """Drop every pair of C{player} (it left the game); those pairs, sorted."""
        gone = sorted(pair for pair in self.inView if player in pair)
        self.inView.difference_update(gone)
        return gone
