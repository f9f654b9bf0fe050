"""The per-peer path state machine, on the toy NAT network of C{test_holepunch}."""

from __future__ import annotations

import contextlib
import itertools
import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.client.holepunch import PunchFailed, PunchSchedule, PunchSucceeded
from proud_twisted.client.pathstate import (
    TRANSITIONS,
    IllegalPathTransition,
    PathBecameDirect,
    PathBecameRelayed,
    PathConfig,
    PathInput,
    PathMode,
    PathState,
    PunchGaveUp,
    nextMode,
)
from proud_twisted.constants import RelayReason
from proud_twisted.crypto import pairProbeKey
from proud_twisted.errors import ProtocolError
from proud_twisted.rudp.events import Value
from proud_twisted.wire import punch
from tests.test_holepunch import (
    A_ID,
    B_ID,
    KEY,
    WAN_LATENCY,
    garbage,
    sharedLan,
    twoHomes,
)


def startPair(homes=twoHomes, config=PathConfig(), start=(True, True)):
    net, a, b = homes()
    a.core = PathState(A_ID, B_ID, KEY, b.candidates(), config, random.Random(1))
    b.core = PathState(B_ID, A_ID, KEY, a.candidates(), config, random.Random(2))
    for host, go in zip((a, b), start, strict=True):
        if go:
            host.core.startPunching(net.now)
    net.flush()
    return net, a, b


def kinds(host):
    return [type(event).__name__ for _, event in host.events]


def pingsSent(net, name, start, end):
    return [t for t, who, _, data in net.sent
            if who == name and start <= t < end and data[1] == punch.DIRECT_PING]


def every(net, start, end, step, action):
    t = start
    while t < end:
        net.at(t, action)
        t += step


class DirectPathTests(SynchronousTestCase):
    def test_bothSidesBecomeDirect(self):
        net, a, b = startPair()
        self.assertEqual(a.core.mode, PathMode.PUNCHING)
        self.assertTrue(a.core.relayed)
        net.run(1.0)
        for host, peer in ((a, b), (b, a)):
            self.assertEqual(host.core.mode, PathMode.DIRECT)
            self.assertFalse(host.core.relayed)
            self.assertEqual(host.core.directAddress, peer.serverMapped)
            [(_, event)] = host.events
            self.assertEqual(event.address, peer.serverMapped)
            self.assertIsNone(host.core.punch)

    def test_lanCandidateWins(self):
        net, a, b = startPair(sharedLan)
        net.run(1.0)
        self.assertEqual(a.core.directAddress, b.lan)
        self.assertEqual(b.core.directAddress, a.lan)

    def test_aProbeFromThePeerStartsPunching(self):
        # B's application never starts punching; A's probes reach it on the LAN.
        net, a, b = startPair(sharedLan, start=(True, False))
        net.run(1.0)
        self.assertEqual(kinds(a), ["PathBecameDirect"])
        self.assertEqual(kinds(b), ["PathBecameDirect"])

    def test_oneSideLate(self):
        net, a, b = startPair(start=(True, False))
        net.at(3.0, lambda: b.core.startPunching(net.now))
        net.run(2.9)
        self.assertEqual(a.core.mode, PathMode.PUNCHING)
        net.run(4.0)
        self.assertFalse(a.core.relayed)
        self.assertFalse(b.core.relayed)

    def test_idleDirectPathIsKeptAliveWithPings(self):
        net, a, b = startPair()
        net.run(60.0)
        self.assertEqual(kinds(a), ["PathBecameDirect"])
        self.assertEqual(kinds(b), ["PathBecameDirect"])
        both = pingsSent(net, "a", 10, 20) + pingsSent(net, "b", 10, 20)
        self.assertTrue(5 <= len(both) <= 22, both)
        self.assertAlmostEqual(a.core.rtt, 2 * WAN_LATENCY)

    def test_noPingsWhileDataFlows(self):
        net, a, b = startPair()
        net.run(1.0)

        def traffic():
            for host in (a, b):
                host.core.noteDirectSent(net.now)
                host.core.noteDirectTraffic(net.now)
        every(net, 1.0, 30.0, 0.25, traffic)
        net.run(30.0)
        self.assertEqual(pingsSent(net, "a", 2, 30) + pingsSent(net, "b", 2, 30), [])
        self.assertEqual(kinds(a), ["PathBecameDirect"])

    def test_pingsWhenOnlySending(self):
        # Data going out but nothing coming back still needs proof of life.
        net, a, _b = startPair()
        net.run(1.0)
        every(net, 1.0, 30.0, 0.25, lambda: a.core.noteDirectSent(net.now))
        net.run(30.0)
        self.assertTrue(pingsSent(net, "a", 2, 30) or pingsSent(net, "b", 2, 30))
        self.assertEqual(kinds(a), ["PathBecameDirect"])


