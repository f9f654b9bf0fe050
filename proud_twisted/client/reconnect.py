"""When a client tries again to reach its server after the connection dropped (pure)."""

from __future__ import annotations

import random

FIRST_DELAY = 0.25
"""Seconds before the first attempt: a reset connection often comes back at once."""
MAX_DELAY = 2.0
"""The longest pause between attempts: once the network is back, an outage
costs at most 2 s more when attempts fail at once (about 4 s when packets
are dropped silently: docs/recovery.rst), and a client makes at most some
20 attempts in the 30-second default window."""
ATTEMPT_TIMEOUT = 5.0
"""Seconds one attempt (connect, handshake and resume) may take."""
JITTER = 0.25
"""Each pause is shortened by up to this fraction, so that clients dropped
together (a server's network blip) do not all come back in the same instant."""


class Backoff:
    """The pauses between one outage's attempts: from L{FIRST_DELAY},
    doubling up to L{MAX_DELAY}, each with some jitter."""

    attemptTimeout = ATTEMPT_TIMEOUT

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._delay = FIRST_DELAY

    def next(self) -> float:
        """The pause before the next attempt."""
        delay = self._delay
        self._delay = min(delay * 2, MAX_DELAY)
        return delay * (1 - JITTER * self._rng.random())
