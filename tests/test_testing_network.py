"""
Tests for L{proud_twisted.testing}: the in-memory network, its NAT boxes,
link conditions, UDP ports and TCP connections.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.interfaces import (
    IConnector,
    IHalfCloseableProtocol,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    ITCPTransport,
    IUDPTransport,
)
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Factory,
    Protocol,
    ReconnectingClientFactory,
)
from twisted.internet.task import LoopingCall
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proud_twisted.testing import (
    HostReactor,
    LinkConditions,
    MemoryNetwork,
    NATType,
)

SERVER_IP = "203.0.113.1"
OTHER_IP = "203.0.113.9"
NAT_IP = "198.51.100.1"


class Recorder(DatagramProtocol):
    """
    Records what it receives, with the time, and echoes if asked.
    """

    def __init__(self, clock, echo=False):
        self.clock = clock
        self.echo = echo
        self.received = []
        self.started = self.stopped = 0

    def startProtocol(self):
        self.started += 1

    def stopProtocol(self):
        self.stopped += 1

    def datagramReceived(self, data, addr):
        self.received.append((self.clock.seconds(), data, addr))
        if self.echo:
            self.transport.write(data, addr)

    def payloads(self):
        return [data for _, data, _ in self.received]

    def senders(self):
        return [addr for _, _, addr in self.received]


def listen(host: HostReactor, port=0, echo=False):
    """
    A L{Recorder} on C{host}; return (protocol, port).
    """
    protocol = Recorder(host, echo)
    return protocol, host.listenUDP(port, protocol)


class TopologyTests(SynchronousTestCase):
    def test_interfaces(self):
        """
        Hosts are reactors; ports, transports and connectors provide the
        Twisted interfaces.
        """
        net = MemoryNetwork()
        host = net.addHost(SERVER_IP)
        for iface in (IReactorTime, IReactorUDP, IReactorTCP):
            self.assertTrue(verifyObject(iface, host))
        _, udpPort = listen(host)
        self.assertTrue(verifyObject(IListeningPort, udpPort))
        self.assertTrue(verifyObject(IUDPTransport, udpPort))
        tcpPort = host.listenTCP(80, Factory.forProtocol(Protocol))
        self.assertTrue(verifyObject(IListeningPort, tcpPort))
        client = net.addHost(OTHER_IP)
        factory = ClientFactory.forProtocol(Protocol)
        connector = client.connectTCP(SERVER_IP, 80, factory)
        self.assertTrue(verifyObject(IConnector, connector))
        net.advance(1)
        self.assertTrue(verifyObject(ITCPTransport, connector.transport))

    def test_exports(self):
        """
        Every name in testing.__all__ exists.
        """
        from proud_twisted import testing

        for name in testing.__all__:
            self.assertTrue(hasattr(testing, name), name)

    def test_addressesAreUnique(self):
        """
        An address can be given once per realm; LANs behind different NATs
        may reuse addresses.
        """
        net = MemoryNetwork()
        net.addHost(SERVER_IP)
        self.assertRaises(ValueError, net.addHost, SERVER_IP)
        self.assertRaises(ValueError, net.addNAT, SERVER_IP)
        self.assertRaises(ValueError, net.addHost, "not an ip")
        natA = net.addNAT(NAT_IP)
        natB = net.addNAT("198.51.100.2")
        natA.addHost("10.0.0.2")
        natB.addHost("10.0.0.2")
        self.assertRaises(ValueError, natA.addHost, "10.0.0.2")

    def test_sharedClock(self):
        """
        Every host's time is the network's clock.
        """
        net = MemoryNetwork()
        a, b = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        called = []
        a.callLater(2, called.append, "a")
        b.callLater(1, called.append, "b")
        self.assertEqual(len(net.clock.getDelayedCalls()), 2)
        self.assertEqual(a.getDelayedCalls(), b.getDelayedCalls())
        net.advance(2)
        self.assertEqual(called, ["b", "a"])
        self.assertEqual(a.seconds(), 2.0)
        self.assertEqual(b.seconds(), 2.0)


class UDPTests(SynchronousTestCase):
    def setUp(self):
        self.net = MemoryNetwork(seed=1)
        self.server = self.net.addHost(SERVER_IP)
        self.client = self.net.addHost(OTHER_IP)

    def test_echo(self):
        """
        Datagrams between public hosts arrive once, after the latency, from
        the sender's own address.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.05))
        echo, _ = listen(self.server, 5000, echo=True)
        recorder, port = listen(self.client)
        port.write(b"ping", (SERVER_IP, 5000))
        self.assertEqual(echo.received, [])
        self.net.advance(0.049)
        self.assertEqual(echo.received, [])
        self.net.advance(0.2)
        self.assertEqual(echo.received, [(0.05, b"ping", (OTHER_IP, port.port))])
        self.assertEqual(recorder.received, [(0.1, b"ping", (SERVER_IP, 5000))])
        self.assertEqual(self.net.stats["udp.sent"], 2)
        self.assertEqual(self.net.stats["udp.delivered"], 2)

    def test_portLifecycle(self):
        """
        Port 0 picks a free port, a used port cannot be bound again, the
        wildcard binds the host's address, stopListening stops the protocol
        and frees the port.
        """
        protocol, port = listen(self.server, 0)
        self.assertEqual(protocol.started, 1)
        self.assertIs(protocol.transport, port)
        host = port.getHost()
        self.assertEqual((host.type, host.host), ("UDP", SERVER_IP))
        self.assertRaises(error.CannotListenError, listen, self.server, host.port)
        self.assertRaises(
            error.CannotListenError,
            self.server.listenUDP, 0, Recorder(self.server), "192.0.2.1",
        )
        _, other = listen(self.server, 0)
        self.assertNotEqual(other.getHost().port, host.port)
        port.stopListening()
        self.assertEqual(protocol.stopped, 1)
        self.assertIsNone(protocol.transport)
        listen(self.server, host.port)

    def test_undeliverable(self):
        """
        Datagrams to nobody, to a stopped port or written on one are dropped
        and counted.
        """
        _, port = listen(self.client)
        port.write(b"x", (SERVER_IP, 9))
        port.write(b"x", ("192.0.2.77", 9))
        receiver, serverPort = listen(self.server, 7)
        port.write(b"x", (SERVER_IP, 7))
        serverPort.stopListening()
        self.net.advance(1)
        port.stopListening()
        port.write(b"x", (SERVER_IP, 7))
        stats = self.net.stats
        self.assertEqual(receiver.received, [])
        self.assertEqual(stats["udp.dropped.noListener"], 2)
        self.assertEqual(stats["udp.dropped.unroutable"], 1)
        self.assertEqual(stats["udp.dropped.closed"], 1)
        self.assertEqual(stats["udp.dropped"], 4)
        self.assertEqual(stats["udp.delivered"], 0)

    def test_badWrites(self):
        """
        Writes need bytes, an IPv4 address and a size UDP can carry.
        """
        _, port = listen(self.client)
        self.assertRaises(TypeError, port.write, "text", (SERVER_IP, 1))
        self.assertRaises(error.InvalidAddressError, port.write, b"x", ("example.com", 1))
        self.assertRaises(ValueError, port.write, b"x")
        self.assertRaises(error.MessageLengthError, port.write, b"x" * 65508, (SERVER_IP, 1))

    def test_errorInDatagramReceived(self):
        """
        An exception from datagramReceived is logged; the network goes on.
        """

        class Broken(DatagramProtocol):
            def datagramReceived(self, data, addr):
                raise ValueError(data)

        self.server.listenUDP(5000, Broken())
        good, _ = listen(self.server, 5001)
        _, port = listen(self.client)
        port.write(b"bad", (SERVER_IP, 5000))
        port.write(b"good", (SERVER_IP, 5001))
        self.net.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(good.payloads(), [b"good"])
        self.assertEqual(self.net.stats["udp.delivered"], 2)

    def test_connectedUDP(self):
        """
        A connected port sends to its peer and hears only from it.
        """
        _, port = listen(self.client)
        port.connect(SERVER_IP, 5000)
        echo, _ = listen(self.server, 5000, echo=True)
        _, stranger = listen(self.server, 5001)
        port.write(b"a")
        stranger.write(b"b", (OTHER_IP, port.getHost().port))
        self.net.advance(1)
        self.assertEqual(echo.payloads(), [b"a"])
        self.assertEqual(port.protocol.payloads(), [b"a"])

    def test_loopback(self):
        """
        A host reaches itself by its own or the loopback address.
        """
        _a, portA = listen(self.server, 1)
        b, _portB = listen(self.server, 2)
        portA.write(b"own", (SERVER_IP, 2))
        portA.write(b"lo", ("127.0.0.1", 2))
        self.net.advance(0)
        self.assertEqual(
            b.received, [(0, b"own", (SERVER_IP, 1)), (0, b"lo", ("127.0.0.1", 1))]
        )

    def test_maxPacketSize(self):
        """
        A datagram longer than the receiving port's maxPacketSize is cut.
        """
        protocol = Recorder(self.server)
        self.server.listenUDP(5000, protocol, maxPacketSize=4)
        _, port = listen(self.client)
        port.write(b"abcdefgh", (SERVER_IP, 5000))
        self.net.advance(0)
        self.assertEqual(protocol.payloads(), [b"abcd"])