class FallbackTests(SynchronousTestCase):
    def died(self, host):
        [(when, event)] = [(t, e) for t, e in host.events if isinstance(e, PathBecameRelayed)]
        self.assertEqual(event.reason, RelayReason.DIRECT_PATH_DIED)
        return when

    def test_pathDiesRetriesWithBackoffAndHeals(self):
        net, a, b = startPair()
        net.run(5.0)
        net.cut = True
        net.run(20.0)
        died = self.died(a)
        self.assertTrue(5.0 + 3.0 <= died <= 5.0 + 4.0, died)
        self.assertTrue(a.core.relayed)
        self.assertIsNone(a.core.directAddress)
        # Retries at +2 s, then +4 s and +8 s after each attempt gives up.
        net.at(died + 28.0, lambda: setattr(net, "cut", False))
        net.run(died + 40.0)
        self.assertEqual(kinds(a), ["PathBecameDirect", "PathBecameRelayed", "PunchGaveUp",
                                    "PunchGaveUp", "PathBecameDirect"])
        gaveUp = [(t, e) for t, e in a.events if isinstance(e, PunchGaveUp)]
        self.assertEqual([round(t - died, 6) for t, _ in gaveUp], [12.0, 26.0])
        self.assertEqual([round(e.retryAt - t, 6) for t, e in gaveUp], [4.0, 8.0])
        when, healed = a.events[-1]
        self.assertTrue(died + 34.0 <= when < died + 34.1)
        self.assertEqual(healed, PathBecameDirect(b.serverMapped, healed.rtt))
        self.assertFalse(b.core.relayed)

    def test_retryDelayIsCapped(self):
        config = PathConfig(retryInitial=1.0, retryMax=3.0,
                            punch=PunchSchedule(giveUpAfter=1.0))
        net, a, _b = startPair(config=config)
        net.cut = True
        net.run(60.0)
        gaps = [round(e.retryAt - t, 6) for t, e in a.events if isinstance(e, PunchGaveUp)]
        self.assertEqual(gaps[:4], [1.0, 2.0, 3.0, 3.0])

    def test_maxRetriesThenAManualRetryAfterHealing(self):
        config = PathConfig(maxRetries=1)
        net, a, b = startPair(config=config)
        net.run(5.0)
        net.cut = True
        net.run(60.0)
        self.assertEqual(kinds(a), ["PathBecameDirect", "PathBecameRelayed", "PunchGaveUp"])
        self.assertIsNone(a.events[-1][1].retryAt)
        self.assertIsNone(a.core.nextTimeout())
        self.assertIsNone(b.core.nextTimeout())
        net.cut = False
        a.core.startPunching(net.now)
        net.flush()
        net.run(61.0)
        self.assertEqual(kinds(a)[-1], "PathBecameDirect")
        self.assertEqual(kinds(b)[-1], "PathBecameDirect")

    def test_giveUpWithoutRetries(self):
        config = PathConfig(maxRetries=0)
        net, a, _b = startPair(twoHomes, config, start=(True, False))
        net.run(30.0)
        self.assertEqual(kinds(a), ["PunchGaveUp"])
        self.assertEqual(a.events[0][0], 10.0)
        self.assertEqual(a.core.mode, PathMode.RELAYED)
        self.assertIsNone(a.core.nextTimeout())

    def test_replayedPingsDoNotKeepADeadPathAlive(self):
        net, a, b = startPair()
        net.run(3.0)
        captured = [(data, dst) for _, who, dst, data in net.sent
                    if who == "b" and data[1] == punch.DIRECT_PING]
        self.assertTrue(captured)
        net.cut = True
        data = captured[-1][0]
        for i in range(40):
            net.inject(3.0 + 0.25 * i, a, data, b.serverMapped)
        net.run(12.0)
        self.died(a)


