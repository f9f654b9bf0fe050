"""The cluster's Redis protocols read a burst of pub/sub messages in the call
that brings it (txredisapi alone reads what follows each bulk string on the
next reactor turn: three turns a message), however the bytes are cut."""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.cluster.link import _protocolClasses


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
