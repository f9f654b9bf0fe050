"""A whole server and clients over real loopback sockets (pytest-twisted)."""

import os
import socket
import struct
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from zope.interface import implementer

from proud_twisted import (
    HOSTID_SERVER,
    ConnectionRefusedByServer,
    ErrorType,
    JoinFailed,
    NetClient,
    NetServer,
    ProtocolVersionMismatch,
    ServerUdpState,
    SocketBuffers,
)
from proud_twisted._glue.udpbuffers import DEFAULT_CLIENT_UDP_BUFFER, DEFAULT_SERVER_UDP_BUFFER
from tests.support import RecordingClientEvents, RecordingServerEvents

VERSION = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


@pytest.fixture
def server():
    events = RecordingServerEvents()
    netServer = NetServer(events, VERSION, interface="127.0.0.1", clientTimeout=2.0)
    netServer.startService()
    yield netServer
    pytest_twisted.blockon(netServer.stopService())


@defer.inlineCallbacks
def connectClients(server, count, host="127.0.0.1"):
    clients = [NetClient(RecordingClientEvents()) for _ in range(count)]
    port = server.getTcpAddress()[1]
    yield defer.gatherResults([c.connect(host, port, VERSION) for c in clients])
    yield defer.gatherResults([
        c.events.rec.wait(lambda c=c: c.getServerUdpState() is ServerUdpState.CONFIRMED)
        for c in clients])
    return clients


@defer.inlineCallbacks
def disconnectAll(clients):
    yield defer.gatherResults([c.disconnect() for c in clients])


@pytest_twisted.inlineCallbacks
def test_groupFormsWithJoinEventsThenAckComplete(server):
    clients = yield connectClients(server, 3)
    ids = [c.getLocalHostID() for c in clients]
    seenAtCompletion = {}

    def onComplete(group, member, result):
        seenAtCompletion[member] = [
            (member, group) in [(m, g) for m, g, _, _ in c.events.rec.named("onP2PMemberJoin")]
            for c in clients]
        server.events.rec.record("onP2PGroupJoinMemberAckComplete", group, member, result)

    server.events.onP2PGroupJoinMemberAckComplete = onComplete
    group = server.createP2PGroup(ids, b"welcome")
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    for client in clients:
        joins = client.events.rec.named("onP2PMemberJoin")
        assert sorted(joins) == [(m, group, 3, b"welcome") for m in ids]
        assert client.getLocalJoinedP2PGroups() == {group}
        assert client.getGroupMembers(group) == set(ids)
    completions = server.events.rec.named("onP2PGroupJoinMemberAckComplete")
    assert sorted(completions) == [(group, m, ErrorType.OK) for m in ids]
    # Each member's completion came only after every client had processed its join.
    assert seenAtCompletion == {m: [True, True, True] for m in ids}
    info = server.getClientInfo(ids[0])
    assert info.joinedGroups == {group}
    assert info.udpAddress is not None and info.lanAddress is not None
    peer = clients[0].getPeerInfo(ids[1])
    assert peer.relayed
    assert peer.udpAddress == server.getClientInfo(ids[1]).udpAddress
    assert peer.lanAddress == server.getClientInfo(ids[1]).lanAddress
    assert server.getP2PGroupInfo(group).members == set(ids)
    assert server.getJoinedP2PGroups(ids[2]) == {group}
    yield disconnectAll(clients)


@pytest_twisted.inlineCallbacks
def test_thousandReliableRelayedMessagesInOrderExactlyOnce(server):
    a, b, c = yield connectClients(server, 3)
    group = server.createP2PGroup([x.getLocalHostID() for x in (a, b, c)], allowDirectP2P=False)
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    sent = [b"m%04d" % i + b"x" * (i % 300) for i in range(1000)]
    for payload in sent:
        a.send(b.getLocalHostID(), payload)
    a.send(group, b"to the group")
    sender = a.getLocalHostID()
    yield b.events.rec.wait(lambda: len(b.events.messagesFrom(sender)) >= 1001)
    yield c.events.rec.wait(lambda: len(c.events.messagesFrom(sender)) >= 1)
    assert b.events.messagesFrom(sender) == [*sent, b"to the group"]
    assert c.events.messagesFrom(sender) == [b"to the group"]
    assert a.events.messagesFrom(sender) == []   # a group send does not echo to the sender
    contexts = [ctx for s, _, ctx in b.events.rec.named("onReceiveUserMessage")]
    assert all(ctx.reliable and ctx.relayed for ctx in contexts)
    # Everything went through the server relay (messages share session datagrams).
    assert 0 < server.stats.framesRelayed <= 1002
    assert server.stats.relayBytes >= sum(map(len, sent))
    yield disconnectAll([a, b, c])


