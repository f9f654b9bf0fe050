"""Which path a peer pair uses, relayed or direct; sans-I/O.

Every change of L{PathMode} is an entry of L{TRANSITIONS}, keyed by the mode
and a L{PathInput}; any other pair raises L{IllegalPathTransition}. In
short::

    RELAYED  --PUNCH (startPunching, retry timer, peer's probe or ping)--> PUNCHING
    PUNCHING --PUNCH_SUCCEEDED--> DIRECT          (PathBecameDirect)
    PUNCHING --PUNCH_FAILED-->    RELAYED         (PunchGaveUp, retry scheduled)
    DIRECT   --DIRECT_PATH_DIED (nothing from the direct address for
               directTimeout, or the peer's data came relayed)-->
                                  RELAYED         (PathBecameRelayed(DIRECT_PATH_DIED),
                                                   retry scheduled)
    any but FORCED_RELAY --FORCE_RELAY--> FORCED_RELAY
                                                  (PathBecameRelayed(FORCED_RELAY)
                                                   if it was DIRECT)
    FORCED_RELAY --LIFT_FORCE--> RELAYED, punching again at once if it had
                                  been started before

Retries back off: C{retryInitial}, times C{retryBackoff} after each further
failure, at most C{retryMax}; C{maxRetries} (None: no limit) bounds them
between two direct paths. Reaching DIRECT resets the backoff; so do new
candidate addresses from the server, which also restart punching at once.

On a direct path the pair sends authenticated DIRECT_PINGs only when the path
is idle: when nothing was received, or nothing sent, for C{keepaliveInterval}.
Tell the state about other direct traffic with L{PathState.noteDirectTraffic}
(authenticated data received from the peer) and L{PathState.noteDirectSent}.
Liveness counts only what comes from the direct address: fresh pings (their
counter must grow, so replays do not count), pongs that echo one of our pings,
and L{PathState.noteDirectTraffic}.

Authenticated probes and pings from a candidate address are answered in
every state but FORCED_RELAY, where the pair neither punches nor answers.
One that arrives while RELAYED starts punching at once, so a pair whose sides
fell back at different times meets again without waiting for both timers.
Create one L{PathState} per pair secret: ping counters restart with it.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Final

from proud_twisted.client.holepunch import (
    HolePunch,
    PairAuthenticator,
    PunchFailed,
    PunchSchedule,
    PunchSucceeded,
    uniqueAddresses,
)
from proud_twisted.constants import RelayReason
from proud_twisted.errors import ProudError
from proud_twisted.rudp.events import Value
from proud_twisted.wire.punch import (
    DIRECT_PING,
    DIRECT_PONG,
    NONCE_SIZE,
    PUNCH_ANSWER,
    PUNCH_PROBE,
)

_PINGS_REMEMBERED = 8


class PathMode(enum.Enum):
    RELAYED = "relayed"
    PUNCHING = "punching"
    DIRECT = "direct"
    FORCED_RELAY = "forced relay"


class PathInput(enum.Enum):
    """What can move a pair from one L{PathMode} to another."""

    PUNCH = "punch toward the candidates"
    NO_CANDIDATES = "punch with no candidate address"
    PUNCH_SUCCEEDED = "punch succeeded"
    PUNCH_FAILED = "punch gave up"
    DIRECT_PATH_DIED = "direct path died"
    FORCE_RELAY = "relay forced"
    LIFT_FORCE = "relay no longer forced"


TRANSITIONS: Final[dict[tuple[PathMode, PathInput], PathMode]] = {
    (PathMode.RELAYED, PathInput.PUNCH): PathMode.PUNCHING,
    # New candidates while punching: a fresh attempt toward them.
    (PathMode.PUNCHING, PathInput.PUNCH): PathMode.PUNCHING,
    (PathMode.RELAYED, PathInput.NO_CANDIDATES): PathMode.RELAYED,
    (PathMode.PUNCHING, PathInput.NO_CANDIDATES): PathMode.RELAYED,
    (PathMode.PUNCHING, PathInput.PUNCH_SUCCEEDED): PathMode.DIRECT,
    (PathMode.PUNCHING, PathInput.PUNCH_FAILED): PathMode.RELAYED,
    (PathMode.DIRECT, PathInput.DIRECT_PATH_DIED): PathMode.RELAYED,
    (PathMode.RELAYED, PathInput.FORCE_RELAY): PathMode.FORCED_RELAY,
    (PathMode.PUNCHING, PathInput.FORCE_RELAY): PathMode.FORCED_RELAY,
    (PathMode.DIRECT, PathInput.FORCE_RELAY): PathMode.FORCED_RELAY,
    (PathMode.FORCED_RELAY, PathInput.LIFT_FORCE): PathMode.RELAYED,
}
"""Every move between path modes: C{(mode, input) -> next mode}."""


class IllegalPathTransition(ProudError):
    """A L{PathInput} that the pair's current L{PathMode} has no transition for."""

    def __init__(self, mode: PathMode, pathInput: PathInput) -> None:
        super().__init__(f"a path in mode {mode.name} cannot take input {pathInput.name}"
                         f" ({pathInput.value})")
        self.mode = mode
        self.input = pathInput


