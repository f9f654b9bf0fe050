"""The UDP socket buffers that servers and clients ask the OS for."""

import socket
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import SocketBuffers
from proud_twisted._glue import udpbuffers as _udpbuffers
from proud_twisted._glue.udpbuffers import growBuffers, shortfall, sizeUdpBuffers

RCV, SND = socket.SO_RCVBUF, socket.SO_SNDBUF
(_, RCVFORCE), (_, SNDFORCE) = _udpbuffers._OPTIONS
FORCE = {RCVFORCE: RCV, SNDFORCE: SND}


class FakeSocket:
    """Buffers as an OS keeps them: plain requests are capped at C{cap}; the
    privileged ones are refused unless C{privileged}."""

    def __init__(self, default: int, cap: int, privileged: bool = False) -> None:
        self.sizes = {RCV: default, SND: default}
        self.cap = cap
        self.privileged = privileged
        self.asked = []

    def getsockopt(self, level, option):
        assert level == socket.SOL_SOCKET
        return self.sizes[option]

    def setsockopt(self, level, option, size):
        assert level == socket.SOL_SOCKET
        self.asked.append(option)
        if option in FORCE:
            if not self.privileged:
                raise PermissionError(1, "Operation not permitted")
            self.sizes[FORCE[option]] = size
        else:
            self.sizes[option] = min(size, self.cap)


class _Port:
    def __init__(self, sock=None):
        if sock is not None:
            self.socket = sock


class GrowBuffersTests(SynchronousTestCase):
    def test_growsToTheSizeAskedFor(self):
        sock = FakeSocket(default=1000, cap=10**9)
        self.assertEqual(growBuffers(sock, 5000), SocketBuffers(5000, 5000))
        self.assertEqual(sock.asked, [RCV, SND])

    def test_neverShrinks(self):
        sock = FakeSocket(default=8000, cap=10**9)
        self.assertEqual(growBuffers(sock, 5000), SocketBuffers(8000, 8000))
        self.assertEqual(sock.asked, [])

    def test_beyondTheCapWithThePrivilegedOption(self):
        if RCVFORCE is None:
            self.skipTest("this platform has no SO_RCVBUFFORCE")
        sock = FakeSocket(default=1000, cap=2000, privileged=True)
        self.assertEqual(growBuffers(sock, 5000), SocketBuffers(5000, 5000))
        self.assertEqual(sock.asked, [RCV, RCVFORCE, SND, SNDFORCE])

    def test_privilegedOptionRefusedKeepsWhatTheCapAllows(self):
        sock = FakeSocket(default=1000, cap=2000, privileged=False)
        self.assertEqual(growBuffers(sock, 5000), SocketBuffers(2000, 2000))

    def test_platformWithoutThePrivilegedOptionStopsAtTheCap(self):
        sock = FakeSocket(default=1000, cap=2000, privileged=True)
        with mock.patch.object(_udpbuffers, "_OPTIONS", ((RCV, None), (SND, None))):
            self.assertEqual(growBuffers(sock, 5000), SocketBuffers(2000, 2000))
        self.assertEqual(sock.asked, [RCV, SND])

    def test_aRealSocketReportsWhatItGot(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        default = sock.getsockopt(socket.SOL_SOCKET, RCV)
        buffers = growBuffers(sock, 2 * default + 4096)
        self.assertEqual(buffers, SocketBuffers(sock.getsockopt(socket.SOL_SOCKET, RCV),
                                                sock.getsockopt(socket.SOL_SOCKET, SND)))
        self.assertGreater(buffers.receive, default)


class ShortfallTests(SynchronousTestCase):
    def test_noneWhenBothAreLargeEnough(self):
        self.assertIsNone(shortfall(SocketBuffers(5000, 6000), 5000))

    def test_namesTheShortBufferAndTheCaps(self):
        text = shortfall(SocketBuffers(4000, 6000), 5000)
        self.assertIn("less receive buffer than the 5000 bytes asked for", text)
        self.assertIn("sysctl -w net.core.rmem_max=5000 net.core.wmem_max=5000", text)
        self.assertIn("receive and send", shortfall(SocketBuffers(1, 1), 5000))


class SizeUdpBuffersTests(SynchronousTestCase):
    def setUp(self):
        self.warnings = []

    def warn(self, format, **fields):
        self.warnings.append(format.format(**fields))

    def realSocket(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        return sock

    def test_portWithoutAnOSSocketIsLeftAlone(self):
        self.assertIsNone(sizeUdpBuffers(_Port(), 5000, self.warn))
        self.assertIsNone(sizeUdpBuffers(_Port(FakeSocket(1000, 2000)), 5000, self.warn))
        self.assertEqual(self.warnings, [])

    def test_zeroKeepsTheOSDefaults(self):
        sock = self.realSocket()
        default = sock.getsockopt(socket.SOL_SOCKET, RCV)
        self.assertIsNone(sizeUdpBuffers(_Port(sock), 0, self.warn))
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, RCV), default)

    def test_warnsOnceOfAShortfall(self):
        sock = self.realSocket()
        with mock.patch.object(_udpbuffers, "growBuffers",
                               lambda s, size: SocketBuffers(100, size)):
            self.assertEqual(sizeUdpBuffers(_Port(sock), 5000, self.warn),
                             SocketBuffers(100, 5000))
        self.assertEqual(self.warnings, [shortfall(SocketBuffers(100, 5000), 5000)])

    def test_noWarningWhenGranted(self):
        sock = self.realSocket()
        size = sock.getsockopt(socket.SOL_SOCKET, RCV) // 2
        buffers = sizeUdpBuffers(_Port(sock), size, self.warn)
        self.assertGreaterEqual(min(buffers), size)
        self.assertEqual(self.warnings, [])


