"""Public exports, the event base classes, and how user callbacks are called."""

import pathlib
import subprocess
import sys

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

import proud_twisted
from proud_twisted._glue.callbacks import EventDispatcher
from proud_twisted.events import NetClientEvents, NetServerEvents
from proud_twisted.interfaces import INetClientEvent, INetServerEvent

ROOT = pathlib.Path(__file__).resolve().parent.parent

NO_REACTOR_CHECK = """
import importlib, pkgutil, sys

def publicModules(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if not info.name.rpartition(".")[2].startswith("_"):
            module = importlib.import_module(info.name)
            yield info.name
            if info.ispkg:
                yield from publicModules(module)

def checked(name):
    if "twisted.internet.reactor" in sys.modules:
        sys.exit(f"importing {name} imported twisted.internet.reactor")
    print(name)

import proud_twisted
checked("proud_twisted")
for name in publicModules(proud_twisted):
    checked(name)
"""
"""Imports the package, then each public module, one after the other, and
stops at the first after which the reactor is imported."""


class ExportsTests(SynchronousTestCase):
    def test_everyExportedNameExists(self):
        for name in proud_twisted.__all__:
            self.assertTrue(hasattr(proud_twisted, name), name)

    def test_coreNamesExported(self):
        for name in ("NetServer", "NetClient", "NetServerEvents", "NetClientEvents",
                     "INetServerEvent", "INetClientEvent", "ProtocolError"):
            self.assertIn(name, proud_twisted.__all__)

    def test_packageImportsCleanlyWithoutTheReactor(self):
        """In a fresh interpreter, neither the package nor any of its public
        modules imports the global reactor."""
        done = subprocess.run([sys.executable, "-c", NO_REACTOR_CHECK], cwd=ROOT,
                              capture_output=True, text=True, check=False, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        checked = done.stdout.split()
        self.assertIn("proud_twisted", checked)
        self.assertIn("proud_twisted.client", checked)
        self.assertIn("proud_twisted.testing", checked)


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
