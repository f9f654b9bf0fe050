"""Public exports, the event base classes, and how user callbacks are called."""

import importlib

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

import proud_twisted
from proud_twisted._glue.callbacks import EventDispatcher
from proud_twisted.events import NetClientEvents, NetServerEvents
from proud_twisted.interfaces import INetClientEvent, INetServerEvent


class ExportsTests(SynchronousTestCase):
    def test_everyExportedNameExists(self):
        for name in proud_twisted.__all__:
            self.assertTrue(hasattr(proud_twisted, name), name)

    def test_coreNamesExported(self):
        for name in ("NetServer", "NetClient", "NetServerEvents", "NetClientEvents",
                     "INetServerEvent", "INetClientEvent", "ProtocolError"):
            self.assertIn(name, proud_twisted.__all__)

    def test_packageImportsCleanlyWithoutTheReactor(self):
        import sys
        before = "twisted.internet.reactor" in sys.modules
        importlib.reload(proud_twisted)
        self.assertEqual("twisted.internet.reactor" in sys.modules, before)


class BaseClassTests(SynchronousTestCase):
    def test_serverEventsProvideTheInterface(self):
        self.assertTrue(verifyClass(INetServerEvent, NetServerEvents))
        self.assertTrue(verifyObject(INetServerEvent, NetServerEvents()))

    def test_clientEventsProvideTheInterface(self):
        self.assertTrue(verifyClass(INetClientEvent, NetClientEvents))
        self.assertTrue(verifyObject(INetClientEvent, NetClientEvents()))

    def test_defaultConnectionRequestAccepts(self):
        self.assertTrue(NetServerEvents().onConnectionRequest(("1.2.3.4", 5), b""))


class DispatcherTests(SynchronousTestCase):
    def setUp(self):
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def test_exceptionIsLoggedAndReportedNotRaised(self):
        reported = []

        class Events(NetClientEvents):
            def onLeaveServer(self, reason):
                raise ValueError("game bug")

            def onException(self, failure):
                reported.append(failure)

        dispatch = EventDispatcher(Events())
        self.assertIsNone(dispatch("onLeaveServer", None))
        self.assertEqual(len(reported), 1)
        self.assertTrue(reported[0].check(ValueError))
        self.assertEqual(dispatch.exceptionCount, 1)
        self.assertTrue(any(e.get("log_failure") for e in self.logged))
        self.flushLoggedErrors(ValueError)

    def test_exceptionInOnExceptionDoesNotRecurse(self):
        class Events(NetClientEvents):
            def onLeaveServer(self, reason):
                raise ValueError("first")

            def onException(self, failure):
                raise KeyError("second")

        dispatch = EventDispatcher(Events())
        dispatch("onLeaveServer", None)
        self.assertEqual(dispatch.exceptionCount, 2)
        self.flushLoggedErrors(ValueError, KeyError)

    def test_returnValuePassesThrough(self):
        self.assertEqual(EventDispatcher(NetServerEvents())("onConnectionRequest", None, b""),
                         True)


class OnceLogTests(SynchronousTestCase):
    def test_logsOncePerKeyAndForgetsOldestBeyondLimit(self):
        from twisted.logger import Logger

        from proud_twisted._glue.oncelog import OnceLog
        seen = []
        once = OnceLog(Logger(observer=seen.append), limit=2)
        self.assertTrue(once.warn("a", "first {x}", x=1))
        self.assertFalse(once.warn("a", "again"))
        once.warn("b", "b")
        once.warn("c", "c")             # pushes "a" out
        self.assertTrue(once.warn("a", "a is new again"))
        self.assertEqual(len(seen), 4)
