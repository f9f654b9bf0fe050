"""SessionDriver on a Clock: when datagrams leave, and which timers stay armed."""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._glue.coredriver import MAX_PASSES, CoreDriver, TurnEnd
from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG, SessionDriver
from proud_twisted.client.serverpath import ServerPath, ServerUdpStateChanged
from proud_twisted.rudp import MessageReceived


class Pair:
    """Two drivers on one clock; what each transmits is kept, not delivered."""

    def __init__(self, replyFromB=None):
        self.clock = task.Clock()
        self.clock.advance(100)
        self.outA, self.outB = [], []
        self.receivedB = []

        def deliverB(event):
            if type(event) is MessageReceived:
                self.receivedB.append(event.payload)
                if replyFromB is not None:
                    self.b.send(replyFromB)
        self.a = SessionDriver(self.clock, self.outA.append, lambda event: None,
                               DEFAULT_SESSION_CONFIG)
        self.b = SessionDriver(self.clock, self.outB.append, deliverB, DEFAULT_SESSION_CONFIG)

    def toB(self):
        sent, self.outA[:] = list(self.outA), []
        for datagram in sent:
            self.b.receiveDatagram(datagram)


class SessionDriverTests(SynchronousTestCase):
    def test_sendsLeaveTogetherAtTheEndOfTheTurn(self):
        pair = Pair()
        for i in range(3):
            pair.a.send(b"m%d" % i)
        self.assertEqual(pair.outA, [])
        pair.clock.advance(0)
        self.assertEqual(len(pair.outA), 1, "three small messages, one datagram")

    def test_replyToAReceivedMessageLeavesAtOnceWithTheAck(self):
        pair = Pair(replyFromB=b"pong")
        pair.a.send(b"ping")
        pair.clock.advance(0)
        pair.toB()
        self.assertEqual(pair.receivedB, [b"ping"])
        self.assertEqual(len(pair.outB), 1, "sent before the clock moved")
        pair.a.receiveDatagram(pair.outB[0])
        self.assertEqual(pair.a.stats.bytesInFlight, 0, "the reply carried the ACK")

    def test_anAckAloneWaitsForTheEndOfTheTurnAndCoversAllItRead(self):
        pair = Pair()
        pair.a.send(b"x" * 3000)            # three datagrams
        pair.clock.advance(0)
        self.assertEqual(len(pair.outA), 3)
        pair.toB()
        self.assertEqual(pair.outB, [])
        pair.clock.advance(0)
        self.assertEqual(len(pair.outB), 1)

    def test_timerIsMovedEarlierButNeverReplacedByALaterOne(self):
        pair = Pair()
        pair.a.send(b"one")
        pair.clock.advance(0)
        calls = pair.clock.getDelayedCalls()
        self.assertEqual(len(calls), 1)
        armed = calls[0]
        pair.clock.advance(0.01)
        pair.a.send(b"two")                  # a later probe deadline
        pair.clock.advance(0)
        self.assertEqual(pair.clock.getDelayedCalls(), [armed])
        self.assertLessEqual(armed.getTime(), pair.a.session.nextTimeout())

    def test_closeLeavesNoCallScheduled(self):
        pair = Pair()
        pair.a.send(b"one")
        pair.clock.advance(0)
        pair.a.send(b"two")
        pair.a.close()
        pair.b.close()
        self.assertEqual(pair.clock.getDelayedCalls(), [])


class TurnEndTests(SynchronousTestCase):
    def test_oneCallRunsWhatIsQueuedAndWhatThatQueues(self):
        clock = task.Clock()
        turnEnd = TurnEnd(clock)
        ran = []
        turnEnd.add(lambda: ran.append("first") or turnEnd.add(lambda: ran.append("later")))
        turnEnd.add(lambda: ran.append("second"))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(ran, ["first", "second", "later"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_aFailingCallIsLoggedAndTheRestRun(self):
        clock = task.Clock()
        turnEnd = TurnEnd(clock)
        ran = []
        turnEnd.add(lambda: 1 / 0)
        turnEnd.add(lambda: ran.append("after"))
        clock.advance(0)
        self.assertEqual(ran, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_endlessRequeueingWaitsForTheNextTurn(self):
        clock = task.Clock()
        turnEnd = TurnEnd(clock)
        count = [0]

        def again():
            count[0] += 1
            turnEnd.add(again)
        turnEnd.add(again)
        (call,) = clock.getDelayedCalls()
        # Run it as the reactor would, once (Clock.advance(0) would also run,
        # at once, the call it schedules for the next turn).
        clock.calls.remove(call)
        call.func()
        self.assertEqual(count[0], MAX_PASSES)
        self.assertEqual(len(clock.getDelayedCalls()), 1, "the rest waits for the next turn")
        turnEnd.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_driversSharingOneFlushTogether(self):
        clock = task.Clock()
        turnEnd = TurnEnd(clock)
        out = []
        drivers = [SessionDriver(clock, out.append, lambda event: None,
                                 DEFAULT_SESSION_CONFIG, turnEnd) for _ in range(5)]
        for driver in drivers:
            driver.send(b"hi")
        self.assertEqual(len(clock.getDelayedCalls()), 1, "one end-of-turn call for all")
        clock.advance(0)
        self.assertEqual(len(out), len(drivers))
        self.assertEqual(len(clock.getDelayedCalls()), len(drivers), "each its own timer")


class CoreDriverInputTests(SynchronousTestCase):
    def test_anInputGetsTheTimeAndWhatItCausesLeavesAtOnce(self):
        clock = task.Clock()
        clock.advance(50)
        sent, events = [], []
        path = ServerPath(1000, bytes(16))
        driver = CoreDriver(clock, path, sent.append, events.append)
        driver.input(path.start)
        self.assertEqual(len(sent), 1)                  # the hello, in the same call
        driver.input(path.helloAcknowledged, ("192.0.2.1", 4000))
        self.assertEqual(path.publicAddress, ("192.0.2.1", 4000))
        self.assertEqual([type(e) for e in events], [ServerUdpStateChanged])
        self.assertEqual(len(clock.getDelayedCalls()), 1)   # the next ping, armed
        driver.close()
        self.assertEqual(clock.getDelayedCalls(), [])