# Whether an unsolicited datagram reaches a host behind each NAT type after
# it sent to SERVER_IP:5000 -- from (the destination itself, the same IP on
# another port, a third party).
NAT_FILTERING = {
    NATType.FULL_CONE: (True, True, True),
    NATType.ADDRESS_RESTRICTED: (True, True, False),
    NATType.PORT_RESTRICTED: (True, False, False),
    NATType.SYMMETRIC: (True, False, False),
}


class NATTests(SynchronousTestCase):
    def makeNetwork(self, natType, **kw):
        self.net = MemoryNetwork(seed=3)
        self.server = self.net.addHost(SERVER_IP)
        self.third = self.net.addHost(OTHER_IP)
        self.nat = self.net.addNAT(NAT_IP, natType, **kw)
        self.alice = self.nat.addHost("10.0.0.2")
        self.aliceProto, self.alicePort = listen(self.alice, 4000)

    def mappedAddress(self, destination=(SERVER_IP, 5000)):
        """
        Alice sends to C{destination}; return her address as seen there.
        """
        host = self.server if destination[0] == SERVER_IP else self.third
        seen = Recorder(host)
        port = host.listenUDP(destination[1], seen)
        self.alicePort.write(b"hello", destination)
        self.net.advance(1)
        port.stopListening()
        [(_, _, address)] = seen.received
        return address

    def test_filteringTable(self):
        """
        Each NAT type passes or drops unsolicited datagrams by RFC 3489.
        """
        observed = {}
        for natType in NATType:
            self.makeNetwork(natType)
            mapped = self.mappedAddress()
            self.assertEqual(mapped[0], NAT_IP)
            senders = [
                listen(self.server, 5000)[1],
                listen(self.server, 5001)[1],
                listen(self.third, 5000)[1],
            ]
            outcome = []
            for sender in senders:
                before = len(self.aliceProto.received)
                sender.write(b"unsolicited", mapped)
                self.net.advance(1)
                outcome.append(len(self.aliceProto.received) > before)
            observed[natType] = tuple(outcome)
        self.assertEqual(observed, NAT_FILTERING)

    def test_coneMapping(self):
        """
        Cone NATs keep one public port per inside address, sequential from
        40000.
        """
        for natType in (NATType.FULL_CONE, NATType.ADDRESS_RESTRICTED,
                        NATType.PORT_RESTRICTED):
            self.makeNetwork(natType)
            first = self.mappedAddress((SERVER_IP, 5000))
            second = self.mappedAddress((OTHER_IP, 6000))
            self.assertEqual(first, (NAT_IP, 40000))
            self.assertEqual(second, first)

    def test_symmetricMapping(self):
        """
        A symmetric NAT gives each destination its own unpredictable port,
        and keeps it for that destination.
        """
        self.makeNetwork(NATType.SYMMETRIC)
        ports = [
            self.mappedAddress((SERVER_IP, 5000))[1],
            self.mappedAddress((SERVER_IP, 5001))[1],
            self.mappedAddress((OTHER_IP, 5000))[1],
        ]
        self.assertEqual(len(set(ports)), 3)
        self.assertNotEqual(sorted(ports), list(range(ports[0], ports[0] + 3)))
        self.assertEqual(self.mappedAddress((SERVER_IP, 5001))[1], ports[1])
        self.assertEqual(len(self.nat.udpMappings()), 3)

    def test_mappingTimeout(self):
        """
        A mapping unused outbound for longer than the timeout stops letting
        replies in; the next datagram out gets a fresh port.
        """
        self.makeNetwork(NATType.FULL_CONE, mappingTimeout=30)
        mapped = self.mappedAddress()
        _, sender = listen(self.server, 5005)
        self.net.advance(29)
        sender.write(b"in time", mapped)
        self.net.advance(1.5)
        sender.write(b"too late", mapped)
        self.net.advance(1)
        self.assertEqual(self.aliceProto.payloads(), [b"in time"])
        self.assertEqual(self.net.stats["udp.dropped.filtered"], 1)
        self.assertNotEqual(self.mappedAddress(), mapped)

    def test_lanAndHairpin(self):
        """
        Hosts behind one NAT reach each other on LAN addresses; datagrams to
        their own NAT's public address are dropped.
        """
        self.makeNetwork(NATType.FULL_CONE)
        bob = self.nat.addHost("10.0.0.3")
        bobProto, _ = listen(bob, 4000, echo=True)
        self.alicePort.write(b"lan", ("10.0.0.3", 4000))
        self.net.advance(1)
        self.assertEqual(bobProto.senders(), [("10.0.0.2", 4000)])
        self.assertEqual(self.aliceProto.senders(), [("10.0.0.3", 4000)])
        bobMapped = listen(bob, 4001)[1]
        bobMapped.write(b"out", (SERVER_IP, 5000))
        self.alicePort.write(b"hairpin", (NAT_IP, 40000))
        self.net.advance(1)
        self.assertEqual(bobProto.payloads(), [b"lan"])
        self.assertEqual(self.net.stats["udp.dropped.hairpin"], 1)
        self.assertEqual([m.inside for m in self.nat.udpMappings()],
                         [("10.0.0.3", 4001)])

    def test_overlappingLANs(self):
        """
        Equal LAN addresses behind two NATs are separate hosts.
        """
        self.makeNetwork(NATType.FULL_CONE)
        otherNAT = self.net.addNAT("198.51.100.2", NATType.FULL_CONE)
        twin = otherNAT.addHost("10.0.0.2")
        twinProto, twinPort = listen(twin, 4000)
        twinPort.write(b"from twin", ("10.0.0.2", 4000))
        self.net.advance(1)
        self.assertEqual(twinProto.payloads(), [b"from twin"])
        self.assertEqual(self.aliceProto.received, [])
        self.assertRaises(ValueError, self.net.setConditions, "10.0.0.2", SERVER_IP,
                          LinkConditions())

    def test_punchThroughRestrictedNATs(self):
        """
        Two port-restricted NATs punch through when both sides send to each
        other's mapped address; a symmetric NAT on both sides does not.
        """
        for natType, punched in ((NATType.PORT_RESTRICTED, True),
                                 (NATType.SYMMETRIC, False)):
            self.makeNetwork(natType)
            alicePublic = self.mappedAddress()
            otherNAT = self.net.addNAT("198.51.100.2", natType)
            bob = otherNAT.addHost("10.1.0.2")
            bobProto, bobPort = listen(bob, 4000)
            seen = Recorder(self.server)
            self.server.listenUDP(5001, seen)
            bobPort.write(b"hello", (SERVER_IP, 5001))
            self.net.advance(1)
            bobPublic = seen.received[0][2]
            for _ in range(3):
                self.alicePort.write(b"punch", bobPublic)
                bobPort.write(b"punch", alicePublic)
                self.net.advance(0.5)
            self.assertEqual(bool(bobProto.received), punched, natType)
            self.assertEqual(bool(self.aliceProto.received), punched, natType)


