"""The handshake wire messages and the client/server handshake state machines."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.crypto import (
    ClientHandshake,
    HandshakeState,
    IdentityKey,
    ServerAuthenticationFailed,
    ServerHandshake,
    SessionKeys,
)
from proud_twisted.errors import ProtocolError
from proud_twisted.wire.datagrams import DatagramType
from proud_twisted.wire.handshake import (
    BODIES,
    HANDSHAKE_VERSION,
    TYPE_RANGE,
    HandshakeType,
    decodeHandshake,
    encodeHandshake,
    isHandshakeMessage,
)
from proud_twisted.wire.messages import MessageType


def seeded(seed):
    """A deterministic C{randomBytes}."""
    return random.Random(repr(seed)).randbytes


SERVER_KEY = IdentityKey.generate(seeded("server identity"))
OTHER_KEY = IdentityKey.generate(seeded("someone else"))
SERVER_PUBLIC_KEY = SERVER_KEY.publicKey()


def handshake(pinned=SERVER_PUBLIC_KEY, seed=1):
    """A client and a server and the three messages of one handshake."""
    client = ClientHandshake(pinned, randomBytes=seeded(("client", seed)))
    server = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", seed)))
    hello = client.start()
    serverHello = server.receive(hello)
    finished = client.receive(serverHello)
    return client, server, hello, serverHello, finished


SIZES = {0x40: 66, 0x41: 161, 0x42: 49}
"""Each handshake message's type byte, and the size of its whole body."""


def nearlyWellFormed(kind):
    """Bodies of handshake type C{kind}, from two bytes short to two too long."""
    return st.integers(SIZES[kind] - 3, SIZES[kind] + 1).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)).map(
        lambda fields: bytes([kind]) + fields)


BODIES_TO_TRY = st.binary(max_size=200) | st.sampled_from(sorted(SIZES)).flatmap(nearlyWellFormed)
"""Random frame bodies, and bodies of each handshake type near its size."""


def flipped(data, bit):
    data = bytearray(data)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


class WireTests(SynchronousTestCase):
    def test_roundTrip(self):
        fields = {"version": 1, "ephemeral": b"e" * 32, "random": b"r" * 32}
        kind, decoded = decodeHandshake(encodeHandshake("CLIENT_HELLO", **fields))
        self.assertEqual(kind, "CLIENT_HELLO")
        self.assertEqual({k: decoded[k] for k in fields}, fields)

    def test_typeBytesAreInTheirOwnRange(self):
        ours = set(HandshakeType.encmapping.values())
        self.assertTrue(ours <= set(TYPE_RANGE))
        self.assertFalse(ours & set(MessageType.encmapping.values()))
        self.assertFalse(ours & set(DatagramType.encmapping.values()))
        self.assertEqual(set(HandshakeType.encmapping), set(BODIES))

    def test_isHandshakeMessage(self):
        _, _, hello, serverHello, finished = handshake()
        for body in (hello, serverHello, finished):
            self.assertTrue(isHandshakeMessage(body))
        for body in (b"", b"\x01hello", b"\x50"):
            self.assertFalse(isHandshakeMessage(body))

    def test_messageSizes(self):
        _, _, hello, serverHello, finished = handshake()
        self.assertEqual([len(hello), len(serverHello), len(finished)],
                         [SIZES[0x40], SIZES[0x41], SIZES[0x42]])

    def test_encodingBadFieldsIsAProtocolError(self):
        self.assertRaises(ProtocolError, encodeHandshake, "CLIENT_HELLO",
                          version=1, ephemeral=b"short", random=b"r" * 32)

    @settings(max_examples=300)
    @given(BODIES_TO_TRY)
    def test_onlyWellFormedBodiesDecode(self, data):
        """A body of a handshake type's exact size decodes, whatever its
        fields hold (and encodes back to itself); anything else is a
        ProtocolError."""
        if data and len(data) == SIZES.get(data[0]):
            kind, fields = decodeHandshake(data)
            self.assertEqual(encodeHandshake(kind, **fields), data)
        else:
            self.assertRaises(ProtocolError, decodeHandshake, data)


