"""One UDP hole-punching attempt toward one peer; sans-I/O.

Both members of a pair run a L{HolePunch} toward each other at about the same
time. Each sends authenticated PUNCH_PROBEs to every candidate address of the
other (LAN first, then public), several times on a backing-off schedule, so a
single lost probe does not matter. Each answers every authenticated probe that
comes from a candidate address with a PUNCH_ANSWER echoing the probe's nonce.

Rules, chosen so that both sides can start at once, or one late, and still
finish:

  - Success is an authenticated PUNCH_ANSWER, echoing a nonce we sent in this
    attempt, that comes from a candidate address. That source address becomes
    the direct address; the RTT is measured from the matching probe. A probe
    from the peer is not success by itself (it proves only the inbound half),
    but while running it triggers an immediate probe back to its source, whose
    answer usually finishes our side one round trip later.
  - Whichever answer arrives first wins, LAN or public: on a shared LAN the LAN
    answer usually does, since its round trip is shorter and its probes are
    sent first at each tick.
  - Probes are answered for the whole life of the object, also after success
    or failure, so the slower side can finish too.
  - Anything with a wrong tag, from an address that is not a candidate, or
    naming other HostIDs is ignored and counted in L{HolePunch.rejected}.
    Bytes that are not a peer datagram at all raise L{ProtocolError}.

Drive it like the other cores (see L{proud_twisted._glue.coredriver}): after
creating it and after every input, send what L{HolePunch.datagramsToSend}
returns (answers included), read L{HolePunch.nextEvent} until None, and call
L{HolePunch.handleTimeout} at L{HolePunch.nextTimeout}.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Final

from proud_twisted.rudp.events import Value
from proud_twisted.wire.punch import (
    CONTROL_TYPES,
    NONCE_SIZE,
    PUNCH_ANSWER,
    PUNCH_PROBE,
    PeerMessage,
    decodePeerDatagram,
    encodeControl,
    tagIsValid,
)


@dataclass(frozen=True)
class PunchSchedule:
    """When to probe: every candidate at each tick, ticks backing off.

    Ticks are C{firstInterval} apart at first, the gap growing by C{backoff}
    up to C{maxInterval}; the attempt gives up C{giveUpAfter} seconds after it
    started. C{jitter} (a fraction, 0 for none) spreads each gap by up to that
    share, drawn from the attempt's C{rng}.
    """

    firstInterval: float = 0.05
    backoff: float = 1.5
    maxInterval: float = 1.0
    giveUpAfter: float = 10.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.firstInterval <= 0 or self.maxInterval < self.firstInterval:
            raise ValueError("need 0 < firstInterval <= maxInterval")
        if self.backoff < 1 or self.giveUpAfter < 0 or not 0 <= self.jitter < 1:
            raise ValueError("need backoff >= 1, giveUpAfter >= 0, 0 <= jitter < 1")


class PunchSucceeded(Value):
    """A direct path to the peer works; C{rtt} is from the answered probe."""

    __match_args__ = ("address", "rtt")
    __slots__ = __match_args__

    def __init__(self, address: tuple, rtt: float) -> None:
        self.address: Final = address
        self.rtt: Final = rtt


class PunchFailed(Value):
    """The attempt gave up."""

    __match_args__ = ("reason",)
    __slots__ = __match_args__

    def __init__(self, reason: str) -> None:
        self.reason: Final = reason


class PunchState(enum.Enum):
    PUNCHING = "punching"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PairAuthenticator:
    """Seals and checks one pair's control datagrams, from our side."""

    def __init__(self, localID: int, peerID: int, probeKey: bytes) -> None:
        self.localID = localID
        self.peerID = peerID
        self._key = probeKey

    def seal(self, kind: int, nonce: bytes) -> bytes:
        return encodeControl(kind, self.localID, self.peerID, nonce, self._key)

    def authentic(self, message: PeerMessage, data: bytes) -> bool:
        """Whether C{message} (parsed from C{data}) is from the peer, to us, untouched."""
        return (message.sender == self.peerID and message.receiver == self.localID
                and tagIsValid(data, self._key))

    def openControl(self, data: bytes) -> tuple[PeerMessage | None, bool]:
        """Parse C{data}: C{(message, authentic)}, C{(None, False)} if not control.

        Raises L{ProtocolError} on bytes that are no peer datagram.
        """
        message = decodePeerDatagram(data)
        if message.kind not in CONTROL_TYPES:
            return None, False
        return message, self.authentic(message, data)


def randomNonce(rng: random.Random) -> bytes:
    return rng.getrandbits(8 * NONCE_SIZE).to_bytes(NONCE_SIZE, "big")