@pytest_twisted.inlineCallbacks
def test_unreliableRelayedOverUdpNeverDuplicated(server):
    a, b = yield connectClients(server, 2)
    server.createP2PGroup([a.getLocalHostID(), b.getLocalHostID()], allowDirectP2P=False)
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    sent = [b"u%03d" % i for i in range(200)]
    for payload in sent:
        a.send(b.getLocalHostID(), payload, reliable=False)
    a.send(b.getLocalHostID(), b"fence")   # reliable, over TCP
    sender = a.getLocalHostID()
    yield b.events.rec.wait(lambda: b"fence" in b.events.messagesFrom(sender))
    # UDP may be overtaken by TCP; wait a bounded time for the UDP ones still coming.
    yield b.events.rec.wait(lambda: len(b.events.messagesFrom(sender)) >= 150)
    received = [p for p in b.events.messagesFrom(sender) if p != b"fence"]
    assert len(received) == len(set(received))
    assert set(received) <= set(sent)
    unreliable = [ctx for s, p, ctx in b.events.rec.named("onReceiveUserMessage")
                  if p != b"fence"]
    assert unreliable and not any(ctx.reliable for ctx in unreliable)
    yield disconnectAll([a, b])


@pytest_twisted.inlineCallbacks
def test_clientServerMessagesBothWays(server):
    (a,) = yield connectClients(server, 1)
    me = a.getLocalHostID()
    a.send(HOSTID_SERVER, b"hello server")
    a.send(HOSTID_SERVER, b"fast hello", reliable=False)
    yield server.events.rec.waitCount("onReceiveUserMessage", 2)
    got = {(s, p, ctx.reliable) for s, p, ctx in server.events.rec.named("onReceiveUserMessage")}
    assert got == {(me, b"hello server", True), (me, b"fast hello", False)}
    server.send(me, b"hello client")
    server.send([me], b"fast", reliable=False)
    yield a.events.rec.wait(lambda: len(a.events.messagesFrom(HOSTID_SERVER)) == 2)
    assert sorted(a.events.messagesFrom(HOSTID_SERVER)) == [b"fast", b"hello client"]
    yield disconnectAll([a])


@pytest_twisted.inlineCallbacks
def test_nonMemberMessageDroppedAndReported(server):
    a, b, outsider = yield connectClients(server, 3)
    server.createP2PGroup([a.getLocalHostID(), b.getLocalHostID()])
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    outsider.send(a.getLocalHostID(), b"cheat")
    outsider.send(a.getLocalHostID(), b"cheat over udp", reliable=False)
    yield server.events.rec.wait(lambda: server.stats.relayRejected == 2)
    # Refusals are warned about once a second per client, not once each.
    assert server.events.rec.count("onWarning") == 1
    warning = server.events.rec.named("onWarning")[0][0]
    assert warning.errorType is ErrorType.RELAY_NOT_ALLOWED
    assert warning.hostID == outsider.getLocalHostID()
    assert server.stats.relayRejected == 2
    # TCP keeps order: a message sent to A after the refused relay arrives, the cheat did not.
    server.send(a.getLocalHostID(), b"fence")
    yield a.events.rec.wait(lambda: a.events.messagesFrom(HOSTID_SERVER) == [b"fence"])
    assert a.events.messagesFrom(outsider.getLocalHostID()) == []
    # Members still talk.
    b.send(a.getLocalHostID(), b"legit")
    yield a.events.rec.wait(lambda: a.events.messagesFrom(b.getLocalHostID()) == [b"legit"])
    yield disconnectAll([a, b, outsider])


