"""A hostile or broken server speaking the recovery messages (wire 40-49)
to a client, on the memory network: the client never crashes, ends either
joined or gone with one C{onLeaveServer}, and leaves no timer behind."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted import NetClient
from proud_twisted.testing import MemoryNetwork
from proud_twisted.wire.framing import FrameDecoder, encodeFrame
from proud_twisted.wire.messages import encodeMessage
from tests.support import RecordingClientEvents
from tests.test_recovery_attacks import _recoveryMessage, watchFailures

SERVER_IP = "203.0.113.9"
PORT = 40000
HOST_ID = 1000


class FakeServer(Protocol):
    """Accepts the join (recovery on), then says what the test gives it."""

    def __init__(self, script) -> None:
        self.script = script
        self.decoder = FrameDecoder(1 << 20)

    def dataReceived(self, data: bytes) -> None:
        for body in self.decoder.feed(data):
            if body[0] == 1:        # HELLO
                self.send(encodeMessage("RECOVERY", windowMs=self.script.windowMs,
                                        resumeSecret=b"k" * 32))
                self.send(encodeMessage("JOIN_ACCEPTED", hostID=HOST_ID, udpToken=bytes(16),
                                        udpPort=PORT, clientTimeoutMs=2000, reply=b""))
                bodies = self.script.afterJoin
            elif body[0] == 42:     # RESUME_REQUEST
                bodies = self.script.afterResume
            else:
                continue
            for reply in bodies:
                self.send(reply)

    def send(self, body: bytes) -> None:
        self.transport.write(encodeFrame(body))


class Script:
    def __init__(self, windowMs, afterJoin, afterResume) -> None:
        self.windowMs, self.afterJoin, self.afterResume = windowMs, afterJoin, afterResume


class HostileServerTests(SynchronousTestCase):

    def test_aHostileServerCannotCrashTheClient(self):
        failures = watchFailures(self)
        net = MemoryNetwork(seed=3)
        serverHost = net.addHost(SERVER_IP)
        script = Script(1000, [], [])
        serverHost.listenTCP(PORT, Factory.forProtocol(lambda: FakeServer(script)))
        addresses = itertools.count(1)
        messages = st.lists(_recoveryMessage([HOST_ID, HOST_ID + 1]), max_size=5)

        @settings(max_examples=150, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(windowMs=st.sampled_from([0, 500, 3000]), afterJoin=messages,
               afterResume=messages, drop=st.booleans())
        def attack(windowMs, afterJoin, afterResume, drop):
            script.windowMs, script.afterJoin, script.afterResume = (windowMs, afterJoin,
                                                                     afterResume)
            n = next(addresses)
            host = net.addHost(f"198.51.{n // 250}.{n % 250 + 1}")
            client = NetClient(RecordingClientEvents(net.clock), reactor=host,
                               encryption=False)
            joined = client.connect(SERVER_IP, PORT, b"0123456789abcdef")
            joined.addErrback(lambda failure: None)
            net.advance(0.5)
            if drop:
                net.disconnectHost(host)
            net.advance(4)
            left = client.events.rec.count("onLeaveServer")
            self.assertLessEqual(left, 1)
            client.disconnect()
            net.advance(3)
            self.assertEqual(client.getLocalHostID(), 0)
            names = [event[0] for event in client.events.rec.events]
            self.assertLessEqual(names.count("onLeaveServer"), 1)
            if "onLeaveServer" in names:        # the last word
                self.assertEqual(names[-1], "onLeaveServer")
            self.assertEqual(host.getDelayedCalls(), [])

        attack()
        self.assertEqual([formatEvent(e) for e in failures], [])

    def test_noResumeAfterTheServerEndedTheSession(self):
        """A server that ends the session (SESSION_ENDED) while the client
        resumes it, then challenges or accepts the resume anyway: a protocol
        error for the client, never a crash (a case the fuzz above found)."""
        for answer in (encodeMessage("RESUME_CHALLENGE", nonce=bytes(16)),
                       encodeMessage("RESUME_ACCEPTED", received=0)):
            failures = watchFailures(self)
            net = MemoryNetwork(seed=5)
            serverHost = net.addHost(SERVER_IP)
            script = Script(3000, [], [encodeMessage("SESSION_ENDED"), answer])
            servers = []

            def build(script=script, servers=servers):
                servers.append(FakeServer(script))
                return servers[-1]

            serverHost.listenTCP(PORT, Factory.forProtocol(build))
            host = net.addHost("198.51.100.7")
            client = NetClient(RecordingClientEvents(net.clock), reactor=host,
                               encryption=False)
            client.connect(SERVER_IP, PORT, b"0123456789abcdef").addErrback(lambda f: None)
            net.advance(0.5)
            servers[0].transport.abortConnection()      # a drop: the client resumes
            net.advance(4)
            self.assertGreaterEqual(len(servers), 2)
            client.disconnect()
            net.advance(3)
            self.assertEqual([formatEvent(e) for e in failures], [])
            self.assertEqual(client.getLocalHostID(), 0)
