"""RTT estimation (RFC 6298), the congestion window, loss detection and
acknowledgement ranges, checked by hand and against sets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rudp import SessionConfig
from proud_twisted.rudp import frames as F
from proud_twisted.rudp.acks import REPORTS, ReceivedPackets
from proud_twisted.rudp.congestion import CongestionWindow
from proud_twisted.rudp.frames import encodeDatagram, parseDatagram
from proud_twisted.rudp.recovery import SentPackets
from proud_twisted.rudp.rtt import RttEstimator

CONFIG = SessionConfig()


class Rtt(SynchronousTestCase):

    def assertState(self, rtt: RttEstimator, srtt: float, rttvar: float, rto: float) -> None:
        self.assertAlmostEqual(rtt.srtt, srtt, places=12)
        self.assertAlmostEqual(rtt.rttvar, rttvar, places=12)
        self.assertAlmostEqual(rtt.rto, rto, places=12)

    def test_rfc6298Sequence(self) -> None:
        rtt = RttEstimator(CONFIG)
        self.assertEqual((rtt.srtt, rtt.rttvar, rtt.rto), (None, None, 0.2))
        # 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR)
        rtt.sample(0.1)
        self.assertState(rtt, 0.1, 0.05, 0.3)
        # 2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| (old SRTT), SRTT = 7/8 SRTT + 1/8 R'
        rtt.sample(0.2)
        self.assertState(rtt, 0.1125, 0.0625, 0.1125 + 0.25)
        rtt.sample(0.05)
        self.assertState(rtt, 0.1046875, 0.0625, 0.1046875 + 0.25)
        rtt.sample(1.0)
        self.assertState(rtt, 0.2166015625, 0.270703125, 0.2166015625 + 4 * 0.270703125)

    def test_clamped(self) -> None:
        config = SessionConfig(minRto=0.005)
        rtt = RttEstimator(config)
        for _ in range(100):
            rtt.sample(0.001)
        self.assertEqual(rtt.rto, config.minRto)
        for _ in range(100):
            rtt.sample(5.0)
        self.assertEqual(rtt.rto, config.maxRto)

    def test_defaultFloorIsTheClockGranularity(self) -> None:
        """On a fast path the timer is SRTT plus the granularity G, as in QUIC."""
        rtt = RttEstimator(CONFIG)
        for _ in range(100):
            rtt.sample(0.0001)
        self.assertAlmostEqual(rtt.rto, 0.0001 + 0.001, places=9)

    def test_granularity(self) -> None:
        config = SessionConfig(minRto=0.001, initialRto=0.001)
        rtt = RttEstimator(config)
        for _ in range(200):
            rtt.sample(0.01)
        self.assertAlmostEqual(rtt.rto, 0.01 + 0.001, places=9)

    def test_ackDelay(self) -> None:
        rtt = RttEstimator(CONFIG)
        rtt.sample(0.1, ackDelay=0.05)
        self.assertEqual(rtt.srtt, 0.1)
        rtt.sample(0.2, ackDelay=0.05)
        self.assertAlmostEqual(rtt.srtt, 0.875 * 0.1 + 0.125 * 0.15)
        before = rtt.srtt
        rtt.sample(0.11, ackDelay=0.05)
        self.assertAlmostEqual(rtt.srtt, 0.875 * before + 0.125 * 0.11)

    def test_backoff(self) -> None:
        rtt = RttEstimator(CONFIG)
        rtt.sample(0.1)
        base = 0.3 + CONFIG.delayedAckTime
        for n, want in enumerate([base, 2 * base, 4 * base, CONFIG.maxRto, CONFIG.maxRto]):
            self.assertAlmostEqual(rtt.backedOff(n), want)
        self.assertEqual(rtt.backedOff(1000), CONFIG.maxRto)

    def test_reset(self) -> None:
        rtt = RttEstimator(CONFIG)
        rtt.sample(0.5)
        rtt.reset()
        self.assertEqual((rtt.srtt, rtt.rttvar, rtt.rto, rtt.latest), (None, None, 0.2, None))

    def test_lossDelay(self) -> None:
        rtt = RttEstimator(CONFIG)
        self.assertEqual(rtt.lossDelay(), CONFIG.initialRto)
        rtt.sample(0.08)
        rtt.sample(0.16)
        self.assertAlmostEqual(rtt.lossDelay(), 1.125 * 0.16)


class Window(SynchronousTestCase):

    def test_responseScalesWithTheLossRate(self) -> None:
        """A few per cent lost costs a few per cent of the window; a queue
        that overflows (most of a window lost) halves it, never more."""
        for lossRate, kept in ((0.04, 0.98), (0.5, 0.75), (1.0, 0.5)):
            cc = CongestionWindow(CONFIG)
            cc.onLost(0.5, 1.0, lossRate)
            self.assertAlmostEqual(cc.window, CONFIG.initialWindow * kept)
            self.assertEqual(cc.ssthresh, cc.window)

    def test_slowStartThenAvoidance(self) -> None:
        cc = CongestionWindow(CONFIG)
        self.assertEqual(cc.window, CONFIG.initialWindow)
        cc.onAcked(1200, 0.0)
        self.assertEqual(cc.window, CONFIG.initialWindow + 1200)
        cc.onLost(0.5, 1.0)
        half = (CONFIG.initialWindow + 1200) / 2
        self.assertEqual((cc.window, cc.ssthresh), (half, half))
        cc.onAcked(1200, 0.9)
        self.assertEqual(cc.window, half, "packets sent before recovery do not grow it")
        cc.onAcked(1200, 1.1)
        self.assertAlmostEqual(cc.window, half + 1200 * 1200 / half)

    def test_halvesOncePerRecovery(self) -> None:
        cc = CongestionWindow(CONFIG)
        cc.onLost(0.0, 1.0)
        cc.onLost(0.5, 1.2)
        cc.onLost(1.0, 1.3)
        self.assertEqual(cc.window, CONFIG.initialWindow / 2)
        cc.onLost(1.01, 1.4)
        self.assertEqual(cc.window, CONFIG.initialWindow / 4)

    def test_bounds(self) -> None:
        cc = CongestionWindow(CONFIG)
        for i in range(20):
            cc.onLost(float(i), float(i) + 0.5)
        self.assertEqual(cc.window, CONFIG.minWindow)
        cc = CongestionWindow(CONFIG)
        for _ in range(1000):
            cc.onAcked(1200, 0.0)
        self.assertEqual(cc.window, CONFIG.maxWindow)

    def test_persistentCongestionRecovers(self) -> None:
        """Timeouts collapse the window but keep ssthresh at half the old
        window, so slow start climbs straight back."""
        cc = CongestionWindow(CONFIG)
        for _ in range(40):
            cc.onAcked(1200, 0.0)
        before = cc.window
        cc.onPersistentCongestion(1.0)
        cc.onPersistentCongestion(2.0)
        cc.onPersistentCongestion(4.0)
        self.assertEqual((cc.window, cc.ssthresh), (CONFIG.minWindow, before / 2))
        acked = 0
        while cc.window < before / 2:
            cc.onAcked(1200, 5.0)
            acked += 1
        self.assertLess(acked, before / 2 / 1200)

    def test_reset(self) -> None:
        cc = CongestionWindow(CONFIG)
        cc.onLost(0.0, 1.0)
        cc.reset()
        self.assertEqual((cc.window, cc.ssthresh), (CONFIG.initialWindow, float("inf")))


def ackRanges(frame: bytes) -> list[tuple[int, int]]:
    """Decode an ACK frame into (low, high) ranges, highest first."""
    _, ack, _, _ = parseDatagram(encodeDatagram(0, [frame], False), 1 << 20)
    largest, _, first, gaps = ack
    return F.ackRanges(largest, first, gaps)


class Sent(SynchronousTestCase):

    def _inFlight(self, pns) -> SentPackets:
        sent = SentPackets()
        for pn in pns:
            sent.add(pn, pn * 0.01, 100, [])
        return sent

    @settings(max_examples=200, deadline=None)
    @given(st.sets(st.integers(0, 300), min_size=1),
           st.lists(st.integers(0, 400), max_size=12, unique=True))
    def test_onAckMatchesSets(self, pns, bounds) -> None:
        bounds.sort()
        ranges = list(zip(bounds[::2], bounds[1::2], strict=False))[::-1]
        sent = self._inFlight(sorted(pns))
        acked = sent.onAck(ranges)
        want = sorted((pn for pn in pns if any(lo <= pn <= hi for lo, hi in ranges)),
                      reverse=True)
        self.assertEqual([p.pn for p in acked], want)
        self.assertEqual(len(sent), len(pns) - len(want))
        self.assertEqual(sent.bytesInFlight, 100 * len(sent))
        self.assertEqual(sent.onAck(ranges), [])

    def test_packetThreshold(self) -> None:
        sent = self._inFlight(range(10))
        sent.onAck([(5, 5)])
        lost, lossTime = sent.detectLosses(0.05, 1.0)
        self.assertEqual([p.pn for p in lost], [0, 1, 2])
        self.assertAlmostEqual(lossTime, 0.03 + 1.0)

    def test_timeThreshold(self) -> None:
        sent = self._inFlight(range(10))
        sent.onAck([(4, 4)])
        lost, lossTime = sent.detectLosses(0.1, 0.08)
        self.assertEqual([p.pn for p in lost], [0, 1, 2])
        self.assertAlmostEqual(lossTime, 0.03 + 0.08)
        lost, lossTime = sent.detectLosses(0.11, 0.08)
        self.assertEqual(([p.pn for p in lost], lossTime), ([3], None))
        self.assertEqual(len(sent), 5)

    def test_oldestAndClear(self) -> None:
        sent = self._inFlight(range(5))
        sent.onAck([(0, 0)])
        self.assertEqual([p.pn for p in sent.oldest(2)], [1, 2])
        self.assertEqual([p.pn for p in sent.clear()], [3, 4])
        self.assertEqual((len(sent), sent.bytesInFlight), (0, 0))


class Received(SynchronousTestCase):

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 500), max_size=200))
    def test_rangesAndAcks(self, arrivals) -> None:
        received = ReceivedPackets(0.005)
        seen = set()
        for pn in arrivals:
            self.assertEqual(received.isNew(pn), pn not in seen and pn >= received._floor)
            if received.isNew(pn):
                received.record(pn, 0.0, True)
                seen.add(pn)
            flat = [pn for lo, hi, _ in received._ranges for pn in range(lo, hi + 1)]
            self.assertEqual(flat, sorted(p for p in seen if p >= received._floor))
            if received.ackPending and len(seen) % 3 == 0:
                reported = ackRanges(received.buildAck(0.0))
                self.assertEqual(reported[0][1], max(seen))
                for lo, hi in reported:
                    self.assertTrue(all(p in seen for p in range(lo, hi + 1)))

    def test_delayAndImmediate(self) -> None:
        received = ReceivedPackets(0.005)
        received.record(0, 1.0, True)
        self.assertEqual(received.ackDeadline, 1.005)
        received.record(1, 1.001, False)
        self.assertEqual(received.ackDeadline, 1.005)
        received.record(2, 1.002, True)
        self.assertEqual(received.ackDeadline, 1.002)
        received.buildAck(1.002)
        received.record(9, 1.003, True)
        self.assertEqual(received.ackDeadline, 1.003)

    def test_refusedPacketIsSeenButNotAcknowledged(self) -> None:
        received = ReceivedPackets(0.005)
        received.record(0, 0.0, True)
        received.record(1, 0.0, True, acknowledge=False)
        self.assertFalse(received.isNew(1))
        self.assertEqual(ackRanges(received.buildAck(0.0)), [(0, 0)])

    def test_oldHolesStopBeingReported(self) -> None:
        received = ReceivedPackets(0.005)
        for pn in (0, 2, 4, 6):
            received.record(pn, 0.0, True)
        for _ in range(REPORTS):
            self.assertEqual(len(ackRanges(received.buildAck(0.0))), 4)
        self.assertEqual(ackRanges(received.buildAck(0.0)), [(6, 6)])
        received.record(3, 0.0, True)
        self.assertEqual(ackRanges(received.buildAck(0.0)), [(6, 6), (2, 4)])
