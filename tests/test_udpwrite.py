"""The framework's UDP write: sends to IP literals, drops what cannot leave."""

import socket

from twisted.internet import error
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted._glue.udpwrite import datagramWriter


class _Port:
    """What datagramWriter reads of a listening Twisted UDP port."""

    def __init__(self, sock=None):
        if sock is not None:
            self.socket = sock
        self.written = []

    def write(self, data, address):
        self.written.append((data, address))


class DatagramWriterTests(SynchronousTestCase):
    def setUp(self):
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.settimeout(5)
        self.addCleanup(self.sender.close)
        self.addCleanup(self.receiver.close)
        self.write = datagramWriter(_Port(self.sender))

    def test_sends(self):
        self.write(b"hello", self.receiver.getsockname())
        self.assertEqual(self.receiver.recvfrom(100), (b"hello", self.sender.getsockname()))

    def test_addressOfTheOtherFamilyIsDropped(self):
        self.write(b"lost", ("::1", 9))
        self.write(b"arrives", self.receiver.getsockname())
        self.assertEqual(self.receiver.recvfrom(100)[0], b"arrives")

    def test_tooLongRaises(self):
        self.assertRaises(error.MessageLengthError, self.write, b"x" * 70000,
                          self.receiver.getsockname())

    def test_closedSocketDrops(self):
        self.sender.close()
        self.write(b"lost", self.receiver.getsockname())

    def test_portWithoutASocketKeepsItsWrite(self):
        port = _Port()
        datagramWriter(port)(b"x", ("127.0.0.9", 1))
        self.assertEqual(port.written, [(b"x", ("127.0.0.9", 1))])