@pytest_twisted.inlineCallbacks
def test_joinLeaveDestroyAndDisconnectEvents(server):
    a, b, c = yield connectClients(server, 3)
    ida, idb, idc = (x.getLocalHostID() for x in (a, b, c))
    group = server.createP2PGroup([ida, idb])
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)

    server.joinP2PGroup(idc, group, b"hi c")
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    assert (server.events.rec.named("onP2PGroupJoinMemberAckComplete")[-1]
            == (group, idc, ErrorType.OK))
    assert sorted(c.events.rec.named("onP2PMemberJoin")) == [
        (m, group, 3, b"hi c") for m in (ida, idb, idc)]
    assert (idc, group, 3, b"hi c") in a.events.rec.named("onP2PMemberJoin")

    server.leaveP2PGroup(idc, group)
    yield a.events.rec.wait(lambda: (idc, group, 2) in a.events.rec.named("onP2PMemberLeave"))
    yield c.events.rec.waitCount("onP2PMemberLeave", 3)
    assert c.getLocalJoinedP2PGroups() == frozenset()
    with pytest.raises(KeyError):
        a.getPeerInfo(idc)

    yield b.disconnect(b"bye")
    yield a.events.rec.wait(lambda: (idb, group, 1) in a.events.rec.named("onP2PMemberLeave"))
    yield server.events.rec.waitCount("onClientLeave", 1)
    info, reason, comment = server.events.rec.named("onClientLeave")[0]
    assert (info.hostID, reason, comment) == (idb, ErrorType.DISCONNECT_FROM_REMOTE, b"bye")
    assert info.joinedGroups == {group}
    assert b.events.rec.named("onLeaveServer") == [(ErrorType.DISCONNECT_FROM_LOCAL,)]
    assert server.getP2PGroupInfo(group).members == {ida}

    server.destroyP2PGroup(group)
    yield server.events.rec.waitCount("onP2PGroupRemoved", 1)
    yield a.events.rec.wait(lambda: (ida, group, 0) in a.events.rec.named("onP2PMemberLeave"))
    assert server.getP2PGroups() == []
    assert a.getLocalJoinedP2PGroups() == frozenset()

    server.closeConnection(idc)
    yield c.events.rec.waitCount("onLeaveServer", 1)
    yield server.events.rec.waitCount("onClientLeave", 2)
    assert server.events.rec.named("onClientLeave")[1][1] is ErrorType.KICKED
    assert server.getClientHostIDs() == [ida]
    yield disconnectAll([a])


@pytest_twisted.inlineCallbacks
def test_wrongProtocolVersionAndRefusal(server):
    port = server.getTcpAddress()[1]
    events = RecordingClientEvents()
    with pytest.raises(ProtocolVersionMismatch):
        yield NetClient(events).connect("127.0.0.1", port, uuid.uuid4())
    assert events.rec.named("onJoinServerComplete")[0][0] is ErrorType.PROTOCOL_VERSION_MISMATCH

    server.events.accept = (False, b"server is full of dragons")
    events = RecordingClientEvents()
    with pytest.raises(ConnectionRefusedByServer) as caught:
        yield NetClient(events).connect("127.0.0.1", port, VERSION, b"let me in")
    assert caught.value.reply == b"server is full of dragons"
    assert server.events.rec.named("onConnectionRequest")[-1][1] == b"let me in"
    assert server.getClientHostIDs() == []
    assert server.stats.joinsRefused == 2


def closedByServer(sock) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def rawConnection(server):
    """A plain blocking socket to the server, for sending what no client would."""
    return socket.create_connection(server.getTcpAddress(), timeout=5)


@pytest_twisted.inlineCallbacks
def test_malformedAndOversizedInputClosesOnlyTheOffender(server):
    a, b = yield connectClients(server, 2)
    server.createP2PGroup([a.getLocalHostID(), b.getLocalHostID()])
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    garbage = rawConnection(server)
    garbage.sendall(struct.pack(">I", 3) + b"\x40\x01\x02")     # a broken handshake
    oversized = rawConnection(server)
    oversized.sendall(struct.pack(">I", 10_000_000))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.sendto(b"\x01\x04garbage", server.getUdpAddress())
    udp.sendto(b"\x07", server.getUdpAddress())
    stats = server.stats
    yield server.events.rec.wait(
        lambda: stats.failedHandshakes >= 1 and stats.oversizedMessages >= 1
        and stats.malformedDatagrams + stats.spoofedDatagrams >= 2
        and server.getConnectionCount() == 2)
    for sock in (garbage, oversized):
        assert closedByServer(sock)
        sock.close()
    udp.close()
    a.send(b.getLocalHostID(), b"still fine")
    yield b.events.rec.wait(lambda: b.events.messagesFrom(a.getLocalHostID()) == [b"still fine"])
    assert server.getClientHostIDs() == sorted([a.getLocalHostID(), b.getLocalHostID()])
    yield disconnectAll([a, b])


