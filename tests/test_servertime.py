"""The client's estimate of the server's clock, sans-I/O (L{ServerClock})."""

import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.client.servertime import (
    MAX_DRIFT,
    OUTSTANDING,
    PRECISION,
    SAMPLES,
    SRTT_WEIGHT,
    ServerClock,
)
from proud_twisted.wire.messages import RTT_UNKNOWN


def exchange(clock, sentAt: float, toServer: float, fromServer: float, serverClock):
    """One ping at C{sentAt} taking C{toServer} there and C{fromServer} back,
    answered by a server whose clock reads C{serverClock(ourTime)}."""
    echoed = clock.pingSent(sentAt)
    stampedAt = sentAt + toServer
    return clock.pongReceived(echoed, serverClock(stampedAt), stampedAt + fromServer)


class EstimateTests(SynchronousTestCase):
    def test_nothingBeforeTheFirstAnswer(self):
        clock = ServerClock()
        clock.pingSent(1.0)
        self.assertIsNone(clock.serverTime(2.0))
        self.assertIsNone(clock.error(2.0))
        self.assertIsNone(clock.srtt)
        self.assertEqual(clock.reportedRtt, RTT_UNKNOWN)

    def test_oneExchangeGivesTheMidpointAndHalfTheRoundTrip(self):
        clock = ServerClock()
        # 40 ms there, 60 ms back; the server is 1000 s ahead.
        self.assertTrue(exchange(clock, 10.0, 0.04, 0.06, lambda t: t + 1000.0))
        self.assertAlmostEqual(clock.serverTime(10.1), 10.1 + 1000.0 - 0.01, places=9)
        self.assertAlmostEqual(clock.error(10.1), 0.05 + PRECISION + MAX_DRIFT * 0.1,
                               places=12)
        self.assertAlmostEqual(clock.srtt, 0.1)
        self.assertAlmostEqual(clock.reportedRtt, 0.1)

    def test_theShortestRoundTripWins(self):
        clock = ServerClock()
        server = lambda t: t - 50.0      # noqa: E731
        exchange(clock, 1.0, 0.1, 0.1, server)
        exchange(clock, 2.0, 0.001, 0.003, server)
        exchange(clock, 3.0, 0.2, 0.05, server)
        self.assertAlmostEqual(clock.error(3.25), 0.002 + PRECISION + MAX_DRIFT * 1.25)
        self.assertLess(abs(clock.serverTime(3.25) - server(3.25)), clock.error(3.25))

    def test_anOldSampleGivesWayToAFreshOneAsItsDriftAllowanceGrows(self):
        clock = ServerClock(maxDrift=1e-3)
        server = lambda t: t + 7.0      # noqa: E731
        exchange(clock, 0.0, 0.001, 0.001, server)           # 1 ms bound, then aging
        exchange(clock, 100.0, 0.01, 0.01, server)           # 10 ms bound, fresh
        self.assertAlmostEqual(clock.error(100.02), 0.01 + PRECISION + 1e-3 * 0.02)
        self.assertAlmostEqual(clock.error(0.002), 0.001 + PRECISION + 1e-3 * 0.002)

    def test_theSmoothedRoundTripFollowsRfc6298(self):
        clock = ServerClock()
        exchange(clock, 0.0, 0.05, 0.05, lambda t: t)
        exchange(clock, 1.0, 0.15, 0.15, lambda t: t)
        self.assertAlmostEqual(clock.srtt, 0.1 + SRTT_WEIGHT * (0.3 - 0.1))

    def test_onlyTheLastSamplesCount(self):
        clock = ServerClock()
        exchange(clock, 0.0, 0.0001, 0.0001, lambda t: t + 1.0)     # the best, then forgotten
        for i in range(SAMPLES):
            exchange(clock, 1.0 + i, 0.01, 0.01, lambda t: t + 1.0)
        self.assertGreater(clock.error(SAMPLES + 1.0), 0.01)

    @given(offset=st.floats(-1e6, 1e6), there=st.floats(0, 2), back=st.floats(0, 2),
           drift=st.floats(-MAX_DRIFT, MAX_DRIFT), later=st.floats(0, 600))
    def test_theTruthIsAlwaysWithinTheBound(self, offset, there, back, drift, later):
        """Whatever the offset, the asymmetry of the path and a drift within
        the allowance, the server's clock is within the promised error."""
        clock = ServerClock()
        start = 1_700_000_000.0
        server = lambda t: offset + start + (t - start) * (1 + drift)   # noqa: E731
        exchange(clock, start, there, back, server)
        now = start + there + back + later
        self.assertLessEqual(abs(clock.serverTime(now) - server(now)), clock.error(now))


class RejectionTests(SynchronousTestCase):
    def assertRejected(self, clock, echoed, serverTime, now, rejectedBefore):
        self.assertFalse(clock.pongReceived(echoed, serverTime, now))
        self.assertEqual(clock.rejected, rejectedBefore + 1)

    def test_anAnswerToNoPingOfOursIsRejectedAndCounted(self):
        clock = ServerClock()
        exchange(clock, 1.0, 0.01, 0.01, lambda t: t + 5.0)
        before = (clock.serverTime(2.0), clock.error(2.0), clock.srtt)
        clock.pingSent(1.5)
        self.assertRejected(clock, 1.4, 0.0, 1.6, 0)             # never sent
        self.assertRejected(clock, 1.0, 0.0, 1.6, 1)             # answered already: a replay
        for serverTime in (math.nan, math.inf, -math.inf):      # no time at all
            self.assertRejected(clock, 1.5, serverTime, 1.6, clock.rejected)
        self.assertRejected(clock, 1.5, 6.5, 1.4, clock.rejected)    # before it was sent
        self.assertEqual((clock.serverTime(2.0), clock.error(2.0), clock.srtt), before)
        self.assertTrue(clock.pongReceived(1.5, 6.5, 1.52))     # the genuine answer still counts

    def test_onlyTheLastPingsAwaitAnAnswer(self):
        clock = ServerClock()
        for i in range(OUTSTANDING + 1):
            clock.pingSent(float(i))
        self.assertFalse(clock.pongReceived(0.0, 0.0, 20.0))
        self.assertTrue(clock.pongReceived(1.0, 1.0, 20.0))