def nextMode(mode: PathMode, pathInput: PathInput) -> PathMode:
    """The mode C{pathInput} moves a pair in C{mode} to (see L{TRANSITIONS}).

    @raise IllegalPathTransition: if there is no such move.
    """
    try:
        return TRANSITIONS[mode, pathInput]
    except KeyError:
        raise IllegalPathTransition(mode, pathInput) from None


class PathBecameDirect(Value):
    """The pair now uses the direct path to C{address}."""

    __match_args__ = ("address", "rtt")
    __slots__ = __match_args__

    def __init__(self, address: tuple, rtt: float) -> None:
        self.address: Final = address
        self.rtt: Final = rtt


class PathBecameRelayed(Value):
    """The pair left its direct path and uses the relay again; C{reason} is
    C{DIRECT_PATH_DIED} or C{FORCED_RELAY}."""

    __match_args__ = ("reason",)
    __slots__ = __match_args__

    def __init__(self, reason: RelayReason) -> None:
        self.reason: Final = reason


class PunchGaveUp(Value):
    """A punching attempt failed; C{retryAt} is when the next starts, if any."""

    __match_args__ = ("reason", "retryAt")
    __slots__ = __match_args__

    def __init__(self, reason: str = "", retryAt: float | None = None) -> None:
        self.reason: Final = reason
        self.retryAt: Final = retryAt


@dataclass(frozen=True)
class PathConfig:
    """Timings of one pair's path; see the module docstring."""

    keepaliveInterval: float = 1.0
    directTimeout: float = 4.0
    retryInitial: float = 2.0
    retryBackoff: float = 2.0
    retryMax: float = 60.0
    maxRetries: int | None = None
    punch: PunchSchedule = PunchSchedule()
    # Relayed data from a direct peer older than this means it fell back.
    relayedHintGrace: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.keepaliveInterval < self.directTimeout:
            raise ValueError("need 0 < keepaliveInterval < directTimeout")
        if not 0 < self.retryInitial <= self.retryMax or self.retryBackoff < 1:
            raise ValueError("need 0 < retryInitial <= retryMax and retryBackoff >= 1")
        if self.maxRetries is not None and self.maxRetries < 0:
            raise ValueError("maxRetries must be None or >= 0")