class ForceRelayTests(SynchronousTestCase):
    def test_forceRelayAndBack(self):
        net, a, b = startPair()
        net.run(2.0)
        a.core.forceRelay(True, net.now)
        self.assertEqual(a.core.nextEvent(), PathBecameRelayed(RelayReason.FORCED_RELAY))
        self.assertEqual(a.core.mode, PathMode.FORCED_RELAY)
        self.assertTrue(a.core.relayed)
        self.assertIsNone(a.core.nextTimeout())
        a.core.forceRelay(True, net.now)
        self.assertIsNone(a.core.nextEvent())
        net.run(30.0)
        # A answers nothing, so B's direct path dies and its punching fails.
        self.assertEqual(a.events[1:], [])
        self.assertEqual(kinds(b)[:3], ["PathBecameDirect", "PathBecameRelayed",
                                        "PunchGaveUp"])
        self.assertTrue(b.core.relayed)
        a.core.forceRelay(False, net.now)
        self.assertEqual(a.core.mode, PathMode.PUNCHING)
        net.flush()
        net.run(31.0)
        self.assertEqual(kinds(a)[-1], "PathBecameDirect")
        self.assertEqual(kinds(b)[-1], "PathBecameDirect")

    def test_forceRelayWhilePunching(self):
        net, a, b = startPair(start=(True, False))
        a.core.forceRelay(True, 0.0)
        self.assertIsNone(a.core.nextEvent())
        self.assertIsNone(a.core.punch)
        net.run(30.0)
        self.assertEqual(a.events, [])
        # Never started: lifting the force leaves it relayed and idle.
        fresh = PathState(A_ID, B_ID, KEY, b.candidates())
        fresh.forceRelay(True, 0.0)
        fresh.forceRelay(False, 0.0)
        self.assertEqual(fresh.mode, PathMode.RELAYED)
        self.assertIsNone(fresh.nextTimeout())


class CandidateTests(SynchronousTestCase):
    def test_noCandidatesThenSome(self):
        net, a, b = twoHomes()
        a.core = PathState(A_ID, B_ID, KEY, [], rng=random.Random(1))
        b.core = PathState(B_ID, A_ID, KEY, a.candidates(), rng=random.Random(2))
        a.core.startPunching(0.0)
        self.assertEqual(a.core.nextEvent(), PunchGaveUp("no candidate addresses", None))
        self.assertIsNone(a.core.nextTimeout())
        b.core.startPunching(0.0)
        a.core.candidatesChanged(b.candidates(), 0.0)
        net.flush()
        net.run(1.0)
        self.assertEqual(kinds(a), ["PathBecameDirect"])

    def test_wrongAddressesThenRightOnes(self):
        net, a, b = twoHomes()
        wrong = [("10.9.9.9", 1), ("198.51.100.2", 49999)]
        a.core = PathState(A_ID, B_ID, KEY, wrong, rng=random.Random(1))
        b.core = PathState(B_ID, A_ID, KEY, a.candidates(), rng=random.Random(2))
        a.core.startPunching(0.0)
        b.core.startPunching(0.0)
        net.flush()
        net.run(11.0)
        self.assertEqual(kinds(a), ["PunchGaveUp"])
        self.assertEqual(a.core.retryAt, 12.0)
        a.core.candidatesChanged(b.candidates(), net.now)
        self.assertEqual(a.core.mode, PathMode.PUNCHING)
        net.flush()
        net.run(12.0)
        self.assertEqual(kinds(a), ["PunchGaveUp", "PathBecameDirect"])
        self.assertFalse(b.core.relayed)

    def test_newCandidatesWhileDirectKeepThePath(self):
        net, a, _b = startPair()
        net.run(1.0)
        address = a.core.directAddress
        a.core.candidatesChanged([("10.9.9.9", 1)], net.now)
        a.core.candidatesChanged([("10.9.9.9", 1)], net.now)
        net.run(20.0)
        self.assertEqual(a.core.directAddress, address)
        self.assertEqual(kinds(a), ["PathBecameDirect"])

    def test_newCandidatesRestartAPunch(self):
        p = PathState(A_ID, B_ID, KEY, [("10.9.9.9", 1)])
        p.startPunching(0.0)
        first = p.punch
        p.candidatesChanged([("10.9.9.9", 1), ("10.9.9.9", 2)], 1.0)
        self.assertIsNot(p.punch, first)
        self.assertEqual(p.punch.candidates, (("10.9.9.9", 1), ("10.9.9.9", 2)))
        self.assertEqual(p.nextTimeout(), 1.0)

    def test_badConfigIsRefused(self):
        self.assertRaises(ValueError, PathConfig, keepaliveInterval=5.0, directTimeout=4.0)
        self.assertRaises(ValueError, PathConfig, retryInitial=0)
        self.assertRaises(ValueError, PathConfig, maxRetries=-1)


