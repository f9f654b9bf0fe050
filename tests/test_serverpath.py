"""The client's UDP path to the server, sans-I/O, and on a Clock through a CoreDriver."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._glue.coredriver import CoreDriver
from proud_twisted.client.serverpath import (
    HELLO_PADDING,
    ServerPath,
    ServerPathConfig,
    ServerUdpStateChanged,
)
from proud_twisted.constants import ServerUdpState
from proud_twisted.rudp.events import Value
from proud_twisted.wire.datagrams import decodeDatagram
from proud_twisted.wire.messages import RTT_UNKNOWN

HOST_ID = 1000
TOKEN = b"t" * 16
PUBLIC = ("203.0.113.7", 40001)
CONFIRMED, LOST = ServerUdpState.CONFIRMED, ServerUdpState.LOST


class Run:
    """A L{ServerPath} on virtual time: what it sent, when, and its events."""

    def __init__(self, config=ServerPathConfig(), start=0.0):
        self.path = ServerPath(HOST_ID, TOKEN, config)
        self.now = start
        self.sent = []          # (time, kind, fields)
        self.events = []        # (time, event)
        self.path.start(start)
        self.flush()

    def flush(self):
        for data in self.path.datagramsToSend(self.now):
            kind, fields = decodeDatagram(data)
            self.sent.append((self.now, kind, fields))
        while (event := self.path.nextEvent()) is not None:
            self.events.append((self.now, event))

    def until(self, end, every=None, action=None):
        """Run the timers up to C{end}; call C{action} every C{every} seconds too."""
        nextAction = self.now + every if every else None
        while True:
            due = [t for t in (self.path.nextTimeout(), nextAction) if t is not None]
            if not due or min(due) > end:
                self.now = end
                return
            self.now = min(due)
            if nextAction is not None and self.now >= nextAction:
                action(self.now)
                nextAction += every
            else:
                self.path.handleTimeout(self.now)
            self.flush()

    def at(self, when, action):
        self.until(when)
        action(when)
        self.flush()

    def times(self, kind, start=0.0, end=float("inf")):
        return [round(t, 6) for t, k, _ in self.sent if k == kind and start <= t <= end]

    def states(self):
        return [(round(t, 6), e.state) for t, e in self.events]


def acknowledge(run):
    return lambda now: run.path.helloAcknowledged(PUBLIC, now)


class HelloTests(SynchronousTestCase):
    def test_helloAtOnceThenBackingOffToTheMaximum(self):
        run = Run()
        run.until(20.0)
        self.assertEqual(run.times("UDP_HELLO"),
                         [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.1, 9.1, 12.1, 15.1, 18.1])
        [(_, _, fields)] = run.sent[:1]
        self.assertEqual((fields.hostID, fields.token, fields.padding),
                         (HOST_ID, TOKEN, HELLO_PADDING))
        self.assertEqual(run.events, [])
        self.assertIs(run.path.state, ServerUdpState.UNCONFIRMED)

    def test_nothingBeforeStart(self):
        path = ServerPath(HOST_ID, TOKEN)
        self.assertIsNone(path.nextTimeout())
        self.assertEqual(path.datagramsToSend(5.0), [])
        path.helloAcknowledged(PUBLIC, 5.0)
        self.assertIs(path.state, ServerUdpState.UNCONFIRMED)
        self.assertIsNone(path.nextEvent())

    def test_acknowledgementConfirmsAndStopsTheHellos(self):
        run = Run()
        run.at(0.35, acknowledge(run))
        run.until(2.9)
        self.assertEqual(run.times("UDP_HELLO"), [0.0, 0.1, 0.3])
        self.assertEqual(run.states(), [(0.35, CONFIRMED)])
        self.assertEqual(run.path.publicAddress, PUBLIC)
        # Another acknowledgement changes nothing but the address.
        run.at(1.0, lambda now: run.path.helloAcknowledged(("203.0.113.7", 40002), now))
        self.assertEqual(run.states(), [(0.35, CONFIRMED)])
        self.assertEqual(run.path.publicAddress, ("203.0.113.7", 40002))

    def test_challengeIsAnsweredAtOnce(self):
        run = Run()
        run.at(0.05, lambda now: run.path.challenged(b"c" * 16, now))
        [(when, kind, fields)] = [s for s in run.sent if s[1] != "UDP_HELLO"]
        self.assertEqual((when, kind, fields.hostID, fields.challenge),
                         (0.05, "UDP_CHALLENGE_RESPONSE", HOST_ID, b"c" * 16))


class PingAndLossTests(SynchronousTestCase):
    def test_pingsOnTheGridFromTheStartWhileConfirmed(self):
        run = Run(start=100.0)
        run.at(100.2, acknowledge(run))
        run.until(109.5, every=1.0, action=run.path.heard)
        self.assertEqual(run.times("UDP_PING"), [103.0, 106.0, 109.0])
        self.assertEqual([f.timestamp for _, k, f in run.sent if k == "UDP_PING"],
                         [103.0, 106.0, 109.0])

    def test_syncPingsFollowTheFirstConfirmationOnly(self):
        run = Run(ServerPathConfig(syncPings=3, syncInterval=0.2), start=100.0)
        run.at(100.2, acknowledge(run))
        run.until(109.5, every=1.0, action=run.path.heard)
        self.assertEqual(run.times("UDP_PING"), [100.2, 100.4, 100.6, 103.0, 106.0, 109.0])
        run.until(125.0)        # silent: lost, then confirmed again
        run.at(125.0, acknowledge(run))
        run.until(128.5, every=1.0, action=run.path.heard)
        self.assertEqual(run.times("UDP_PING", start=120.0), [127.0])

    def test_pingsCarryTheClocksTimestampsAndRoundTrip(self):
        run = Run(ServerPathConfig(syncPings=2, syncInterval=0.5))
        run.at(0.3, acknowledge(run))
        run.until(0.35)
        [(_, _, first)] = [s for s in run.sent if s[1] == "UDP_PING"]
        self.assertEqual((first.timestamp, first.rtt), (0.3, RTT_UNKNOWN))
        self.assertTrue(run.path.clock.pongReceived(first.timestamp, 50.0, 0.34))
        run.until(0.9)
        second = [f for _, k, f in run.sent if k == "UDP_PING"][1]
        self.assertEqual(second.timestamp, 0.8)
        self.assertAlmostEqual(second.rtt, 0.04)
        self.assertAlmostEqual(run.path.clock.serverTime(0.34), 50.02)

    def test_lostAfterSilenceThenHelloAgainAndReconfirmed(self):
        run = Run()
        run.at(0.25, acknowledge(run))
        run.until(13.0)
        # Heard last at 0.25: the checks at 3, 6 and 9 ping; the one at 12
        # finds 11.75 s of silence, more than 10.
        self.assertEqual(run.times("UDP_PING"), [3.0, 6.0, 9.0])
        self.assertEqual(run.states(), [(0.25, CONFIRMED), (12.0, LOST)])
        self.assertEqual(run.times("UDP_HELLO", start=1.0), [12.0, 12.1, 12.3, 12.7])
        run.at(13.0, acknowledge(run))
        run.until(20.0, every=1.0, action=run.path.heard)
        self.assertEqual(run.states(), [(0.25, CONFIRMED), (12.0, LOST), (13.0, CONFIRMED)])
        self.assertEqual(run.times("UDP_HELLO", start=1.0), [12.0, 12.1, 12.3, 12.7])
        self.assertEqual(run.times("UDP_PING", start=10.0), [15.0, 18.0])

    def test_lossNeedsMoreThanLostAfter(self):
        config = ServerPathConfig(pingInterval=1.0, lostAfter=3.0)
        run = Run(config)
        run.at(1.0, acknowledge(run))
        run.until(4.5)
        self.assertEqual(run.states(), [(1.0, CONFIRMED)], "3 s at t=4: not more than 3")
        run.until(5.5)
        self.assertEqual(run.states(), [(1.0, CONFIRMED), (5.0, LOST)])

    def test_heardTrafficKeepsItConfirmed(self):
        run = Run()
        run.at(0.25, acknowledge(run))
        run.until(60.0, every=2.0, action=run.path.heard)
        self.assertEqual(run.states(), [(0.25, CONFIRMED)])
        self.assertEqual(len(run.times("UDP_PING")), 20)


class CloseTests(SynchronousTestCase):
    def test_noDatagramsAfterClose(self):
        for closeAt in (0.05, 5.0, 12.5):
            run = Run()
            if closeAt > 0.15:
                run.at(0.15, acknowledge(run))
            run.until(closeAt)
            sentBefore = len(run.sent)
            run.path.challenged(b"c" * 16, closeAt)    # queued, never sent
            run.path.close()
            self.assertIsNone(run.path.nextTimeout())
            run.path.start(closeAt)
            run.path.helloAcknowledged(PUBLIC, closeAt)
            run.path.challenged(b"c" * 16, closeAt)
            self.assertIsNone(run.path.nextTimeout())
            self.assertEqual(run.path.datagramsToSend(closeAt + 100), [])
            run.until(closeAt + 100)
            self.assertEqual(len(run.sent), sentBefore)


class ValueTests(SynchronousTestCase):
    def test_eventIsAValue(self):
        self.assertIsInstance(ServerUdpStateChanged(LOST), Value)
        self.assertEqual(ServerUdpStateChanged(LOST), ServerUdpStateChanged(LOST))
        self.assertNotEqual(ServerUdpStateChanged(LOST), ServerUdpStateChanged(CONFIRMED))
        self.assertEqual(repr(ServerUdpStateChanged(LOST)),
                         f"ServerUdpStateChanged(state={LOST!r})")

    def test_badConfigIsRefused(self):
        self.assertRaises(ValueError, ServerPathConfig, helloFirstInterval=0)
        self.assertRaises(ValueError, ServerPathConfig, helloFirstInterval=4.0)
        self.assertRaises(ValueError, ServerPathConfig, pingInterval=0)
        self.assertRaises(ValueError, ServerPathConfig, lostAfter=-1)
        self.assertRaises(ValueError, ServerPathConfig, syncPings=-1)
        self.assertRaises(ValueError, ServerPathConfig, syncInterval=0)


class DrivenTests(SynchronousTestCase):
    """On a Clock through a plain L{CoreDriver}, as the client runs it."""

    def test_helloConfirmLoseAndCloseLeaveNoCall(self):
        clock = task.Clock()
        clock.advance(50)
        sent, events = [], []
        path = ServerPath(HOST_ID, TOKEN, ServerPathConfig(pingInterval=4.0))
        driver = CoreDriver(clock, path, sent.append, events.append)
        path.start(clock.seconds())
        driver.flush()
        clock.pump([0.1, 0.2, 0.05])
        self.assertEqual([decodeDatagram(d)[0] for d in sent], ["UDP_HELLO"] * 3)
        path.helloAcknowledged(PUBLIC, clock.seconds())
        driver.flush()
        self.assertEqual(events, [ServerUdpStateChanged(CONFIRMED)])
        clock.pump([1.0] * 20)
        # Checks at 54 and 58 ping; at 62, 11.65 s after the acknowledgement,
        # the path is lost and the hellos start again.
        kinds = [decodeDatagram(d)[0] for d in sent[3:]]
        self.assertEqual(kinds[:3], ["UDP_PING", "UDP_PING", "UDP_HELLO"])
        self.assertEqual(events[-1], ServerUdpStateChanged(LOST))
        driver.close()
        path.close()
        self.assertEqual(clock.getDelayedCalls(), [])
