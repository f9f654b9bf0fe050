"""RTT estimation (RFC 6298) and the congestion window, checked by hand."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rudp import SessionConfig
from proud_twisted.rudp.congestion import CongestionWindow
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
        rtt = RttEstimator(CONFIG)
        for _ in range(100):
            rtt.sample(0.001)
        self.assertEqual(rtt.rto, CONFIG.minRto)
        for _ in range(100):
            rtt.sample(5.0)
        self.assertEqual(rtt.rto, CONFIG.maxRto)

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