class RoundTripTests(SynchronousTestCase):
    def test_bothSidesGetIdenticalKeys(self):
        client, server, _, _, finished = handshake()
        self.assertIsNone(server.keys)
        self.assertFalse(server.complete)
        self.assertIsNone(server.receive(finished))
        self.assertTrue(client.complete)
        self.assertTrue(server.complete)
        self.assertIsInstance(client.keys, SessionKeys)
        self.assertEqual(client.keys, server.keys)
        self.assertEqual(client.serverIdentity, SERVER_KEY.publicKey())

    def test_keysAreDistinctAndFresh(self):
        a, server, _, _, finished = handshake(seed=1)
        server.receive(finished)
        b = handshake(seed=2)[0]
        keysA = [a.keys.clientToServerTcp, a.keys.serverToClientTcp,
                 a.keys.clientToServerUdp, a.keys.serverToClientUdp]
        self.assertEqual(len(set(keysA)), 4)
        self.assertTrue(all(len(k) == 32 for k in keysA))
        self.assertEqual(len(a.keys.sessionID), 16)
        self.assertNotEqual(a.keys, b.keys)

    def test_deterministicWithInjectedRandomness(self):
        self.assertEqual(handshake(seed=7)[2:], handshake(seed=7)[2:])

    def test_reprHidesKeys(self):
        client = handshake()[0]
        self.assertNotIn(repr(client.keys.clientToServerTcp), repr(client.keys))

    def test_sessionChannelsInteroperate(self):
        client, server, _, _, finished = handshake()
        server.receive(finished)
        for transport in ("tcp", "udp"):
            c = client.keys.clientChannel(transport)
            s = server.keys.serverChannel(transport)
            self.assertEqual(s.open(c.seal(b"up")), b"up")
            self.assertEqual(c.open(s.seal(b"down")), b"down")
            self.assertEqual(c.strict, transport == "tcp")
        udp = client.keys.clientChannel("udp")
        tcp = server.keys.serverChannel("tcp")
        self.assertRaises(ProtocolError, tcp.open, udp.seal(b"cross"))
        self.assertRaises(ValueError, client.keys.clientChannel, "sctp")

    def test_unpinnedClientTrustsOnFirstUse(self):
        client, server, _, _, finished = handshake(pinned=None)
        server.receive(finished)
        self.assertEqual(client.keys, server.keys)
        self.assertEqual(client.serverIdentity, SERVER_KEY.publicKey())


class AuthenticationTests(SynchronousTestCase):
    def assertFails(self, machine, body, exception=ProtocolError):
        self.assertRaises(exception, machine.receive, body)
        self.assertEqual(machine.state, HandshakeState.FAILED)
        self.assertIsNone(machine.keys)
        self.assertFalse(machine.complete)

    def test_clientPinnedToAnotherKeyRefuses(self):
        client = ClientHandshake(OTHER_KEY.publicKey(), randomBytes=seeded(1))
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        serverHello = server.receive(client.start())
        e = self.assertRaises(ServerAuthenticationFailed, client.receive, serverHello)
        self.assertIn(SERVER_KEY.publicKey().fingerprint(), str(e))
        self.assertTrue(client.failed)
        self.assertIsNone(client.keys)

    def test_impostorSigningWithItsOwnKeyIsRefused(self):
        client = ClientHandshake(SERVER_KEY.publicKey(), randomBytes=seeded(1))
        impostor = ServerHandshake(OTHER_KEY, randomBytes=seeded(2))
        self.assertFails(client, impostor.receive(client.start()), ServerAuthenticationFailed)

    def test_tamperedSignatureFails(self):
        client = ClientHandshake(SERVER_KEY.publicKey(), randomBytes=seeded(1))
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        serverHello = server.receive(client.start())
        self.assertFails(client, flipped(serverHello, len(serverHello) * 8 - 1),
                         ServerAuthenticationFailed)

    def test_substitutedEphemeralFails(self):
        client = ClientHandshake(None, randomBytes=seeded(1))
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        serverHello = server.receive(client.start())
        self.assertFails(client, flipped(serverHello, 8 * 5), ServerAuthenticationFailed)

    def test_serverHelloFromAnotherSessionFails(self):
        old = handshake(seed=1)[3]
        client = ClientHandshake(SERVER_KEY.publicKey(), randomBytes=seeded(("client", 2)))
        client.start()
        self.assertFails(client, old, ServerAuthenticationFailed)

    def test_tamperedClientFinishedFails(self):
        _, server, _, _, finished = handshake()
        self.assertFails(server, flipped(finished, 8 * 10))

    def test_clientFinishedFromAnotherSessionFails(self):
        _, _, _, _, oldFinished = handshake(seed=1)
        _, server, _, _, _ = handshake(seed=2)
        self.assertFails(server, oldFinished)

    def test_unsupportedVersionFails(self):
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        hello = encodeHandshake("CLIENT_HELLO", version=HANDSHAKE_VERSION + 1,
                                ephemeral=b"e" * 32, random=b"r" * 32)
        e = self.assertRaises(ProtocolError, server.receive, hello)
        self.assertIn("version", str(e))
        self.assertTrue(server.failed)

    def test_lowOrderEphemeralFails(self):
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        hello = encodeHandshake("CLIENT_HELLO", version=HANDSHAKE_VERSION,
                                ephemeral=bytes(32), random=b"r" * 32)
        self.assertFails(server, hello)