class BurstTests(SynchronousTestCase):
    """What the buffers are for: a burst waits in the kernel until read."""

    DATAGRAMS, SIZE = 500, 1200

    def receive(self, bufferSize):
        """Send the burst to a fresh loopback socket before reading any of it;
        the datagrams that arrived."""
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        self.addCleanup(sender.close)
        buffers = growBuffers(receiver, bufferSize) if bufferSize else None
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        address = receiver.getsockname()
        for i in range(self.DATAGRAMS):
            sender.sendto(i.to_bytes(4, "big") * (self.SIZE // 4), address)
        arrived = []
        while len(arrived) <= self.DATAGRAMS:
            try:
                arrived.append(int.from_bytes(receiver.recv(2048)[:4], "big"))
            except BlockingIOError:
                break
        return buffers, arrived

    def test_theServerDefaultHoldsTheBurst(self):
        buffers, arrived = self.receive(_udpbuffers.DEFAULT_SERVER_UDP_BUFFER)
        if buffers.receive < _udpbuffers.DEFAULT_SERVER_UDP_BUFFER:
            self.skipTest(f"the OS gave {buffers.receive} bytes (not root, low rmem_max)")
        self.assertEqual(arrived, list(range(self.DATAGRAMS)))

    def test_theOSDefaultMayNot(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        default = sock.getsockopt(socket.SOL_SOCKET, RCV)
        sock.close()
        if default >= 2 * self.DATAGRAMS * self.SIZE:
            self.skipTest(f"this OS's default receive buffer ({default}) holds the burst")
        _, arrived = self.receive(0)
        self.assertLess(len(arrived), self.DATAGRAMS)


class SettingTests(SynchronousTestCase):
    def test_aNegativeSizeIsRefusedByServerAndClient(self):
        from proud_twisted import NetClient, NetServer
        self.assertRaises(ValueError, NetServer, udpBufferSize=-1, encryption=False)
        self.assertRaises(ValueError, NetClient, udpBufferSize=-1)
        self.assertEqual(NetServer(udpBufferSize=0, encryption=False)._engine.udpBufferSize, 0)