def uniqueAddresses(candidates) -> tuple:
    """C{candidates} as a tuple of C{(host, port)}, order kept, repeats and Nones gone."""
    seen = []
    for address in candidates:
        if address is not None and tuple(address) not in seen:
            seen.append(tuple(address))
    return tuple(seen)


class HolePunch:
    """One punching attempt from C{localID} toward C{peerID}.

    C{rng} draws nonces and jitter; give a seeded C{random.Random} for
    repeatable runs (the default draws from the OS).
    """

    def __init__(self, localID: int, peerID: int, probeKey: bytes, candidates, now: float,
                 schedule: PunchSchedule = PunchSchedule(),
                 rng: random.Random | None = None) -> None:
        self.candidates = uniqueAddresses(candidates)
        self.schedule = schedule
        self.state = PunchState.PUNCHING
        self.directAddress = None
        self.rtt = None
        self.rejected = 0
        self.probesSent = 0
        self._auth = PairAuthenticator(localID, peerID, probeKey)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._started = now
        self._deadline = now + schedule.giveUpAfter
        self._nextTick = now
        self._interval = schedule.firstInterval
        self._sentAt = {}           # nonce -> time the probe carrying it was sent
        self._triggeredAt = {}      # address -> last probe sent in reply to its probe
        self._outbox = []           # answers (and probes back) not sent yet
        self._events = deque()
        if not self.candidates:
            self._fail("no candidate addresses")

    @property
    def done(self) -> bool:
        return self.state is not PunchState.PUNCHING

    def nextEvent(self) -> PunchSucceeded | PunchFailed | None:
        return self._events.popleft() if self._events else None

    def nextTimeout(self) -> float | None:
        """When to call L{handleTimeout} next; None once the attempt is over."""
        if self.done:
            return None
        if self._nextTick is None:
            return self._deadline
        return min(self._nextTick, self._deadline)

    def handleTimeout(self, now: float) -> None:
        if not self.done and now >= self._deadline:
            self._fail(f"no answer from {len(self.candidates)} candidate address(es)"
                       f" in {self.schedule.giveUpAfter:g} s")

    def datagramsToSend(self, now: float) -> list[tuple[bytes, tuple]]:
        """Queued answers, then the probes due at C{now}: one to every candidate
        on each tick."""
        self.handleTimeout(now)
        datagrams, self._outbox = self._outbox, []
        if self.done or self._nextTick is None or now < self._nextTick:
            return datagrams
        datagrams += [self._probe(address, now) for address in self.candidates]
        gap = self._interval
        if self.schedule.jitter:
            gap *= 1 + self._rng.uniform(-self.schedule.jitter, self.schedule.jitter)
        self._interval = min(self._interval * self.schedule.backoff, self.schedule.maxInterval)
        self._nextTick = now + gap if now + gap < self._deadline else None
        return datagrams

    def receiveDatagram(self, data: bytes, addr, now: float) -> None:
        """Handle a peer datagram; what it calls for leaves by L{datagramsToSend}.

        Raises L{ProtocolError} if C{data} is not a well-formed peer datagram.
        """
        message, authentic = self._auth.openControl(data)
        if message is None or message.kind not in (PUNCH_PROBE, PUNCH_ANSWER):
            return
        addr = tuple(addr)
        if not authentic or addr not in self.candidates:
            self.rejected += 1
            return
        self._outbox += self.answer(message, addr, now)

    def answer(self, message: PeerMessage, addr: tuple,
               now: float) -> list[tuple[bytes, tuple]]:
        """What to send back to a probe or answer already checked (from the
        peer, to us, from a candidate); an answer to one of our probes
        finishes the attempt.

        L{receiveDatagram} queues the result; a L{PathState} that runs this
        attempt queues it in its own outbox.
        """
        if message.kind == PUNCH_PROBE:
            replies = [(self._auth.seal(PUNCH_ANSWER, message.nonce), addr)]
            last = self._triggeredAt.get(addr, float("-inf"))
            if not self.done and now - last >= self.schedule.firstInterval:
                self._triggeredAt[addr] = now
                replies.append(self._probe(addr, now))
            return replies
        sentAt = self._sentAt.get(message.nonce)
        if sentAt is not None and not self.done:
            self.state = PunchState.SUCCEEDED
            self.directAddress = addr
            self.rtt = now - sentAt
            self._events.append(PunchSucceeded(addr, self.rtt))
        return []

    def cancel(self) -> None:
        """Stop probing without an event; probes are still answered."""
        if not self.done:
            self.state = PunchState.FAILED

    def _probe(self, address: tuple, now: float) -> tuple[bytes, tuple]:
        nonce = randomNonce(self._rng)
        self._sentAt[nonce] = now
        self.probesSent += 1
        return self._auth.seal(PUNCH_PROBE, nonce), address

    def _fail(self, reason: str) -> None:
        self.state = PunchState.FAILED
        self._events.append(PunchFailed(reason))