class OrderTests(SynchronousTestCase):
    def assertRefused(self, machine, call, *args, naming=()):
        """C{call(*args)} raises a ProtocolError naming C{naming}; C{machine} FAILED."""
        e = self.assertRaises(ProtocolError, call, *args)
        for word in naming:
            self.assertIn(word, str(e))
        self.assertTrue(machine.failed)

    def test_clientReceiveBeforeStart(self):
        client = ClientHandshake(None)
        self.assertRefused(client, client.receive, handshake()[3],
                           naming=("IDLE", "SERVER_HELLO"))

    def test_startTwice(self):
        client = ClientHandshake(None)
        client.start()
        self.assertRefused(client, client.start, naming=("AWAIT_SERVER_HELLO", "START"))

    def test_serverGetsFinishedFirst(self):
        server = ServerHandshake(SERVER_KEY)
        self.assertRefused(server, server.receive, handshake()[4],
                           naming=("AWAIT_CLIENT_HELLO", "CLIENT_FINISHED"))

    def test_repeatedClientHello(self):
        client = ClientHandshake(None, randomBytes=seeded(1))
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(2))
        hello = client.start()
        server.receive(hello)
        self.assertRefused(server, server.receive, hello)

    def test_repeatedServerHello(self):
        client, _, _, serverHello, _ = handshake()
        self.assertTrue(client.complete)
        self.assertRefused(client, client.receive, serverHello, naming=("COMPLETE",))
        self.assertIsNone(client.keys)

    def test_repeatedClientFinished(self):
        _, server, _, _, finished = handshake()
        server.receive(finished)
        self.assertRefused(server, server.receive, finished)

    def test_reflectedClientHello(self):
        client = ClientHandshake(None)
        self.assertRefused(client, client.receive, client.start())

    def test_failedIsTerminal(self):
        client = ClientHandshake(None, randomBytes=seeded(("client", 1)))
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", 1)))
        hello = client.start()
        self.assertRaises(ProtocolError, server.receive, b"\x40garbage")
        e = self.assertRaises(ProtocolError, server.receive, hello)
        self.assertIn("FAILED", str(e))
        self.assertRaises(ProtocolError, client.receive, b"")
        self.assertRaises(ProtocolError, client.receive, handshake()[3])
        self.assertRaises(ProtocolError, client.start)

    def test_malformedMessageNamesTheState(self):
        server = ServerHandshake(SERVER_KEY)
        self.assertRefused(server, server.receive, b"\x41", naming=("AWAIT_CLIENT_HELLO",))


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.integers(0, 255)),
)


def mutate(data, mutation):
    kind, position, *rest = mutation
    if kind == "flip":
        return flipped(data, position % (len(data) * 8))
    if kind == "truncate":
        return data[:position % len(data)]
    position %= len(data) + 1
    if kind == "insert":
        return data[:position] + rest[0] + data[position:]
    position %= len(data)
    return data[:position] + bytes([rest[0]]) + data[position + 1:]


def receiveOnlyProtocolError(machine, body):
    """Feed C{body}; True if accepted, False on ProtocolError; anything else fails."""
    try:
        machine.receive(body)
    except ProtocolError:
        assert machine.failed and machine.keys is None
        return False
    return True


def isClientHello(body):
    """Whether C{body} is a ClientHello of our version by its size and first bytes."""
    return len(body) == SIZES[0x40] and body[:2] == bytes([0x40, HANDSHAKE_VERSION])


REFERENCE = handshake()


class FuzzTests(SynchronousTestCase):
    def machines(self):
        """Each state machine in each state that waits for input."""
        client = ClientHandshake(SERVER_KEY.publicKey(), randomBytes=seeded(("client", 1)))
        waiting = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", 1)))
        finishing = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", 1)))
        finishing.receive(client.start())
        return [ClientHandshake(None), client, waiting, finishing]

    @settings(max_examples=200)
    @given(BODIES_TO_TRY)
    def test_randomBytesAreRefused(self, data):
        """Only the server waiting for a ClientHello takes random bytes, and
        only a well-formed ClientHello of our version."""
        idle, client, waiting, finishing = self.machines()
        for machine in (idle, client, finishing):
            self.assertFalse(receiveOnlyProtocolError(machine, data))
        if receiveOnlyProtocolError(waiting, data):
            self.assertTrue(isClientHello(data), data)
            self.assertEqual(waiting.state, HandshakeState.AWAIT_CLIENT_FINISHED)

    @settings(max_examples=200)
    @given(mutations)
    def test_mutatedServerHelloIsRefused(self, mutation):
        serverHello = REFERENCE[3]
        body = mutate(serverHello, mutation)
        client = ClientHandshake(None, randomBytes=seeded(("client", 1)))
        client.start()
        self.assertEqual(receiveOnlyProtocolError(client, body), body == serverHello)

    @settings(max_examples=200)
    @given(mutations)
    def test_mutatedClientFinishedIsRefused(self, mutation):
        _, _, hello, _, finished = REFERENCE
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", 1)))
        server.receive(hello)
        body = mutate(finished, mutation)
        self.assertEqual(receiveOnlyProtocolError(server, body), body == finished)

    @settings(max_examples=200)
    @given(mutations)
    def test_mutatedClientHelloIsRefusedUnlessWellFormed(self, mutation):
        """A mutated ClientHello of the right size and version still
        carries a usable ephemeral key (one byte from a real one); every
        other is refused."""
        server = ServerHandshake(SERVER_KEY, randomBytes=seeded(("server", 1)))
        body = mutate(REFERENCE[2], mutation)
        self.assertEqual(receiveOnlyProtocolError(server, body), isClientHello(body))
        if isClientHello(body):
            self.assertEqual(server.state, HandshakeState.AWAIT_CLIENT_FINISHED)