class PathState:
    """The path from C{localID} to C{peerID}: relayed, punching or direct.

    Drive it like the other cores (see L{proud_twisted._glue.coredriver}):
    after every input send what L{datagramsToSend} returns, read L{nextEvent}
    until None, and call L{handleTimeout} at L{nextTimeout}.
    """

    def __init__(self, localID: int, peerID: int, probeKey: bytes, candidates=(),
                 config: PathConfig = PathConfig(),
                 rng: random.Random | None = None) -> None:
        self.config = config
        self._mode = PathMode.RELAYED
        self.candidates = uniqueAddresses(candidates)
        self.directAddress = None
        self.rtt = None
        self.rejected = 0
        self.punch = None
        self.retryAt = None
        self._localID, self._peerID, self._probeKey = localID, peerID, probeKey
        self._auth = PairAuthenticator(localID, peerID, probeKey)
        self._rng = rng
        self._wanted = False        # punching was started at least once
        self._fallbacks = 0         # failures since the last direct path
        self._lastReceived = self._lastSent = self._lastPing = 0.0
        self._directSince = 0.0
        self._pingCounter = 0
        self._peerPingCounter = 0
        self._pings = {}            # nonce -> time sent
        self._outbox = []           # answers and pongs not sent yet
        self._events = deque()

    @property
    def mode(self) -> PathMode:
        """The current L{PathMode}; only L{TRANSITIONS} change it."""
        return self._mode

    @property
    def relayed(self) -> bool:
        return self.mode is not PathMode.DIRECT

    def nextEvent(self) -> PathBecameDirect | PathBecameRelayed | PunchGaveUp | None:
        return self._events.popleft() if self._events else None

    # Inputs from the glue

    def startPunching(self, now: float) -> None:
        """Punch toward the current candidates, unless punching, direct or forced."""
        self._wanted = True
        if self.mode is PathMode.RELAYED:
            self._startPunch(now)

    def candidatesChanged(self, candidates, now: float) -> None:
        """The server told us new addresses of the peer."""
        new = uniqueAddresses(candidates)
        if new == self.candidates:
            return
        self.candidates = new
        if self.mode is PathMode.PUNCHING:
            self._startPunch(now)
        elif self.mode is PathMode.RELAYED and self._wanted:
            self._fallbacks = 0
            self._startPunch(now)

    def forceRelay(self, on: bool, now: float) -> None:
        """Keep the pair on the relay (C{on}), or let it punch again."""
        if on and self.mode is not PathMode.FORCED_RELAY:
            wasDirect = self.mode is PathMode.DIRECT
            self._leave(PathInput.FORCE_RELAY)
            if wasDirect:
                self._events.append(PathBecameRelayed(RelayReason.FORCED_RELAY))
        elif not on and self.mode is PathMode.FORCED_RELAY:
            self._move(PathInput.LIFT_FORCE)
            self._fallbacks = 0
            if self._wanted:
                self._startPunch(now)

    def noteDirectTraffic(self, now: float) -> None:
        """Authenticated data from the peer arrived on the direct path."""
        if self.mode is PathMode.DIRECT:
            self._lastReceived = max(self._lastReceived, now)

    def noteRelayedTraffic(self, now: float) -> None:
        """Authenticated data from the peer arrived through the relay.

        Long after both sides went direct, that means the peer gave up on the
        direct path (say, only our direction broke): follow it now instead of
        sending into a dead path until our own timeout.
        """
        if (self.mode is PathMode.DIRECT
                and now - self._directSince > self.config.relayedHintGrace):
            self._directPathDied(now)

    def noteDirectSent(self, now: float) -> None:
        """We sent data to the peer on the direct path."""
        if self.mode is PathMode.DIRECT:
            self._lastSent = max(self._lastSent, now)

    # The sans-I/O loop

    def nextTimeout(self) -> float | None:
        if self.mode is PathMode.PUNCHING:
            return self.punch.nextTimeout()
        if self.mode is PathMode.RELAYED:
            return self.retryAt
        if self.mode is PathMode.DIRECT:
            return min(self._nextPing(), self._lastReceived + self.config.directTimeout)
        return None

    def handleTimeout(self, now: float) -> None:
        if self.mode is PathMode.PUNCHING:
            self.punch.handleTimeout(now)
            self._drainPunch(now)
        elif self.mode is PathMode.RELAYED:
            if self.retryAt is not None and now >= self.retryAt:
                self._startPunch(now)
        elif self.mode is PathMode.DIRECT:  # noqa: SIM102 - one branch per mode
            if now >= self._lastReceived + self.config.directTimeout:
                self._directPathDied(now)

    def datagramsToSend(self, now: float) -> list[tuple[bytes, tuple]]:
        """Queued answers and pongs, then probes while punching, or a
        keepalive ping when the direct path is idle."""
        self.handleTimeout(now)
        datagrams, self._outbox = self._outbox, []
        if self.mode is PathMode.PUNCHING:
            datagrams += self.punch.datagramsToSend(now)
            self._drainPunch(now)
        elif self.mode is PathMode.DIRECT and now >= self._nextPing():
            self._pingCounter += 1
            nonce = self._pingCounter.to_bytes(NONCE_SIZE, "big")
            self._pings[nonce] = now
            if len(self._pings) > _PINGS_REMEMBERED:
                del self._pings[next(iter(self._pings))]
            self._lastPing = self._lastSent = now
            datagrams.append((self._auth.seal(DIRECT_PING, nonce), self.directAddress))
        return datagrams

    def receiveDatagram(self, data: bytes, addr, now: float) -> None:
        """Handle a probe, answer, ping or pong; replies leave by L{datagramsToSend}.

        Ignored: DIRECT_DATA (the glue's), anything unauthenticated, naming
        other hosts or from an address that is neither a candidate nor the
        direct address (these count in L{rejected}), and everything while
        FORCED_RELAY. Raises L{ProtocolError} on bytes that are no peer datagram.
        """
        message, authentic = self._auth.openControl(data)
        if message is None:
            return
        addr = tuple(addr)
        fromDirect = self.mode is PathMode.DIRECT and addr == self.directAddress
        if not authentic or not (fromDirect or addr in self.candidates):
            self.rejected += 1
            return
        if self.mode is PathMode.FORCED_RELAY:
            return
        kind, nonce = message.kind, message.nonce
        if self.mode is PathMode.RELAYED and kind in (PUNCH_PROBE, DIRECT_PING):
            # The peer is punching, or still thinks the path is direct: join in.
            self._wanted = True
            self._startPunch(now)
        if kind in (PUNCH_PROBE, PUNCH_ANSWER):
            if self.mode is PathMode.PUNCHING:
                self._outbox += self.punch.answer(message, addr, now)
                self._drainPunch(now)
            elif kind == PUNCH_PROBE:
                self._outbox.append((self._auth.seal(PUNCH_ANSWER, nonce), addr))
        elif kind == DIRECT_PING:
            counter = int.from_bytes(nonce, "big")
            if fromDirect:
                if counter > self._peerPingCounter:
                    self._peerPingCounter = counter
                    self._lastReceived = now
                self._lastSent = now
            self._outbox.append((self._auth.seal(DIRECT_PONG, nonce), addr))
        else:
            sentAt = self._pings.pop(nonce, None) if fromDirect else None
            if sentAt is not None:
                self._lastReceived = now
                self.rtt = now - sentAt

    # Transitions

    def _startPunch(self, now: float) -> None:
        self.retryAt = None
        if not self.candidates:
            self._move(PathInput.NO_CANDIDATES)
            self._events.append(PunchGaveUp("no candidate addresses", None))
            return
        self._move(PathInput.PUNCH)
        self.punch = HolePunch(self._localID, self._peerID, self._probeKey, self.candidates,
                               now, self.config.punch, self._rng)

    def _drainPunch(self, now: float) -> None:
        while self.mode is PathMode.PUNCHING and (event := self.punch.nextEvent()):
            if isinstance(event, PunchSucceeded):
                self._leave(PathInput.PUNCH_SUCCEEDED)
                self.directAddress, self.rtt = event.address, event.rtt
                self._fallbacks = 0
                self._lastReceived = self._lastSent = self._directSince = now
                self._events.append(PathBecameDirect(event.address, event.rtt))
            elif isinstance(event, PunchFailed):
                self._leave(PathInput.PUNCH_FAILED)
                self._scheduleRetry(now)
                self._events.append(PunchGaveUp(event.reason, self.retryAt))

    def _move(self, pathInput: PathInput) -> None:
        self._mode = nextMode(self._mode, pathInput)

    def _leave(self, pathInput: PathInput) -> None:
        """Move on C{pathInput}, dropping the punch, direct address, keepalive
        and retry timer."""
        self._move(pathInput)
        if self.punch is not None:
            self.punch.cancel()
            self.punch = None
        self.directAddress = None
        self.retryAt = None
        self._pings.clear()
        self._lastPing = float("-inf")

    def _directPathDied(self, now: float) -> None:
        self._leave(PathInput.DIRECT_PATH_DIED)
        self._events.append(PathBecameRelayed(RelayReason.DIRECT_PATH_DIED))
        self._scheduleRetry(now)

    def _scheduleRetry(self, now: float) -> None:
        self._fallbacks += 1
        limit = self.config.maxRetries
        if limit is not None and self._fallbacks > limit:
            return
        config = self.config
        delay = config.retryInitial * config.retryBackoff ** min(self._fallbacks - 1, 64)
        self.retryAt = now + min(delay, config.retryMax)

    def _nextPing(self) -> float:
        idleSince = min(self._lastReceived, self._lastSent)
        return max(idleSince, self._lastPing) + self.config.keepaliveInterval