PEER = ("198.51.100.2", 40000)
OTHER_KEY = pairProbeKey(b"o" * 32)


def answeringPeer(p, now):
    """Answer the first probe C{p} sends, as the peer would, from L{PEER}."""
    for data, dst in p.datagramsToSend(now):
        if dst == PEER:
            nonce = punch.decodePeerDatagram(data).nonce
            return punch.encodeControl(punch.PUNCH_ANSWER, B_ID, A_ID, nonce, KEY)
    return None


def directPath():
    p = PathState(A_ID, B_ID, KEY, [("10.0.0.3", 5000), PEER], rng=random.Random(0))
    p.startPunching(0.0)
    p.receiveDatagram(answeringPeer(p, 0.0), PEER, 0.04)
    assert p.nextEvent() == PathBecameDirect(PEER, 0.04)
    return p


class ForgeryTests(SynchronousTestCase):
    def setUp(self):
        self.p = directPath()
        self.p.handleTimeout(1.5)
        [(ping, _)] = self.p.datagramsToSend(1.5)
        self.pingNonce = punch.decodePeerDatagram(ping).nonce

    def assertRejected(self, data, src=PEER):
        before = (self.p.rejected, self.p.nextTimeout())
        self.p.receiveDatagram(data, src, 2.0)
        self.assertEqual(self.p.datagramsToSend(2.0), [])
        self.assertEqual((self.p.rejected, self.p.nextTimeout()), (before[0] + 1, before[1]))
        self.assertIsNone(self.p.nextEvent())

    def test_forgedPongs(self):
        nonce = self.pingNonce
        self.assertRejected(punch.encodeControl(punch.DIRECT_PONG, B_ID, A_ID, nonce, OTHER_KEY))
        self.assertRejected(punch.encodeControl(punch.DIRECT_PONG, B_ID, A_ID, nonce, KEY),
                            ("203.0.113.66", 40000))
        self.assertRejected(punch.encodeControl(punch.DIRECT_PONG, B_ID + 1, A_ID, nonce, KEY))
        self.assertRejected(punch.encodeControl(punch.DIRECT_PONG, B_ID, A_ID + 1, nonce, KEY))
        # The genuine one counts.
        genuine = punch.encodeControl(punch.DIRECT_PONG, B_ID, A_ID, nonce, KEY)
        self.p.receiveDatagram(genuine, PEER, 1.6)
        self.assertEqual(self.p.datagramsToSend(1.6), [])
        self.assertAlmostEqual(self.p.rtt, 0.1)
        self.assertEqual(self.p.nextTimeout(), 2.5)
        # Replaying it does not.
        self.p.receiveDatagram(genuine, PEER, 2.0)
        self.assertEqual(self.p.datagramsToSend(2.0), [])
        self.assertEqual(self.p.nextTimeout(), 2.5)

    def test_pingsAreAnsweredFromCandidatesOnly(self):
        ping = punch.encodeControl(punch.DIRECT_PING, B_ID, A_ID, b"\0" * 7 + b"\1", KEY)
        self.p.receiveDatagram(ping, PEER, 2.0)
        [(pong, dst)] = self.p.datagramsToSend(2.0)
        self.assertEqual(dst, PEER)
        self.assertEqual(punch.decodePeerDatagram(pong)[:4],
                         (punch.DIRECT_PONG, A_ID, B_ID, b"\0" * 7 + b"\1"))
        self.assertRejected(ping, ("203.0.113.66", 40000))

    def test_forgedProbesAndAnswersNeverMoveTheDirectAddress(self):
        lan = ("10.0.0.3", 5000)
        for kind in (punch.PUNCH_PROBE, punch.PUNCH_ANSWER):
            self.assertRejected(punch.encodeControl(kind, B_ID, A_ID, b"x" * 8, OTHER_KEY), lan)
            self.assertRejected(punch.encodeControl(kind, 7, A_ID, b"x" * 8, KEY), lan)
        self.assertEqual(self.p.directAddress, PEER)