def sendSequence(net, sender, port, destination, count, interval):
    """
    Send C{count} numbered datagrams, one every C{interval} seconds.
    """
    numbers = iter(range(count))

    def sendOne():
        n = next(numbers, None)
        if n is None:
            loop.stop()
        else:
            port.write(b"%d" % (n,), destination)

    loop = LoopingCall(sendOne)
    loop.clock = sender
    loop.start(interval)
    net.advance(count * interval + 5)


class ConditionsTests(SynchronousTestCase):
    COUNT = 5000

    def scenario(self, seed, conditions):
        """
        Send numbered datagrams from a NATed client to a server under
        C{conditions}; return the network and the server's recorder.
        """
        net = MemoryNetwork(seed=seed)
        server = net.addHost(SERVER_IP)
        nat = net.addNAT(NAT_IP, NATType.FULL_CONE)
        client = nat.addHost("10.0.0.2")
        net.setConditions(client, server, conditions)
        recorder, _ = listen(server, 5000)
        _, port = listen(client)
        sendSequence(net, client, port, (SERVER_IP, 5000), self.COUNT, 0.001)
        return net, recorder

    def test_statistics(self):
        """
        Loss, duplication, reordering and delay match what was configured.
        """
        conditions = LinkConditions(loss=0.1, duplicate=0.05, reorder=0.05,
                                    latency=0.02, jitter=0.005)
        net, recorder = self.scenario(7, conditions)
        n = self.COUNT
        stats = net.stats
        self.assertEqual(stats["udp.sent"], n)
        self.assertApproximates(stats["udp.dropped.loss"] / n, 0.1, 0.02)
        survivors = n - stats["udp.dropped.loss"]
        self.assertApproximates(stats["udp.duplicated"] / survivors, 0.05, 0.015)
        self.assertEqual(stats["udp.delivered"], survivors + stats["udp.duplicated"])
        self.assertEqual(len(recorder.received), stats["udp.delivered"])

        numbers = [int(data) for data in recorder.payloads()]
        self.assertEqual(len(numbers) - len(set(numbers)), stats["udp.duplicated"])
        highest, late = -1, 0
        for number in numbers:
            if number < highest:
                late += 1
            highest = max(highest, number)
        copies = survivors + stats["udp.duplicated"]
        self.assertApproximates(late / copies, 0.05, 0.015)
        self.assertApproximates(stats["udp.reordered"] / copies, 0.05, 0.015)

        delays = [when - int(data) * 0.001 for when, data, _ in recorder.received]
        self.assertGreaterEqual(min(delays), 0.015 - 1e-9)
        self.assertLessEqual(max(delays), 0.025 + conditions.reorderDelay + 1e-6)
        onTime = sorted(delays)[: int(len(delays) * 0.9)]
        self.assertApproximates(sum(onTime) / len(onTime), 0.02, 0.003)

    def test_inOrderWithoutReorder(self):
        """
        Jitter alone does not reorder datagrams on one path.
        """
        _net, recorder = self.scenario(2, LinkConditions(latency=0.02, jitter=0.01))
        numbers = [int(data) for data in recorder.payloads()]
        self.assertEqual(numbers, list(range(self.COUNT)))

    def test_reproducible(self):
        """
        The same seed gives the same deliveries at the same times; another
        seed does not.
        """
        conditions = LinkConditions(loss=0.2, duplicate=0.1, reorder=0.1,
                                    latency=0.01, jitter=0.01)
        self.COUNT = 500
        first = self.scenario(11, conditions)[1].received
        again = self.scenario(11, conditions)[1].received
        other = self.scenario(12, conditions)[1].received
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)

    def test_wholeRunReproducible(self):
        """
        UDP, TCP and symmetric NAT ports together replay exactly from the
        seed.
        """
        first = mixedScenario(21)
        self.assertEqual(first, mixedScenario(21))
        self.assertNotEqual(first, mixedScenario(22))
        numbers = [int(string) for string in first[-2]]
        self.assertEqual(numbers, list(range(200 - len(numbers), 200)))
        self.assertGreater(len(numbers), 150)

    def test_blockedDropsUDP(self):
        """
        A blocked path drops UDP in its direction only, until lifted.
        """
        net = MemoryNetwork()
        server, client = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        serverProto, serverPort = listen(server, 5000)
        clientProto, clientPort = listen(client, 5000)
        net.setConditions(client, SERVER_IP, LinkConditions(blocked=True))
        clientPort.write(b"cut", (SERVER_IP, 5000))
        serverPort.write(b"open", (OTHER_IP, 5000))
        net.advance(1)
        net.setConditions(OTHER_IP, server, None)
        clientPort.write(b"back", (SERVER_IP, 5000))
        net.advance(1)
        self.assertEqual(serverProto.payloads(), [b"back"])
        self.assertEqual(clientProto.payloads(), [b"open"])
        self.assertEqual(net.stats["udp.dropped.blocked"], 1)

    def test_partition(self):
        """
        A partition blocks both directions whatever the conditions, and
        heals.
        """
        net = MemoryNetwork()
        server = net.addHost(SERVER_IP)
        nat = net.addNAT(NAT_IP, NATType.FULL_CONE)
        client = nat.addHost("10.0.0.2")
        net.setConditions(client, server, LinkConditions(latency=0.01))
        serverProto, _ = listen(server, 5000, echo=True)
        clientProto, clientPort = listen(client)
        net.partition(nat, server)
        clientPort.write(b"lost", (SERVER_IP, 5000))
        net.advance(1)
        net.heal(server, NAT_IP)
        clientPort.write(b"found", (SERVER_IP, 5000))
        net.advance(1)
        self.assertEqual(serverProto.payloads(), [b"found"])
        self.assertEqual(clientProto.payloads(), [b"found"])
        self.assertEqual(clientProto.received[0][0], 1.01)

    def test_hostConditionsWinOverNAT(self):
        """
        Conditions set for a host apply before those set for its NAT.
        """
        net = MemoryNetwork()
        server = net.addHost(SERVER_IP)
        nat = net.addNAT(NAT_IP, NATType.FULL_CONE)
        alice, bob = nat.addHost("10.0.0.2"), nat.addHost("10.0.0.3")
        net.setConditions(nat, server, LinkConditions(latency=0.5))
        net.setConditions(alice, server, LinkConditions(latency=0.1))
        serverProto, _ = listen(server, 5000)
        for host in (alice, bob):
            listen(host)[1].write(host.ip.encode(), (SERVER_IP, 5000))
        net.advance(1)
        self.assertEqual(
            [(when, data) for when, data, _ in serverProto.received],
            [(0.1, b"10.0.0.2"), (0.5, b"10.0.0.3")],
        )

    def test_invalidConditions(self):
        """
        Probabilities and delays are checked.
        """
        self.assertRaises(ValueError, LinkConditions, loss=1.5)
        self.assertRaises(ValueError, LinkConditions, latency=-1)

    @settings(max_examples=25, deadline=None)
    @given(
        seed=st.integers(0, 2**32),
        loss=st.floats(0, 1),
        duplicate=st.floats(0, 1),
        reorder=st.floats(0, 1),
        jitter=st.floats(0, 0.1),
    )
    def test_accounting(self, seed, loss, duplicate, reorder, jitter):
        """
        Once drained, every datagram sent (and every copy) is either
        delivered or counted as dropped, and no network call is left.
        """
        net = MemoryNetwork(seed=seed)
        server, client = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        net.setDefaultConditions(LinkConditions(loss, duplicate, reorder, 0.01, jitter))
        listen(server, 5000)
        _, port = listen(client)
        for n in range(50):
            port.write(b"x", (SERVER_IP, 5000 + n % 2))
        net.advance(1)
        stats = net.stats
        self.assertEqual(
            stats["udp.sent"] + stats["udp.duplicated"],
            stats["udp.delivered"] + stats["udp.dropped"],
        )
        self.assertEqual(net.clock.getDelayedCalls(), [])