@pytest.fixture
def plainServer():
    """A server with encryption off, so a raw socket can speak to it (and
    a short recovery window, so a lost client soon leaves for good)."""
    netServer = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1",
                          clientTimeout=2.0, encryption=False, recoveryWindow=1.0)
    netServer.startService()
    yield netServer
    pytest_twisted.blockon(netServer.stopService())


@pytest_twisted.inlineCallbacks
def test_silentClientTimesOut(plainServer):
    server = plainServer
    a = NetClient(RecordingClientEvents(), encryption=False)
    yield a.connect("127.0.0.1", server.getTcpAddress()[1], VERSION)
    silent = rawConnection(server)
    from proud_twisted.wire.framing import encodeFrame
    from proud_twisted.wire.messages import WIRE_VERSION, encodeMessage
    silent.sendall(encodeFrame(encodeMessage("HELLO", wireVersion=WIRE_VERSION,
                                             protocolVersion=VERSION.bytes, userData=b"")))
    yield server.events.rec.waitCount("onClientJoin", 2)
    yield server.events.rec.waitCount("onClientLeave", 1, timeout=server._engine.clientTimeout
                                      + server._engine.recoveryWindow + 5)
    info, reason, _ = server.events.rec.named("onClientLeave")[0]
    assert reason is ErrorType.TIMEOUT
    # Offline first (its session kept for a resume that never came).
    assert [i.hostID for (i,) in server.events.rec.named("onClientOffline")] == [info.hostID]
    assert info.hostID != a.getLocalHostID()
    assert server.stats.clientsTimedOut == 1
    assert server.getClientHostIDs() == [a.getLocalHostID()]   # the live client keeps its place
    silent.close()
    yield disconnectAll([a])


@pytest_twisted.inlineCallbacks
def test_clientNoticesLostServer():
    events = RecordingServerEvents()
    netServer = NetServer(events, VERSION, interface="127.0.0.1")
    netServer.startService()
    (a,) = yield connectClients(netServer, 1)
    yield netServer.stopService()
    yield a.events.rec.waitCount("onLeaveServer", 1)
    assert a.getLocalHostID() == 0


@pytest_twisted.inlineCallbacks
def test_disconnectDeliversWhatWasAlreadySent(server):
    a, b = yield connectClients(server, 2)
    server.createP2PGroup([a.getLocalHostID(), b.getLocalHostID()])
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
    sent = [b"last words %d" % i for i in range(20)]
    sender = a.getLocalHostID()
    for payload in sent:
        a.send(b.getLocalHostID(), payload)
    yield a.disconnect()
    yield b.events.rec.wait(lambda: len(b.events.messagesFrom(sender)) >= 20)
    assert b.events.messagesFrom(sender) == sent
    yield disconnectAll([b])


@pytest_twisted.inlineCallbacks
def test_startFailureLeavesNothingListening():
    taken = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1")
    taken.startService()
    udpPort = taken.getUdpAddress()[1]
    clash = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1", udpPort=udpPort)
    from twisted.internet.error import CannotListenError
    with pytest.raises(CannotListenError):
        clash.startService()
    yield clash.stopService()      # nothing to stop, and no error
    yield taken.stopService()


def _buffersOf(udpPort):
    sock = udpPort.socket       # a test may look inside
    return SocketBuffers(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                         sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def _osDefaultReceiveBuffer():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@pytest_twisted.inlineCallbacks
def test_serverAndClientsGrowTheirUdpBuffers(server):
    (client,) = yield connectClients(server, 1)
    default = _osDefaultReceiveBuffer()
    for host in (server, client):
        assert host.udpSocketBuffers == _buffersOf(host._engine._udpPort)
        assert host.udpSocketBuffers.receive > default
    if os.geteuid() == 0:       # beyond net.core.rmem_max with CAP_NET_ADMIN
        assert min(server.udpSocketBuffers) >= DEFAULT_SERVER_UDP_BUFFER
        assert min(client.udpSocketBuffers) >= DEFAULT_CLIENT_UDP_BUFFER
    yield disconnectAll([client])


@pytest_twisted.inlineCallbacks
def test_udpBufferSizeZeroKeepsTheOSDefaults():
    server = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1",
                       encryption=False, udpBufferSize=0)
    server.startService()
    try:
        client = NetClient(RecordingClientEvents(), encryption=False, udpBufferSize=0)
        yield client.connect("127.0.0.1", server.getTcpAddress()[1], VERSION)
        default = _osDefaultReceiveBuffer()
        for host in (server, client):
            assert host.udpSocketBuffers is None
            assert _buffersOf(host._engine._udpPort).receive == default
        yield client.disconnect()
    finally:
        yield server.stopService()


