"""The cluster's Redis protocols: the subscriber reads a burst of pub/sub
messages in the call that brings it, however the bytes are cut; the command
connection sends quiet publications (no Deferred) in order with the other
commands, counts their replies off, and reports those Redis refuses or
leaves unanswered."""

import importlib
import sys

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.cluster.errors import ClusterUnavailable
from proud_twisted.cluster.link import RedisLink, _LinkFactory, _protocolClasses
from proud_twisted.cluster.redisurl import parseRedisURL


def message(channel: bytes, payload: bytes) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel), channel, len(payload), payload)


class _Link:
    def __init__(self) -> None:
        self.got = []

    def onMessage(self, channel, payload) -> None:
        self.got.append((channel, payload))


class _Factory:
    def __init__(self) -> None:
        self.link = _Link()


def subscriber():
    _, subscriberClass = _protocolClasses()
    proto = subscriberClass(charset=None, convertNumbers=False)
    proto.factory = _Factory()
    proto.transport = StringTransport()
    return proto


class BurstTests(SynchronousTestCase):
    PAYLOADS = tuple(b"m%d" % i + b"\r\n$*:" * (i % 3) for i in range(60))

    def burst(self) -> bytes:
        return b"".join(message(b"proud:inbox:a", p) for p in self.PAYLOADS)

    def test_aBurstIsReadInTheCallThatBringsIt(self):
        proto = subscriber()
        proto.dataReceived(self.burst())
        self.assertEqual(proto.factory.link.got,
                         [(b"proud:inbox:a", p) for p in self.PAYLOADS])

    def test_bytesCutAnywhereAreReadWholeAndInOrder(self):
        for step in (1, 7, 64, 1000):
            proto = subscriber()
            data = self.burst()
            for i in range(0, len(data), step):
                proto.dataReceived(data[i:i + step])
            self.assertEqual(proto.factory.link.got,
                             [(b"proud:inbox:a", p) for p in self.PAYLOADS], step)

    def test_aClosingConnectionReadsNoFurther(self):
        proto = subscriber()
        proto.transport.disconnecting = True
        proto.dataReceived(self.burst())
        self.assertLess(len(proto.factory.link.got), 2)


class QuietPublicationTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.failed = []
        self.link = RedisLink(parseRedisURL("redis://127.0.0.1:1/0"), self.clock, [],
                              onMessage=None, onUp=None, onDown=None,
                              onPublishFailed=lambda count, why: self.failed.append(
                                  (count, why)))
        commandClass, _ = _protocolClasses()
        self.proto = _LinkFactory(self.link, commandClass, 0).buildProtocol(None)
        self.proto.makeConnection(StringTransport())
        self.proto.dataReceived(b"+OK\r\n")            # SELECT 0: ready
        self.assertIs(self.link._commands, self.proto)
        self.proto.transport.clear()

    def test_repliesGoToTheirCommandsInOrder(self):
        got = self.link.command("GET", "k")
        self.assertTrue(self.link.publishQuietly("inbox", b"frame-1"))
        counted = self.link.publish("inbox", b"loud")
        self.assertTrue(self.link.publishQuietly("inbox", b"frame-2"))
        self.assertEqual(self.link.pendingBytes, len(b"frame-1loudframe-2"))
        self.assertEqual(self.proto.transport.value(), b"".join(
            b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
            for words in ((b"GET", b"k"), (b"PUBLISH", b"inbox", b"frame-1"),
                          (b"PUBLISH", b"inbox", b"loud"), (b"PUBLISH", b"inbox", b"frame-2"))))
        self.proto.dataReceived(b"$1\r\nv\r\n:1\r\n:2\r\n:1\r\n")
        self.assertEqual(self.successResultOf(got), b"v")
        self.assertEqual(self.successResultOf(counted), 2)
        self.assertEqual((self.link.pendingBytes, self.failed), (0, []))
        self.assertIsNone(self.proto.oldestUnanswered())

    def test_anErrorForAQuietPublicationIsReportedAndTheNextReplyStillFits(self):
        self.link.publishQuietly("inbox", b"frame")
        got = self.link.command("GET", "k")
        self.proto.dataReceived(b"-NOPERM no rights\r\n$1\r\nv\r\n")
        self.assertEqual(self.failed, [(1, "Redis answered NOPERM no rights")])
        self.assertEqual(self.successResultOf(got), b"v")
        self.assertEqual(self.link.pendingBytes, 0)

    def test_quietPublicationsUnansweredWhenTheConnectionIsLostAreReported(self):
        for _ in range(3):
            self.link.publishQuietly("inbox", b"frame")
        got = self.link.command("GET", "k")
        self.proto.connectionLost(ConnectionError("gone"))
        self.assertEqual(self.failed, [(3, "the connection to Redis was lost first")])
        self.assertEqual(self.link.pendingBytes, 0)
        self.failureResultOf(got, ClusterUnavailable)
        self.assertFalse(self.link.publishQuietly("inbox", b"frame"))    # (down)
        self.assertEqual(self.link.pendingBytes, 0)

    def test_anUnansweredQuietPublicationTripsTheWatchdog(self):
        self.link.publishQuietly("inbox", b"frame")
        self.clock.advance(self.link.commandTimeout + 0.01)
        self.assertTrue(self.proto.transport.disconnecting)


class WithoutHiredisTests(SynchronousTestCase):
    def test_theClusterSaysWhatToInstall(self):
        saved = importlib.import_module("hiredis")
        sys.modules["hiredis"] = None                   # (import hiredis: ImportError)
        self.addCleanup(sys.modules.__setitem__, "hiredis", saved)
        with self.assertRaises(ImportError) as caught:
            _protocolClasses()
        self.assertIn("proud-twisted[cluster]", str(caught.exception))