class MutationTests(SynchronousTestCase):
    """Garbage and mutated valid datagrams never change a path's state."""

    def states(self):
        direct = directPath()
        waiting = PathState(A_ID, B_ID, KEY, [PEER], PathConfig(
            punch=PunchSchedule(giveUpAfter=1.0)), random.Random(0))
        waiting.startPunching(0.0)
        waiting.handleTimeout(1.0)
        assert isinstance(waiting.nextEvent(), PunchGaveUp)
        punching = PathState(A_ID, B_ID, KEY, [PEER], rng=random.Random(0))
        punching.startPunching(0.0)
        return {"direct": direct, "waiting": waiting, "punching": punching}

    def snapshot(self, p):
        return (p.mode, p.directAddress, p.retryAt, p.nextTimeout(), p.rtt,
                p.punch and p.punch.state)

    def assertUnchanged(self, data):
        for name, p in self.states().items():
            before = self.snapshot(p)
            with contextlib.suppress(ProtocolError):
                p.receiveDatagram(data, PEER, 0.5)
            self.assertEqual(p._outbox, [], name)
            self.assertEqual(self.snapshot(p), before, name)
            self.assertIsNone(p.nextEvent(), name)

    @settings(max_examples=300)
    @given(garbage)
    def test_garbage(self, data):
        self.assertUnchanged(data)

    @settings(max_examples=300)
    @given(st.sampled_from(sorted(punch.CONTROL_TYPES)), st.binary(min_size=8, max_size=8),
           st.integers(0, 33), st.integers(1, 255))
    def test_flippedByte(self, kind, nonce, index, flip):
        mutated = bytearray(punch.encodeControl(kind, B_ID, A_ID, nonce, KEY))
        mutated[index] ^= flip
        self.assertUnchanged(bytes(mutated))

    @settings(max_examples=200)
    @given(st.sampled_from(sorted(punch.CONTROL_TYPES)), st.integers(0, 34),
           st.binary(max_size=4))
    def test_truncatedOrExtended(self, kind, cut, tail):
        valid = punch.encodeControl(kind, B_ID, A_ID, b"12345678", KEY)
        mutated = valid[:cut] + tail
        assume(mutated != valid)
        self.assertUnchanged(mutated)


class RelayedHintTests(SynchronousTestCase):
    """Relayed data from a peer we talk to directly means it fell back."""

    def test_ignoredRightAfterGoingDirect(self):
        state = directPath()
        state.noteRelayedTraffic(0.5)
        self.assertIs(state.mode, PathMode.DIRECT)
        self.assertIsNone(state.nextEvent())

    def test_fallsBackWhenTheHintComesLater(self):
        state = directPath()
        state.noteRelayedTraffic(2.0)
        self.assertIs(state.mode, PathMode.RELAYED)
        event = state.nextEvent()
        self.assertEqual(event.reason, RelayReason.DIRECT_PATH_DIED)
        self.assertIsNotNone(state.retryAt)