class Echo(Int32StringReceiver):
    """
    Records each string and echoes it back.
    """

    def connectionMade(self):
        self.strings = []

    def stringReceived(self, string):
        self.strings.append(string)
        self.sendString(string)


class Collect(Protocol):
    """
    Collects raw bytes.
    """

    def connectionMade(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data


class Client(Int32StringReceiver):
    """
    Records strings, connection events and their times.
    """

    def __init__(self):
        self.strings = []
        self.events = []

    def connectionMade(self):
        self.events.append(("made", self.transport.reactor.seconds()))

    def stringReceived(self, string):
        self.strings.append(string)

    def connectionLost(self, reason):
        self.events.append(("lost", self.transport.reactor.seconds()))
        self.reason = reason


class RecordingServerFactory(Factory):
    def __init__(self, protocol=Echo):
        self.protocol = protocol
        self.built = []

    def buildProtocol(self, addr):
        proto = Factory.buildProtocol(self, addr)
        proto.peer = addr
        lost = proto.connectionLost

        def connectionLost(reason):
            proto.lostReason = reason
            lost(reason)

        proto.connectionLost = connectionLost
        self.built.append(proto)
        return proto


class RecordingClientFactory(ClientFactory):
    protocol = Client

    def __init__(self):
        self.failures = []
        self.losses = []
        self.started = 0

    def startedConnecting(self, connector):
        self.started += 1

    def buildProtocol(self, addr):
        self.proto = ClientFactory.buildProtocol(self, addr)
        return self.proto

    def clientConnectionFailed(self, connector, reason):
        self.failures.append(reason)

    def clientConnectionLost(self, connector, reason):
        self.losses.append(reason)


class TCPTests(SynchronousTestCase):
    def setUp(self):
        self.net = MemoryNetwork(seed=5)
        self.server = self.net.addHost(SERVER_IP)
        self.nat = self.net.addNAT(NAT_IP, NATType.PORT_RESTRICTED)
        self.client = self.nat.addHost("10.0.0.2")
        self.serverFactory = RecordingServerFactory()
        self.listening = self.server.listenTCP(8000, self.serverFactory)

    def connect(self, **kw):
        factory = RecordingClientFactory()
        connector = self.client.connectTCP(SERVER_IP, 8000, factory, **kw)
        return factory, connector

    def test_echo(self):
        """
        Strings go through in order after the latency; the server sees the
        NAT's public address and a mapped port.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.05, jitter=0.02))
        factory, connector = self.connect()
        self.assertEqual(factory.started, 1)
        self.net.advance(1)
        client = factory.proto
        [serverProto] = self.serverFactory.built
        self.assertEqual(serverProto.peer.host, NAT_IP)
        self.assertEqual(serverProto.peer.port, 40000)
        self.assertEqual(client.transport.getPeer().host, SERVER_IP)
        self.assertEqual(client.transport.getHost().host, "10.0.0.2")
        self.assertEqual(connector.getDestination().port, 8000)
        messages = [b"%d" % n * (n % 7 + 1) for n in range(200)]
        for message in messages:
            client.sendString(message)
        big = bytes(range(256)) * 350
        client.sendString(big)
        self.net.advance(1)
        self.assertEqual(client.strings[:-1], messages)
        self.assertTrue(client.strings[-1] == big)

    def test_handshakeTiming(self):
        """
        The server side is made one latency after connecting, the client
        side two.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.1))
        factory, _ = self.connect()
        self.net.runUntil(lambda: self.serverFactory.built, 1)
        self.assertEqual(self.net.clock.seconds(), 0.1)
        self.net.runUntil(lambda: hasattr(factory, "proto"), 1)
        self.assertEqual(factory.proto.events, [("made", 0.2)])

    def test_loseConnection(self):
        """
        loseConnection delivers what was written, then both sides see
        ConnectionDone, and the client factory hears clientConnectionLost.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.05))
        factory, connector = self.connect()
        self.net.advance(1)
        client = factory.proto
        client.sendString(b"last words")
        client.transport.loseConnection()
        self.assertTrue(client.transport.disconnecting)
        self.net.advance(1)
        [serverProto] = self.serverFactory.built
        self.assertTrue(serverProto.lostReason.check(error.ConnectionDone))
        self.assertTrue(client.reason.check(error.ConnectionDone))
        self.assertEqual(len(factory.losses), 1)
        self.assertTrue(factory.losses[0].check(error.ConnectionDone))
        self.assertEqual(connector.state, "disconnected")
        self.assertEqual(serverProto.strings, [b"last words"])
        self.assertEqual(client.strings, [])

    def test_serverCloses(self):
        """
        The server closing is seen by the client as ConnectionDone.
        """
        factory, _ = self.connect()
        self.net.advance(1)
        self.serverFactory.built[0].transport.loseConnection()
        self.net.advance(1)
        self.assertTrue(factory.proto.reason.check(error.ConnectionDone))

    def test_abortConnection(self):
        """
        abortConnection gives ConnectionAborted here and ConnectionLost there.
        """
        factory, _ = self.connect()
        self.net.advance(1)
        factory.proto.transport.abortConnection()
        self.net.advance(1)
        self.assertTrue(factory.proto.reason.check(error.ConnectionAborted))
        serverReason = self.serverFactory.built[0].lostReason
        self.assertTrue(serverReason.check(error.ConnectionLost))
        self.assertFalse(serverReason.check(error.ConnectionAborted))

    def test_refused(self):
        """
        Connecting where nothing listens fails with ConnectionRefusedError.
        """
        self.listening.stopListening()
        factory, connector = self.connect()
        self.net.advance(1)
        [reason] = factory.failures
        self.assertTrue(reason.check(error.ConnectionRefusedError))
        self.assertEqual(connector.state, "disconnected")
        self.assertEqual(self.net.stats["tcp.refused"], 1)

    def test_unreachableTimesOut(self):
        """
        Connecting to a NAT's public address (no port forwarding) or to an
        unknown address times out.
        """
        outside = self.net.addHost(OTHER_IP)
        factories = []
        for address in (NAT_IP, "192.0.2.4"):
            factory = RecordingClientFactory()
            outside.connectTCP(address, 8000, factory, timeout=5)
            factories.append(factory)
        self.net.advance(4.9)
        self.assertEqual([f.failures for f in factories], [[], []])
        self.net.advance(0.2)
        for factory in factories:
            [reason] = factory.failures
            self.assertTrue(reason.check(error.TimeoutError))
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_stopConnecting(self):
        """
        stopConnecting gives up with UserError and nothing reaches the
        server.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.1))
        factory, connector = self.connect()
        connector.stopConnecting()
        self.net.advance(1)
        [reason] = factory.failures
        self.assertTrue(reason.check(error.UserError))
        self.assertEqual(self.serverFactory.built, [])

    def test_badHost(self):
        """
        A host name other than localhost fails the DNS lookup.
        """
        factory = RecordingClientFactory()
        self.client.connectTCP("example.com", 80, factory)
        self.net.advance(0)
        [reason] = factory.failures
        self.assertTrue(reason.check(error.DNSLookupError))

    def test_blockedStallsTCP(self):
        """
        A blocked path holds TCP data, in order, until it is unblocked.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.01))
        factory, _ = self.connect()
        self.net.advance(1)
        client = factory.proto
        self.net.setConditions(self.server, self.client, LinkConditions(blocked=True))
        for n in range(5):
            client.sendString(b"%d" % n)
        self.net.advance(10)
        self.assertEqual(client.strings, [])
        self.assertEqual(self.net.stats["tcp.stalled"], 5)
        self.net.setConditions(self.server, self.client, None)
        self.assertEqual(client.strings, [])
        self.net.advance(0.01)
        self.assertEqual(client.strings, [b"0", b"1", b"2", b"3", b"4"])

    def test_partitionStallsConnect(self):
        """
        A connection attempt across a partition waits for the heal.
        """
        self.net.partition(self.nat, self.server)
        factory, _ = self.connect()
        self.net.advance(10)
        self.assertEqual(self.serverFactory.built, [])
        self.net.heal(self.nat, self.server)
        self.net.advance(0)
        self.assertTrue(factory.proto.transport.connected)
        self.assertEqual(factory.failures, [])

    def test_producerDelaysClose(self):
        """
        loseConnection waits for the registered producer to unregister; a
        pull producer is asked for more after each write.
        """
        collector = RecordingServerFactory(Collect)
        self.server.listenTCP(8001, collector)
        factory = RecordingClientFactory()
        self.client.connectTCP(SERVER_IP, 8001, factory)
        self.net.advance(1)
        transport = factory.proto.transport
        chunks = iter([b"a", b"b", b"c"])

        class Pull:
            def resumeProducing(self):
                chunk = next(chunks, None)
                if chunk is None:
                    transport.unregisterProducer()
                else:
                    transport.write(chunk)

            def stopProducing(self):
                pass

        transport.registerProducer(Pull(), False)
        transport.loseConnection()
        self.assertRaises(RuntimeError, transport.registerProducer, Pull(), False)
        self.net.advance(1)
        [serverProto] = collector.built
        self.assertEqual(serverProto.data, b"abc")
        self.assertTrue(serverProto.lostReason.check(error.ConnectionDone))

    def test_halfClose(self):
        """
        loseWriteConnection reaches a half-closeable peer as
        readConnectionLost, and it can still answer; other peers close.
        """

        @implementer(IHalfCloseableProtocol)
        class HalfClose(Collect):
            def readConnectionLost(self):
                self.transport.write(b"bye")
                self.transport.loseConnection()

            def writeConnectionLost(self):
                self.wrote = True

        for serverProtocol, expected in ((HalfClose, b"bye"), (Collect, b"")):
            collector = RecordingServerFactory(serverProtocol)
            listening = self.server.listenTCP(0, collector)
            factory = ClientFactory.forProtocol(HalfClose)
            self.client.connectTCP(SERVER_IP, listening.getHost().port, factory)
            self.net.advance(1)
            client = collector.built[0]
            [transport] = list(self.client._connections)
            transport.write(b"hi")
            transport.loseWriteConnection()
            transport.write(b"ignored")
            self.net.advance(1)
            self.assertEqual(client.data, b"hi")
            self.assertTrue(client.lostReason.check(error.ConnectionDone))
            self.assertTrue(transport.protocol.wrote)
            self.assertEqual(transport.protocol.data, expected)
            self.assertTrue(transport.disconnected)

    def test_errorInDataReceived(self):
        """
        An exception from dataReceived is logged and drops that connection:
        the peer sees ConnectionLost.
        """

        class Broken(Protocol):
            def dataReceived(self, data):
                raise ZeroDivisionError("broken on purpose")

        broken = RecordingServerFactory(Broken)
        self.server.listenTCP(8002, broken)
        factory = RecordingClientFactory()
        self.client.connectTCP(SERVER_IP, 8002, factory)
        self.net.advance(1)
        factory.proto.sendString(b"boom")
        self.net.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(broken.built[0].lostReason.check(ZeroDivisionError))
        self.assertTrue(factory.proto.reason.check(error.ConnectionLost))

    def test_lanConnection(self):
        """
        Hosts behind one NAT connect on LAN addresses without translation.
        """
        bob = self.nat.addHost("10.0.0.3")
        factory = RecordingServerFactory()
        bob.listenTCP(9000, factory)
        clientFactory = RecordingClientFactory()
        self.client.connectTCP("10.0.0.3", 9000, clientFactory)
        self.net.advance(1)
        [serverProto] = factory.built
        self.assertEqual(serverProto.peer.host, "10.0.0.2")
        self.assertEqual(serverProto.transport.getHost().host, "10.0.0.3")

    def test_crash(self):
        """
        A crashed host's peers see ConnectionLost; the host's own protocols
        hear nothing and its timers are cancelled.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.05))
        factory, _ = self.connect()
        udpProto, _ = listen(self.client)
        ticks = []
        loop = LoopingCall(ticks.append, None)
        loop.clock = self.client
        loop.start(0.1)
        self.net.advance(1)
        self.client.crash()
        self.net.advance(1)
        self.assertTrue(self.serverFactory.built[0].lostReason.check(error.ConnectionLost))
        self.assertEqual(factory.proto.events, [("made", 0.1)])
        self.assertEqual(factory.losses, [])
        self.assertEqual(udpProto.stopped, 0)
        self.assertEqual(len(ticks), 11)
        self.listening.stopListening()
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_disconnectHost(self):
        """
        disconnectHost aborts the host's connections: both sides are told.
        """
        factory, _ = self.connect()
        self.net.advance(1)
        self.net.disconnectHost(self.client)
        self.net.advance(1)
        self.assertTrue(factory.proto.reason.check(error.ConnectionAborted))
        self.assertTrue(self.serverFactory.built[0].lostReason.check(error.ConnectionLost))

    def test_reconnecting(self):
        """
        A ReconnectingClientFactory (with its clock set) reconnects when the
        server comes back.
        """
        factory = ReconnectingClientFactory()
        factory.protocol = Client
        factory.clock = self.client
        factory.initialDelay = 1
        factory.maxDelay = 2
        self.listening.stopListening()
        self.client.connectTCP(SERVER_IP, 8000, factory)
        self.net.advance(5)
        self.assertEqual(self.serverFactory.built, [])
        self.server.listenTCP(8000, self.serverFactory)
        self.assertTrue(self.net.runUntil(lambda: self.serverFactory.built, 10))
        factory.stopTrying()
        self.serverFactory.built[0].transport.loseConnection()
        self.net.advance(1)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])

    def test_nothingLeaks(self):
        """
        After traffic, closing everything leaves no delayed call and frees
        the NAT's TCP port.
        """
        self.net.setDefaultConditions(LinkConditions(latency=0.02, jitter=0.01))
        factory, _ = self.connect()
        _udpServer, udpServerPort = listen(self.server, 5000, echo=True)
        _, udpClientPort = listen(self.client)
        self.net.advance(1)
        for _n in range(20):
            factory.proto.sendString(b"x")
            udpClientPort.write(b"y", (SERVER_IP, 5000))
        factory.proto.transport.loseConnection()
        udpClientPort.stopListening()
        udpServerPort.stopListening()
        self.listening.stopListening()
        self.net.advance(1)
        self.assertEqual(self.net.clock.getDelayedCalls(), [])
        self.assertEqual(self.net.pending, 0)
        self.assertEqual(self.nat._tcpIn, {})
        self.assertEqual(self.client._connections, {})