def _hasIPv6Loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _hasIPv6Loopback(), reason="no IPv6 loopback (::1) here")
@pytest.mark.parametrize("interface, host", [
    ("::1", "::1"),             # an IPv6 server
    ("::", "::1"),              # a dual-stack server, IPv6 clients
    ("::", "127.0.0.1"),        # a dual-stack server, IPv4 clients
])
@pytest_twisted.inlineCallbacks
def test_ipv6AndDualStackServersConfirmUdpAndGoDirect(interface, host):
    server = NetServer(RecordingServerEvents(), VERSION, interface=interface)
    server.startService()
    try:
        a, b = yield connectClients(server, 2, host)
        idA, idB = a.getLocalHostID(), b.getLocalHostID()
        # The server tells IPv4 clients their addresses as IPv4, not as the
        # ::ffff:a.b.c.d its dual-stack socket sees: IPv4 peers can send to that.
        assert a.getPublicUdpAddress()[0] == host
        server.createP2PGroup([idA, idB])
        yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
        assert b.getPeerInfo(idA).udpAddress == a.getPublicUdpAddress()
        info = server.getClientInfo(idA)
        assert (info.tcpAddress[0], info.udpAddress) == (host, a.getPublicUdpAddress())
        assert server.events.rec.named("onConnectionRequest")[0][0][0] == host
        a.send(idB, b"first")
        address = yield a.whenDirect(idB).addTimeout(10, reactor)
        assert address[0] == host
        a.send(idB, b"second")
        yield b.events.rec.wait(lambda: len(b.events.messagesFrom(idA)) >= 2)
        assert b.events.messagesFrom(idA) == [b"first", b"second"]
        assert not b.events.rec.named("onReceiveUserMessage")[-1][2].relayed
        yield disconnectAll([a, b])
    finally:
        yield server.stopService()


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name):
        self.name = name

    def cancel(self):
        pass


@implementer(IHostnameResolver)
class _OneNameResolver:
    """Resolves C{name} to C{address}, and nothing else."""

    def __init__(self, name, address):
        self.name, self.address = name, address

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        resolution = _Resolution(hostName)
        receiver.resolutionBegan(resolution)
        if hostName == self.name:
            kind = IPv6Address if ":" in self.address else IPv4Address
            receiver.addressResolved(kind("TCP", self.address, portNumber))
        receiver.resolutionComplete()
        return resolution


@pytest.mark.skipif(not _hasIPv6Loopback(), reason="no IPv6 loopback (::1) here")
@pytest_twisted.inlineCallbacks
def test_aNameWithOnlyAnIPv6AddressIsJoined():
    """An IPv6-only network (DNS64) gives a server's name no IPv4 address."""
    server = NetServer(RecordingServerEvents(), VERSION, interface="::1")
    server.startService()
    previous = reactor.installNameResolver(_OneNameResolver("game.test", "::1"))
    try:
        client = NetClient(RecordingClientEvents())
        yield client.connect("game.test", server.getTcpAddress()[1], VERSION)
        yield client.events.rec.wait(
            lambda: client.getServerUdpState() is ServerUdpState.CONFIRMED)
        assert client.getPublicUdpAddress()[0] == "::1"
        yield client.disconnect()
    finally:
        reactor.installNameResolver(previous)
        yield server.stopService()


@pytest_twisted.inlineCallbacks
def test_aNameThatResolvesNowhereFailsTheJoin(server):
    previous = reactor.installNameResolver(_OneNameResolver("game.test", "::1"))
    try:
        client = NetClient(RecordingClientEvents())
        with pytest.raises(JoinFailed, match="cannot connect"):
            yield client.connect("elsewhere.test", server.getTcpAddress()[1], VERSION,
                                 timeout=5)
    finally:
        reactor.installNameResolver(previous)
