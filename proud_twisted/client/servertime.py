"""The server's clock and the round trip to it, as a client measures them
from its keepalives; sans-I/O.

Every keepalive ping (UDP or TCP) carries the client's clock reading C{t0};
the server's answer echoes it and adds its own clock reading C{s}. The
answer arrives at C{t1}. The server read its clock at some instant within
[C{t0}, C{t1}] of ours, so its clock is ahead of ours by::

    offset = s - (t0 + t1) / 2,    within (t1 - t0) / 2

(NTP's on-wire estimate, RFC 5905, with a one-way exchange). The estimate
is as good as the round trip is short, whatever the two directions' shares
of it: an asymmetric path moves the estimate, never beyond the bound.

The clocks may drift apart, so a sample's bound grows by L{MAX_DRIFT} for
every second since its ping left; L{ServerClock} keeps the last few samples
and answers with the one whose bound is smallest now. A pong that answers no
ping of ours (forged, replayed, garbled) is rejected and counted.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, NamedTuple

from proud_twisted.wire.messages import RTT_UNKNOWN

MAX_DRIFT: Final = 15e-6
"""How fast the two clocks may drift apart, in seconds per second: NTP's
frequency tolerance (PHI, RFC 5905). After one keepalive interval (6.7 s) a
sample's bound has grown by 0.1 ms. A clock stepped or slewed faster than
this (an NTP correction) breaks the promise until newer samples replace the
old ones (L{SAMPLES} keepalives, under a minute)."""
PRECISION: Final = 1e-6
"""What a clock reading is worth (C{reactor.seconds()}: a float of the
wall clock, microseconds)."""
SAMPLES: Final = 8
"""Samples kept: eight keepalives, some 53 s by default."""
OUTSTANDING: Final = 8
"""Pings whose answer is still awaited; an older one's answer is rejected."""
SRTT_WEIGHT: Final = 1 / 8
"""Weight of a new round trip in the smoothed one (RFC 6298's alpha)."""


class TimeSample(NamedTuple):
    offset: float       # server clock minus ours
    halfRtt: float      # the bound when taken
    at: float           # our clock when its ping left


class ServerClock:
    """Samples of the server's clock from ping/pong exchanges.

    Call L{pingSent} for each ping (it gives the timestamp the ping
    carries), and L{pongReceived} for each answer.
    """

    def __init__(self, samples: int = SAMPLES, maxDrift: float = MAX_DRIFT) -> None:
        self.maxDrift = maxDrift
        self.srtt: float | None = None
        """Smoothed round trip, in seconds; None before the first sample."""
        self.rejected = 0
        """Answers rejected: no ping of ours, or a server time that is no time."""
        self._outstanding: deque[float] = deque(maxlen=OUTSTANDING)
        self._samples: deque[TimeSample] = deque(maxlen=samples)

    def pingSent(self, now: float) -> float:
        """A ping leaves now: the timestamp it carries."""
        self._outstanding.append(now)
        return now

    @property
    def reportedRtt(self) -> float:
        """The round trip a ping reports to the server (L{RTT_UNKNOWN} before one)."""
        return RTT_UNKNOWN if self.srtt is None else self.srtt

    def pongReceived(self, echoed: float, serverTime: float, now: float) -> bool:
        """An answer to the ping stamped C{echoed} came at C{now}, with the
        server's clock reading C{serverTime}; False (and counted) if rejected."""
        if echoed not in self._outstanding or not math.isfinite(serverTime) or now < echoed:
            self.rejected += 1
            return False
        self._outstanding.remove(echoed)
        rtt = now - echoed
        self._samples.append(TimeSample(serverTime - (echoed + now) / 2, rtt / 2, echoed))
        srtt = self.srtt
        self.srtt = rtt if srtt is None else srtt + SRTT_WEIGHT * (rtt - srtt)
        return True

    def serverTime(self, now: float) -> float | None:
        """The server's clock at our C{now}; None before the first sample."""
        best = self._best(now)
        return None if best is None else now + best.offset

    def error(self, now: float) -> float | None:
        """How far L{serverTime} may be from the server's clock at C{now}."""
        best = self._best(now)
        return None if best is None else self._bound(best, now)

    def _bound(self, sample: TimeSample, now: float) -> float:
        return sample.halfRtt + PRECISION + self.maxDrift * abs(now - sample.at)

    def _best(self, now: float) -> TimeSample | None:
        if not self._samples:
            return None
        return min(self._samples, key=lambda sample: self._bound(sample, now))