def mixedScenario(seed):
    """
    UDP through a symmetric NAT with loss and jitter, and TCP with jitter,
    at once; return what arrived, where and when.
    """
    net = MemoryNetwork(seed=seed)
    server = net.addHost(SERVER_IP)
    nat = net.addNAT(NAT_IP, NATType.SYMMETRIC)
    client = nat.addHost("10.0.0.2")
    net.setDefaultConditions(LinkConditions(loss=0.2, duplicate=0.1, reorder=0.1,
                                            latency=0.02, jitter=0.01))
    trace = []
    serverUDP = Recorder(server, echo=True)
    server.listenUDP(5000, serverUDP)
    server.listenTCP(8000, RecordingServerFactory())
    factory = RecordingClientFactory()
    client.connectTCP(SERVER_IP, 8000, factory)
    clientUDP, port = listen(client)
    for n in range(200):
        port.write(b"%d" % n, (SERVER_IP, 5000 + n % 3))
        if factory.failures or not hasattr(factory, "proto"):
            net.advance(0.003)
            continue
        factory.proto.sendString(b"%d" % n)
        net.advance(0.003)
    net.advance(1)
    trace.extend(serverUDP.received)
    trace.extend(clientUDP.received)
    trace.append(factory.proto.strings)
    trace.append(sorted(net.stats.items()))
    return trace