def pathIn(mode):
    """A L{PathState} brought to C{mode} through its public inputs."""
    if mode is PathMode.DIRECT:
        return directPath()
    state = PathState(A_ID, B_ID, KEY, [PEER], PathConfig(
        punch=PunchSchedule(giveUpAfter=1.0)), random.Random(0))
    if mode is PathMode.FORCED_RELAY:
        state.forceRelay(True, 0.0)
        return state
    state.startPunching(0.0)
    if mode is PathMode.RELAYED:
        state.handleTimeout(1.0)        # gave up; a retry is scheduled
    return state


def succeed(state):
    answer = answeringPeer(state, state.punch.nextTimeout())
    state.receiveDatagram(answer, PEER, state.punch.nextTimeout() + 0.04)


# The public input that feeds each PathInput to a state in a mode that takes it.
STIMULI = {
    PathInput.PUNCH: lambda state: state.candidatesChanged([PEER, ("10.0.0.3", 1)], 1.5),
    PathInput.NO_CANDIDATES: lambda state: state.candidatesChanged([], 1.5),
    PathInput.PUNCH_SUCCEEDED: succeed,
    PathInput.PUNCH_FAILED: lambda state: state.handleTimeout(100.0),
    PathInput.DIRECT_PATH_DIED: lambda state: state.noteRelayedTraffic(2.0),
    PathInput.FORCE_RELAY: lambda state: state.forceRelay(True, 1.5),
    PathInput.LIFT_FORCE: lambda state: state.forceRelay(False, 1.5),
}


class TransitionTableTests(SynchronousTestCase):
    """Every (mode, input) pair: the table's move, or a clear refusal."""

    def test_everyModeAndInput(self):
        self.assertEqual(set(STIMULI), set(PathInput))
        for mode, pathInput in itertools.product(PathMode, PathInput):
            state = pathIn(mode)
            self.assertIs(state.mode, mode)
            expected = TRANSITIONS.get((mode, pathInput))
            if expected is None:
                with self.assertRaises(IllegalPathTransition) as caught:
                    nextMode(mode, pathInput)
                message = str(caught.exception)
                self.assertIn(mode.name, message)
                self.assertIn(pathInput.name, message)
                self.assertEqual((caught.exception.mode, caught.exception.input),
                                 (mode, pathInput))
                # The state itself refuses it, and stays where it was.
                self.assertRaises(IllegalPathTransition, state._move, pathInput)
                self.assertIs(state.mode, mode)
            else:
                self.assertIs(nextMode(mode, pathInput), expected)
                STIMULI[pathInput](state)
                self.assertIs(state.mode, expected, (mode, pathInput))

    def test_onlyTheTableChangesTheMode(self):
        state = PathState(A_ID, B_ID, KEY, [PEER])
        with self.assertRaises(AttributeError):
            state.mode = PathMode.DIRECT


class EventValueTests(SynchronousTestCase):
    """Path and punch events are values (L{Value}), like every core's."""

    def test_eventsCompareHashAndMatchByTheirFields(self):
        events = [PathBecameDirect(PEER, 0.04), PathBecameRelayed(RelayReason.FORCED_RELAY),
                  PunchGaveUp("no answer", 12.0), PunchSucceeded(PEER, 0.04),
                  PunchFailed("no answer")]
        for event in events:
            self.assertIsInstance(event, Value)
            fields = [getattr(event, name) for name in event.__match_args__]
            self.assertEqual(type(event)(*fields), event)
            self.assertEqual(hash(type(event)(*fields)), hash(event))
        self.assertEqual(len(set(events + events)), len(events))
        self.assertEqual(PunchGaveUp(), PunchGaveUp("", None))
        self.assertEqual(repr(PathBecameDirect(PEER, 0.5)),
                         f"PathBecameDirect(address={PEER!r}, rtt=0.5)")
        match PathBecameDirect(PEER, 0.5):
            case PathBecameDirect(address, rtt):
                self.assertEqual((address, rtt), (PEER, 0.5))
            case _:
                self.fail("PathBecameDirect did not match its own pattern")