class TimeTests(SynchronousTestCase):
    def test_advanceStepsToEachCall(self):
        """
        advance runs each call at its own time, including calls scheduled
        during the advance.
        """
        net = MemoryNetwork()
        host = net.addHost(SERVER_IP)
        seen = []

        def tick(n):
            seen.append(host.seconds())
            if n:
                host.callLater(0.25, tick, n - 1)

        host.callLater(0.1, tick, 3)
        net.advance(10)
        self.assertEqual(seen, [0.1, 0.35, 0.6, 0.85])
        self.assertEqual(net.clock.seconds(), 10)

    def test_loopingCallTicksOncePerInterval(self):
        """
        A LoopingCall on a host ticks once per interval even for intervals
        that binary floats cannot represent.
        """
        net = MemoryNetwork()
        host = net.addHost(SERVER_IP)
        for interval in (0.1, 0.05, 1 / 60):
            ticks = []
            loop = LoopingCall(lambda ticks=ticks: ticks.append(host.seconds()))
            loop.clock = host
            loop.start(interval)
            net.advance(100)
            loop.stop()
            self.assertEqual(len(ticks), round(100 / interval) + 1)

    def test_resetCallsKeepOrder(self):
        """
        Calls moved with reset or delay still run at their new times, in
        order, among network deliveries.
        """
        net = MemoryNetwork()
        server, client = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        net.setDefaultConditions(LinkConditions(latency=0.5))
        proto, _ = listen(server, 5000)
        listen(client)[1].write(b"x", (SERVER_IP, 5000))
        order = []
        late = server.callLater(0.2, lambda: order.append(("late", server.seconds())))
        early = server.callLater(0.3, lambda: order.append(("early", server.seconds())))
        server.callLater(0.4, lambda: order.append(("plain", server.seconds())))
        late.reset(0.7)
        early.reset(0.1)
        net.advance(1)
        self.assertEqual(order, [("early", 0.1), ("plain", 0.4), ("late", 0.7)])
        self.assertEqual(proto.received[0][0], 0.5)

    def test_drivenByClockAdvance(self):
        """
        Code that only calls C{clock.advance} still gets its deliveries.
        """
        net = MemoryNetwork()
        server, client = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        net.setDefaultConditions(LinkConditions(latency=0.25))
        proto, _ = listen(server, 5000, echo=True)
        back, port = listen(client)
        port.write(b"x", (SERVER_IP, 5000))
        net.clock.advance(0.2)
        self.assertEqual(proto.received, [])
        net.clock.advance(0.1)
        self.assertEqual(proto.payloads(), [b"x"])
        net.clock.pump([0.25, 0.25])
        self.assertEqual(back.payloads(), [b"x"])
        self.assertEqual(net.clock.getDelayedCalls(), [])

    def test_runUntil(self):
        """
        runUntil stops as soon as the predicate holds, or at the timeout.
        """
        net = MemoryNetwork()
        server, client = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        net.setDefaultConditions(LinkConditions(latency=0.3))
        proto, _ = listen(server, 5000)
        listen(client)[1].write(b"x", (SERVER_IP, 5000))
        self.assertTrue(net.runUntil(lambda: proto.received, 5))
        self.assertEqual(net.clock.seconds(), 0.3)
        self.assertFalse(net.runUntil(lambda: False, 2))
        self.assertEqual(net.clock.seconds(), 2.3)
        self.assertTrue(net.runUntil(lambda: True, 2))
        self.assertEqual(net.clock.seconds(), 2.3)

    def test_livelockIsReported(self):
        """
        Endless zero-latency ping-pong is reported instead of hanging.
        """
        net = MemoryNetwork()
        net.maxStepsPerInstant = 50
        a, b = net.addHost(SERVER_IP), net.addHost(OTHER_IP)
        listen(a, 1, echo=True)
        _, port = listen(b, 1, echo=True)
        port.write(b"ping", (SERVER_IP, 1))
        net._events.maxBatch = 100
        self.assertRaises(RuntimeError, net.advance, 1)
